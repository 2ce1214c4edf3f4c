"""The maple-tree walk on hand-built nodes: a sound tree, then each kind of
corruption (a cycle, pivots out of order, a child outside the tree, a bad node
type, an impossible data end).  The walk must end, keep what it read, and say
why it stopped -- never hang, never raise."""

from __future__ import annotations

import struct

import pytest

from armvmi_cli.errors import MemoryReadError
from armvmi_cli.linux.maple_tree import (MAPLE_ARANGE_64, MAPLE_LEAF_64, MapleLayout, MapleWalk, _Kind,
                                         mt_for_each)

# Linux 6.1's layout (what the type model gives on the real captures; see test_proc_real).
R64 = _Kind(pivot_off=8, npivots=15, slot_off=128, nslots=16, end_off=248)
A64 = _Kind(pivot_off=8, npivots=9, slot_off=80, nslots=10, end_off=240)
LAYOUT = MapleLayout(256, {1: R64, 2: R64, 3: A64})
BASE = 0xFFFF_0000_1000_0000
TREE = BASE  # struct maple_tree: ma_root at +8
ULONG_MAX = (1 << 64) - 1


class FakeKernel:
    """Just enough of a Kernel for mt_for_each: memory and one offset."""

    def __init__(self):
        self.mem = bytearray(0x10000)
        self._maple_layout = LAYOUT

    def read(self, va, n):
        off = va - BASE
        if off < 0 or off + n > len(self.mem):
            raise MemoryReadError(va, n, "kernel virtual", "not mapped")
        return bytes(self.mem[off:off + n])

    def read_u64(self, va):
        return int.from_bytes(self.read(va, 8), "little")

    def offsetof(self, type_name, member):
        assert (type_name, member) == ("maple_tree", "ma_root")
        return 8

    def put(self, va, data):
        self.mem[va - BASE:va - BASE + len(data)] = data


def node_addr(i):
    return BASE + 0x1000 + i * 0x100


def enode(i, mtype):
    return node_addr(i) | (mtype << 3) | 4  # MAPLE_ENODE_NULL set, as the kernel does


def put_node(k, i, kind, pivots, slots, end):
    raw = bytearray(256)
    struct.pack_into(f"<{len(pivots)}Q", raw, kind.pivot_off, *pivots)
    struct.pack_into(f"<{len(slots)}Q", raw, kind.slot_off, *slots)
    raw[kind.end_off] = end
    k.put(node_addr(i), bytes(raw))


def sound_tree():
    """Root arange64 with two leaves: [0x1000,0x1fff] -> A, [0x3000,0x3fff] -> B | [0x8000,0x8fff] -> C."""
    k = FakeKernel()
    A, B, C = 0xAAA0, 0xBBB0, 0xCCC0
    put_node(k, 1, R64, [0xFFF, 0x1FFF, 0x2FFF] + [0] * 12, [0, A, 0, 0] + [0] * 12, 2)  # last pivot = node max
    put_node(k, 2, R64, [0x3FFF, 0x7FFF, 0x8FFF] + [0] * 12, [B, 0, C, 0] + [0] * 12, 3)
    put_node(k, 0, A64, [0x2FFF] + [0] * 8, [enode(1, MAPLE_LEAF_64), enode(2, MAPLE_LEAF_64)] + [0] * 8, 1)
    k.put(TREE + 8, struct.pack("<Q", enode(0, MAPLE_ARANGE_64) | 2))  # MAPLE_ROOT_NODE
    return k


def walk(k):
    w = MapleWalk()
    return list(mt_for_each(k, TREE, w)), w


def test_sound_tree_in_index_order():
    entries, w = walk(sound_tree())
    assert entries == [(0x1000, 0x1FFF, 0xAAA0), (0x3000, 0x3FFF, 0xBBB0), (0x8000, 0x8FFF, 0xCCC0)]
    assert w.complete


def test_empty_and_single_entry_trees():
    k = FakeKernel()
    assert walk(k) == ([], walk(k)[1]) and walk(k)[1].complete
    k.put(TREE + 8, struct.pack("<Q", 0xFFFF_0000_DEAD_BEE8))  # not a node: the entry for index 0
    assert walk(k)[0] == [(0, 0, 0xFFFF_0000_DEAD_BEE8)]


def test_cycle_ends_the_walk():
    k = sound_tree()
    # The second leaf claims to be an internal node whose child is the root again.
    put_node(k, 2, A64, [0x5FFF] + [0] * 8, [enode(0, MAPLE_ARANGE_64), enode(0, MAPLE_ARANGE_64)] + [0] * 8, 1)
    k.put(node_addr(0) + A64.slot_off + 8, struct.pack("<Q", enode(2, MAPLE_ARANGE_64)))
    entries, w = walk(k)
    assert entries == [(0x1000, 0x1FFF, 0xAAA0)]  # what was read before the loop
    assert [p.kind for p in w.problems] == ["cycle"] and not w.complete


def test_pivots_out_of_order():
    k = sound_tree()
    put_node(k, 2, R64, [0x7FFF, 0x3FFF, 0x8FFF] + [0] * 12, [0xBBB0, 0, 0xCCC0, 0] + [0] * 12, 3)
    entries, w = walk(k)
    assert entries == [(0x1000, 0x1FFF, 0xAAA0)]
    assert [p.kind for p in w.problems] == ["bad-pivots"]


def test_pivot_beyond_the_parent_range():
    k = sound_tree()
    put_node(k, 1, R64, [0xFFF, 0x1FFF, 0x5FFF] + [0] * 12, [0, 0xAAA0, 0, 0] + [0] * 12, 3)  # parent says <= 0x2fff
    entries, w = walk(k)
    assert entries == [] and [p.kind for p in w.problems] == ["bad-pivots"]


def test_child_outside_the_tree():
    k = sound_tree()
    k.put(node_addr(0) + A64.slot_off + 8, struct.pack("<Q", (0xFFFF_8000_0000_0000 | (MAPLE_LEAF_64 << 3))))
    entries, w = walk(k)
    assert entries == [(0x1000, 0x1FFF, 0xAAA0)]
    assert [p.kind for p in w.problems] == ["unreadable"]


@pytest.mark.parametrize("slot,kind", [(0, "bad-slot"), (0xAAA1, "bad-slot"), (node_addr(2) | (0 << 3), "bad-type")])
def test_child_that_is_not_a_range_node(slot, kind):
    k = sound_tree()
    k.put(node_addr(0) + A64.slot_off + 8, struct.pack("<Q", slot))
    entries, w = walk(k)
    assert [p.kind for p in w.problems] == [kind]


def test_impossible_data_end():
    k = sound_tree()
    k.put(node_addr(0) + A64.end_off, bytes([200]))
    entries, w = walk(k)
    assert entries == [] and [p.kind for p in w.problems] == ["bad-end"]


def test_deep_self_similar_chain_is_bounded():
    k = FakeKernel()
    # 40 internal nodes, each with its only child the next: deeper than any real tree.
    for i in range(40):
        put_node(k, i, A64, [0] * 9, [enode(i + 1, MAPLE_ARANGE_64)] + [0] * 9, 0)
    k.put(TREE + 8, struct.pack("<Q", enode(0, MAPLE_ARANGE_64) | 2))
    entries, w = walk(k)
    assert entries == [] and [p.kind for p in w.problems] == ["too-deep"]
