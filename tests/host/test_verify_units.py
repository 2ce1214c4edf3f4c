"""Small pure pieces of host introspection and verify."""

from __future__ import annotations

from types import SimpleNamespace

from armvmi_cli.host.kernel import HostKernel
from armvmi_cli.host.kvm import Memslot, infer_vhe
from armvmi_cli.host.verify import _ram_matches

PAGE_OFFSET = 0xFFFF_0000_0000_0000


def _hk():
    kernel = SimpleNamespace(vmcoreinfo=SimpleNamespace(raw={"NUMBER(MODULES_VADDR)": "0xffff800000000000"}),
                             info=SimpleNamespace(va_bits=48))
    return HostKernel(kernel, None, 0xFFFF_94B2_8000_0000, "test", PAGE_OFFSET)


def test_vhe_inferred_from_where_struct_kvm_lives():
    hk = _hk()
    linear, vmalloc = SimpleNamespace(address=0xFFFF_6B4D_C311_6000), SimpleNamespace(address=0xFFFF_8000_0A00_0000)
    assert infer_vhe(hk, [linear])[0] is False  # kzalloc: nVHE
    assert infer_vhe(hk, [vmalloc, vmalloc])[0] is True  # vzalloc: VHE
    assert infer_vhe(hk, [linear, vmalloc])[0] is None
    assert infer_vhe(hk, [])[0] is None


def test_linear_map_translation():
    hk = _hk()
    assert hk.lm_to_phys(0xFFFF_6B4D_C311_6000) == 0x4311_6000  # the real capture's struct kvm


def _slot(i, base, size, flags=0, uaddr=0xFFFF_7000_0000):
    return Memslot(i, base >> 12, size >> 12, uaddr, flags, 0)


def test_ram_must_be_exactly_covered_by_memslots():
    slots = [_slot(0, 0, 0x400_0000), _slot(2, 0x4000_0000, 0x400_0000), _slot(3, 0x4400_0000, 0x400_0000)]
    assert _ram_matches(0x4000_0000, 0x800_0000, slots)  # two adjacent slots
    assert _ram_matches(0x4000_0000, 0x400_0000, slots)
    assert not _ram_matches(0x4000_0000, 0x1000_0000, slots)  # beyond the slots
    assert not _ram_matches(0x4100_0000, 0x100_0000, slots)  # not on a slot boundary
    holed = slots + [_slot(5, 0x800_0000, 0x400_0000)]
    assert _ram_matches(0x800_0000, 0x400_0000, holed)
    assert not _ram_matches(0, 0xC00_0000, holed)  # a hole between 0x400_0000 and 0x800_0000
    assert not _ram_matches(0x4000_0000, 0, slots)


def test_ram_over_flash_memslots_is_not_ram():
    """QEMU virt: two read-only pflash slots at guest-physical 0, RAM at 1 GiB.
    A log placing RAM at 0 must not pass because flash covers that range."""
    flash = [_slot(0, 0, 0x400_0000, flags=2), _slot(1, 0x400_0000, 0x400_0000, flags=2)]
    ram = _slot(2, 0x4000_0000, 0x800_0000)
    slots = flash + [_slot(3, 0x90a_0000, 0x1000), ram]
    assert _ram_matches(0x4000_0000, 0x800_0000, slots)
    assert not _ram_matches(0, 0x800_0000, slots)
    assert not _ram_matches(0, 0x400_0000, slots)
    assert not _ram_matches(0x4000_0000, 0x400_0000 + 0x800_0000, slots)  # not the size the log gives
    # A slot with no VMM memory behind it is no RAM either.
    assert not _ram_matches(0x1000_0000, 0x100_0000, [_slot(4, 0x1000_0000, 0x100_0000, uaddr=0)])
