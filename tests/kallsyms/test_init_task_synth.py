"""find_init_task on a made-up kernel VA space: accepted, rejected, ambiguous."""

from __future__ import annotations

import struct

import pytest

from armvmi_cli.errors import SymbolError, TranslationFault
from armvmi_cli.symbols.init_task import find_init_task

OFF = {"comm": 0x778, "tasks": 0x468, "pid": 0x548, "tgid": 0x54C, "real_parent": 0x558}
SIZE = 0x1000
DATA = 0xFFFF800009000000  # the image's data
SLAB = 0xFFFF000001000000  # another task, in the linear map


class FakeVA:
    def __init__(self):
        self.regions = {DATA: bytearray(1 << 20), SLAB: bytearray(1 << 16)}

    def _find(self, va, n):
        for base, buf in self.regions.items():
            if base <= va and va + n <= base + len(buf):
                return buf, va - base
        raise TranslationFault(3, "unmapped", va)

    def __call__(self, va, n):
        buf, o = self._find(va, n)
        return bytes(buf[o : o + n])

    def write(self, va, data):
        buf, o = self._find(va, len(data))
        buf[o : o + len(data)] = data


def make_task(mem, va, comm, pid, parent, nxt, prv):
    mem.write(va + OFF["comm"], comm.ljust(16, b"\0"))
    mem.write(va + OFF["pid"], struct.pack("<II", pid, pid))
    mem.write(va + OFF["real_parent"], struct.pack("<Q", parent))
    mem.write(va + OFF["tasks"], struct.pack("<QQ", nxt + OFF["tasks"], prv + OFF["tasks"]))


def two_task_world(init_va):
    mem = FakeVA()
    make_task(mem, init_va, b"swapper/0", 0, init_va, SLAB, SLAB)
    make_task(mem, SLAB, b"init", 1, init_va, init_va, init_va)
    return mem


def test_found():
    init = DATA + 0x40000
    mem = two_task_world(init)
    mem.write(DATA + 0x100, b"swapper/0\0")  # a stray string: rejected by validation
    assert find_init_task(mem, [(DATA, DATA + (1 << 20))], OFF) == init


def test_alone_on_its_list_is_accepted():
    mem = FakeVA()
    init = DATA + 0x8000
    make_task(mem, init, b"swapper", 0, init, init, init)
    assert find_init_task(mem, [(DATA, DATA + (1 << 20))], OFF) == init


def test_broken_list_is_refused():
    init = DATA + 0x40000
    mem = two_task_world(init)
    mem.write(SLAB + OFF["tasks"] + 8, struct.pack("<Q", SLAB + 0x40))  # prev no longer points back
    with pytest.raises(SymbolError, match="does not point back"):
        find_init_task(mem, [(DATA, DATA + (1 << 20))], OFF)


def test_ambiguous_is_refused():
    mem = two_task_world(DATA + 0x40000)
    other = DATA + 0x80000
    make_task(mem, other, b"swapper/0", 0, other, other, other)
    with pytest.raises(SymbolError, match="ambiguous"):
        find_init_task(mem, [(DATA, DATA + (1 << 20))], OFF)


def test_unmapped_ranges_are_skipped():
    init = DATA + 0x40000
    mem = two_task_world(init)
    # the window runs past the mapped data: holes are stepped over page by page
    assert find_init_task(mem, [(DATA - (1 << 20), DATA + (4 << 20))], OFF) == init
    with pytest.raises(SymbolError, match="no 'swapper' comm"):
        find_init_task(mem, [(DATA + (2 << 20), DATA + (3 << 20))], OFF)
