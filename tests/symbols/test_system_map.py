"""System.map: parsing, compression, caching, stub/truncation detection, lookups."""

from __future__ import annotations

import gzip
import lzma
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armvmi_cli.errors import SymbolError
from armvmi_cli.symbols.system_map import SystemMap, symbol_rows

BASE = 0xFFFF800008000000


def synth_map(n=1500, drop=()) -> str:
    lines = ["0000000000000000 A _kernel_flags_le_hi32", "0000000000000200 A PECOFF_FILE_ALIGNMENT",
             f"{BASE:016x} T _text", f"{BASE + 0x10000:016x} T _stext"]
    for i in range(n):
        lines.append(f"{BASE + 0x10000 + 0x40 * (i + 1):016x} {'tT'[i % 2]} func_{i}")
    lines.append(f"{BASE + 0x10000 + 0x40 * (n + 1):016x} t func_0")  # duplicate static name
    lines.append(f"{BASE + 0x200000:016x} D _etext")
    lines.append(f"{BASE + 0x200000:016x} D linux_banner")
    lines.append(f"{BASE + 0x300000:016x} B _end")
    return "\n".join(l for l in lines if l.split()[2] not in drop) + "\n"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))


def test_parse_and_lookups(tmp_path):
    p = tmp_path / "System.map"
    p.write_text(synth_map())
    sm = SystemMap.load(p)
    assert len(sm) == 1500 + 8
    assert sm.address("_text") == BASE and sm["_stext"] == BASE + 0x10000
    assert sm.address("func_0") == BASE + 0x10040  # first of the duplicates
    assert sm.address("nope") is None
    with pytest.raises(SymbolError, match="'nope'"):
        sm["nope"]
    assert sm.lookup(BASE + 0x10045) == ("func_0", 5)
    assert sm.lookup(BASE + 0x200010) == ("_etext", 0x10)  # first name at a shared address
    assert sm.lookup(0x300) is None  # absolute symbols are not addresses
    assert sm.lookup(BASE - 1) is None
    assert [n for _, _, n in sm.grep(r"^func_14\d$")] == [f"func_{i}" for i in range(140, 150)]
    assert sm.grep("^linux_banner$") == [(BASE + 0x200000, "D", "linux_banner")]
    with pytest.raises(SymbolError, match="bad symbol pattern"):
        sm.grep("(")
    assert list(sm)[2] == (BASE, "T", "_text") and "func_9" in sm and not sm.is_stub


def test_symbol_rows_apply_the_slide_to_kernel_addresses_only(tmp_path):
    p = tmp_path / "System.map"
    p.write_text(synth_map())
    rows = symbol_rows(SystemMap.load(p), "^(_text|PECOFF_FILE_ALIGNMENT)$", 0x1230000)
    assert [(r.name, r.address, r.unslid) for r in rows] == [
        ("PECOFF_FILE_ALIGNMENT", 0x200, 0x200), ("_text", BASE + 0x1230000, BASE)]
    assert len(symbol_rows(SystemMap.load(p), None, 0)) == 1508


@pytest.mark.parametrize("suffix, pack", [
    (".xz", lambda b: lzma.compress(b)), (".gz", gzip.compress),
    (".zst", lambda b: __import__("zstandard").ZstdCompressor().compress(b)), ("", lambda b: b)])
def test_compressed_maps(tmp_path, suffix, pack):
    p = tmp_path / f"System.map{suffix}"
    p.write_bytes(pack(synth_map().encode()))
    assert SystemMap.load(p)["_end"] == BASE + 0x300000


def test_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    p = tmp_path / "System.map"
    p.write_text(synth_map())
    SystemMap.load(p)
    calls = []
    real = SystemMap.parse
    monkeypatch.setattr(SystemMap, "parse", classmethod(lambda cls, *a, **k: calls.append(1) or real(*a, **k)))
    assert SystemMap.load(p)["_text"] == BASE and calls == []  # served from cache
    p.write_text(synth_map().replace(f"{BASE:016x} T _text", f"{BASE + 0x1000:016x} T _text"))
    os.utime(p, ns=(1, 1))
    assert SystemMap.load(p)["_text"] == BASE + 0x1000 and calls == [1]  # changed file: re-parsed
    # a corrupt cache entry is a miss, not an error
    for f in (tmp_path / "cache" / "system_map").iterdir():
        f.write_bytes(b"garbage")
    assert SystemMap.load(p)["_text"] == BASE + 0x1000


def test_debian_stub_is_refused(tmp_path):
    p = tmp_path / "System.map-6.1.0-56-arm64"
    p.write_text("ffffffffffffffff B The real System.map is in the linux-image-6.1.0-56-arm64-dbg package\n")
    with pytest.raises(SymbolError, match=r"stub shipped in linux-image-\* \(1 lines\); use the one from the -dbg package"):
        SystemMap.load(p)
    assert SystemMap.load(p, check=False).is_stub


def test_truncated_and_tiny_maps_are_refused(tmp_path):
    p = tmp_path / "System.map"
    p.write_text(synth_map(drop=("_end",)))
    with pytest.raises(SymbolError, match="truncated.*_end missing"):
        SystemMap.load(p)
    p.write_text(synth_map(n=100))
    with pytest.raises(SymbolError, match="stub"):
        SystemMap.load(p)


@pytest.mark.parametrize("content, message", [
    (b"\x7fELF\x02\x01\x01" + bytes(100), "not a System.map"),
    (b"hello world\nthis is text\n", "not a System.map"),
    (b"\xfd7zXZ\x00garbage", "cannot decompress"),
])
def test_bad_input(tmp_path, content, message):
    p = tmp_path / "bad.map"
    p.write_bytes(content)
    with pytest.raises(SymbolError, match=message):
        SystemMap.load(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SymbolError, match="no such file"):
        SystemMap.load(tmp_path / "absent")
    with pytest.raises(SymbolError, match="directory"):
        SystemMap.load(tmp_path)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0x1000, max_value=0xFFFF), min_size=1, max_size=60), st.integers(0, 0x11000))
def test_lookup_equals_brute_force(addrs, probe):
    entries = [(a, "t", f"s{i}") for i, a in enumerate(addrs)]
    sm = SystemMap(entries)
    below = [(a, i) for i, a in enumerate(addrs) if a <= probe]
    if not below:
        assert sm.lookup(probe) is None
        return
    best = max(a for a, _ in below)
    first = min(i for a, i in below if a == best)
    assert sm.lookup(probe) == (f"s{first}", probe - best)


def test_real_system_maps(guest_capture):
    sm = SystemMap.load(guest_capture.system_map)
    text = sm["_text"]
    gt = guest_capture.ground_truth
    assert text == int(gt["kaslr"]["system_map__text"], 16)
    assert len(sm) > 50_000 and not sm.is_stub
    assert sm.lookup(sm["init_task"] + 0x10) == ("init_task", 0x10)
    assert sm.lookup(sm["__start_BTF"]) == ("__start_BTF", 0)
    lines = [l for l in guest_capture.system_map.read_text().splitlines() if l.strip()]
    assert len(sm) == len(lines)
    a, t, n = lines[len(lines) // 2].split()[:3]
    assert sm.address(n) is not None and (int(a, 16), t, n) in sm.grep("^" + n.replace(".", r"\.") + "$")
