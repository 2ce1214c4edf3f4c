"""Which guest pages exist, on a hand-built host: stage 2 maps some RAM pages,
the VMM's page tables map others (KVM fills stage 2 lazily), some exist nowhere.

The extracted memory must hold exactly the stage-2 pages and the VMM-only
pages, each with its own bytes, stage 2 winning where both map a page, and
count the rest as absent, without zero-filling them."""

from __future__ import annotations

import io

from armvmi_cli.export.guestmem import guest_memory
from armvmi_cli.export.vmcore import write_elf
from armvmi_cli.host.kvm import Memslot
from armvmi_cli.memory.elfcore import ElfCoreMemory
from armvmi_cli.mmu import Stage1, Stage2
from armvmi_cli.mmu.builder import PageAllocator, SparseMemory, Stage1Tables, Stage2Tables

P = 4096
RAM = 0x4000_0000  # guest RAM: 16 pages at IPA 1 GiB
NPAGES = 16
HVA = 0x7F00_0000_0000  # where the VMM mmaps it
S2_PAGES = {0, 1, 2, 5}  # touched by the guest: in stage 2
VMM_PAGES = {2, 3, 4, 9}  # present in the VMM (page 2 in both: stage 2 must win)


class FakeKvm:
    def __init__(self, vmm):
        self.memslots = [Memslot(0, RAM >> 12, NPAGES, HVA, 0, 0)]
        self._vmm = vmm

    def vmm_layer(self):
        return self._vmm


class FakeVm:
    label = "vm 1"

    def __init__(self, s2, kvm):
        self.stage2, self.gphys, self.kvm, self.ram = s2, s2, kvm, None


def _host():
    mem = SparseMemory()
    alloc = PageAllocator(0x8000_0000)
    s2t = Stage2Tables(mem, alloc, ia_bits=40)
    s1t = Stage1Tables(mem, alloc, upper=False)
    for i in S2_PAGES:
        frame = alloc.alloc(P, P)
        mem.write(frame, bytes([0xA0 + i]) * P)
        s2t.map(RAM + i * P, frame, P)
    for i in VMM_PAGES:
        frame = alloc.alloc(P, P)
        mem.write(frame, bytes([0xB0 + i]) * P)
        s1t.map(HVA + i * P, frame, P)
    vttbr, vtcr = s2t.registers(vmid=1)
    ttbr0, ttbr1, tcr = s1t.registers()
    s2 = Stage2(mem, vttbr, vtcr)
    vmm = Stage1(mem, ttbr0, None, tcr, name="vmm")
    return FakeVm(s2, FakeKvm(vmm))


def test_stage2_and_memslot_pages_absent_counted(tmp_path):
    vm = _host()
    g = guest_memory(vm)
    cov = g.coverage
    assert cov.by_source == {"stage2": len(S2_PAGES) * P, "memslot": len(VMM_PAGES - S2_PAGES) * P}
    present = S2_PAGES | VMM_PAGES
    assert cov.absent == (NPAGES - len(present)) * P
    assert g.runs() == [(RAM, RAM + 6 * P), (RAM + 9 * P, RAM + 10 * P)]  # pages 0-5 and 9
    for i in range(NPAGES):
        if i in S2_PAGES:
            assert g.read(RAM + i * P, P) == bytes([0xA0 + i]) * P
        elif i in VMM_PAGES:
            assert g.read(RAM + i * P, P) == bytes([0xB0 + i]) * P
        else:
            assert not g.is_mapped(RAM + i * P)
    # as an ELF core: one PT_LOAD per run, nothing zero-filled, the same bytes
    f = io.BytesIO()
    assert write_elf(f, g, b"") == 2
    path = tmp_path / "g.elf"
    path.write_bytes(f.getvalue())
    with ElfCoreMemory(path) as core:
        assert core.size == len(present) * P
        assert [(r.start, r.end) for r in core.ranges()] == g.runs()
        assert core.read(RAM + 2 * P, P) == bytes([0xA2]) * P and core.read(RAM + 9 * P, 8) == bytes([0xB9]) * 8
