"""Types from a Volatility 3 ISF instead of BTF: same answer; another kernel's ISF is refused."""

from __future__ import annotations

import json

from armvmi_cli.cli.app import main


def test_ps_with_the_kernels_isf(guest_capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["ps", str(guest_capture.image), "--isf", str(guest_capture.isf), "--json"])
    out = json.loads(capsys.readouterr().out)["vms"][0]
    assert rc == 0
    want = {(t["pid"], t["ppid"], t["comm_task_struct"], t["uid"]) for t in guest_capture.ground_truth["tasks"]}
    assert {(t["pid"], t["ppid"], t["comm"], t["uid"]) for t in out["tasks"]} == want


def test_another_kernels_isf_is_refused(nokaslr_capture, kaslr_capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["ps", str(nokaslr_capture.image), "--isf", str(kaslr_capture.isf)])
    err = capsys.readouterr().err
    assert rc == 2 and "6.1.0-56-cloud-arm64" in err and "6.1.0-56-arm64" in err and len(err.strip().splitlines()) == 1
