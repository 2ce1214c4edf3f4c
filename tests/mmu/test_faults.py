"""Malformed tables and out-of-range inputs fault cleanly, at the right level, never loop."""

import json

import pytest

from armvmi_cli.errors import MemoryReadError
from armvmi_cli.mmu import Granule, Stage1, Stage2, TranslationFault
from armvmi_cli.mmu.builder import PageAllocator, SparseMemory, Stage1Tables, Stage2Tables

KVA = 0xFFFF_8000_0000_0000


def kernel(granule=Granule.K4, oa_bits=48, **kw):
    mem = SparseMemory()
    t = Stage1Tables(mem, PageAllocator(0x1000_0000), granule=granule, oa_bits=oa_bits, **kw)
    return mem, t


def layer(mem, t):
    return Stage1(mem, *t.registers())


def fault_of(layer_, va) -> TranslationFault:
    with pytest.raises(TranslationFault) as e:
        layer_.translate(va)
    tr = layer_.walk(va)
    assert tr.fault is not None and tr.fault.level == e.value.level
    json.dumps(tr.to_dict())  # traces of faults are JSON-able too
    return e.value


def test_reserved_level3_encoding():
    mem, t = kernel()
    t.map(KVA, 0x4000_0000, 4096)
    t.set_descriptor(KVA + 0x1000, 3, 0x4000_1000 | (1 << 10) | 1)  # 0b01 at level 3
    f = fault_of(layer(mem, t), KVA + 0x1000)
    assert f.level == 3 and "reserved" in f.reason and f.kind == "translation"


@pytest.mark.parametrize("granule,level", [(Granule.K4, 0), (Granule.K16, 1), (Granule.K64, 1), (Granule.K16, 0)])
def test_block_where_blocks_are_illegal(granule, level):
    mem, t = kernel(granule)
    t.set_descriptor(KVA, level, 0x4000_0000 | (1 << 10) | 1)
    f = fault_of(layer(mem, t), KVA)
    assert f.level == level and "reserved" in f.reason


def test_output_address_beyond_ips_is_an_address_size_fault():
    mem, t = kernel(oa_bits=40)
    t.set_descriptor(KVA, 2, (1 << 44) | (1 << 10) | 1)  # 2 MiB block at 16 TiB > 40 bits
    f = fault_of(layer(mem, t), KVA)
    assert (f.level, f.kind) == (2, "address-size")


def test_next_table_beyond_ips_is_an_address_size_fault():
    mem, t = kernel(oa_bits=40)
    t.set_descriptor(KVA, 1, (1 << 42) | 3)
    f = fault_of(layer(mem, t), KVA)
    assert (f.level, f.kind) == (1, "address-size")


def test_table_outside_the_image():
    mem, t = kernel()
    t.set_descriptor(KVA, 1, 0x7700_0000 | 3)  # a table in a hole
    f = fault_of(layer(mem, t), KVA)
    assert f.level == 2 and f.kind == "external"
    assert "0x77000000" in f.reason and "host physical" in f.reason
    assert layer(mem, t).walk(KVA).steps[-1].kind == "unreadable"


def test_stage1_table_not_mapped_in_stage2():
    host = SparseMemory()
    s2t = Stage2Tables(host, PageAllocator(0x8000_0000))
    s2t.map(0x4000_0000, 0x9000_0000, 2 << 20)
    s2 = Stage2(host, *s2t.registers())
    # a stage-1 root at an IPA stage 2 does not map
    s1 = Stage1(s2, None, 0x5000_0000, (16 << 16) | (2 << 30) | (1 << 7) | 16 | (5 << 32))
    f = fault_of(s1, KVA)
    assert f.kind == "external" and "stage2" in f.reason and f.level == 0


def test_self_referencing_tables_terminate():
    mem, t = kernel()
    root = t.hi.root
    t.set_descriptor(KVA, 0, root | 3)  # L0[0] -> the L0 table itself
    s1 = layer(mem, t)
    # with index 0x100 at every level each level reads the root again, and level 3 sees
    # the same 0b11 entry as a page at `root` (what the hardware does); the walk is bounded
    va = (0xFFFF << 48) | sum(0x100 << s for s in (39, 30, 21, 12))
    assert s1.translate(va) == root
    assert [s.table_address for s in s1.walk(va).steps] == [root] * 4
    faults = []
    assert list(s1.mappings(faults=faults)) == []
    assert any("self-reference" in r for _va, _lv, r in faults)


