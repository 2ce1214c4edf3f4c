"""VMSAv8-64 descriptor decoding (Arm ARM D8.3, "Translation table descriptor formats").

Bits [1:0]: ``x0`` invalid; ``01`` block (levels where blocks are legal, else
reserved); ``11`` table (levels < 3) or page (level 3).  The walk only needs the
kind and the address; the attribute decoding here is for traces and mappings.
"""

from __future__ import annotations

from collections.abc import Mapping as _MappingABC

INVALID, TABLE, BLOCK, PAGE, RESERVED = "invalid", "table", "block", "page", "reserved"


def kind(desc: int, level: int, block_allowed: bool) -> str:
    if not desc & 1:
        return INVALID
    if desc & 2:
        return PAGE if level == 3 else TABLE
    return BLOCK if block_allowed and level < 3 else RESERVED


def _bits(v: int, hi: int, lo: int) -> int:
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


def table_attrs(desc: int, stage: int) -> dict:
    """Hierarchical attributes of a stage-1 table descriptor (stage 2 tables have none)."""
    if stage == 2:
        return {}
    return {
        "NSTable": _bits(desc, 63, 63),
        "APTable": _bits(desc, 62, 61),
        "UXNTable": _bits(desc, 60, 60),  # XNTable in single-range regimes
        "PXNTable": _bits(desc, 59, 59),
    }


def leaf_attrs(desc: int, stage: int, ds: bool = False) -> dict:
    """Lower and upper attributes of a block or page descriptor."""
    a = {
        "AF": _bits(desc, 10, 10),
        "DBM": _bits(desc, 51, 51),
        "Contiguous": _bits(desc, 52, 52),
        "SW": _bits(desc, 58, 55),
    }
    if not ds:  # with LPA2, bits 9:8 are OA[51:50] and shareability comes from the TCR
        a["SH"] = _bits(desc, 9, 8)
    if stage == 2:
        a.update(MemAttr=_bits(desc, 5, 2), S2AP=_bits(desc, 7, 6), XN=_bits(desc, 54, 53))
    else:
        a.update(
            AttrIndx=_bits(desc, 4, 2),
            NS=_bits(desc, 5, 5),
            AP=_bits(desc, 7, 6),
            nG=_bits(desc, 11, 11),
            GP=_bits(desc, 50, 50),
            PXN=_bits(desc, 53, 53),
            UXN=_bits(desc, 54, 54),
        )
    return a


def permissions(desc: int, stage: int) -> str:
    """A compact rwx summary of one leaf descriptor (ignoring hierarchical limits)."""
    if stage == 2:
        s2ap, xn = _bits(desc, 7, 6), _bits(desc, 54, 53)
        return ("r" if s2ap & 1 else "-") + ("w" if s2ap & 2 else "-") + ("-" if xn == 2 else "x")
    ap = _bits(desc, 7, 6)
    kernel = "r" + ("-" if ap & 2 else "w") + ("-" if _bits(desc, 53, 53) else "x")
    user = ("r" + ("-" if ap & 2 else "w") if ap & 1 else "--") + ("-" if _bits(desc, 54, 54) else "x")
    return f"el1:{kernel} el0:{user}"


class Attrs(_MappingABC):
    """Decoded leaf attributes, computed on first use (enumeration makes many)."""

    __slots__ = ("raw", "stage", "ds", "_d")

    def __init__(self, raw: int, stage: int, ds: bool = False):
        self.raw = raw
        self.stage = stage
        self.ds = ds
        self._d = None

    def _dict(self) -> dict:
        if self._d is None:
            self._d = leaf_attrs(self.raw, self.stage, self.ds)
        return self._d

    def __getitem__(self, k):
        return self._dict()[k]

    def __iter__(self):
        return iter(self._dict())

    def __len__(self):
        return len(self._dict())

    @property
    def perms(self) -> str:
        return permissions(self.raw, self.stage)

    def to_dict(self) -> dict:
        return dict(self._dict(), descriptor=f"{self.raw:#018x}", perms=self.perms)

    def __repr__(self):
        return f"Attrs({self.raw:#x}, stage={self.stage})"
