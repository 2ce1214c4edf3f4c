"""``armvmi profile isf``: a Volatility 3 symbol file from memory alone.

Checked against what a Volatility user has today: the dwarf2json ISF made
from Debian's debug vmlinux (``isf-*.json.xz`` beside each guest capture),
the real System.map, and Volatility's own ISF schema.
"""

from __future__ import annotations

import base64
import collections
import json
import lzma

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.symbols.system_map import SystemMap


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """capture name -> (our ISF, the dwarf2json ISF, capture); built once per capture."""
    cache: dict = {}

    def get(cap):
        if cap.name not in cache:
            d = tmp_path_factory.mktemp("isf")
            out = d / "kernel.json.xz"
            mp = pytest.MonkeyPatch()
            mp.setenv("ARMVMI_CACHE", str(d / "cache"))
            try:
                assert main(["profile", "isf", str(cap.image), "-o", str(out)]) == 0
            finally:
                mp.undo()
            cache[cap.name] = (json.loads(lzma.decompress(out.read_bytes())), json.loads(lzma.open(cap.isf).read()), out)
        return cache[cap.name]

    return get


def _walk(desc):
    yield desc
    for k in ("subtype", "type"):
        if k in desc:
            yield from _walk(desc[k])


def test_isf_structure(guest_capture, built):
    ours, _, _ = built(guest_capture)
    gt = guest_capture.ground_truth
    meta = ours["metadata"]
    assert meta["format"].startswith("6.") and meta["producer"]["name"] == "armvmi"
    assert [s["kind"] for s in meta["linux"]["symbols"]] == ["symtab"]  # kallsyms from memory
    assert set(ours) == {"metadata", "base_types", "user_types", "enums", "symbols"}
    for b in ("void", "pointer", "char", "int", "long unsigned int"):
        assert b in ours["base_types"], b
    # every type a member or symbol names is defined
    for name, u in ours["user_types"].items():
        assert set(u) == {"size", "fields", "kind"} and u["kind"] in ("struct", "union"), name
        for fname, f in u["fields"].items():
            assert isinstance(f["offset"], int) and 0 <= f["offset"] <= max(u["size"], 0) + 1, (name, fname)
            for d in _walk(f["type"]):
                table = {"base": "base_types", "struct": "user_types", "union": "user_types", "enum": "enums"}.get(d["kind"])
                if table:
                    assert d["name"] in ours[table], (name, fname, d)
    ts = ours["user_types"]["task_struct"]["fields"]
    assert ts["comm"]["type"] == {"count": 16, "kind": "array", "subtype": {"kind": "base", "name": "char"}}
    assert ts["tasks"]["type"] == {"kind": "struct", "name": "list_head"}
    # the banner, as Volatility matches an ISF to an image
    banner = base64.b64decode(ours["symbols"]["linux_banner"]["constant_data"])
    assert banner.startswith(f"Linux version {gt['kernel_release']} ".encode()) and banner.endswith(b"\n\0")
    # link-time addresses: _stext is where System.map puts it, whatever the slide
    assert ours["symbols"]["_stext"]["address"] == SystemMap.load(guest_capture.system_map).address("_stext")


def test_isf_validates_against_volatility_schema(kaslr_capture, built):
    jsonschema = pytest.importorskip("jsonschema")
    schemas = pytest.importorskip("volatility3.schemas")
    import os

    ours, _, _ = built(kaslr_capture)
    path = os.path.join(os.path.dirname(schemas.__file__), f"schema-{ours['metadata']['format']}.json")
    with open(path) as f:
        schema = json.load(f)
    jsonschema.validate(ours, schema)


def _norm(t):
    k = t["kind"]
    if k == "bitfield":
        return ("bitfield", t["bit_length"], t["bit_position"], _norm(t["type"]))
    if k in ("pointer", "array"):
        return (k, t.get("count"), _norm(t["subtype"]))
    if k in ("struct", "union", "enum"):
        return (k, None if t["name"].startswith("unnamed_") else t["name"])  # anonymous types: names are hashes
    return (k, t.get("name"))


def _flat(t):
    """An array type with its dimensions multiplied out (BTF stores int a[2][3] as int a[6])."""
    n = 1
    while t[0] == "array":
        n *= t[1]
        t = t[2]
    return n, t


