"""BTF parser: every kind on a synthetic blob; the real kernel BTF read from a capture."""

from __future__ import annotations

import pickle
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armvmi_cli.errors import SymbolError
from armvmi_cli.symbols.btf import BtfSource, btf_kind_counts, parse_btf
from armvmi_cli.symbols.types import ArrayType, EnumType, FuncProto, FuncType, FwdType, IntType, PointerType, QualifiedType, TypedefType

from .btfgen import BtfWriter, sample


@pytest.fixture(scope="module")
def synth():
    blob, ids = sample()
    return parse_btf(blob), ids, blob


def test_every_kind_is_parsed_and_every_id_resolves(synth):
    tm, ids, blob = synth
    counts = btf_kind_counts(blob)
    assert set(counts) == {"INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF", "VOLATILE", "CONST",
                           "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT", "DECL_TAG", "TYPE_TAG", "ENUM64"}
    assert tm.check_all() == sum(counts.values()) + 1  # + void
    assert tm.source == "btf"


def test_anonymous_members_are_flattened_with_adjusted_offsets(synth):
    tm, ids, _ = synth
    ts = tm.struct("task_struct")
    assert ts.size == 96 and not ts.is_union
    assert [m.name for m in ts.members][:3] == ["__state", "", "thread_pid"]
    assert ts.fields["prio"].offset == 8
    assert ts.fields["x"].offset == ts.fields["name"].offset == 16  # anonymous union inside the anonymous struct
    assert ts.fields["tasks"].offset == 24
    assert tm.offsetof("task_struct", "tasks.prev") == 32
    assert tm.types["task_struct"].fields["comm"].offset == 40
    assert "" not in ts.fields


def test_type_shapes(synth):
    tm, ids, _ = synth
    f = tm.struct("task_struct").fields
    assert isinstance(f["__state"].type, QualifiedType) and f["__state"].type.qualifier == "volatile"
    assert isinstance(f["__state"].type.resolve(), IntType) and f["__state"].type.resolve().signed
    comm = f["comm"].type
    assert isinstance(comm, ArrayType) and comm.count == 16 and comm.size == 16 and comm.element.resolve().is_char
    pid = f["thread_pid"].type
    assert isinstance(pid, PointerType) and pid.target.name == "pid" and pid.size == 8
    assert isinstance(f["mm"].type.target, FwdType) and f["mm"].type.target.size is None
    fn = f["fn"].type.target
    assert isinstance(fn, FuncProto) and fn.ret.name == "int" and [n for n, _ in fn.params] == ["pid", ""]
    st_ = f["start_time"].type
    assert isinstance(st_, TypedefType) and st_.name == "u64" and st_.size == 8 and not st_.resolve().signed
    assert f["uptr"].type.target.resolve().name == "int"  # type tag is transparent
    lh = tm.struct("list_head")
    assert lh.fields["next"].type.target is lh  # a cycle, resolved lazily to the same object
    assert isinstance(tm.by_id(ids["func"]), FuncType) and tm.by_id(ids["func"]).proto is fn
    assert tm.get("_Bool").is_bool and tm.get("double").kind == "float" and tm.get("double").size == 8
    assert tm.get("task_t").resolve() is tm.struct("task_struct")
    assert tm.get("union some_union") is None and tm.get("struct task_struct") is tm.struct("task_struct")


def test_bitfields_both_encodings(synth):
    tm, _, _ = synth
    fl = tm.struct("flags").fields
    assert [(fl[n].offset, fl[n].bit_offset, fl[n].bit_size) for n in "abc"] == [(0, 0, 3), (0, 3, 7), (1, 10, 1)]
    lg = tm.struct("legacy").fields
    assert (lg["lo"].bit_offset, lg["lo"].bit_size, lg["hi"].bit_offset, lg["hi"].bit_size) == (0, 5, 5, 5)
    assert tm.offsetof("task_struct", "fl") == 72 and tm.struct("task_struct").fields["fl"].bit_size is None


def test_enums(synth):
    tm, _, _ = synth
    assert tm.enum_value("pid_type", "PIDTYPE_TGID") == 1
    assert tm.enum_value(None, "PIDTYPE_MAX") == 4
    assert tm.enum_value(None, "NEG_ONE") == -1
    assert tm.enum("big").values == {"BIG": 1 << 40, "TOP": (1 << 64) - 1}
    assert tm.enum("sbig").values["SMIN"] == -(1 << 63)
    assert isinstance(tm.get("pid_type"), EnumType) and tm.sizeof("pid_type") == 4
    with pytest.raises(SymbolError, match="PIDTYPE_NOPE"):
        tm.enum_value(None, "PIDTYPE_NOPE")
    with pytest.raises(SymbolError, match="no enumerator"):
        tm.enum_value("pid_type", "NEG_ONE")


