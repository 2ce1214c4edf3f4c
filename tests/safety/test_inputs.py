"""Hostile inputs end quickly, in bounded memory, with exit 2 and one line."""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path

import pytest

from armvmi_cli import inputs
from armvmi_cli.errors import ArmvmiError, SymbolError
from armvmi_cli.symbols.system_map import read_maybe_compressed

from .helpers import cli, dev_null, one_line_error, run


@pytest.fixture
def fifo(tmp_path) -> Path:
    p = tmp_path / "fifo"
    os.mkfifo(p)
    return p


@pytest.mark.parametrize("option", [None, "--events", "--system-map", "--isf", "--host-system-map"])
def test_fifo_input_fails_fast(option, fifo, sample):
    argv = ["ps", fifo] if option is None else ["ps", sample, option, fifo]
    r = run(*argv, timeout=60)  # a regression blocks in open(): the timeout fails the test
    assert r.returncode == 2, r.stderr
    assert "FIFO" in one_line_error(r.stderr)


def test_fifo_page_list_and_jsonl_fail_fast(fifo, raw_image, tmp_path):
    r = run("snapshot", "pack", raw_image, tmp_path / "o.armvmi", "--pages-from", fifo, timeout=60)
    assert r.returncode == 2 and "FIFO" in one_line_error(r.stderr)
    r = run("events", "import", fifo, tmp_path / "o.smclog", timeout=60)
    assert r.returncode == 2 and "FIFO" in one_line_error(r.stderr)
    r = run("events", fifo, timeout=60)
    assert r.returncode == 2 and "FIFO" in one_line_error(r.stderr)


@pytest.mark.parametrize("option", ["--system-map", "--isf"])
def test_character_devices_are_not_read_until_memory_runs_out(option, sample):
    r = run("ps", sample, option, "/dev/zero", timeout=60)
    assert r.returncode == 2
    assert "character device" in one_line_error(r.stderr)


def test_dev_null_image_and_events_say_what_is_wrong(sample, capsys):
    dev_null()
    rc, _, err = cli(capsys, "ps", "/dev/null")
    assert rc == 2 and "not a regular file" in one_line_error(err)
    rc, _, err = cli(capsys, "ps", sample, "--events", "/dev/null")
    line = one_line_error(err)
    assert rc == 2 and "character device" in line and "no such file" not in line
    rc, _, err = cli(capsys, "events", "/dev/null")
    assert rc == 2 and "character device" in one_line_error(err)


def test_long_names_and_eio(sample, capsys, tmp_path):
    long = "x" * 300
    for argv in (["ps", long], ["ps", sample, "-m", long], ["ps", sample, "--events", long], ["snapshot", "info", long]):
        rc, _, err = cli(capsys, *argv)
        assert rc == 2 and "too long" in one_line_error(err), argv
    # /proc/self/mem is a "regular file" whose read() at offset 0 fails with EIO
    for argv in (["ps", sample, "-m", "/proc/self/mem"], ["ps", sample, "--events", "/proc/self/mem"], ["ps", "/proc/self/mem"],
                 ["events", "/proc/self/mem"], ["events", "import", "/proc/self/mem", tmp_path / "o.smclog"]):
        rc, _, err = cli(capsys, *argv)
        line = one_line_error(err)
        assert rc == 2 and "/proc/self/mem" in line and "cannot write" not in line, argv


def test_an_input_must_be_a_path():
    from armvmi_cli.symbols.system_map import SystemMap

    for bad in (None, 5, True, 1.5):
        with pytest.raises(ArmvmiError):
            inputs.check_input(bad, "--system-map")
        with pytest.raises(ArmvmiError):
            SystemMap.load(bad)


# --- decompression bombs -----------------------------------------------------

BOMB = 8 << 20  # expands to 8 MiB; the test lowers the limit to 1 MiB to stay fast


def _zstd(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor(level=3).compress(data)


COMPRESSORS = {"xz": lzma.compress, "gz": gzip.compress, "bz2": bz2.compress, "zst": _zstd}


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_bombs_stop_at_the_limit(kind, tmp_path, monkeypatch):
    monkeypatch.setitem(inputs.LIMITS, "System.map", 1 << 20)
    p = tmp_path / f"System.map.{kind}"
    p.write_bytes(COMPRESSORS[kind](b"\0" * BOMB))
    with pytest.raises(SymbolError, match="decompresses to more than 1 MiB"):
        read_maybe_compressed(p)  # what every System.map/ISF/profile load goes through
    small = tmp_path / f"ok.{kind}"
    body = b"ffff800008000000 T _text\n" * 1000
    small.write_bytes(COMPRESSORS[kind](body) + (COMPRESSORS[kind](body) if kind != "zst" else b""))
    assert inputs.read_input(small, "System.map") == body * (1 if kind == "zst" else 2)  # concatenated streams too


def test_zstd_bomb_without_the_zstandard_module(tmp_path, monkeypatch):
    """cramjam's one-shot decompress aborts the process on a bomb: the fallback bounds its buffer."""
    import sys

    data = _zstd(b"\0" * BOMB)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    monkeypatch.setitem(inputs.LIMITS, "ISF", 1 << 20)
    p = tmp_path / "isf.json.zst"
    p.write_bytes(data)
    with pytest.raises(SymbolError, match="decompression bomb"):
        read_maybe_compressed(p, "ISF")
    monkeypatch.setitem(inputs.LIMITS, "ISF", 16 << 20)
    assert read_maybe_compressed(p, "ISF") == b"\0" * BOMB


def test_truncated_archives_are_bad_input(tmp_path):
    for kind, comp in COMPRESSORS.items():
        p = tmp_path / f"t.{kind}"
        p.write_bytes(comp(os.urandom(50000))[:-20])
        with pytest.raises(SymbolError):  # a regression guard for the streaming decoders
            read_maybe_compressed(p)


def test_real_size_zstd_bomb_through_the_cli(sample, tmp_path):
    """A small file that declares gigabytes: exit 2 naming the file, no SIGABRT, no MemoryError."""
    zstandard = pytest.importorskip("zstandard")
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    zero = b"\0" * (16 << 20)
    parts = [cobj.compress(zero) for _ in range(20)]  # 320 MiB of zeros, above the System.map limit
    p = tmp_path / "System.map.zst"
    p.write_bytes(b"".join(parts) + cobj.flush())
    assert p.stat().st_size < 1 << 20
    r = run("ps", sample, "-m", p, timeout=120)
    assert r.returncode == 2, r.stderr
    assert str(p) in one_line_error(r.stderr) and "decompress" in r.stderr


def test_oversized_plain_file_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setitem(inputs.LIMITS, "System.map", 1 << 20)
    p = tmp_path / "System.map"
    with open(p, "wb") as f:
        f.truncate(2 << 20)
    with pytest.raises(SymbolError, match="larger than any real"):
        read_maybe_compressed(p)
