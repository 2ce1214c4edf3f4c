"""Defensive list_head walking: every malformed list ends, with the reason."""

from __future__ import annotations


from armvmi_cli.errors import MemoryReadError
from armvmi_cli.linux.list import ListWalk, list_nodes


class FakeKernel:
    """list_heads in a dict: addr -> (next, prev)."""

    def __init__(self, nodes: dict[int, tuple[int, int]]):
        self.mem = {}
        for a, (n, p) in nodes.items():
            self.mem[a] = n
            self.mem[a + 8] = p

    def read_u64(self, va):
        if va not in self.mem:
            raise MemoryReadError(va, 8, "test", "hole")
        return self.mem[va]


def ring(addrs):
    return {a: (addrs[(i + 1) % len(addrs)], addrs[i - 1]) for i, a in enumerate(addrs)}


def test_well_formed_ring():
    k = FakeKernel(ring([0x1000, 0x2000, 0x3000, 0x4000]))
    w = ListWalk()
    assert list(list_nodes(k, 0x1000, w)) == [0x2000, 0x3000, 0x4000]
    assert w.complete and not w.problems


def test_cycle_that_skips_the_head_ends():
    nodes = ring([0x1000, 0x2000, 0x3000, 0x4000])
    nodes[0x4000] = (0x2000, 0x3000)  # loops back to 0x2000, never to the head
    k = FakeKernel(nodes)
    w = ListWalk()
    assert list(list_nodes(k, 0x1000, w)) == [0x2000, 0x3000, 0x4000]
    assert not w.complete and w.problems[0].kind == "cycle"


def test_pointer_into_a_hole_gives_the_partial_list():
    nodes = ring([0x1000, 0x2000, 0x3000])
    nodes[0x2000] = (0xDEAD000, 0x1000)
    k = FakeKernel(nodes)
    w = ListWalk()
    assert list(list_nodes(k, 0x1000, w)) == [0x2000]
    assert [p.kind for p in w.problems] == ["unreadable"]
    assert "0xdead000" in str(w.problems[0])


def test_unlinked_neighbour_is_reported_but_walk_continues():
    # 0x3000 was unlinked by rewriting 0x2000->next, but 0x4000->prev still names it
    nodes = ring([0x1000, 0x2000, 0x3000, 0x4000])
    nodes[0x2000] = (0x4000, 0x1000)
    k = FakeKernel(nodes)
    w = ListWalk()
    assert list(list_nodes(k, 0x1000, w)) == [0x2000, 0x4000]
    assert w.complete
    assert [p.kind for p in w.problems] == ["broken-link"]


def test_limit_bounds_a_huge_list():
    addrs = [0x1000 * (i + 1) for i in range(100)]
    k = FakeKernel(ring(addrs))
    w = ListWalk()
    assert len(list(list_nodes(k, addrs[0], w, limit=10))) == 10
    assert w.problems[0].kind == "too-long"


def test_unreadable_head():
    w = ListWalk()
    assert list(list_nodes(FakeKernel({}), 0x5000, w)) == []
    assert w.problems[0].kind == "unreadable"
