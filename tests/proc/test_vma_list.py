"""Kernels before 6.1 keep VMAs on the sorted ``mm->mmap`` / ``vm_next`` list.
``for_each_vma`` must pick it from the type model (no ``mm_mt`` member), not
from a version string, and end a looping or unsorted list with a problem."""

from __future__ import annotations

import struct

from armvmi_cli.linux.kernel import Kernel, KernelInfo
from armvmi_cli.linux.mm import VmaWalk, for_each_vma
from armvmi_cli.mmu.builder import SparseMemory
from armvmi_cli.symbols.types import Field, IntType, PointerType, StructType

U64 = IntType("unsigned long", 8)
VMA = StructType("vm_area_struct", 24, False, lambda: [Field("vm_start", 0, U64, 0), Field("vm_end", 8, U64, 64),
                                                       Field("vm_next", 16, PointerType(VMA), 128)])
MM = StructType("mm_struct", 16, False, [Field("mmap", 0, PointerType(VMA), 0), Field("pgd", 8, U64, 64)])
BASE = 0x1000


def kernel_with(vmas, links):
    """``vmas``: (start, end) at BASE + 0x100*i; ``links``: vm_next of each (index or None)."""
    mem = SparseMemory("kernel virtual")
    mem.write(0, struct.pack("<QQ", BASE, 0))  # mm at 0: mmap -> the first VMA
    for i, ((s, e), nxt) in enumerate(zip(vmas, links)):
        mem.write(BASE + 0x100 * i, struct.pack("<QQQ", s, e, 0 if nxt is None else BASE + 0x100 * nxt))
    return Kernel(mem, {"vm_area_struct": VMA, "mm_struct": MM}, None, KernelInfo())


def walk(k):
    w = VmaWalk()
    return [(v.vm_start, v.vm_end) for v in for_each_vma(k, k.object("mm_struct", 0), w)], w


def test_list_in_order():
    vmas = [(0x40_0000, 0x40_3000), (0x60_0000, 0x60_1000), (0xFFFF_F000, 0x1_0000_0000)]
    got, w = walk(kernel_with(vmas, [1, 2, None]))
    assert got == vmas and w.complete


def test_looping_list_ends():
    vmas = [(0x40_0000, 0x40_3000), (0x60_0000, 0x60_1000)]
    got, w = walk(kernel_with(vmas, [1, 0]))
    assert got == vmas and not w.complete and "loops" in w.problems[0]


def test_unsorted_list_ends():
    vmas = [(0x60_0000, 0x60_1000), (0x40_0000, 0x40_3000), (0x70_0000, 0x70_1000)]
    got, w = walk(kernel_with(vmas, [1, 2, None]))
    assert got == vmas[:1] and "out of order" in w.problems[0]


def test_cut_list_ends():
    vmas = [(0x40_0000, 0x40_3000)]
    k = kernel_with(vmas, [None])
    k.vmem.write(BASE + 16, struct.pack("<Q", 0xDEAD_0000))  # vm_next into a hole
    got, w = walk(k)
    assert got == vmas and "unreadable" in w.problems[0]
