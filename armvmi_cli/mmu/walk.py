"""The table walk: one function for a single lookup, one for bulk enumeration.

Read it next to the Arm ARM pseudocode ``AArch64.S1Walk`` / ``AArch64.S2Walk``:
start at the initial level with the TTBR base, index the table with the input
address bits of that level, and follow table descriptors until a block or page
descriptor gives the output address.  Faults are reported at the level of the
descriptor that caused them:

* translation fault: invalid descriptor (bit 0 clear), or a reserved encoding
  (``01`` at level 3, a block where the granule forbids one);
* address-size fault: a next-level table or output address above the
  configured output size ({V}TCR.{I}PS);
* external abort on the walk: the table itself is not readable in the layer
  below (a hole in the image, or a stage-2 fault for a stage-1 table).

The access flag is *not* checked: an AF=0 entry (Linux page ageing) still names
memory, and a forensic reader wants it; the trace shows AF.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field

from ..errors import MemoryReadError, TranslationFault
from . import descriptor as D
from .geometry import Geometry

CHUNK_SHIFT = 12  # table pages are cached in 4 KiB chunks whatever the granule
_CHUNK = 1 << CHUNK_SHIFT
_MAX_CHUNKS = 1 << 15  # 128 MiB of cached tables at most
_SWAP = sys.byteorder != "little"

TRANSLATION, ADDRESS_SIZE, EXTERNAL = "translation", "address-size", "external"


def fault(level: int, reason: str, address: int | None, layer: str, kind: str = TRANSLATION) -> TranslationFault:
    f = TranslationFault(level, reason, address, layer=layer)
    f.kind = kind
    return f


def layer_name(layer) -> str:
    return getattr(layer, "name", None) or getattr(layer, "layer_name", None) or type(layer).__name__


class TableReader:
    """Descriptors read from the layer below, cached per 4 KiB chunk as arrays of u64."""

    def __init__(self, lower):
        self.lower = lower
        self.lower_name = layer_name(lower)
        self._chunks: dict[int, array] = {}

    def flush(self) -> None:
        self._chunks.clear()

    def chunk(self, key: int) -> array:
        """The 512 descriptors of chunk ``key`` (address >> 12); raises the lower layer's error."""
        c = self._chunks.get(key)
        if c is None:
            c = array("Q", self.lower.read(key << CHUNK_SHIFT, _CHUNK))
            if _SWAP:
                c.byteswap()
            if len(self._chunks) >= _MAX_CHUNKS:
                self._chunks.clear()
            self._chunks[key] = c
        return c

    def read(self, addr: int) -> int:
        c = self._chunks.get(addr >> CHUNK_SHIFT)
        if c is not None:
            return c[(addr >> 3) & 511]
        try:
            return self.chunk(addr >> CHUNK_SHIFT)[(addr >> 3) & 511]
        except (MemoryReadError, TranslationFault):
            # The chunk straddles a hole; the descriptor itself may still be readable.
            return int.from_bytes(self.lower.read(addr, 8), "little")


@dataclass
class WalkStep:
    level: int
    table_address: int
    table_layer: str
    index: int
    descriptor_address: int
    descriptor: int | None  # None when the table could not be read
    kind: str  # table | block | page | invalid | reserved | unreadable
    output: int | None = None  # next table, or block/page base
    attrs: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "table_address": self.table_address,
            "table_layer": self.table_layer,
            "index": self.index,
            "descriptor_address": self.descriptor_address,
            "descriptor": self.descriptor,
            "kind": self.kind,
            "output": self.output,
            "attrs": self.attrs,
        }


@dataclass
class WalkTrace:
    layer: str
    address: int  # as given (may carry a tag)
    base_register: str = ""  # TTBR0_EL1 / TTBR1_EL1 / VTTBR_EL2
    input_address: int | None = None  # the bits the tables resolve
    geometry: dict = field(default_factory=dict)
    steps: list[WalkStep] = field(default_factory=list)
    result: int | None = None
    size: int | None = None  # block or page size of the leaf
    fault: TranslationFault | None = None

    def to_dict(self) -> dict:
        f = self.fault
        return {
            "layer": self.layer,
            "address": self.address,
            "base_register": self.base_register,
            "input_address": self.input_address,
            "geometry": self.geometry,
            "steps": [s.to_dict() for s in self.steps],
            "result": self.result,
            "size": self.size,
            "fault": None
            if f is None
            else {"level": f.level, "reason": f.reason, "kind": getattr(f, "kind", TRANSLATION), "message": str(f)},
        }


