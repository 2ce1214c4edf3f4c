"""The shipped sample (no ../shared needed): `armvmi ps` on a sparse real image
picks its profile by banner and lists exactly the guest's own task list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from armvmi_cli.cli.app import main

SNAP = Path(__file__).resolve().parents[2] / "snapshots"
SAMPLE = SNAP / "deb61-generic-nokaslr.armvmi"
TRUTH = json.loads((SNAP / "deb61-generic-nokaslr.truth.json").read_text())


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))


def _ps_json(capsys, *extra):
    rc = main(["ps", str(SAMPLE), "--json", *extra])
    return rc, json.loads(capsys.readouterr().out)


def test_sample_ps_is_the_guest_task_list(capsys):
    rc, out = _ps_json(capsys)
    assert rc == 0
    (vm,) = out["vms"]
    assert vm["release"] == TRUTH["kernel_release"]
    assert vm["complete"] and not out["findings"] and not any(t["hidden"] for t in vm["tasks"])
    assert all(t["seen_by"] == ["task_list", "pid_idr"] for t in vm["tasks"])  # the PID IDR cross-view ran
    got = {(t["pid"], t["ppid"], t["comm"], t["uid"], t["kernel_thread"]) for t in vm["tasks"]}
    want = {(t["pid"], t["ppid"], t["comm_task_struct"], t["uid"], t["is_kernel_thread"]) for t in TRUTH["tasks"]}
    assert got == want


def test_sample_threads(capsys):
    rc, out = _ps_json(capsys, "--threads")
    assert rc == 0
    tids = {t["pid"] for t in out["vms"][0]["tasks"]}
    assert tids == {tid for t in TRUTH["tasks"] for tid in t["threads"]}


def test_sample_second_run_uses_the_types_cache(capsys, tmp_path):
    _ps_json(capsys)
    (entry,) = (tmp_path / "cache" / "btf").iterdir()  # keyed by the BTF blob's digest, not a pickle
    assert entry.read_bytes()[:8] == b"ARMVMIC\0"
    mtime = entry.stat().st_mtime_ns
    rc, out = _ps_json(capsys)
    assert entry.stat().st_mtime_ns == mtime  # used, not rewritten
    assert rc == 0 and len(out["vms"][0]["tasks"]) == len(TRUTH["tasks"])


def test_sample_hole_reads_are_clean_errors(capsys):
    # A page the sample does not hold: a one-line error, exit 4, no traceback.
    rc = main(["read", str(SAMPLE), "--hpa", "0x40000000", "16"])
    err = capsys.readouterr().err
    assert rc == 4 and "0x40000000" in err and "Traceback" not in err
