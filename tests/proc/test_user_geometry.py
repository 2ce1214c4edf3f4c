"""User memory through a process's own tables, for every user-half geometry:
4K/16K/64K granules, 39..52-bit user VAs (T0SZ from mm->task_size, which may
differ from the kernel's VA_BITS), LPA2's level -1 and 16K's two-entry top
table.  Tables are built by mmu.builder (its own encoder, not the walker's),
and the reads must return the bytes placed, or NotResident with the reason."""

from __future__ import annotations

import pytest

from armvmi_cli.linux.kernel import KernelInfo
from armvmi_cli.linux.mm import NotResident, mm_layer, mm_pieces, mm_read
from armvmi_cli.mmu.builder import PageAllocator, PageTables, SparseMemory
from armvmi_cli.mmu.geometry import Granule

PGD_VA = 0xFFFF_0000_0000_1000


class FakeVmem:
    def __init__(self, lower, pgd_pa):
        self.lower, self.pgd_pa = lower, pgd_pa

    def translate(self, va):
        assert va == PGD_VA
        return self.pgd_pa


class FakeKernel:
    def __init__(self, mem, pgd_pa, page, kernel_va_bits=48):
        self.vmem = FakeVmem(mem, pgd_pa)
        self.info = KernelInfo(page_size=page, va_bits=kernel_va_bits)

    def has_symbol(self, name):
        return False


class FakeMM:
    """An mm_struct with the two fields mm_layer reads."""

    def __init__(self, va_bits):
        self.pgd, self.task_size, self.address_ = PGD_VA, 1 << va_bits, 0xFFFF_0000_0000_2000

    def member_(self, name):
        return getattr(self, name)


CASES = [
    # granule, user VA bits, LPA2 (DS), kernel VA bits
    (4096, 39, False, 39),
    (4096, 48, False, 48),
    (4096, 52, True, 52),  # LPA2: level -1, a 16-entry top table
    (16384, 47, False, 47),  # level 0 has only 2 entries
    (16384, 48, False, 48),
    (16384, 52, True, 52),
    (65536, 42, False, 42),
    (65536, 48, False, 48),
    (65536, 52, False, 48),  # 52-bit user VA on a 48-bit kernel VA (T0SZ != T1SZ)
]


@pytest.mark.parametrize("page,va_bits,ds,kbits", CASES, ids=[f"{p // 1024}K-{v}{'-ds' if d else ''}" for p, v, d, _ in CASES])
def test_user_reads_in_every_geometry(page, va_bits, ds, kbits):
    mem = SparseMemory("guest physical")
    alloc = PageAllocator(0x4000_0000)
    oa = 52 if (ds or (page == 65536 and va_bits == 52)) else 48
    pt = PageTables(mem, alloc, granule=Granule(page), ia_bits=va_bits, oa_bits=oa, ds=ds)
    top = (1 << va_bits) - 4 * page  # the stack end of the user half: the top table's last entry
    low = 0x40_0000
    frames = {}
    for va in (low, low + page, top, top + page):
        pa = alloc.alloc(page, page)
        mem.write(pa, va.to_bytes(8, "little") * (page // 8))
        pt.map(va, pa, page, level=3)
        frames[va] = pa
    k = FakeKernel(mem, pt.root, page, kbits)
    mm = FakeMM(va_bits)
    layer = mm_layer(k, mm)
    assert layer.walk(top).geometry["ia_bits"] == va_bits
    assert layer.walk(top).geometry["start_level"] == pt.geom.start_level
    for va in frames:
        assert mm_read(k, mm, va + 8, 8) == va.to_bytes(8, "little")
    # A read across two resident pages, then one running into a hole.
    data = mm_read(k, mm, low + page - 8, 16)
    assert data == low.to_bytes(8, "little") + (low + page).to_bytes(8, "little")
    with pytest.raises(NotResident) as ei:
        mm_read(k, mm, low + page, page + 8)
    assert ei.value.address == low + 2 * page and "not mapped" in ei.value.why
    pieces = [(a, d is not None, n) for a, d, n, _ in mm_pieces(k, mm, low, 4 * page)]
    assert pieces == [(low, True, 2 * page), (low + 2 * page, False, 2 * page)]


def test_swapped_page_is_named_as_such():
    mem = SparseMemory("guest physical")
    alloc = PageAllocator(0x4000_0000)
    pt = PageTables(mem, alloc, granule=Granule.K4, ia_bits=48)
    pa = alloc.alloc(4096, 4096)
    pt.map(0x1000_0000, pa, 4096, level=3)
    # The next PTE holds a swap entry: invalid (bit 0 clear) but not zero.
    pt.set_descriptor(0x1000_1000, 3, 0x0000_0000_1234_5004)
    k, mm = FakeKernel(mem, pt.root, 4096), FakeMM(48)
    with pytest.raises(NotResident) as ei:
        mm_read(k, mm, 0x1000_1000, 8)
    assert "swapped out" in ei.value.why
    # A resident page whose frame the image does not hold: named too, not zeros.
    mem.discard(pa, 4096)
    with pytest.raises(NotResident) as ei:
        mm_read(k, mm, 0x1000_0000, 8)
    assert "not in the image" in ei.value.why