def test_cyclic_tables_enumeration_is_bounded():
    mem, t = kernel()
    # L0 -> A (L1), every entry of A -> B (L2), every entry of B -> A: a cycle through two tables
    a, b = 0x2000_0000, 0x2000_1000
    t.set_descriptor(KVA, 0, a | 3)
    mem.write(a, b"".join((b | 3).to_bytes(8, "little") for _ in range(512)))
    mem.write(b, b"".join((a | 3).to_bytes(8, "little") for _ in range(512)))
    faults = []
    s1 = layer(mem, t)
    found = list(s1.mappings(faults=faults))
    # the hardware walk terminates (A at level 3 holds pages at B) ...
    assert s1.translate(KVA + 0x5000) == b
    # ... and enumeration does not re-enter A from B: nothing to list, the cycle is reported
    assert found == [] and len(faults) == 1 and all("self-reference" in r for _va, _lv, r in faults)


def test_enumeration_budget_caps_huge_trees():
    mem, t = kernel()
    a = 0x2000_0000
    mem.write(a, b"".join(((a + 0x1000) | 3).to_bytes(8, "little") for _ in range(512)))
    mem.write(a + 0x1000, b"".join((0x4000_0000 | (1 << 10) | 3).to_bytes(8, "little") for _ in range(512)))
    t.set_descriptor(KVA, 0, (a - 0x1000) | 3)
    mem.write(a - 0x1000, b"".join((a | 3).to_bytes(8, "little") for _ in range(512)))
    from armvmi_cli.mmu import layers

    s1 = layer(mem, t)
    old = layers._ENUM_BUDGET
    layers._ENUM_BUDGET = 5000
    try:
        faults = []
        n = sum(1 for _ in s1.mappings(faults=faults))
    finally:
        layers._ENUM_BUDGET = old
    assert n < 5000 and any("budget" in r for _v, _l, r in faults)


def test_va_not_in_either_half_and_tbi():
    mem, t = kernel(tbi1=True)
    t.map(KVA, 0x4000_0000, 4096)
    s1 = layer(mem, t)
    tagged = (0xAB << 56) | (KVA & ((1 << 56) - 1))
    assert s1.translate(tagged) == 0x4000_0000  # TBI1: the top byte is a tag
    f = fault_of(s1, 0xFF00_8000_0000_0000 ^ (1 << 50))  # bit 50 clear: not canonical
    assert f.level == 0 and "either half" in f.reason
    mem2, t2 = kernel(tbi1=False)
    t2.map(KVA, 0x4000_0000, 4096)
    assert "either half" in fault_of(layer(mem2, t2), tagged).reason


def test_epd_and_missing_ttbr():
    mem, t = kernel(lower=False)
    _ttbr0, ttbr1, tcr = t.registers()
    f = fault_of(Stage1(mem, 0x1000_0000, ttbr1, tcr), 0x1000)
    assert f.level == 0 and "EPD0" in f.reason
    s1b = Stage1(mem, None, ttbr1, tcr & ~(1 << 7))
    assert "TTBR0" in fault_of(s1b, 0x1000).reason


def test_reads_fault_and_lower_errors_propagate():
    mem, t = kernel()
    t.map(KVA, 0x4000_0000, 4096)
    t.map(KVA + 0x1000, 0x4100_0000, 4096)
    mem.write(0x4000_0FF8, b"A" * 8)
    s1 = layer(mem, t)
    with pytest.raises(MemoryReadError):  # mapped, but the second page is not in the image
        s1.read(KVA + 0xFF8, 16)
    mem.write(0x4100_0000, b"B" * 8)
    assert s1.read(KVA + 0xFF8, 16) == b"A" * 8 + b"B" * 8  # pages not contiguous below
    with pytest.raises(TranslationFault):
        s1.read(KVA + 0x1FF8, 16)  # crosses into an unmapped page
    assert s1.is_mapped(KVA) and not s1.is_mapped(KVA + 0x2000) and not s1.is_mapped(3 << 60)


def test_inconsistent_vtcr_is_a_register_error():
    from armvmi_cli.mmu import RegisterError

    with pytest.raises(RegisterError):
        Stage2(SparseMemory(), 0, 20 | (1 << 6) | (1 << 31))  # 44-bit IPA at level 1: 32 tables


def test_table_base_beyond_ips():
    mem, t = kernel(oa_bits=40)
    t.map(KVA, 0x4000_0000, 4096)
    _ttbr0, _ttbr1, tcr = t.registers()
    f = fault_of(Stage1(mem, None, 1 << 44, tcr), KVA)
    assert (f.level, f.kind) == (0, "address-size")
