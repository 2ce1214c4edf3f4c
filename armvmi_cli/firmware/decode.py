"""Decoders for the raw system registers carried by the event log (display only).

Pure functions returning dicts, field names as in the Arm ARM (DDI 0487).
The real table walker lives in ``armvmi_cli/mmu``; nothing here walks tables.
"""

from __future__ import annotations

BADDR_MASK = 0x0000_FFFF_FFFF_FFFE  # bits 47:1

# Output/physical address size encodings (VTCR_EL2.PS, TCR_EL1.IPS)
PA_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}

# TG0 (TCR_EL1.TG0, VTCR_EL2.TG0): 00 4K, 01 64K, 10 16K
TG0_GRANULE = {0: 4096, 1: 65536, 2: 16384}
# TCR_EL1.TG1 uses a different encoding: 01 16K, 10 4K, 11 64K
TG1_GRANULE = {1: 16384, 2: 4096, 3: 65536}

GRANULE_SHIFT = {4096: 12, 16384: 14, 65536: 16}


def _bits(v: int, hi: int, lo: int) -> int:
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


def granule_name(size: int | None) -> str:
    return {4096: "4K", 16384: "16K", 65536: "64K"}.get(size, "reserved")


def decode_ttbr(v: int) -> dict:
    """TTBRn_EL1: ASID (63:48), table base (47:1), CnP (0)."""
    return {"asid": _bits(v, 63, 48), "baddr": v & BADDR_MASK, "cnp": v & 1}


def decode_vttbr(v: int, vmid_bits: int = 16) -> dict:
    """VTTBR_EL2: VMID (63:48, or 55:48 when VTCR_EL2.VS=0), stage-2 base (47:1), CnP (0)."""
    vmid = _bits(v, 63, 48) if vmid_bits == 16 else _bits(v, 55, 48)
    d = {"vmid": vmid, "baddr": v & BADDR_MASK, "cnp": v & 1}
    if vmid_bits == 8 and _bits(v, 63, 56):
        d["res0_63_56"] = _bits(v, 63, 56)
    return d


def s2_start_level(sl0: int, granule: int | None) -> int | None:
    """VTCR_EL2.SL0 → initial lookup level; the meaning depends on the granule.

    4K: 0→L2, 1→L1, 2→L0 (3→L3 only with FEAT_TTST). 16K/64K: 0→L3, 1→L2, 2→L1
    (3→L0 for 16K with 52-bit addresses; reserved for 64K)."""
    if granule == 4096:
        return {0: 2, 1: 1, 2: 0, 3: 3}.get(sl0)
    if granule == 16384:
        return 3 - sl0
    if granule == 65536:
        return None if sl0 == 3 else 3 - sl0
    return None


def level_shift(level: int, granule: int) -> int:
    """Lowest input-address bit a descriptor at ``level`` resolves."""
    g = GRANULE_SHIFT[granule]
    return g + (3 - level) * (g - 3)


