"""Maple trees (include/linux/maple_tree.h, lib/maple_tree.c): 6.1+ ``mm->mm_mt``.

A tree is ``ma_root``: NULL, a single entry for index 0, or an encoded node
pointer (``xa_is_node``: low bits 0b10).  An encoded node (``maple_enode``) is
the 256-byte-aligned ``struct maple_node`` address with its ``maple_type`` in
bits 3..6.  ``maple_leaf_64`` and ``maple_range_64`` nodes hold 15 pivots and
16 slots (``mr64``), ``maple_arange_64`` 9 pivots, 10 slots and gaps
(``ma64``); slot ``i`` covers ``(pivot[i-1], pivot[i]]`` (the first from the
node's minimum, the last up to its maximum).  Leaves hold the entries,
internal slots the children.  Counts and offsets come from the type model.

Memory is hostile: :func:`mt_for_each` never follows a node twice, checks
that pivots increase inside the node's range, bounds depth and node count,
and records what it met in a :class:`MapleWalk` instead of raising.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import ArmvmiError

MAPLE_NODE_MASK = 0xFF
MAPLE_NODE_TYPE_SHIFT = 3
MAPLE_NODE_TYPE_MASK = 0xF
MAPLE_DENSE, MAPLE_LEAF_64, MAPLE_RANGE_64, MAPLE_ARANGE_64 = range(4)
MAPLE_HEIGHT_MAX = 31
XA_ZERO_ENTRY = (257 << 2) | 2  # xa_mk_internal(257): a reserved, empty slot
ULONG_MAX = (1 << 64) - 1
MAX_NODES = 1 << 16


def xa_is_node(entry: int) -> bool:
    return (entry & 3) == 2 and entry > 4096


@dataclass
class MapleProblem:
    kind: str  # "unreadable", "cycle", "bad-type", "bad-pivots", "bad-end", "too-deep", "too-large", "bad-slot"
    address: int
    detail: str

    def __str__(self) -> str:
        return f"maple tree {self.kind} at {self.address:#x}: {self.detail}"


@dataclass
class MapleWalk:
    problems: list[MapleProblem] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _Kind:
    pivot_off: int
    npivots: int
    slot_off: int
    nslots: int
    end_off: int  # meta.end


@dataclass(frozen=True)
class MapleLayout:
    node_size: int
    kinds: dict  # maple_type -> _Kind

    @classmethod
    def of(cls, kernel) -> "MapleLayout":
        cached = getattr(kernel, "_maple_layout", None)
        if cached is not None:
            return cached
        from .object import strip

        def kind(member: str, struct_name: str) -> _Kind:
            base = kernel.offsetof("maple_node", member)
            t = strip(kernel.type(struct_name))
            npiv = strip(t.fields["pivot"].type).count
            nslot = strip(t.fields["slot"].type).count
            return _Kind(base + kernel.offsetof(struct_name, "pivot"), npiv,
                         base + kernel.offsetof(struct_name, "slot"), nslot,
                         base + kernel.offsetof(struct_name, "meta.end"))

        r64 = kind("mr64", "maple_range_64")
        lay = cls(strip(kernel.type("maple_node")).size,
                  {MAPLE_LEAF_64: r64, MAPLE_RANGE_64: r64, MAPLE_ARANGE_64: kind("ma64", "maple_arange_64")})
        kernel._maple_layout = lay
        return lay


def mt_for_each(kernel, tree_addr: int, walk: MapleWalk | None = None, max_nodes: int = MAX_NODES):
    """Yield ``(first, last, entry)`` for every non-empty entry of the maple
    tree at ``tree_addr`` (a ``struct maple_tree``), in index order; both
    indices are inclusive.  A corrupt node ends the walk below it, with a
    problem in ``walk``."""
    walk = walk if walk is not None else MapleWalk()
    lay = MapleLayout.of(kernel)
    try:
        root = kernel.read_u64(tree_addr + kernel.offsetof("maple_tree", "ma_root"))
    except ArmvmiError as e:
        walk.problems.append(MapleProblem("unreadable", tree_addr, f"ma_root unreadable ({e})"))
        return
    if not xa_is_node(root):
        if root:
            yield 0, 0, root
        return
    seen: set[int] = set()
    stack = [(root, 0, ULONG_MAX, 0)]  # depth first, children pushed last-first: index order
    while stack:
        enode, lo, hi, depth = stack.pop()
        node = enode & ~MAPLE_NODE_MASK
        mtype = (enode >> MAPLE_NODE_TYPE_SHIFT) & MAPLE_NODE_TYPE_MASK
        if node in seen:
            walk.problems.append(MapleProblem("cycle", node, "node reached twice (the tree loops)"))
            return
        if len(seen) >= max_nodes:
            walk.problems.append(MapleProblem("too-large", node, f"more than {max_nodes} nodes"))
            return
        if depth > MAPLE_HEIGHT_MAX:
            walk.problems.append(MapleProblem("too-deep", node, f"deeper than {MAPLE_HEIGHT_MAX} levels"))
            return
        seen.add(node)
        k = lay.kinds.get(mtype)
        if k is None:
            walk.problems.append(MapleProblem("bad-type", node, f"maple_type {mtype} is not a range node"))
            return
        try:
            raw = kernel.read(node, lay.node_size)
        except ArmvmiError as e:
            walk.problems.append(MapleProblem("unreadable", node, f"node unreadable ({e})"))
            return
        pivots = struct.unpack_from(f"<{k.npivots}Q", raw, k.pivot_off)
        slots = struct.unpack_from(f"<{k.nslots}Q", raw, k.slot_off)
        end = _data_end(mtype, pivots, raw[k.end_off], hi)
        if end >= k.nslots:
            walk.problems.append(MapleProblem("bad-end", node, f"data end {end} beyond {k.nslots} slots"))
            return
        ranges = []
        prev = lo
        for i in range(end + 1):
            last = pivots[i] if i < end else hi
            if last < prev or last > hi:
                walk.problems.append(MapleProblem(
                    "bad-pivots", node, f"pivot[{i}] = {last:#x} outside ({prev:#x}..{hi:#x}) (out of order)"))
                return
            ranges.append((prev, last, slots[i]))
            prev = last + 1
        leaf = mtype < MAPLE_RANGE_64
        if leaf:
            for first, last, entry in ranges:
                if entry and entry != XA_ZERO_ENTRY:
                    yield first, last, entry
            continue
        for first, last, child in reversed(ranges):
            if not child or child & 3:
                walk.problems.append(MapleProblem("bad-slot", node, f"child slot {child:#x} for "
                                                  f"{first:#x}..{last:#x} is not a node"))
                return
            stack.append((child, first, last, depth + 1))


def _data_end(mtype: int, pivots, meta_end: int, hi: int) -> int:
    """ma_data_end(): the last used slot."""
    if mtype == MAPLE_ARANGE_64:
        return meta_end
    last = len(pivots) - 1
    if not pivots[last]:
        return meta_end
    if pivots[last] == hi:
        return last
    return len(pivots)
