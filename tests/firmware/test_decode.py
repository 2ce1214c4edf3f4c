"""SMCCC function-id decoding and the register decoders (checked against the nested capture's truth)."""

import pytest

from armvmi_cli.firmware.decode import decode_tcr, decode_ttbr, decode_vtcr, decode_vttbr, s2_start_level
from armvmi_cli.firmware.smccc import SMC_TYPE_FAST, decode_fid, get_unique_oen, make_fid


def test_vmi_function_ids_decode_as_the_spec_says():
    f = decode_fid(0xF0000001)
    assert (f.fast, f.smc64, f.oen, f.number, f.reserved, f.sve_hint) == (True, True, 48, 1, 0, False)
    y = decode_fid(0x70000001)
    assert (y.fast, y.smc64, y.oen, y.number) == (False, True, 48, 1)
    assert f.unique_oen == 64 + 48 and y.unique_oen == 48
    g = decode_fid(0xF0000002)
    assert g.number == 2 and g.call_type == SMC_TYPE_FAST


def test_sve_hint_and_reserved_bits_are_separated():
    f = decode_fid(0xF0010001)
    assert f.sve_hint and f.reserved == 0 and f.fid32 == 0xF0000001 and f.valid_fast
    r = decode_fid(0xF0020001)
    assert r.reserved == 1 and not r.valid_fast
    assert decode_fid(0x70020001).valid_fast  # only fast calls must have 23:17 clear
    assert decode_fid(0x1_F0000001).upper == 1


def test_make_fid_round_trips():
    assert make_fid(True, True, 48, 2) == 0xF0000002
    assert make_fid(True, False, 4, 0) == 0x84000000
    assert get_unique_oen(4, 1) == 68


def test_vttbr_and_vtcr_match_ground_truth(nested_capture):
    vm = nested_capture.ground_truth["vms"][0]
    vt = decode_vttbr(int(vm["vttbr"], 16))
    assert vt["vmid"] == vm["vmid"]
    assert vt["baddr"] == int(vm["stage2_base"], 16)
    assert vt["cnp"] == vm["vttbr_cnp"]
    d = decode_vtcr(int(vm["vtcr"], 16))
    f = vm["vtcr_fields"]
    assert d["t0sz"] == f["T0SZ"] and d["ipa_bits"] == f["IPA_bits"] == vm["ipa_bits"]
    assert d["sl0"] == f["SL0"] and d["tg0"] == f["TG0"] and d["granule_name"] == f["granule"]
    assert d["ps"] == f["PS"] and d["pa_bits"] == f["PA_bits"] and d["vs"] == f["VS_16bit_vmid"]
    assert d["start_level"] == vm["start_level"]
    assert d["concatenated_tables"] == vm["concatenated_tables"]
    assert d["start_level_entries"] == vm["start_level_entries"]
    assert "problems" not in d


def test_tcr_el1_granule_encodings_differ_between_tg0_and_tg1():
    # TG0: 0=4K 1=64K 2=16K; TG1: 1=16K 2=4K 3=64K
    t = decode_tcr((2 << 30) | (0 << 14) | (16 << 16) | 16)
    assert t["granule_ttbr0"] == 4096 and t["granule_ttbr1"] == 4096
    t = decode_tcr((1 << 30) | (2 << 14) | (25 << 16) | 25)
    assert t["granule_ttbr0"] == 16384 and t["granule_ttbr1"] == 16384 and t["va_bits_ttbr1"] == 39
    t = decode_tcr((3 << 30) | (1 << 14) | (22 << 16) | 22 | (1 << 7) | (1 << 23))
    assert t["granule_ttbr0"] == 65536 and t["granule_ttbr1"] == 65536 and t["epd0"] == 1 and t["epd1"] == 1
    assert "problems" in decode_tcr(0)  # TG1=0 is reserved


def test_host_tcr_and_ttbr1_from_ground_truth(nested_capture):
    facts = nested_capture.ground_truth["host"]["facts"]
    t = decode_tcr(int(facts["TCR_EL1"], 16))
    assert t["va_bits_ttbr1"] == facts["vabits_actual"] == 48
    assert t["granule_ttbr1_name"] == "4K"
    assert t["ttbr1_range"][0] == int(facts["PAGE_OFFSET"], 16)
    swapper = int(nested_capture.ground_truth["host"]["swapper_pg_dir_pa"], 16)
    assert decode_ttbr(int(facts["TTBR1_EL1"], 16))["baddr"] == swapper


@pytest.mark.parametrize("granule,sl0,level", [(4096, 0, 2), (4096, 1, 1), (4096, 2, 0), (16384, 0, 3), (16384, 2, 1),
                                              (65536, 1, 2), (65536, 2, 1), (65536, 3, None)])
def test_sl0_start_level_depends_on_granule(granule, sl0, level):
    assert s2_start_level(sl0, granule) == level


def test_vtcr_64k_and_inconsistent_geometry():
    # 64K granule (TG0=1), 42-bit IPA (T0SZ=22), SL0=1 -> level 2, 2^(42-42)... level 2 resolves bits 41:29
    d = decode_vtcr((1 << 14) | (1 << 6) | 22 | (2 << 16))
    assert d["granule"] == 65536 and d["start_level"] == 2 and d["concatenated_tables"] == 1
    bad = decode_vtcr((2 << 6) | 34)  # 30-bit IPA starting at level 0 with 4K: nonsense
    assert bad["problems"]
    assert "problems" in decode_vtcr(3 << 14)  # TG0=3 reserved
