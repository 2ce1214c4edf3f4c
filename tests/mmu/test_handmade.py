"""Hand-computed walks, one per granule: tables written descriptor by descriptor (no builder).

VA 0xffff_8000_1234_5678 (48-bit upper half) resolves input bits 0x8000_1234_5678; its
per-level indices below were computed by hand from the Arm ARM bit slices.
"""

import pytest

from armvmi_cli.mmu import Stage1, Stage2, TranslationFault, resolve_chain
from armvmi_cli.mmu.builder import SparseMemory

VA = 0xFFFF_8000_1234_5678
AF = 1 << 10
TTBR1_TAGS = (0x42 << 48) | 1  # ASID 0x42 and CnP: both must be ignored


def put(mem, table, index, desc):
    mem.write_u64(table + index * 8, desc)


def tcr_upper(tg1, t1sz=16, ips=5, ds=0):
    return (t1sz << 16) | (tg1 << 30) | (1 << 7) | 16 | (ips << 32) | (ds << 59)


@pytest.mark.parametrize("block", [False, True])
def test_4k_four_levels(block):
    # 4K: L0 = VA[47:39] = 0x100, L1 = VA[38:30] = 0, L2 = VA[29:21] = 0x91, L3 = VA[20:12] = 0x145, offset 0x678
    mem = SparseMemory()
    l0, l1, l2, l3 = 0x1000_0000, 0x1000_1000, 0x1000_2000, 0x1000_3000
    for t in (l0, l1, l2, l3):
        mem.write(t, bytes(4096))
    put(mem, l0, 0x100, l1 | 3)
    put(mem, l1, 0, l2 | 3)
    if block:
        put(mem, l2, 0x91, 0x8760_0000 | AF | 1)  # 2 MiB block
        expect = 0x8760_0000 + 0x14_5678
    else:
        put(mem, l2, 0x91, l3 | 3)
        put(mem, l3, 0x145, 0x8765_4000 | AF | 3)
        expect = 0x8765_4678
    s1 = Stage1(mem, None, l0 | TTBR1_TAGS, tcr_upper(tg1=2))
    assert s1.translate(VA) == expect
    t = s1.walk(VA)
    assert [(s.level, s.index) for s in t.steps] == [(0, 0x100), (1, 0), (2, 0x91)] + ([] if block else [(3, 0x145)])
    assert t.steps[-1].kind == ("block" if block else "page") and t.size == (2 << 20 if block else 4096)
    assert t.base_register == "TTBR1_EL1" and t.result == expect and t.fault is None


def test_16k_four_levels():
    # 16K: L0 = VA[47] = 1, L1 = VA[46:36] = 0, L2 = VA[35:25] = 9, L3 = VA[24:14] = 0xd1, offset 0x1678
    mem = SparseMemory()
    l0, l1, l2, l3 = 0x1000_0000, 0x1000_4000, 0x1000_8000, 0x1000_C000
    for t in (l0, l1, l2, l3):
        mem.write(t, bytes(16384))
    put(mem, l0, 1, l1 | 3)
    put(mem, l1, 0, l2 | 3)
    put(mem, l2, 9, l3 | 3)
    put(mem, l3, 0xD1, 0x8765_4000 | AF | 3)
    s1 = Stage1(mem, None, l0 | TTBR1_TAGS, tcr_upper(tg1=1))
    assert s1.translate(VA) == 0x8765_4000 + 0x1678
    assert [(s.level, s.index) for s in s1.walk(VA).steps] == [(0, 1), (1, 0), (2, 9), (3, 0xD1)]
    # a 32 MiB block at L2 instead
    put(mem, l2, 9, 0x4000_0000 | AF | 1)
    s1.flush()
    assert s1.translate(VA) == 0x4000_0000 + (0x1234_5678 & 0x1FF_FFFF)


