"""Address-space layers that stack: host physical -> Stage2 -> guest physical -> Stage1.

A layer knows only the layer below (``lower``): it reads its tables through it and
returns addresses in its space.  Anything with ``read(addr, n)``, ``is_mapped(addr)``
and a ``name`` can be a lower layer, so one Stage1 class serves a plain guest dump
(lower = the image) and a nested guest (lower = a Stage2).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

from ..errors import TranslationFault, UsageError
from .descriptor import Attrs
from .geometry import (
    Geometry,
    Granule,
    InconsistentStage2,
    PS_ENCODING,
    stage1_geometry,
    stage2_geometry,
)
from .walk import TRANSLATION, Budget, TableReader, WalkTrace, fault, layer_name, leaves, walk

_TLB_MAX = 1 << 20
_ENUM_BUDGET = 1 << 24  # descriptors one mappings() call may visit


class RegisterError(UsageError):
    """Translation registers that describe no usable translation (e.g. inconsistent VTCR_EL2)."""


class Mapping(NamedTuple):
    """One valid leaf: ``size`` bytes at ``va`` (this layer) map to ``out`` (the layer below)."""

    va: int
    out: int
    size: int
    attrs: Attrs
    level: int = 0

    def to_dict(self) -> dict:
        return {"va": self.va, "out": self.out, "size": self.size, "level": self.level, "attrs": self.attrs.to_dict()}


class _Half(NamedTuple):
    """One table tree: its base register, geometry and input-address rule."""

    register: str
    geom: Geometry
    root: int
    tbi: bool
    upper: bool


class TranslationLayer:
    """Common machinery: TLB, table cache, reads, enumeration.  Subclasses pick the tree."""

    def __init__(self, lower, name: str):
        self.lower = lower
        self.name = name
        self._tables = TableReader(lower)
        self._tlb: dict[int, int] = {}
        self._tlb_shift = 12
        self._tlb_mask = 0xFFF

    # -- to be provided by subclasses ------------------------------------
    def _select(self, addr: int) -> tuple[_Half, int]:  # pragma: no cover - abstract
        """The tree that translates ``addr`` and the input-address bits it resolves."""
        raise NotImplementedError

    def _halves(self) -> list[_Half]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_tlb_granule(self, halves: list[_Half]) -> None:
        shift = min((h.geom.granule.shift for h in halves), default=12)
        self._tlb_shift, self._tlb_mask = shift, (1 << shift) - 1

    # -- translation -----------------------------------------------------
    def _lookup(self, addr: int, steps=None):
        half, ia = self._select(addr)
        return walk(half.geom, half.root, self._tables, ia, addr, self.name, steps)

    def translate(self, addr: int) -> int:
        """Output address (in ``lower``'s space) for ``addr``; raises TranslationFault."""
        e = self._tlb.get(addr >> self._tlb_shift)
        if e is not None:
            return e | (addr & self._tlb_mask)
        out, shift, _desc, _level = self._lookup(addr)
        result = out | (addr & ((1 << shift) - 1))
        if len(self._tlb) >= _TLB_MAX:
            self._tlb.clear()
        self._tlb[addr >> self._tlb_shift] = result & ~self._tlb_mask
        return result

    def translate_page(self, addr: int) -> tuple[int, int, Attrs]:
        """(output base of the block/page holding ``addr``, its size, its attributes)."""
        out, shift, desc, _level = self._lookup(addr)
        half, _ = self._select(addr)
        return out, 1 << shift, Attrs(desc, half.geom.stage, half.geom.ds)

    def is_mapped(self, addr: int) -> bool:
        try:
            self.translate(addr)
            return True
        except TranslationFault:
            return False

    def read(self, addr: int, n: int) -> bytes:
        """``n`` bytes at ``addr``, each page translated; faults and lower read errors propagate."""
        if n <= 0:
            if n < 0:
                raise UsageError(f"read({addr:#x}, {n}): negative length")
            return b""
        page = 1 << self._tlb_shift
        first = page - (addr & (page - 1))
        if n <= first:
            return self.lower.read(self.translate(addr), n)
        parts = [self.lower.read(self.translate(addr), first)]
        cur, left = addr + first, n - first
        while left:
            take = min(left, page)
            parts.append(self.lower.read(self.translate(cur), take))
            cur += take
            left -= take
        return b"".join(parts)

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def span(self, addr: int, want: int = 0) -> tuple[int | None, int, TranslationFault | None]:
        """(output for ``addr`` or None, bytes to the end of its leaf or unmapped block, fault).

        When ``want`` bytes fit in the TLB page of ``addr``, a TLB hit answers (the span
        is then only that page's remainder)."""
        off = addr & self._tlb_mask
        if want and off + want <= self._tlb_mask + 1:
            e = self._tlb.get(addr >> self._tlb_shift)
            if e is not None:
                return e | off, self._tlb_mask + 1 - off, None
        try:
            half, ia = self._select(addr)
        except TranslationFault as f:
            page = 1 << self._tlb_shift
            return None, page - (addr & (page - 1)), f
        try:
            out, shift, _desc, _level = walk(half.geom, half.root, self._tables, ia, addr, self.name)
        except TranslationFault as f:
            size = 1 << half.geom.level_shift(f.level)  # the invalid entry's whole region
            return None, size - (ia & (size - 1)), f
        off = ia & ((1 << shift) - 1)
        self._tlb[addr >> self._tlb_shift] = (out | off) & ~self._tlb_mask
        return out | off, (1 << shift) - off, None

    def walk(self, addr: int) -> WalkTrace:
        """A full explanation of the translation of ``addr``; never raises."""
        trace = WalkTrace(layer=self.name, address=addr)
        try:
            half, ia = self._select(addr)
            trace.base_register, trace.input_address, trace.geometry = half.register, ia, half.geom.describe()
            out, shift, _desc, _level = walk(half.geom, half.root, self._tables, ia, addr, self.name, trace.steps)
            trace.result, trace.size = out | (addr & ((1 << shift) - 1)), 1 << shift
        except TranslationFault as f:
            f.trace = trace
            trace.fault = f
        return trace

    def flush(self, lower: bool = False) -> None:
        """Forget cached translations and table pages (after the image or tables change);
        with ``lower``, the layers below too."""
        self._tlb.clear()
        self._tables.flush()
        if lower and isinstance(self.lower, TranslationLayer):
            self.lower.flush(lower=True)

    # -- enumeration -----------------------------------------------------
    def mappings(self, start: int | None = None, end: int | None = None, faults: list | None = None) -> Iterator[Mapping]:
        """Every valid leaf overlapping [start, end), in address order.

        Malformed trees never loop: self-references and unreadable tables are skipped
        and reported into ``faults`` (a list of (address, level, reason)) when given.
        """
        budget = Budget(_ENUM_BUDGET)
        for half in self._halves():
            g = half.geom
            span = 1 << g.ia_bits
            base = (1 << 64) - span if half.upper else 0
            lo = max(start if start is not None else 0, base) - base
            hi = min(end if end is not None else 1 << 64, base + span) - base - 1
            if hi < lo:
                continue
            sub = [] if faults is not None else None
            for ia, out, shift, desc, level in leaves(g, half.root, self._tables, lo, hi, budget, sub):
                yield Mapping(base + ia, out, 1 << shift, Attrs(desc, g.stage, g.ds), level)
            if faults is not None:
                faults.extend((base + ia, level, reason) for ia, level, reason in sub)


class Stage1(TranslationLayer):
    """EL1&0 stage 1: guest virtual -> guest physical (``lower``'s space), from TTBR0/1_EL1 and TCR_EL1.

    The VA's bit 55 picks the half (TTBR1 when set); with TCR.TBIn the top byte is
    ignored (tagged pointers), otherwise bits [63:VA size] must all equal bit 55.
    """

    def __init__(self, lower, ttbr0: int | None, ttbr1: int | None, tcr: int, name: str = "stage1"):
        super().__init__(lower, name)
        self.ttbr0, self.ttbr1, self.tcr = ttbr0, ttbr1, tcr
        self._half: list[_Half | None] = [None, None]
        self._why: list[str] = ["", ""]
        for upper, ttbr, epd_bit, tbi_bit in ((0, ttbr0, 7, 37), (1, ttbr1, 23, 38)):
            reg = f"TTBR{upper}_EL1"
            if ttbr is None:
                self._why[upper] = f"no {reg} given"
            elif (tcr >> epd_bit) & 1:
                self._why[upper] = f"TCR_EL1.EPD{upper} is set: walks through {reg} are disabled"
            else:
                g = stage1_geometry(tcr, bool(upper))
                self._half[upper] = _Half(reg, g, g.table_base(ttbr), bool((tcr >> tbi_bit) & 1), bool(upper))
        self._set_tlb_granule(self._halves())

    @classmethod
    def for_kernel(cls, lower, ttbr1_baddr: int, va_bits: int, page_size: int, name: str = "stage1",
                   ttbr0_baddr: int | None = None, t1sz: int | None = None) -> "Stage1":
        """A kernel (TTBR1) layer from VMCOREINFO-style facts when TCR_EL1 is unknown.

        ``va_bits`` is VA_BITS (or give ``t1sz``, VMCOREINFO's TCR_EL1_T1SZ); a 52-bit VA
        with 4K/16K pages means LPA2 (TCR.DS).  IPS is the largest (52 bits) so no real
        output address faults; TBI1 is set so tagged kernel pointers translate.
        """
        g = Granule.from_size(page_size)
        t1sz = 64 - va_bits if t1sz is None else t1sz
        ds = (64 - t1sz) > 48 and g != Granule.K64
        tcr = (t1sz << 16) | (g.tg1 << 30) | (t1sz if ttbr0_baddr is not None else (1 << 7) | 16)
        tcr |= (g.tg0 << 14) | (PS_ENCODING[52] << 32) | (1 << 38) | (int(ds) << 59)
        wide = ds or g == Granule.K64

        def ttbr(base):
            return (base & 0xFFFF_FFFF_FFC0) | ((base >> 48) & 0xF) << 2 if wide else base

        return cls(lower, None if ttbr0_baddr is None else ttbr(ttbr0_baddr), ttbr(ttbr1_baddr), tcr, name)

    def _halves(self) -> list[_Half]:
        return [h for h in self._half if h is not None]

    def _select(self, addr: int) -> tuple[_Half, int]:
        upper = (addr >> 55) & 1
        half = self._half[upper]
        if half is None:
            raise fault(0, self._why[upper], addr, self.name)
        top = 56 if half.tbi else 64
        ia_bits = half.geom.ia_bits
        high = (addr & ((1 << top) - 1)) >> ia_bits
        if high != (((1 << (top - ia_bits)) - 1) if upper else 0):
            raise fault(
                0,
                f"address not in either half (bits [{top - 1}:{ia_bits}] must all be {upper} for {half.register})",
                addr,
                self.name,
            )
        return half, addr & ((1 << ia_bits) - 1)

    def describe(self) -> dict:
        return {
            "layer": self.name,
            "stage": 1,
            "TCR_EL1": self.tcr,
            "halves": {h.register: dict(h.geom.describe(), table_base=h.root, tbi=h.tbi) for h in self._halves()},
        }


class Stage2(TranslationLayer):
    """Stage 2: guest physical (IPA) -> host physical (``lower``'s space), from VTTBR_EL2 and VTCR_EL2."""

    def __init__(self, lower, vttbr: int, vtcr: int, name: str = "stage2"):
        super().__init__(lower, name)
        self.vttbr, self.vtcr = vttbr, vtcr
        try:
            g = stage2_geometry(vtcr)
        except InconsistentStage2 as e:
            raise RegisterError(f"{name}: {e}") from None
        self.geometry = g
        self.vmid = (vttbr >> 48) & 0xFFFF
        self._tree = _Half("VTTBR_EL2", g, g.table_base(vttbr), False, False)
        self._set_tlb_granule([self._tree])
        self._ranges: list[tuple[int, int]] | None = None

    def _halves(self) -> list[_Half]:
        return [self._tree]

    def _select(self, addr: int) -> tuple[_Half, int]:
        ia_bits = self._tree.geom.ia_bits
        if addr >> ia_bits:  # AArch64.IPAIsOutOfRange: a level-0 translation fault
            raise fault(0, f"IPA beyond the {ia_bits}-bit input size of VTCR_EL2.T0SZ", addr, self.name, TRANSLATION)
        return self._tree, addr

    @property
    def base(self) -> int:
        return self._tree.root

    def ranges(self) -> list[tuple[int, int]]:
        """Mapped IPA runs [start, end), coalesced; what a scanner of guest RAM searches."""
        if self._ranges is None:
            runs: list[list[int]] = []
            for m in self.mappings():
                if runs and runs[-1][1] == m.va:
                    runs[-1][1] = m.va + m.size
                else:
                    runs.append([m.va, m.va + m.size])
            self._ranges = [(a, b) for a, b in runs]
        return list(self._ranges)

    def flush(self, lower: bool = False) -> None:
        super().flush(lower)
        self._ranges = None

    def describe(self) -> dict:
        return {
            "layer": self.name,
            "stage": 2,
            "VTTBR_EL2": self.vttbr,
            "VTCR_EL2": self.vtcr,
            "VMID": self.vmid,
            "table_base": self.base,
            **self.geometry.describe(),
        }


def resolve_chain(layer, addr: int) -> list[tuple[str, int]]:
    """``addr`` translated down through every layer: [(name, address), ...] top to bottom."""
    chain = [(layer_name(layer), addr)]
    while isinstance(layer, TranslationLayer):
        addr = layer.translate(addr)
        layer = layer.lower
        chain.append((layer_name(layer), addr))
    return chain


def _bottom_runs(layer, addr: int, length: int):
    """Pieces (address in ``layer``, bottom address or None, length, fault) of [addr, addr+length)."""
    if not isinstance(layer, TranslationLayer):
        yield addr, addr, length, None
        return
    cur, end = addr, addr + length
    while cur < end:
        out, span, f = layer.span(cur, end - cur)
        take = min(span, end - cur)
        if out is None:
            yield cur, None, take, f
        else:
            for a, bottom, n, f in _bottom_runs(layer.lower, out, take):
                yield cur + (a - out), bottom, n, f
        cur += take


def bottom_mappings(layer, start: int | None = None, end: int | None = None, faults: list | None = None) -> Iterator[Mapping]:
    """``layer``'s mappings with outputs carried down to the bottom layer (e.g. GVA -> HPA).

    A leaf whose output is split or unmapped below is cut into the runs that are
    contiguous at the bottom; the attributes are the top layer's.  Unmapped pieces
    are reported into ``faults`` (one entry per unmapped lower block, not per page).
    """
    for m in layer.mappings(start, end, faults):
        run = None
        for a, bottom, n, f in _bottom_runs(layer.lower, m.out, m.size):
            va = m.va + (a - m.out)
            if bottom is None:
                if faults is not None:
                    faults.append((va, f.level, str(f)))
                if run is not None:
                    yield Mapping(run[0], run[1], run[2], m.attrs, m.level)
                run = None
                continue
            if run is not None and run[0] + run[2] == va and run[1] + run[2] == bottom:
                run[2] += n
                continue
            if run is not None:
                yield Mapping(run[0], run[1], run[2], m.attrs, m.level)
            run = [va, bottom, n]
        if run is not None:
            yield Mapping(run[0], run[1], run[2], m.attrs, m.level)
