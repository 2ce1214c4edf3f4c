"""Interrupted or failing writes leave nothing behind; `read` streams."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from .helpers import REPO, cli, one_line_error


def _partial(d: Path) -> list[str]:
    return [p.name for p in d.iterdir() if "armvmi-partial" in p.name]


@pytest.fixture
def big_sparse(tmp_path) -> Path:
    """8 GiB of raw image that costs no disk (a sparse file): pack takes seconds."""
    p = tmp_path / "big.raw"
    with open(p, "wb") as f:
        f.write(b"\x01" * 4096)
        f.truncate(8 << 30)
    return p


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_during_pack_keeps_the_previous_output(sig, big_sparse, tmp_path):
    out = tmp_path / "out.armvmi"
    out.write_bytes(b"the previous snapshot")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "armvmi_cli", "snapshot", "pack", str(big_sparse), str(out), "--force", "--no-events"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not _partial(tmp_path):  # wait until it is writing
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(0.2)
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    line = one_line_error(err)
    assert signal.Signals(sig).name in line and "unchanged" in line
    assert out.read_bytes() == b"the previous snapshot"
    assert _partial(tmp_path) == []


def test_disk_full_removes_the_temporary_file(raw_image, tmp_path, capsys, monkeypatch):
    import armvmi_cli.memory.lime as lime

    def full(src, path):
        with open(path, "wb") as f:
            f.write(b"EMiL half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lime, "write_lime", full)
    out = tmp_path / "out.lime"
    rc, _, err = cli(capsys, "snapshot", "export", raw_image, out)
    assert rc == 2 and "no space left on device" in one_line_error(err) and "nothing was written" in err
    assert not out.exists() and _partial(tmp_path) == []
    out.write_bytes(b"old")
    rc, _, err = cli(capsys, "snapshot", "export", raw_image, out, "--force")
    assert rc == 2 and "unchanged" in one_line_error(err)
    assert out.read_bytes() == b"old" and _partial(tmp_path) == []


def test_file_size_limit_is_a_one_line_error(raw_image, tmp_path):
    """A real write failure (RLIMIT_FSIZE: EFBIG, like a full disk) in a child process."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    out = tmp_path / "out.lime"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "armvmi_cli", "snapshot", "export", str(raw_image), str(out)], capture_output=True,
                       text=True, timeout=60, env=env, preexec_fn=limit)
    assert r.returncode == 2, r.stderr
    assert "cannot write" in one_line_error(r.stderr)
    assert not out.exists() and _partial(tmp_path) == []


class _Sink:
    def __init__(self):
        self.n = 0
        self.first = ""

    def write(self, s):
        if not self.first:
            self.first = s[:200]
        self.n += len(s)
        return len(s)

    def flush(self):
        pass


@pytest.fixture
def raw32(tmp_path) -> Path:
    p = tmp_path / "r32.raw"
    with open(p, "wb") as f:
        f.write(bytes(range(256)) * 16)
        f.truncate(32 << 20)
    return p


def test_read_to_stdout_streams_in_constant_memory(raw32, monkeypatch):
    from armvmi_cli.cli.app import main

    sink = _Sink()
    monkeypatch.setattr(sys, "stdout", sink)
    tracemalloc.start()
    try:
        rc = main(["read", str(raw32), "--hpa", "0", hex(32 << 20)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 0
    assert sink.n == (32 << 20) // 16 * 86
    assert sink.first.startswith("0000000000000000  00 01 02 03")
    assert peak < 24 << 20, peak  # the whole dump would be ~2.7 GB of str; the data alone 32 MiB


def test_read_o_streams_in_constant_memory(raw32, tmp_path, capsys):
    from armvmi_cli.cli.app import main

    out = tmp_path / "bytes"
    tracemalloc.start()
    try:
        rc = main(["read", str(raw32), "--hpa", "0", hex(32 << 20), "-o", str(out)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 0
    assert out.read_bytes() == raw32.read_bytes()
    assert peak < 12 << 20, peak


def test_read_stops_quietly_on_a_closed_pipe(raw32):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-m", "armvmi_cli", "read", str(raw32), "--hpa", "0", hex(32 << 20)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = p.stdout.readline()
    p.stdout.close()
    try:
        err = p.stderr.read()
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert first.startswith(b"0000000000000000  00 01 02")
    assert p.returncode == 0 and err == b""


def test_hexdump_lines_are_unchanged():
    from armvmi_cli.cli.render import hexdump

    data = bytes(range(40))
    assert hexdump(data, 0xFFFF800000000008).splitlines() == [
        "ffff800000000008  00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f  |................|",
        "ffff800000000018  10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f  |................|",
        "ffff800000000028  20 21 22 23 24 25 26 27                          | !\"#$%&'|",
    ]
    assert hexdump(b"", 0) == ""
