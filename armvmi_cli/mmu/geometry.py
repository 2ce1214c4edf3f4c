"""Translation geometry: granule, levels, index bits, start level, table bases.

Everything here is a pure function of the control-register fields, written to be
read next to the Arm ARM (DDI 0487) pseudocode it mirrors:
``AArch64.S1StartLevel``, ``AArch64.S2StartLevel``, ``AArch64.S2InconsistentSL``,
``AArch64.TTBaseAddress``, ``AArch64.NextTableBase`` / ``AArch64.LeafBase`` and
``AArch64.PhysicalAddressSize``.  Levels run -1..3 (FINAL_LEVEL = 3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

FINAL_LEVEL = 3

# {V}TCR.{I}PS / PS encodings -> output address bits (0b111 is 56 bits with FEAT_D128: not supported).
PS_BITS = {0: 32, 1: 36, 2: 40, 3: 42, 4: 44, 5: 48, 6: 52}
PS_ENCODING = {bits: enc for enc, bits in PS_BITS.items()}


class Granule(enum.IntEnum):
    """Translation granule; the value is the page size in bytes."""

    K4 = 4096
    K16 = 16384
    K64 = 65536

    @property
    def shift(self) -> int:  # "granulebits"
        return _GRANULE_BITS[self]

    @property
    def stride(self) -> int:  # index bits per full level: one page of 8-byte descriptors
        return _GRANULE_BITS[self] - 3

    @property
    def entries(self) -> int:
        return 1 << self.stride

    # TG0 (TCR/VTCR) and TG1 (TCR only) use different encodings.
    @classmethod
    def from_tg0(cls, tg0: int) -> "Granule":
        return {0: cls.K4, 1: cls.K64, 2: cls.K16}.get(tg0 & 3, cls.K4)  # 0b11 reserved: treat as 4K

    @classmethod
    def from_tg1(cls, tg1: int) -> "Granule":
        return {1: cls.K16, 2: cls.K4, 3: cls.K64}.get(tg1 & 3, cls.K4)  # 0b00 reserved: treat as 4K

    @property
    def tg0(self) -> int:
        return {4096: 0, 65536: 1, 16384: 2}[int(self)]

    @property
    def tg1(self) -> int:
        return {16384: 1, 4096: 2, 65536: 3}[int(self)]

    @classmethod
    def from_size(cls, size: int) -> "Granule":
        try:
            return cls(size)
        except ValueError:
            raise ValueError(f"page size {size:#x} is not an AArch64 granule (4K, 16K, 64K)") from None


_GRANULE_BITS = {Granule.K4: 12, Granule.K16: 14, Granule.K64: 16}


def s1_start_level(ia_bits: int, granule: Granule) -> int:
    """AArch64.S1StartLevel: as many levels as needed to resolve ``ia_bits``."""
    return FINAL_LEVEL - ((ia_bits - 1 - granule.shift) // granule.stride)


def s2_start_level(granule: Granule, sl0: int, sl2: int = 0) -> int | None:
    """AArch64.S2StartLevel: VTCR_EL2.SL0 means different levels per granule.

    Returns None for a reserved encoding.
    """
    if granule == Granule.K4:
        return {0b000: 2, 0b001: 1, 0b010: 0, 0b011: 3, 0b100: -1}.get((sl2 << 2) | sl0)
    if granule == Granule.K16:
        return {0: 3, 1: 2, 2: 1, 3: 0}[sl0]
    return {0: 3, 1: 2, 2: 1}.get(sl0)  # 64K: SL0=0b11 reserved


def s2_sl_encoding(granule: Granule, start_level: int) -> tuple[int, int]:
    """Inverse of :func:`s2_start_level`: (SL0, SL2) for a start level."""
    for sl2 in (0, 1):
        for sl0 in range(4):
            if (sl2 == 0 or granule == Granule.K4) and s2_start_level(granule, sl0, sl2) == start_level:
                return sl0, sl2
    raise ValueError(f"start level {start_level} is not encodable for stage 2 with a {granule.name} granule")


def s2_inconsistent(ia_bits: int, granule: Granule, start_level: int) -> bool:
    """AArch64.S2InconsistentSL: the IPA size must suit the start level (<= 16 concatenated tables)."""
    levels = FINAL_LEVEL - start_level
    sl_min = levels * granule.stride + granule.shift + 1
    sl_max = sl_min + (granule.stride - 1) + 4
    return not (sl_min <= ia_bits <= sl_max)


def oa_bits_for(ps: int, granule: Granule, ds: bool) -> int:
    """AArch64.PhysicalAddressSize: 52 bits only with a 64K granule or TCR.DS (LPA2)."""
    bits = PS_BITS.get(ps & 7, 48)
    if bits == 52 and not (granule == Granule.K64 or ds):
        return 48
    return bits


@dataclass(frozen=True)
class Geometry:
    """One translation regime half (one TTBR) or one stage 2: everything a walk needs."""

    granule: Granule
    ia_bits: int  # input address size: 64 - TxSZ
    start_level: int
    oa_bits: int  # output address size (IPS/PS, as limited by the granule)
    ds: bool = False  # TCR.DS / VTCR.DS: LPA2 descriptor and TTBR layout (4K/16K only)
    stage: int = 1

    def __post_init__(self):
        # Per-level constants, computed once: walks use them for every descriptor.
        g = self.granule
        shifts = {lv: g.shift + (FINAL_LEVEL - lv) * g.stride for lv in range(-1, FINAL_LEVEL + 1)}
        object.__setattr__(self, "_shifts", shifts)
        object.__setattr__(self, "_root_mask", (1 << (self.ia_bits - shifts[self.start_level])) - 1)
        object.__setattr__(self, "_mask", g.entries - 1)
        object.__setattr__(self, "_blocks", frozenset(lv for lv in range(-1, FINAL_LEVEL) if self._block_ok(lv)))

    # -- derived ----------------------------------------------------------
    @property
    def wide_oa(self) -> bool:
        """52-bit output addresses: the descriptors and the TTBR carry OA[51:48]."""
        return self.oa_bits == 52

    @property
    def concat(self) -> int:
        """Number of concatenated tables at the initial level (stage 2; 1 for stage 1)."""
        extra = self.ia_bits - self.level_shift(self.start_level) - self.granule.stride
        return 1 << max(extra, 0)

    @property
    def root_entries(self) -> int:
        return 1 << (self.ia_bits - self.level_shift(self.start_level))

    @property
    def root_bytes(self) -> int:
        """Size (and alignment) of the initial table; AArch64.TTBaseAddress 'tsize'."""
        tsize = self.ia_bits - self.level_shift(self.start_level) + 3
        if self.wide_oa or self.ds:
            tsize = max(tsize, 6)
        return 1 << tsize

    def level_shift(self, level: int) -> int:
        """Lowest input-address bit resolved at ``level`` (= log2 of its block size)."""
        return self._shifts[level]

    def index(self, ia: int, level: int) -> int:
        """The entry for ``ia`` in the level's table (the initial table may be short or concatenated)."""
        return (ia >> self._shifts[level]) & (self._root_mask if level == self.start_level else self._mask)

    def block_allowed(self, level: int) -> bool:
        return level in self._blocks

    def _block_ok(self, level: int) -> bool:
        """Which levels may hold a block descriptor (AArch64.BlockDescSupported)."""
        g = self.granule
        if g == Granule.K4:
            return level in (1, 2) or (level == 0 and self.ds)
        if g == Granule.K16:
            return level == 2 or (level == 1 and self.ds)
        return level == 2 or (level == 1 and self.wide_oa)  # 64K: 4TB blocks need FEAT_LPA

    # -- addresses ----------------------------------------------------------
    def table_base(self, ttbr: int) -> int:
        """AArch64.TTBaseAddress: BADDR from a TTBR/VTTBR (ASID/VMID and CnP dropped)."""
        if self.wide_oa or self.ds:
            base = ((ttbr >> 2) & 0xF) << 48 | (ttbr & 0x0000_FFFF_FFFF_FFC0)
        else:
            base = ttbr & 0x0000_FFFF_FFFF_FFFE
        return base & ~(self.root_bytes - 1)

    def output_address(self, desc: int, shift: int) -> int:
        """AArch64.NextTableBase / LeafBase: OA bits [51:shift] of a descriptor."""
        if self.ds:  # LPA2: OA[49:shift] in place, OA[51:50] in descriptor bits 9:8
            return (desc & 0x0003_FFFF_FFFF_FFFF & ~((1 << shift) - 1)) | ((desc >> 8) & 3) << 50
        oa = desc & 0x0000_FFFF_FFFF_FFFF & ~((1 << shift) - 1)
        if self.granule == Granule.K64 and self.wide_oa:  # 64K LPA: OA[51:48] in bits 15:12
            oa |= ((desc >> 12) & 0xF) << 48
        return oa

    def describe(self) -> dict:
        return {
            "stage": self.stage,
            "granule": int(self.granule),
            "ia_bits": self.ia_bits,
            "oa_bits": self.oa_bits,
            "start_level": self.start_level,
            "concatenated_tables": self.concat,
            "ds": self.ds,
        }


