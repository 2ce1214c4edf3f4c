"""Geometry against the Arm ARM's tables (DDI 0487, D8.2 "Translation table walk"), by hand."""

import pytest

from armvmi_cli.mmu.geometry import (
    Geometry,
    Granule,
    s1_start_level,
    s2_inconsistent,
    s2_start_level,
    stage1_geometry,
    stage2_geometry,
    InconsistentStage2,
)

VA = 0x000F_EDCB_A987_6543_21 >> 8  # 0xfedcba98765 4321 >> 8: a 52-bit value with every nibble distinct

# (granule, VA bits, {level: (hi, lo)}) — the input-address bit slices the Arm ARM gives per level.
SLICES = [
    (Granule.K4, 48, {0: (47, 39), 1: (38, 30), 2: (29, 21), 3: (20, 12)}),
    (Granule.K4, 39, {1: (38, 30), 2: (29, 21), 3: (20, 12)}),
    (Granule.K4, 52, {-1: (51, 48), 0: (47, 39), 1: (38, 30), 2: (29, 21), 3: (20, 12)}),
    (Granule.K16, 48, {0: (47, 47), 1: (46, 36), 2: (35, 25), 3: (24, 14)}),
    (Granule.K16, 47, {1: (46, 36), 2: (35, 25), 3: (24, 14)}),
    (Granule.K16, 52, {0: (51, 47), 1: (46, 36), 2: (35, 25), 3: (24, 14)}),
    (Granule.K64, 48, {1: (47, 42), 2: (41, 29), 3: (28, 16)}),
    (Granule.K64, 52, {1: (51, 42), 2: (41, 29), 3: (28, 16)}),
    (Granule.K64, 42, {2: (41, 29), 3: (28, 16)}),
]


@pytest.mark.parametrize("granule,bits,slices", SLICES, ids=lambda v: str(v))
def test_index_slices_match_arm_arm(granule, bits, slices):
    start = min(slices)
    assert s1_start_level(bits, granule) == start
    g = Geometry(granule, bits, start, 52 if bits == 52 else 48, ds=bits == 52 and granule != Granule.K64)
    va = VA & ((1 << bits) - 1)
    for level, (hi, lo) in slices.items():
        assert g.level_shift(level) == lo
        assert g.index(va, level) == (va >> lo) & ((1 << (hi - lo + 1)) - 1)
    assert g.root_entries == 1 << (slices[start][0] - slices[start][1] + 1)


def test_tg0_tg1_encodings_differ():
    assert [Granule.from_tg0(v) for v in (0, 1, 2)] == [Granule.K4, Granule.K64, Granule.K16]
    assert [Granule.from_tg1(v) for v in (1, 2, 3)] == [Granule.K16, Granule.K4, Granule.K64]
    for g in Granule:
        assert Granule.from_tg0(g.tg0) == g and Granule.from_tg1(g.tg1) == g


def test_real_tcr_el1_decodes_to_48bit_4k():
    tcr = 0x500074B5503510  # from the deb61 captures
    for upper in (False, True):
        g = stage1_geometry(tcr, upper)
        assert (g.granule, g.ia_bits, g.start_level, g.oa_bits) == (Granule.K4, 48, 0, 44)


def test_tcr_64k_upper_16k_lower():
    tcr = (16 << 16) | (3 << 30) | 25 | (2 << 14) | (5 << 32)
    hi, lo = stage1_geometry(tcr, True), stage1_geometry(tcr, False)
    assert (hi.granule, hi.ia_bits, hi.start_level) == (Granule.K64, 48, 1)
    assert (lo.granule, lo.ia_bits, lo.start_level) == (Granule.K16, 39, 1)


@pytest.mark.parametrize(
    "granule,sl0,sl2,level",
    [(Granule.K4, 0, 0, 2), (Granule.K4, 1, 0, 1), (Granule.K4, 2, 0, 0), (Granule.K4, 3, 0, 3), (Granule.K4, 0, 1, -1),
     (Granule.K16, 0, 0, 3), (Granule.K16, 1, 0, 2), (Granule.K16, 2, 0, 1), (Granule.K16, 3, 0, 0),
     (Granule.K64, 0, 0, 3), (Granule.K64, 1, 0, 2), (Granule.K64, 2, 0, 1), (Granule.K64, 3, 0, None)],
)
def test_s2_sl0_meaning_depends_on_granule(granule, sl0, sl2, level):
    assert s2_start_level(granule, sl0, sl2) == level


