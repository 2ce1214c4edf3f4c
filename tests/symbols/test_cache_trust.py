"""Caches never change an answer and never run code (issue 10).

* an image whose BTF was altered (build id unchanged) must not poison a later
  analysis of the clean image;
* a crafted pickle (or marshal) in the cache directory is never loaded;
* ``[]``, ``null``, truncated or garbage cache files are rebuilt, and only
  ``--debug`` says so;
* an unusable cache directory ($HOME a file, ARMVMI_CACHE under a file, an
  unreadable $HOME) does not break commands, with or without ``--no-cache``.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import armvmi_cli
from armvmi_cli.cli.app import main
from armvmi_cli.symbols import cachefile
from armvmi_cli.symbols.btf import BtfSource
from armvmi_cli.symbols.system_map import SystemMap

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "snapshots" / "deb61-generic-nokaslr.armvmi"


# -- the cache file format ------------------------------------------------------
def test_cache_file_round_trip_and_rejects(tmp_path):
    f = tmp_path / "e"
    key = cachefile.digest(b"source bytes")
    cachefile.write(f, "k", 1, key, [b"abc", b"", b"\0\1"])
    assert cachefile.read(f, "k", 1, key) == [b"abc", b"", b"\0\1"]
    assert cachefile.read(f, "k", 1, cachefile.digest(b"other bytes")) is None  # built from other bytes
    assert cachefile.read(f, "k", 2, key) is None  # other version
    assert cachefile.read(f, "other", 1, key) is None  # other kind
    raw = f.read_bytes()
    for bad in (b"", b"[]", b"null", raw[:-1], raw + b"x", raw[:-2] + b"zz", os.urandom(len(raw))):
        f.write_bytes(bad)
        assert cachefile.read(f, "k", 1, key) is None, bad[:20]


def test_system_map_cache_keyed_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    lines = "".join(f"ffff8000080{i:05x} T sym{i}\n" for i in range(2000))
    m = tmp_path / "System.map"
    m.write_text("ffff800008000000 T _text\nffff800008010000 T _stext\n" + lines + "ffff800009000000 T _etext\nffff80000a000000 B _end\n")
    st = m.stat()
    a = SystemMap.load(m)
    assert a.address("sym5") == 0xFFFF800008000005
    b = SystemMap.load(m)  # from the cache
    assert b.address("sym5") == a.address("sym5") and len(b) == len(a)
    # Edited in place with size and mtime put back: a digest key sees it.
    m.write_text(m.read_text().replace("ffff800008000005 T sym5", "ffff800008000006 T sym5"))
    os.utime(m, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert m.stat().st_size == st.st_size
    assert SystemMap.load(m).address("sym5") == 0xFFFF800008000006


@pytest.mark.parametrize("content", [b"[]", b"null", b"", b"\x00" * 100, "pickle"])
def test_system_map_bad_cache_files_are_rebuilt(tmp_path, monkeypatch, content, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    m = tmp_path / "System.map"
    m.write_text("ffff800008000000 T _text\nffff800008010000 T _stext\n"
                 + "".join(f"ffff8000080{i:05x} t s{i}\n" for i in range(1200))
                 + "ffff800009000000 T _etext\nffff80000a000000 B _end\n")
    SystemMap.load(m)
    (entry,) = (tmp_path / "cache" / "system_map").iterdir()
    marker = tmp_path / "pwned"
    if content == "pickle":
        content = _evil_pickle(marker)
    entry.write_bytes(content)
    assert SystemMap.load(m).address("s7") == 0xFFFF800008000007
    assert not marker.exists()
    assert cachefile.read(entry, "system_map", 2, cachefile.file_digest(m)) is not None  # rewritten valid


def _evil_pickle(marker: Path) -> bytes:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Evil())


# -- BTF: the real capture ------------------------------------------------------
def _comms(image, system_map=None):
    s = armvmi_cli.open(image, system_map=system_map)
    from armvmi_cli.linux.ps import ps

    res = ps(s.vm().kernel)
    return {t.pid: t.comm for t in res.tasks if t.pid == t.tgid}


def _altered_copy(capture, dst: Path) -> Path:
    """The capture with task_struct.comm's offset moved in its BTF, build id as is."""
    s = armvmi_cli.open(capture.image, system_map=capture.system_map, use_cache=False)
    k = s.vm().kernel
    start, stop = k.symbol("__start_BTF"), k.symbol("__stop_BTF")
    blob = k.read(start, stop - start)
    src = BtfSource(blob)
    pos = src._offsets[src.structs["task_struct"]]
    vlen = int.from_bytes(blob[pos + 4:pos + 6], "little")
    for i in range(vlen):
        mpos = pos + 12 + 12 * i
        if src._name(int.from_bytes(blob[mpos:mpos + 4], "little")) == "comm":
            break
    else:
        raise AssertionError("no comm member")
    shutil.copyfile(capture.image, dst)
    with open(dst, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        at = mm.find(blob[:4096])
        assert at >= 0 and mm.find(blob[:4096], at + 1) < 0
        off_at = at + mpos + 8
        bits = int.from_bytes(mm[off_at:off_at + 4], "little")
        mm[off_at:off_at + 4] = (bits + 64).to_bytes(4, "little")  # comm 8 bytes later
    return dst


def test_altered_btf_does_not_poison_the_clean_image(nokaslr_capture, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    gt = {t["pid"]: t["comm_task_struct"] for t in nokaslr_capture.ground_truth["tasks"]}
    bad = _altered_copy(nokaslr_capture, tmp_path / "altered.elf")
    forged = _comms(bad, nokaslr_capture.system_map)
    assert forged != gt  # the alteration matters: the altered image reads other bytes as comm
    assert _comms(nokaslr_capture.image, nokaslr_capture.system_map) == gt  # cache shared, answer right
    assert _comms(bad, nokaslr_capture.system_map) == forged
    assert _comms(nokaslr_capture.image, nokaslr_capture.system_map) == gt  # both cached now
    assert len(list((tmp_path / "cache" / "btf").iterdir())) == 2


def test_crafted_btf_cache_is_never_run(nokaslr_capture, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    gt = {t["pid"]: t["comm_task_struct"] for t in nokaslr_capture.ground_truth["tasks"]}
    assert _comms(nokaslr_capture.image) == gt
    (entry,) = (tmp_path / "cache" / "btf").iterdir()
    marker = tmp_path / "pwned"
    for content in (_evil_pickle(marker), b"[]", b"null", entry.read_bytes()[:1000]):
        entry.write_bytes(content)
        # every name a build-id keyed cache could have had, too
        for name in ("x.v2.pickle", "x.v3"):
            (entry.parent / name).write_bytes(content)
        assert _comms(nokaslr_capture.image) == gt
        assert not marker.exists()
        assert entry.read_bytes()[:8] == cachefile.MAGIC  # rebuilt


def test_bad_cache_is_said_only_with_debug(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    assert main(["ps", str(SAMPLE)]) == 0
    capsys.readouterr()
    entries = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.parent.name in ("btf", "system_map")]
    assert entries
    for p in entries:
        p.write_bytes(b"null")
    assert main(["ps", str(SAMPLE)]) == 0
    quiet = capsys.readouterr()
    assert "cache" not in quiet.err
    for p in entries:
        p.write_bytes(b"[]")
    assert main(["--debug", "ps", str(SAMPLE)]) == 0
    assert "rebuilding" in capsys.readouterr().err


# -- an unusable cache directory --------------------------------------------------
def _run(env, *args):
    e = {k: v for k, v in os.environ.items() if k not in ("ARMVMI_CACHE", "XDG_CACHE_HOME", "XDG_DATA_HOME")}
    e.update(env)
    return subprocess.run([sys.executable, "-m", "armvmi_cli.cli.app", *args], env=e, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("where", ["home-is-a-file", "cache-under-a-file", "unreadable-home"])
@pytest.mark.parametrize("nocache", [False, True])
def test_unusable_home_or_cache_dir(tmp_path, where, nocache):
    f = tmp_path / "a-file"
    f.write_text("x")
    prefix = []
    if where == "home-is-a-file":
        env = {"HOME": str(f)}
    elif where == "cache-under-a-file":
        env = {"ARMVMI_CACHE": str(f / "cache"), "HOME": str(tmp_path)}
    else:
        home = tmp_path / "home"
        home.mkdir()
        home.chmod(0)
        env = {"HOME": str(home)}
        if os.geteuid() == 0:  # root ignores permissions: drop to nobody
            if not shutil.which("setpriv"):
                pytest.skip("running as root without setpriv")
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    args = ["ps", str(SAMPLE)] + (["--no-cache"] if nocache else [])
    if prefix:
        e = {k: v for k, v in os.environ.items() if k not in ("ARMVMI_CACHE", "XDG_CACHE_HOME", "XDG_DATA_HOME")}
        e.update(env)
        e["PYTHONPATH"] = str(REPO)
        r = subprocess.run(prefix + [sys.executable, "-m", "armvmi_cli.cli.app", *args], env=e,
                           capture_output=True, text=True, timeout=120, cwd="/")
    else:
        r = _run(env, *args)
    assert r.returncode == 0, r.stderr
    assert "cryptominer" in r.stdout and r.stderr == ""


@pytest.mark.parametrize("content", ["null", "[]", "7", '{"vmcoreinfo:guest (plain dump, no stage 2)": "abc"}',
                                     '{"vmcoreinfo:guest (plain dump, no stage 2)": [1e308, -5, "a", 99999999999999999999999]}',
                                     '{"vmcoreinfo:guest (plain dump, no stage 2)": [4096, 1]}'])
def test_image_facts_of_the_wrong_shape_are_ignored(tmp_path, monkeypatch, capsys, content):
    """The per-image facts (where VMCOREINFO was found) are hints, re-checked;
    a file of the wrong shape is absent, never exit 3 or another answer."""
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    assert main(["ps", str(SAMPLE), "--json"]) == 0
    want = json.loads(capsys.readouterr().out)["vms"][0]["tasks"]
    facts = list((tmp_path / "cache" / "images").glob("*.json"))
    assert facts
    for f in facts:
        f.write_text(content)
    assert main(["ps", str(SAMPLE), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["vms"][0]["tasks"] == want
