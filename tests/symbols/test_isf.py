"""Volatility ISF import, and the cross-check BTF vs ISF (DWARF-derived) on the real kernel."""

from __future__ import annotations

import json
import lzma

import pytest

from armvmi_cli.errors import SymbolError
from armvmi_cli.symbols.btf import parse_btf
from armvmi_cli.symbols.isf import load_isf
from armvmi_cli.symbols.types import TypeModel

MINI = {
    "metadata": {"producer": {"name": "dwarf2json", "version": "0.9.0"}, "format": "6.2.0"},
    "base_types": {
        "int": {"size": 4, "signed": True, "kind": "int", "endian": "little"},
        "unsigned int": {"size": 4, "signed": False, "kind": "int", "endian": "little"},
        "char": {"size": 1, "signed": False, "kind": "char", "endian": "little"},
        "_Bool": {"size": 1, "signed": True, "kind": "bool", "endian": "little"},
        "void": {"size": 0, "signed": False, "kind": "void", "endian": "little"},
    },
    "user_types": {
        "list_head": {"kind": "struct", "size": 16, "fields": {
            "next": {"offset": 0, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "list_head"}}},
            "prev": {"offset": 8, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "list_head"}}}}},
        "unnamed_abc": {"kind": "union", "size": 8, "fields": {
            "x": {"offset": 0, "type": {"kind": "base", "name": "int"}},
            "p": {"offset": 0, "type": {"kind": "pointer", "subtype": {"kind": "base", "name": "void"}}}}},
        "task_struct": {"kind": "struct", "size": 64, "fields": {
            "comm": {"offset": 40, "type": {"kind": "array", "count": 16, "subtype": {"kind": "base", "name": "char"}}},
            "tasks": {"offset": 8, "type": {"kind": "struct", "name": "list_head"}},
            "unnamed_field_0": {"offset": 24, "anonymous": True, "type": {"kind": "union", "name": "unnamed_abc"}},
            "frozen": {"offset": 32, "type": {"kind": "bitfield", "bit_length": 1, "bit_position": 7,
                                              "type": {"kind": "base", "name": "unsigned int"}}},
            "state": {"offset": 0, "type": {"kind": "enum", "name": "task_state"}},
            "mm": {"offset": 56, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "mm_struct"}}},
            "fn": {"offset": 36, "type": {"kind": "pointer", "subtype": {"kind": "function"}}}}},
    },
    "enums": {"task_state": {"size": 4, "base": "int", "constants": {"RUNNING": 0, "DEAD": -1}}},
    "symbols": {
        "init_task": {"address": 0xFFFF800009CC8DC0, "type": {"kind": "struct", "name": "task_struct"}},
        "$x": {"address": 0xFFFF800008000000},
        "linux_banner": {"address": 0xFFFF8000090A0000, "constant_data": "TGludXggdmVyc2lvbiA2LjEuMC10ZXN0IChnY2MpCgA="},
    },
}


def test_mini_isf(tmp_path):
    p = tmp_path / "k.json.xz"
    p.write_bytes(lzma.compress(json.dumps(MINI).encode()))
    tm, syms = load_isf(p)
    assert tm.source == "isf"
    ts = tm.struct("task_struct")
    assert [m.name for m in ts.members][0] == "state"  # members in offset order
    assert ts.fields["tasks"].offset == 8 and ts.fields["comm"].type.count == 16
    assert ts.fields["x"].offset == ts.fields["p"].offset == 24  # anonymous union flattened
    fr = ts.fields["frozen"]
    assert (fr.offset, fr.bit_offset, fr.bit_size) == (32, 32 * 8 + 7, 1)
    assert ts.fields["state"].type.values == {"RUNNING": 0, "DEAD": -1} and ts.fields["state"].type.signed
    assert ts.fields["mm"].type.target.kind == "fwd"
    assert ts.fields["fn"].type.target.kind == "proto"
    assert tm.struct("list_head").fields["next"].type.target is tm.struct("list_head")
    assert tm.get("_Bool").is_bool and tm.enum_value(None, "DEAD") == -1
    assert tm.check_all() > 8
    assert syms["init_task"] == 0xFFFF800009CC8DC0 and "$x" not in syms
    assert syms.banner == "Linux version 6.1.0-test (gcc)" and syms.release == "6.1.0-test"
    again = TypeModel.from_json(json.loads(json.dumps(tm.to_json())))
    assert again.struct("task_struct").fields["frozen"].bit_offset == 263 and again.source == "isf"


@pytest.mark.parametrize("content, message", [
    (b"{not json", "not a JSON symbol file"),
    (b'{"a": 1}', "not a Volatility ISF"),
    (b"[]", "not a Volatility ISF"),
])
def test_bad_isf(tmp_path, content, message):
    p = tmp_path / "bad.json"
    p.write_bytes(content)
    with pytest.raises(SymbolError, match=message):
        load_isf(p)


def test_unknown_descriptor_is_an_error(tmp_path):
    doc = json.loads(json.dumps(MINI))
    doc["user_types"]["list_head"]["fields"]["next"]["type"] = {"kind": "quantum"}
    p = tmp_path / "q.json"
    p.write_text(json.dumps(doc))
    tm, _ = load_isf(p)
    with pytest.raises(SymbolError, match="quantum"):
        tm.struct("list_head").fields


CROSS = ("task_struct", "mm_struct", "list_head", "cred", "pid", "upid", "kvm", "kvm_vcpu",
         "kvm_s2_mmu", "kvm_pgtable", "kvm_memory_slot", "kvm_memslots", "xarray", "uts_namespace")


_LOADED: dict = {}


@pytest.fixture
def nokaslr_isf(nokaslr_capture):
    cap = nokaslr_capture
    if cap.isf is None:
        pytest.skip("no ISF in the capture")
    if cap.isf not in _LOADED:  # ~1 s to load: once per run
        _LOADED[cap.isf] = load_isf(cap.isf)
    return _LOADED[cap.isf], cap


def test_real_isf_symbols_match_system_map(nokaslr_isf):
    from armvmi_cli.symbols.system_map import SystemMap

    (tm, syms), cap = nokaslr_isf
    sm = SystemMap.load(cap.system_map)
    for name in ("_text", "init_task", "swapper_pg_dir", "linux_banner", "__start_BTF"):
        assert syms[name] == sm[name], name
    assert syms.release == cap.ground_truth["kernel_release"]


def test_btf_and_isf_agree_field_by_field(nokaslr_isf, nokaslr_btf):
    (itm, _), _ = nokaslr_isf
    btm = parse_btf(nokaslr_btf)
    for name in CROSS:
        b, i = btm.struct(name), itm.struct(name)
        assert b.size == i.size, name
        assert set(b.fields) == set(i.fields), name
        for fname, f in b.fields.items():
            g = i.fields[fname]
            assert (f.offset, f.bit_offset, f.bit_size) == (g.offset, g.bit_offset, g.bit_size), f"{name}.{fname}"
            assert f.type.resolve().kind == g.type.resolve().kind or {f.type.resolve().kind, g.type.resolve().kind} <= {"int", "enum"}, f"{name}.{fname}"
            assert f.type.size == g.type.size, f"{name}.{fname}"
