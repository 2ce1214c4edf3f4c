"""SMC Calling Convention: function identifiers and return codes.

Bit layout of W0 (SMCCC v1.x, as TF-A's include/lib/smccc.h names it):
bit 31 call type (1 fast, 0 yielding) · bit 30 SMC64 · bits 29:24 OEN ·
bits 23:17 reserved, must be zero in a fast call · bit 16 SVE hint (not part of
the identity: EL3 strips it and passes it in ``flags``) · bits 15:0 function number.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

FUNCID_TYPE_SHIFT = 31
FUNCID_CC_SHIFT = 30
FUNCID_OEN_SHIFT = 24
FUNCID_OEN_MASK = 0x3F
FUNCID_OEN_WIDTH = 6
FUNCID_FC_RESERVED_SHIFT = 17
FUNCID_FC_RESERVED_MASK = 0x7F
FUNCID_SVE_HINT_SHIFT = 16
FUNCID_NUM_MASK = 0xFFFF

SMC_TYPE_FAST = 1
SMC_TYPE_YIELD = 0

U64 = (1 << 64) - 1
SMC_OK = 0
SMC_UNK = U64  # -1 as the u64 left in x0
SMC_INVALID_PARAM = U64 - 1  # -2: unknown/duplicate vm_id, registry full

RETURN_NAMES = {SMC_OK: "SMC_OK", SMC_UNK: "SMC_UNK", SMC_INVALID_PARAM: "INVALID_PARAM"}

# Owning entity numbers (TF-A include/lib/smccc.h)
OEN_ARM_START = 0
OEN_CPU_START = 1
OEN_SIP_START = 2
OEN_OEM_START = 3
OEN_STD_START = 4  # standard service calls (PSCI, SDEI, ...)
OEN_STD_HYP_START = 5
OEN_VEN_HYP_START = 6
OEN_TAP_START = 48  # trusted applications
OEN_TAP_END = 49
OEN_TOS_START = 50  # trusted OS
OEN_TOS_END = 63
OEN_LIMIT = 64

MAX_RT_SVCS = 128  # 6 OEN bits + 1 call-type bit


def oen_range_name(oen: int) -> str:
    """The SMCCC name of the range an OEN falls in."""
    names = {0: "Arm Architecture", 1: "CPU Service", 2: "SiP", 3: "OEM", 4: "Standard Secure",
             5: "Standard Hypervisor", 6: "Vendor Hypervisor"}
    if oen in names:
        return names[oen]
    if OEN_TAP_START <= oen <= OEN_TAP_END:
        return "Trusted Application"
    if OEN_TOS_START <= oen <= OEN_TOS_END:
        return "Trusted OS"
    return "Reserved"


def get_unique_oen(oen: int, call_type: int) -> int:
    """Index into rt_svc_descs_indices: yielding 0-63, fast 64-127."""
    return (oen & FUNCID_OEN_MASK) | ((call_type & 1) << FUNCID_OEN_WIDTH)


@dataclass(frozen=True, slots=True)
class FunctionId:
    raw: int  # the whole x0 as recorded (u64)
    fast: bool
    smc64: bool
    oen: int
    reserved: int  # bits 23:17
    sve_hint: bool
    number: int
    upper: int  # bits 63:32 of x0; SMCCC says W0 is the id, the rest is ignored

    @property
    def call_type(self) -> int:
        return SMC_TYPE_FAST if self.fast else SMC_TYPE_YIELD

    @property
    def unique_oen(self) -> int:
        return get_unique_oen(self.oen, self.call_type)

    @property
    def fid32(self) -> int:
        """W0 with the SVE hint cleared: the identity handlers switch on."""
        return self.raw & 0xFFFFFFFF & ~(1 << FUNCID_SVE_HINT_SHIFT)

    @property
    def valid_fast(self) -> bool:
        """TF-A answers SMC_UNK to a fast call with non-zero bits 23:17."""
        return not self.fast or self.reserved == 0

    def describe(self) -> str:
        kind = "fast" if self.fast else "yield"
        cc = "SMC64" if self.smc64 else "SMC32"
        extra = ""
        if self.sve_hint:
            extra += " sve"
        if self.reserved:
            extra += f" rsv={self.reserved:#x}"
        if self.upper:
            extra += f" hi={self.upper:#x}"
        return f"{kind} {cc} oen={self.oen} fn={self.number:#x}{extra}"

    def as_dict(self) -> dict:
        return {"raw": self.raw, "fast": self.fast, "smc64": self.smc64, "oen": self.oen,
                "oen_range": oen_range_name(self.oen), "reserved": self.reserved,
                "sve_hint": self.sve_hint, "number": self.number}


@lru_cache(maxsize=4096)
def decode_fid(x0: int) -> FunctionId:
    """Decode x0 (cached: a log holds few distinct function ids)."""
    w0 = x0 & 0xFFFFFFFF
    return FunctionId(
        raw=x0,
        fast=bool(w0 >> FUNCID_TYPE_SHIFT & 1),
        smc64=bool(w0 >> FUNCID_CC_SHIFT & 1),
        oen=w0 >> FUNCID_OEN_SHIFT & FUNCID_OEN_MASK,
        reserved=w0 >> FUNCID_FC_RESERVED_SHIFT & FUNCID_FC_RESERVED_MASK,
        sve_hint=bool(w0 >> FUNCID_SVE_HINT_SHIFT & 1),
        number=w0 & FUNCID_NUM_MASK,
        upper=x0 >> 32,
    )


def make_fid(fast: bool, smc64: bool, oen: int, number: int, sve_hint: bool = False) -> int:
    return (int(fast) << 31) | (int(smc64) << 30) | ((oen & FUNCID_OEN_MASK) << 24) | (int(sve_hint) << 16) | (number & 0xFFFF)


def return_name(ret: int) -> str:
    return RETURN_NAMES.get(ret, f"{ret:#x}")