def test_64k_three_levels_and_512m_block():
    # 64K: L1 = VA[47:42] = 0x20, L2 = VA[41:29] = 0, L3 = VA[28:16] = 0x1234, offset 0x5678
    mem = SparseMemory()
    l1, l2, l3 = 0x1000_0000, 0x1001_0000, 0x1002_0000
    mem.write(l1, bytes(512))  # a 64-entry top table
    for t in (l2, l3):
        mem.write(t, bytes(65536))
    put(mem, l1, 0x20, l2 | 3)
    put(mem, l2, 0, l3 | 3)
    put(mem, l3, 0x1234, 0x8765_0000 | AF | 3)
    s1 = Stage1(mem, None, l1 | TTBR1_TAGS, tcr_upper(tg1=3))
    assert s1.translate(VA) == 0x8765_5678
    assert [(s.level, s.index) for s in s1.walk(VA).steps] == [(1, 0x20), (2, 0), (3, 0x1234)]
    put(mem, l2, 0, 0x2000_0000 | AF | 1)  # 512 MiB block
    s1.flush()
    assert s1.translate(VA) == 0x2000_0000 + 0x1234_5678


def test_4k_lpa2_five_levels_52bit_oa():
    # TCR.DS=1, T1SZ=12: VA 0xfff5_0000_0000_1000 -> IA 0x5_0000_0000_1000:
    # L-1 = IA[51:48] = 5, L0..L2 = 0, L3 = IA[20:12] = 1.  Tables live above 4 PiB (52-bit PAs).
    va = 0xFFF5_0000_0000_1000
    mem = SparseMemory()
    root, t0, t1, t2, t3 = 0x1_0000_4000_0000, 0x4_0000_4000_1000, 0x4_0000_4000_2000, 0x4_0000_4000_3000, 0x4_0000_4000_4000
    for t in (root, t0, t1, t2, t3):
        mem.write(t, bytes(4096))
    ttbr1 = 0x4000_0000 | (0x1 << 2)  # BADDR[51:48] = 1 in TTBR bits 5:2
    put(mem, root, 5, 0x4000_1000 | (1 << 8) | 3)  # next table 0x4_0000_4000_1000: OA[51:50] = 0b01 in bits 9:8
    put(mem, t0, 0, 0x4000_2000 | (1 << 8) | 3)
    put(mem, t1, 0, 0x4000_3000 | (1 << 8) | 3)
    put(mem, t2, 0, 0x4000_4000 | (1 << 8) | 3)
    put(mem, t3, 1, 0x0003_0000_9999_0000 | (2 << 8) | AF | 3)  # OA = 0b10:0b11 << 48 | 0x9999_0000
    s1 = Stage1(mem, None, ttbr1, tcr_upper(tg1=2, t1sz=12, ips=6, ds=1))
    assert s1.translate(va + 0x123) == (0xB << 48) | 0x9999_0123
    assert [s.level for s in s1.walk(va).steps] == [-1, 0, 1, 2, 3]


def test_kvm_stage2_concatenated_level1():
    # VTCR_EL2 0x80243558: 4K, 40-bit IPA, SL0=1 (start level 1), two concatenated level-1 tables.
    # IPA 0x80_4123_4567: L1 = IPA[39:30] = 0x201 (entry 1 of the second table), L2 = 9, L3 = 0x34.
    mem = SparseMemory()
    root, l2, l3 = 0x431E_2000, 0x5000_0000, 0x5000_1000
    for t in (root, l2, l3):
        mem.write(t, bytes(8192 if t == root else 4096))
    put(mem, root, 0x201, l2 | 3)
    put(mem, l2, 9, l3 | 3)
    put(mem, l3, 0x34, 0x6000_0000 | AF | (3 << 6) | (0xF << 2) | 3)
    s2 = Stage2(mem, 0x1_0000_431E_2000, 0x80243558)
    assert s2.translate(0x80_4123_4567) == 0x6000_0567
    steps = s2.walk(0x80_4123_4567).steps
    assert steps[0].descriptor_address == root + 0x1008 and steps[0].index == 0x201
    assert steps[-1].attrs["S2AP"] == 3 and steps[-1].attrs["MemAttr"] == 0xF
    with pytest.raises(TranslationFault) as e:
        s2.translate(1 << 40)  # beyond T0SZ
    assert e.value.level == 0
    # the two stages stack: a stage-1 layer whose tables are reached through stage 2
    chain_mem = s2
    assert resolve_chain(chain_mem, 0x80_4123_4567) == [("stage2", 0x80_4123_4567), ("host physical", 0x6000_0567)]