def test_field_paths_and_errors(synth):
    tm, _, _ = synth
    ts = tm.struct("task_struct")
    assert tm.offsetof("pid", "numbers[0].nr") == 8
    assert ts.field("comm[3]")[0] == 43
    with pytest.raises(SymbolError, match="no member 'nope'"):
        ts.field("nope")
    with pytest.raises(SymbolError, match="not a struct"):
        ts.field("thread_pid.level")  # through a pointer: not a value path
    with pytest.raises(SymbolError, match="not an array"):
        ts.field("prio[0]")
    with pytest.raises(SymbolError, match="bad field path"):
        ts.field("comm[")
    with pytest.raises(SymbolError, match="'no_such'"):
        tm.struct("no_such")
    with pytest.raises(SymbolError, match="is a int"):
        tm.struct("int")
    with pytest.raises(SymbolError, match="'no_such' is not in the btf"):
        tm.sizeof("no_such")
    with pytest.raises(SymbolError, match="empty field path"):
        ts.field("")


def test_export_and_pickle_round_trip(synth):
    from armvmi_cli.symbols.types import TypeModel

    tm, _, _ = synth
    for again in (TypeModel.from_json(tm.to_json()), pickle.loads(pickle.dumps(tm))):
        assert again.check_all() == tm.check_all()
        assert again.struct("task_struct").fields["tasks"].offset == 24
        assert again.struct("flags").fields["c"].bit_offset == 10
        assert again.enum_value(None, "SMIN") == -(1 << 63)
        assert again.source == "btf"


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b"\x00\x00" + b[2:], "magic 0x0000"),
    (lambda b: b[:3] + b"\x02" + b[4:], None),  # flags byte: harmless
    (lambda b: b[:2] + b"\x02" + b[3:], "version 2"),
    (lambda b: b[:10], "too short"),
    (lambda b: b[:-5], "out of bounds"),
])
def test_bad_headers(mutate, message):
    blob, _ = sample()
    if message is None:
        assert parse_btf(mutate(blob)).struct("task_struct")
        return
    with pytest.raises(SymbolError, match=message):
        parse_btf(mutate(blob))


def test_dangling_type_id_is_an_error():
    w = BtfWriter()
    i = w.int("int", 4)
    w.struct("bad", 8, [("x", i, 0), ("y", 99, 32)])
    tm = parse_btf(w.build())
    with pytest.raises(SymbolError, match="type id 99"):
        tm.check_all()


def test_unknown_kind_and_overrun_are_errors():
    w = BtfWriter()
    w.int("int", 4)
    blob = bytearray(w.build())
    struct.pack_into("<I", blob, 24 + 4, 25 << 24)  # kind 25 does not exist
    with pytest.raises(SymbolError, match="unknown kind 25"):
        parse_btf(bytes(blob))
    w = BtfWriter()
    w.struct("s", 4, [])
    blob = bytearray(w.build())
    struct.pack_into("<I", blob, 24 + 4, (4 << 24) | 3)  # claims 3 members that are not there
    with pytest.raises(SymbolError, match="overruns|out of bounds|truncated"):
        parse_btf(bytes(blob))


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_garbage_never_crashes(data):
    blob, _ = sample()
    for candidate in (data, blob[:24] + data):
        try:
            tm = parse_btf(candidate)
            tm.check_all()
        except SymbolError:
            pass


# -- the real kernel BTF, read from the nokaslr capture -------------------------------------

def test_real_btf_parses_completely(nokaslr_btf):
    tm = parse_btf(nokaslr_btf)
    src = tm._src
    assert isinstance(src, BtfSource) and len(src) > 50_000
    assert tm.check_all() == len(src)  # every type id resolves
    ts = tm.struct("task_struct")
    assert ts.fields["comm"].offset == 1912  # also in ground truth, asserted below
    assert tm.sizeof("list_head") == 16


def _split(key: str):
    s, _, path = key.partition(".")
    return s, path


def test_real_btf_matches_ground_truth_offsets(nokaslr_btf, nested_capture):
    """The nested capture's host runs the same build; its checker recorded offsets via BTF."""
    tm = parse_btf(nokaslr_btf)
    want = nested_capture.ground_truth["btf_offsets"]
    checked = 0
    for key, value in want.items():
        if key.startswith("sizeof(struct "):
            assert tm.sizeof(key[len("sizeof(struct "):-1]) == value, key
        elif key.startswith("enum "):
            for name, v in value.items():
                assert tm.enum_value(key[5:], name) == v, name
        else:
            s, path = _split(key)
            assert tm.offsetof(s, path) == value, key
        checked += 1
    assert checked >= 40
