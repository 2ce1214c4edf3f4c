"""Malformed symbol inputs are a one-line exit 2 naming the input, never an
internal error (exit 3) or a RecursionError (issue 10)."""

from __future__ import annotations

import copy
import json
import mmap
import shutil
from pathlib import Path

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.errors import SymbolError
from armvmi_cli.symbols.isf import load_isf

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "snapshots" / "deb61-generic-nokaslr.armvmi"

GOOD = {
    "metadata": {"format": "6.2.0"},
    "base_types": {
        "int": {"kind": "int", "size": 4, "signed": True, "endian": "little"},
        "char": {"kind": "char", "size": 1, "signed": False, "endian": "little"},
        "void": {"kind": "void", "size": 0, "signed": False, "endian": "little"},
    },
    "user_types": {
        "task_struct": {"kind": "struct", "size": 32, "fields": {
            "pid": {"type": {"kind": "base", "name": "int"}, "offset": 0},
            "comm": {"type": {"kind": "array", "count": 16, "subtype": {"kind": "base", "name": "char"}}, "offset": 8},
            "parent": {"type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "task_struct"}}, "offset": 24},
        }},
    },
    "enums": {"e": {"size": 4, "base": "int", "constants": {"A": 0, "B": 1}}},
    "symbols": {"init_task": {"address": 0xFFFF800009A00000}},
}


def _deep(n: int) -> dict:
    d = {"kind": "base", "name": "int"}
    for _ in range(n):
        d = {"kind": "pointer", "subtype": d}
    return d


def _mutants():
    def m(fn):
        doc = copy.deepcopy(GOOD)
        fn(doc)
        return doc

    ts = lambda d: d["user_types"]["task_struct"]["fields"]  # noqa: E731
    yield "field-without-type", m(lambda d: ts(d)["pid"].pop("type"))
    yield "base-without-size", m(lambda d: d["base_types"]["int"].pop("size"))
    yield "offset-as-string", m(lambda d: ts(d)["comm"].update(offset="8"))
    yield "offset-as-bool", m(lambda d: ts(d)["comm"].update(offset=True))
    yield "size-as-string", m(lambda d: d["user_types"]["task_struct"].update(size="32"))
    yield "fields-a-list", m(lambda d: d["user_types"]["task_struct"].update(fields=[1, 2]))
    yield "type-a-string", m(lambda d: ts(d)["pid"].update(type="int"))
    yield "descriptor-no-name", m(lambda d: ts(d)["pid"].update(type={"kind": "base"}))
    yield "nesting-900", m(lambda d: ts(d)["pid"].update(type=_deep(900)))
    yield "nesting-5000", m(lambda d: ts(d)["pid"].update(type=_deep(5000)))
    yield "enum-constant-string", m(lambda d: d["enums"]["e"]["constants"].update(A="0"))
    yield "symbol-address-string", m(lambda d: d["symbols"]["init_task"].update(address="0xffff"))
    yield "symbol-address-negative", m(lambda d: d["symbols"]["init_task"].update(address=-1))
    yield "symbols-a-list", m(lambda d: d.update(symbols=[1]))
    yield "user-type-a-number", m(lambda d: d["user_types"].update(task_struct=5))


def _write(tmp_path, name, doc) -> Path:
    p = tmp_path / f"{name}.json"
    try:
        p.write_text(json.dumps(doc))
    except RecursionError:  # json.dumps cannot write 5,000 levels either: write it by hand
        p.write_text('{"metadata": {}, "base_types": {"int": {"kind": "int", "size": 4}}, "user_types": '
                     '{"task_struct": {"kind": "struct", "size": 8, "fields": {"pid": {"offset": 0, "type": '
                     + '{"kind": "pointer", "subtype": ' * 5000 + '{"kind": "base", "name": "int"}' + "}" * 5000
                     + "}}}}}")
    return p


def test_good_isf_loads(tmp_path):
    tm, syms = load_isf(_write(tmp_path, "good", GOOD))
    assert tm.check_all() > 3 and tm.offsetof("task_struct", "comm") == 8
    assert syms.address("init_task") == 0xFFFF800009A00000


@pytest.mark.parametrize("name,doc", list(_mutants()), ids=[n for n, _ in _mutants()])
def test_malformed_isf_is_a_symbol_error(tmp_path, name, doc):
    p = _write(tmp_path, name, doc)
    with pytest.raises(SymbolError) as e:
        tm, _ = load_isf(p)
        tm.check_all()
        tm.struct("task_struct").fields  # noqa: B018
    assert str(p) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["field-without-type", "offset-as-string", "nesting-5000", "base-without-size"])
def test_malformed_isf_cli_exit_2(tmp_path, name, capsys, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    doc = dict(_mutants())[name]
    rc = main(["ps", str(SAMPLE), "--isf", str(_write(tmp_path, name, doc))])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "internal error" not in err and len(err.strip().splitlines()) == 1


def test_vmcoreinfo_pagesize_3_is_overruled_by_the_tables(kaslr_capture, tmp_path, capsys, monkeypatch):
    """A VMCOREINFO that says PAGESIZE=3 (only 4K/16K/64K exist) is corrupt
    text: never an internal error, and never believed -- the page tables
    decide the geometry, the task list is right, and the kernel's notes say
    what was wrong."""
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    img = tmp_path / "pagesize3.elf"
    shutil.copyfile(kaslr_capture.image, img)
    with open(img, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        n, i = 0, mm.find(b"PAGESIZE=4096\n")
        while i >= 0:
            mm[i:i + 14] = b"PAGESIZE=3   \n"
            n, i = n + 1, mm.find(b"PAGESIZE=4096\n", i + 1)
    assert n >= 1
    rc = main(["ps", str(img), "--no-cache", "--json"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "internal error" not in cap.err
    got = {t["pid"] for t in json.loads(cap.out)["vms"][0]["tasks"]}
    assert got == {t["pid"] for t in kaslr_capture.ground_truth["tasks"]}
    rc = main(["info", str(img), "--no-cache", "--json"])
    (vm,) = json.loads(capsys.readouterr().out)["vms"]
    assert rc == 0 and vm["kernel"]["page_size"] == 4096
    assert any("PAGESIZE 3" in n for n in vm["notes"])


def test_profile_name_a_number_does_not_break_profile_list(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "profiles" / "bad"
    bad.mkdir(parents=True)
    (bad / "profile.json").write_text(json.dumps({"name": 5, "release": "6.1.0-x"}))
    monkeypatch.setenv("ARMVMI_PROFILES", str(tmp_path / "profiles"))
    assert main(["profile", "list"]) == 0
    out = capsys.readouterr()
    assert "6.1.0-56-arm64" in out.out  # the shipped profile is still listed
    assert main(["profile", "show", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "profile.json" in err and "'name' must be a string" in err
