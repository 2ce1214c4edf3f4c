"""DWARF loader on small objects compiled here (the Debian -dbg vmlinux is not available).

The expected offsets come from the compiler itself: the same C file is run and
prints offsetof()/sizeof() for every path asserted."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from armvmi_cli.errors import SymbolError
from armvmi_cli.symbols.dwarf import load_dwarf, vmlinux_banner
from armvmi_cli.symbols.types import TypeModel

SRC = r"""
#include <stddef.h>
#include <stdio.h>
typedef unsigned long long u64;
typedef int s32;
enum color { RED, GREEN = 5, BLUE = -2 };
struct list_head { struct list_head *next, *prev; };
struct inner { u64 sum_exec_runtime; int weights[4]; };
struct upid { int nr; void *ns; };
struct flags { unsigned int a:3; unsigned int b:7; unsigned int c:1; unsigned char d; unsigned long e:40; };
struct mm_struct;
struct task {
    volatile long state;
    struct {
        int prio;
        union { int x; const char *name; };
        struct list_head tasks;
    };
    struct inner se;
    struct upid numbers[2];
    char comm[16];
    int grid[2][3];
    enum color col;
    struct flags fl;
    const struct task *parent;
    struct mm_struct *mm;
    int (*fn)(int, char *);
    s32 last;
};
struct task t;
struct flags fl;
const char linux_banner[] = "Linux version 9.9.9-test (gcc) #1 SMP\n";
#define P(s, f) printf(#s " " #f " %zu\n", offsetof(struct s, f))
int main(void) {
    P(task, state); P(task, prio); P(task, x); P(task, name); P(task, tasks); P(task, tasks.prev);
    P(task, se); P(task, se.sum_exec_runtime); P(task, se.weights[3]); P(task, numbers); P(task, numbers[1].nr);
    P(task, numbers[1].ns); P(task, comm); P(task, grid); P(task, grid[1][2]); P(task, col); P(task, fl);
    P(task, parent); P(task, mm); P(task, fn); P(task, last); P(flags, d);
    printf("sizeof task %zu\nsizeof flags %zu\nsizeof inner %zu\n", sizeof(struct task), sizeof(struct flags), sizeof(struct inner));
    return 0;
}
"""

CC = shutil.which("aarch64-linux-gnu-gcc") or shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("dwarf")
    (d / "t.c").write_text(SRC)
    native = shutil.which("gcc") or shutil.which("cc")
    expected = {}
    if native:  # offsets straight from the compiler
        subprocess.run([native, "-g", "-o", str(d / "t"), str(d / "t.c")], check=True)
        for line in subprocess.run([str(d / "t")], capture_output=True, text=True, check=True).stdout.splitlines():
            a, b, v = line.split()
            expected[(a, b)] = int(v)
    objs = {}
    for ver in ("2", "4", "5"):
        o = d / f"t{ver}.o"
        flags = ["-gstrict-dwarf"] if ver == "2" else []
        subprocess.run([native or CC, "-g", f"-gdwarf-{ver}", *flags, "-c", "-o", str(o), str(d / "t.c")], check=True)
        objs[ver] = o
    return objs, expected


@pytest.mark.parametrize("ver", ["2", "4", "5"])
def test_offsets_match_the_compiler(built, ver):
    objs, expected = built
    tm = load_dwarf(objs[ver])
    assert tm.source == "dwarf"
    for (s, path), v in expected.items():
        if s == "sizeof":
            assert tm.sizeof(path) == v, path
        else:
            assert tm.offsetof(s, path) == v, (s, path)
    assert len(expected) > 20


@pytest.mark.parametrize("ver", ["2", "4", "5"])
def test_bitfields_enums_typedefs(built, ver):
    tm = load_dwarf(built[0][ver])
    fl = tm.struct("flags").fields
    assert [(fl[n].offset, fl[n].bit_offset, fl[n].bit_size) for n in "abcde"] == [
        (0, 0, 3), (0, 3, 7), (1, 10, 1), (2, 16, None), (3, 24, 40)]
    assert tm.enum("color").values == {"RED": 0, "GREEN": 5, "BLUE": -2}
    assert tm.enum_value(None, "GREEN") == 5
    t = tm.struct("task")
    assert t.fields["state"].type.kind == "qualified" and t.fields["state"].type.resolve().signed
    assert t.fields["last"].type.name == "s32" and t.fields["last"].type.resolve().name == "int"
    assert t.fields["mm"].type.target.kind == "fwd"
    proto = t.fields["fn"].type.target
    assert proto.kind == "proto" and proto.ret.name == "int" and len(proto.params) == 2
    grid = t.fields["grid"].type
    assert (grid.count, grid.element.count, grid.size) == (2, 3, 24)
    assert t.fields["parent"].type.target.kind == "qualified"
    assert tm.get("u64").size == 8 and tm.get("char").is_char
    assert tm.check_all() > 20
    again = TypeModel.from_json(tm.to_json())
    assert again.offsetof("task", "grid[1][2]") == tm.offsetof("task", "grid[1][2]") and again.source == "dwarf"


def test_banner_from_symtab(built):
    assert vmlinux_banner(built[0]["5"]) == "Linux version 9.9.9-test (gcc) #1 SMP"


def test_not_elf_or_no_dwarf(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"not an elf file at all")
    with pytest.raises(SymbolError, match="not an ELF"):
        load_dwarf(p)
    with pytest.raises(SymbolError, match="cannot open"):
        load_dwarf(tmp_path / "absent")
    src = tmp_path / "e.c"
    src.write_text("int x;\n")
    subprocess.run([CC, "-c", "-g0", "-o", str(tmp_path / "e.o"), str(src)], check=True)
    with pytest.raises(SymbolError, match="no DWARF"):
        load_dwarf(tmp_path / "e.o")