def test_kvm_vtcr_geometry():
    g = stage2_geometry(0x80243558)  # the nested capture's VTCR_EL2
    assert (g.granule, g.ia_bits, g.start_level, g.concat, g.oa_bits) == (Granule.K4, 40, 1, 2, 44)
    assert g.root_entries == 1024 and g.root_bytes == 8192
    assert g.table_base(0x10000431E2000) == 0x431E2000  # VMID 1 dropped


@pytest.mark.parametrize(
    "granule,ia,start,concat",
    [(Granule.K4, 40, 1, 2), (Granule.K4, 42, 1, 8), (Granule.K4, 43, 1, 16), (Granule.K4, 32, 1, 1),
     (Granule.K4, 44, 0, 1), (Granule.K4, 34, 2, 16), (Granule.K16, 37, 2, 2), (Granule.K16, 40, 2, 16), (Granule.K16, 36, 2, 1),
     (Granule.K64, 42, 2, 1), (Granule.K64, 46, 2, 16), (Granule.K64, 48, 1, 1)],
)
def test_s2_concatenation(granule, ia, start, concat):
    assert not s2_inconsistent(ia, granule, start)
    assert Geometry(granule, ia, start, 48, stage=2).concat == concat


def test_s2_inconsistent_start_levels():
    assert s2_inconsistent(44, Granule.K4, 1)  # would need 32 concatenated tables
    assert s2_inconsistent(30, Granule.K4, 1)  # level 1 resolves nothing
    with pytest.raises(InconsistentStage2):
        stage2_geometry(25 | (2 << 6) | (1 << 31) | (4 << 16))  # 4K, SL0=2 -> level 0, but only 39 bits


def test_ttbr_base_masks_asid_cnp_and_wide_layout():
    g = Geometry(Granule.K4, 48, 0, 48)
    assert g.table_base(0x200004158F001) == 0x4158F000
    w = Geometry(Granule.K64, 52, 1, 52)
    # 64K LPA: TTBR bits 5:2 carry BADDR[51:48]; table of 1024 entries -> 8 KiB aligned
    assert w.table_base(0x0005_0000_1234_0000 | (0xA << 2)) == 0xA_0000_1234_0000
    d = Geometry(Granule.K4, 52, -1, 52, ds=True)
    assert d.root_bytes == 128  # 16 entries, but at least 64 bytes
    assert d.table_base(0x0000_0000_4000_1040 | (0x3 << 2)) == 0x3_0000_4000_1000 | 0x40 & ~0x7F


def test_output_address_52bit_forms():
    lpa2 = Geometry(Granule.K4, 52, -1, 52, ds=True)
    assert lpa2.output_address(0x0003_0000_8000_0000 | (2 << 8) | 3, 12) == (2 << 50) | (3 << 48) | 0x8000_0000
    lpa64 = Geometry(Granule.K64, 52, 1, 52)
    assert lpa64.output_address(0x0000_1234_5678_0000 | (0x9 << 12) | 3, 16) == (0x9 << 48) | 0x1234_5678_0000
    narrow = Geometry(Granule.K64, 48, 1, 48)
    assert narrow.output_address(0x0000_1234_5678_0000 | (0x9 << 12) | 3, 16) == 0x1234_5678_0000


def test_blocks_allowed_per_granule():
    g4, g4ds = Geometry(Granule.K4, 48, 0, 48), Geometry(Granule.K4, 52, -1, 52, ds=True)
    assert [lv for lv in range(4) if g4.block_allowed(lv)] == [1, 2]
    assert [lv for lv in range(4) if g4ds.block_allowed(lv)] == [0, 1, 2]
    g16, g16ds = Geometry(Granule.K16, 48, 0, 48), Geometry(Granule.K16, 52, 0, 52, ds=True)
    assert [lv for lv in range(4) if g16.block_allowed(lv)] == [2]
    assert [lv for lv in range(4) if g16ds.block_allowed(lv)] == [1, 2]
    g64, g64lpa = Geometry(Granule.K64, 48, 1, 48), Geometry(Granule.K64, 52, 1, 52)
    assert [lv for lv in range(4) if g64.block_allowed(lv)] == [2]
    assert [lv for lv in range(4) if g64lpa.block_allowed(lv)] == [1, 2]
    # block sizes: 1G/2M at 4K, 32M at 16K, 512M (and 4T) at 64K, 512G at 4K L0 and 64G at 16K L1 with DS
    assert [1 << g4ds.level_shift(lv) for lv in (0, 1, 2)] == [512 << 30, 1 << 30, 2 << 20]
    assert [1 << g16ds.level_shift(lv) for lv in (1, 2)] == [64 << 30, 32 << 20]
    assert [1 << g64lpa.level_shift(lv) for lv in (1, 2)] == [4 << 40, 512 << 20]