# -- from registers ---------------------------------------------------------
def _txsz_to_ia_bits(txsz: int, granule: Granule, ds: bool) -> int:
    # Out-of-range TxSZ is CONSTRAINED UNPREDICTABLE; we take the nearest legal value
    # (min 12 with LVA/LPA2, otherwise 16; max 48/47 with FEAT_TTST).
    min_txsz = 12 if (granule == Granule.K64 or ds) else 16
    max_txsz = 47 if granule == Granule.K64 else 48
    return 64 - min(max(txsz, min_txsz), max_txsz)


def stage1_geometry(tcr: int, upper: bool) -> Geometry:
    """Geometry of one half of the EL1&0 regime from raw TCR_EL1."""
    if upper:
        granule = Granule.from_tg1((tcr >> 30) & 3)
        txsz = (tcr >> 16) & 0x3F
    else:
        granule = Granule.from_tg0((tcr >> 14) & 3)
        txsz = tcr & 0x3F
    ds = bool((tcr >> 59) & 1) and granule != Granule.K64
    ia_bits = _txsz_to_ia_bits(txsz, granule, ds)
    oa_bits = oa_bits_for((tcr >> 32) & 7, granule, ds)
    return Geometry(granule, ia_bits, s1_start_level(ia_bits, granule), oa_bits, ds, stage=1)


class InconsistentStage2(ValueError):
    """VTCR_EL2 names a start level that cannot resolve its IPA size."""


def stage2_geometry(vtcr: int) -> Geometry:
    """Geometry of a stage-2 translation from raw VTCR_EL2."""
    granule = Granule.from_tg0((vtcr >> 14) & 3)
    ds = bool((vtcr >> 32) & 1) and granule != Granule.K64
    ia_bits = _txsz_to_ia_bits(vtcr & 0x3F, granule, ds)
    sl0, sl2 = (vtcr >> 6) & 3, (vtcr >> 33) & 1
    start = s2_start_level(granule, sl0, sl2)
    if start is None:
        raise InconsistentStage2(f"VTCR_EL2.SL0={sl0} SL2={sl2} is reserved for a {granule.name} granule")
    if s2_inconsistent(ia_bits, granule, start):
        raise InconsistentStage2(
            f"VTCR_EL2: a {ia_bits}-bit IPA cannot start at level {start} with a {granule.name} granule"
        )
    oa_bits = oa_bits_for((vtcr >> 16) & 7, granule, ds)
    return Geometry(granule, ia_bits, start, oa_bits, ds, stage=2)