def test_isf_matches_dwarf2json(guest_capture, built):
    """Every struct/union/enum dwarf2json has and BTF has too, member by member.

    The only differences allowed are the ones BTF cannot avoid, each checked:
    - multi-dimensional arrays: BTF flattens them (same element type, same count);
    - a tag defined twice with different layouts (``compat_`` twins, two drivers'
      ``arm_smmu_device`` or ``enum tegra_mux``): each source keeps another one;
    - 64-bit enums: the same values, signed in DWARF and unsigned in BTF;
    - an enum DWARF only declares (size 0).
    """
    ours, ref, _ = built(guest_capture)
    twice = _defined_twice(guest_capture)
    compared = same = 0
    classes = collections.Counter()
    for name, u in ref["user_types"].items():
        if name.startswith("unnamed_") or name not in ours["user_types"]:
            continue
        o = ours["user_types"][name]
        compared += 1
        if (o["kind"], o["size"], sorted(o["fields"])) != (u["kind"], u["size"], sorted(u["fields"])):
            classes["tag defined twice"] += 1
            assert name in twice, name
            continue
        ok = True
        for fname, f in u["fields"].items():
            g = o["fields"][fname]
            assert g["offset"] == f["offset"], (name, fname)
            a, b = _norm(g["type"]), _norm(f["type"])
            if a == b:
                continue
            ok = False
            if a[0] == "array" and _flat(a) == _flat(b):
                classes["multi-dimensional array flattened"] += 1
            else:
                classes["tag defined twice"] += 1
                assert name in twice or b[1] in twice, (name, fname, a, b)
        same += ok
    assert compared > 7000 and same / compared > 0.99, (compared, same, classes)
    print(f"{guest_capture.name}: {compared} structs/unions compared, {same} identical, differences: {dict(classes)}")
    enums = 0
    for name, e in ref["enums"].items():
        if name.startswith("unnamed_") or name not in ours["enums"]:
            continue
        enums += 1
        o = ours["enums"][name]
        if e["size"] == 0 or name in twice:
            continue  # declared only in DWARF; two enums of one tag
        assert o["size"] == e["size"], name
        m = 2 ** (8 * e["size"])
        assert {k: v % m for k, v in o["constants"].items()} == {k: v % m for k, v in e["constants"].items()}, name
    assert enums > 1000


def _defined_twice(cap) -> set[str]:
    """Tags the kernel's BTF defines more than once with different layouts
    (binfmt_elf / compat_binfmt_elf, two arm-smmu drivers, two pinctrl drivers' enums ...)."""
    import armvmi_cli

    s = armvmi_cli.open(cap.image, system_map=cap.system_map)
    try:
        src = s.vm().kernel.types._src
        n = collections.Counter(r[1] for r in map(src.record, src.ids()) if r[0] in ("struct", "union", "enum") and r[1])
    finally:
        s.close()
    return {k for k, c in n.items() if c > 1}


def test_isf_symbols_are_the_system_maps(guest_capture, built):
    ours, _, _ = built(guest_capture)
    sm = SystemMap.load(guest_capture.system_map)
    by_name = collections.defaultdict(set)
    for s in sm:
        by_name[s.name].add(s.address)
    syms = ours["symbols"]
    assert len(syms) > 40000
    wrong = [n for n, s in syms.items() if s["address"] not in by_name.get(n, ())]
    assert not wrong, wrong[:10]


def test_isf_round_trip_reads_the_guest(kaslr_capture, built, tmp_path, monkeypatch, capsys):
    """armvmi's own ISF reader, given the ISF armvmi wrote, reads the guest's processes."""
    _, _, path = built(kaslr_capture)
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    capsys.readouterr()
    assert main(["ps", str(kaslr_capture.image), "--isf", str(path), "--json"]) == 0
    (vm,) = json.loads(capsys.readouterr().out)["vms"]
    got = {(t["pid"], t["ppid"], t["comm"]) for t in vm["tasks"]}
    assert got == {(t["pid"], t["ppid"], t["comm_task_struct"]) for t in kaslr_capture.ground_truth["tasks"]}