def walk(geom: Geometry, root: int, tables: TableReader, ia: int, address: int, layer: str, steps=None):
    """Resolve input address ``ia``: returns (output base, log2 size, leaf descriptor, level).

    ``address`` and ``layer`` only label faults; ``steps`` (a list) collects a trace.
    """
    level, table = geom.start_level, root
    gshift = geom.granule.shift
    if root >> geom.oa_bits:  # the pseudocode reports this one at level 0
        raise fault(0, f"table base {root:#x} exceeds the {geom.oa_bits}-bit output size", address, layer, ADDRESS_SIZE)
    while True:
        shift = geom.level_shift(level)
        index = geom.index(ia, level)
        daddr = table + index * 8
        try:
            desc = tables.read(daddr)
        except (MemoryReadError, TranslationFault) as e:
            if steps is not None:
                steps.append(WalkStep(level, table, tables.lower_name, index, daddr, None, "unreadable"))
            raise fault(
                level,
                f"level {level} table at {daddr:#x} is not readable in {tables.lower_name} ({e})",
                address,
                layer,
                EXTERNAL,
            ) from e
        k = D.kind(desc, level, geom.block_allowed(level))
        if k == D.TABLE:
            out = geom.output_address(desc, gshift)  # next-level table, granule aligned
        elif k in (D.BLOCK, D.PAGE):
            out = geom.output_address(desc, shift)  # block/page base; low bits come from ia
        else:
            out = None
        if steps is not None:
            if k == D.TABLE:
                attrs = D.table_attrs(desc, geom.stage)
            else:
                attrs = D.leaf_attrs(desc, geom.stage, geom.ds) if out is not None else {}
            steps.append(WalkStep(level, table, tables.lower_name, index, daddr, desc, k, out, attrs))
        if out is None:
            why = "invalid descriptor" if k == D.INVALID else (
                "reserved descriptor encoding (block not allowed at this level)" if level < 3
                else "reserved descriptor encoding (0b01 at level 3)")
            raise fault(level, f"{why} {desc:#x} at {daddr:#x}", address, layer)
        if out >> geom.oa_bits:
            what = "next-level table" if k == D.TABLE else "output address"
            raise fault(level, f"{what} {out:#x} exceeds the {geom.oa_bits}-bit output size", address, layer, ADDRESS_SIZE)
        if k != D.TABLE:
            return out, shift, desc, level
        table, level = out, level + 1


class Budget:
    """Caps the descriptors one enumeration may visit (a malicious tree can be huge)."""

    def __init__(self, limit: int):
        self.left = limit
        self.exhausted = False


def leaves(geom: Geometry, root: int, tables: TableReader, lo: int, hi: int, budget: Budget, faults=None):
    """Every valid leaf with input address in [lo, hi], in address order.

    Yields (ia, out, log2 size, descriptor, level).  Each table is read once (cached);
    a table already on the current path is not entered again (self-reference), and
    unreadable tables are skipped.  Problems go to ``faults`` as (ia, level, reason).
    """
    gshift = geom.granule.shift
    cycles: set[tuple[int, int]] = set()

    def note(ia, level, reason):
        if faults is not None:
            faults.append((ia, level, reason))

    def visit(table: int, level: int, base: int, path: tuple):
        shift = geom.level_shift(level)
        n = geom.root_entries if level == geom.start_level else geom.granule.entries
        first = max(0, (lo - base) >> shift) if lo > base else 0
        last = min(n - 1, (hi - base) >> shift)
        block_ok = geom.block_allowed(level)
        i = first
        while i <= last:
            # Take a whole 4 KiB chunk of descriptors at a time.
            daddr = table + i * 8
            try:
                chunk = tables.chunk(daddr >> CHUNK_SHIFT)
            except (MemoryReadError, TranslationFault) as e:
                note(base + (i << shift), level, f"table at {daddr:#x} not readable in {tables.lower_name}: {e}")
                i += 512 - ((daddr >> 3) & 511)  # skip the rest of the chunk
                continue
            j0 = (daddr >> 3) & 511
            stop = min(last, i + (511 - j0))
            budget.left -= stop - i + 1
            if budget.left < 0:
                if not budget.exhausted:
                    budget.exhausted = True
                    note(base + (i << shift), level, "enumeration budget exhausted")
                return
            for j in range(j0, j0 + stop - i + 1):
                desc = chunk[j]
                if not desc & 1:
                    continue
                ia = base + ((i + j - j0) << shift)
                if desc & 2 and level < 3:
                    nxt = geom.output_address(desc, gshift)
                    if nxt >> geom.oa_bits:
                        note(ia, level, f"next-level table {nxt:#x} exceeds the output size")
                    elif nxt in path:
                        if (nxt, level) not in cycles:  # report each loop once, not per entry
                            cycles.add((nxt, level))
                            note(ia, level, f"table {nxt:#x} is already on this walk path (self-reference)")
                    else:
                        yield from visit(nxt, level + 1, ia, path + (nxt,))
                elif level == 3 or (not desc & 2 and block_ok):
                    out = geom.output_address(desc, shift)
                    if out >> geom.oa_bits:
                        note(ia, level, f"output address {out:#x} exceeds the output size")
                    else:
                        yield ia, out, shift, desc, level
                else:
                    note(ia, level, f"reserved descriptor encoding {desc:#x}")
            i = stop + 1

    yield from visit(root, geom.start_level, 0, (root,))