def decode_vtcr(v: int) -> dict:
    """VTCR_EL2: IPA size (T0SZ), granule (TG0), start level (SL0 with TG0), PA size (PS), VMID width (VS)."""
    t0sz = _bits(v, 5, 0)
    sl0 = _bits(v, 7, 6)
    tg0 = _bits(v, 15, 14)
    ps = _bits(v, 18, 16)
    granule = TG0_GRANULE.get(tg0)
    ipa_bits = 64 - t0sz
    level = s2_start_level(sl0, granule)
    d = {
        "t0sz": t0sz, "ipa_bits": ipa_bits, "sl0": sl0, "irgn0": _bits(v, 9, 8), "orgn0": _bits(v, 11, 10),
        "sh0": _bits(v, 13, 12), "tg0": tg0, "granule": granule, "granule_name": granule_name(granule),
        "ps": ps, "pa_bits": PA_BITS.get(ps), "vs": _bits(v, 19, 19), "vmid_bits": 16 if _bits(v, 19, 19) else 8,
        "ha": _bits(v, 21, 21), "hd": _bits(v, 22, 22), "start_level": level,
    }
    problems = []
    if granule is None:
        problems.append(f"TG0={tg0} is reserved")
    if level is None:
        problems.append(f"SL0={sl0} is reserved for this granule")
    if granule and level is not None:
        top = ipa_bits - level_shift(level, granule)
        entries = 1 << max(top, 0)
        per_table = 1 << (GRANULE_SHIFT[granule] - 3)
        d["start_level_entries"] = entries
        d["concatenated_tables"] = max(1, entries // per_table)
        if top <= 0 or entries // per_table > 16:
            problems.append(f"{ipa_bits}-bit IPA cannot start at level {level} with a {granule_name(granule)} granule")
    if d["pa_bits"] and ipa_bits > d["pa_bits"] and d["pa_bits"] < 52:
        problems.append(f"IPA size {ipa_bits} bits exceeds PS {d['pa_bits']} bits")
    if problems:
        d["problems"] = problems
    return d


def decode_tcr(v: int) -> dict:
    """TCR_EL1: VA sizes (T0SZ/T1SZ), granules (TG0 and TG1, which encode differently), IPS, EPDn, A1, TBIn."""
    t0sz = _bits(v, 5, 0)
    t1sz = _bits(v, 21, 16)
    tg0 = _bits(v, 15, 14)
    tg1 = _bits(v, 31, 30)
    ips = _bits(v, 34, 32)
    g0 = TG0_GRANULE.get(tg0)
    g1 = TG1_GRANULE.get(tg1)
    d = {
        "t0sz": t0sz, "va_bits_ttbr0": 64 - t0sz, "t1sz": t1sz, "va_bits_ttbr1": 64 - t1sz,
        "tg0": tg0, "granule_ttbr0": g0, "granule_ttbr0_name": granule_name(g0),
        "tg1": tg1, "granule_ttbr1": g1, "granule_ttbr1_name": granule_name(g1),
        "ips": ips, "ipa_bits": PA_BITS.get(ips), "epd0": _bits(v, 7, 7), "epd1": _bits(v, 23, 23),
        "a1": _bits(v, 22, 22), "as16": _bits(v, 36, 36), "tbi0": _bits(v, 37, 37), "tbi1": _bits(v, 38, 38),
        "ha": _bits(v, 39, 39), "hd": _bits(v, 40, 40), "ds": _bits(v, 59, 59),
        "ttbr0_range": (0, (1 << (64 - t0sz)) - 1),
        "ttbr1_range": ((1 << 64) - (1 << (64 - t1sz)), (1 << 64) - 1),
    }
    if g0 is None or g1 is None:
        d["problems"] = [f"reserved granule encoding (TG0={tg0}, TG1={tg1})"]
    return d


def describe_vttbr(v: int) -> str:
    d = decode_vttbr(v)
    return f"VMID {d['vmid']} base {d['baddr']:#x}" + (" CnP" if d["cnp"] else "")


def describe_vtcr(v: int) -> str:
    d = decode_vtcr(v)
    s = f"IPA {d['ipa_bits']}b {d['granule_name']} L{d['start_level']}"
    if d.get("concatenated_tables", 1) > 1:
        s += f"x{d['concatenated_tables']}"
    if d["pa_bits"]:
        s += f" PA {d['pa_bits']}b"
    return s


def describe_tcr(v: int) -> str:
    d = decode_tcr(v)
    return (f"VA {d['va_bits_ttbr0']}b/{d['va_bits_ttbr1']}b "
            f"{d['granule_ttbr0_name']}/{d['granule_ttbr1_name']}"
            + (" EPD0" if d["epd0"] else "") + (" EPD1" if d["epd1"] else ""))


def describe_ttbr(v: int) -> str:
    d = decode_ttbr(v)
    return f"ASID {d['asid']:#x} base {d['baddr']:#x}"
