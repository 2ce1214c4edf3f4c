"""Walking ``struct list_head`` lists defensively.

Memory images come from hostile or crashed systems: a list may be cut (a
pointer into a hole), cyclic without returning to its head, or have been
edited by a rootkit (``next->prev != node``).  The walk always ends, yields
what it could read, and records what went wrong in ``problems``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ArmvmiError

MAX_ENTRIES = 1 << 20


@dataclass
class ListProblem:
    kind: str  # "unreadable", "cycle", "broken-link", "too-long"
    address: int
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} at {self.address:#x}: {self.detail}"


@dataclass
class ListWalk:
    problems: list[ListProblem] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not any(p.kind in ("unreadable", "cycle", "too-long") for p in self.problems)


def list_nodes(kernel, head: int, walk: ListWalk | None = None, limit: int = MAX_ENTRIES):
    """Yield the address of every node of the list whose head is at ``head``
    (the head itself excluded)."""
    walk = walk if walk is not None else ListWalk()
    seen = {head}
    prev = head
    try:
        node = kernel.read_u64(head)
    except ArmvmiError as e:
        walk.problems.append(ListProblem("unreadable", head, f"list head unreadable: {e}"))
        return
    count = 0
    while node != head:
        if node in seen:
            walk.problems.append(ListProblem("cycle", node, f"list loops back to {node:#x} without reaching its head {head:#x}"))
            return
        if count >= limit:
            walk.problems.append(ListProblem("too-long", node, f"more than {limit} entries"))
            return
        try:
            nxt, back = kernel.read_u64(node), kernel.read_u64(node + 8)
        except ArmvmiError as e:
            walk.problems.append(ListProblem("unreadable", node, f"list node unreadable ({e})"))
            return
        if back != prev:
            walk.problems.append(ListProblem("broken-link", node, f"node->prev is {back:#x}, expected {prev:#x}"))
        seen.add(node)
        yield node
        count += 1
        prev, node = node, nxt


def list_for_each_entry(kernel, type_name: str, head: int, member: str, walk: ListWalk | None = None):
    off = kernel.offsetof(type_name, member)
    t = kernel.type(type_name)
    from .object import Object

    for node in list_nodes(kernel, head, walk):
        yield Object(kernel, t, node - off)
