"""armvmi ps on real memory must list exactly what the running kernel showed.

Ground truth was printed from inside each guest just before the dump; compare
pids, ppids, comm (task_struct.comm), uids, kernel-thread flags and thread ids.
"""

from __future__ import annotations

import json


import armvmi_cli
from armvmi_cli.cli.app import main
from armvmi_cli.linux.ps import ps


def _gt_leaders(tasks):
    return {(t["pid"], t["ppid"], t["comm_task_struct"], t["uid"], t["is_kernel_thread"]) for t in tasks}


def _rows(res):
    return {(t.pid, t.ppid, t.comm, t.uid, t.kernel_thread) for t in res.tasks if t.pid == t.tgid}


def test_guest_ps_matches_ground_truth(guest_capture, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    gt = guest_capture.ground_truth
    s = armvmi_cli.open(guest_capture.image, system_map=guest_capture.system_map)
    vm = s.vm()
    res = ps(vm.kernel, threads=True)
    assert res.complete and not res.problems
    assert _rows(res) == _gt_leaders(gt["tasks"])
    want_tids = {tid for t in gt["tasks"] for tid in t["threads"]}
    assert {t.pid for t in res.tasks} == want_tids
    # States and flags too; pid 1 printed the list (R then) and sleeps in the dump (captures/README).
    by_pid = {t.pid: t for t in res.tasks}
    for t in gt["tasks"]:
        assert by_pid[t["pid"]].flags == t["flags"], t["pid"]
        if t["pid"] != 1:
            assert by_pid[t["pid"]].state == t["state"], t["pid"]
    # The cross-view agrees on an untampered guest.
    assert res.cross_view and not res.hidden and not res.unlisted_in_idr
    # The slide armvmi found is the one the kernel used.
    assert vm.kernel.info.slide == int(gt["kaslr"]["slide"], 16)


def test_guest_ps_cli_json(guest_capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["ps", str(guest_capture.image), "--system-map", str(guest_capture.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    (vm,) = out["vms"]
    got = {(t["pid"], t["ppid"], t["comm"], t["uid"], t["kernel_thread"]) for t in vm["tasks"]}
    assert got == _gt_leaders(guest_capture.ground_truth["tasks"])
    # every task_struct has its host physical address, inside the image
    assert all(t["task_struct_phys"] is not None for t in vm["tasks"])


def test_wrong_system_map_is_refused(kaslr_capture, nokaslr_capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["ps", str(kaslr_capture.image), "--system-map", str(nokaslr_capture.system_map)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "6.1.0-56-cloud-arm64" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_symbols_are_shown_slid(kaslr_capture, tmp_path, monkeypatch, capsys):
    from armvmi_cli.symbols.system_map import SystemMap

    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    slide = int(kaslr_capture.ground_truth["kaslr"]["slide"], 16)
    sm = SystemMap.load(kaslr_capture.system_map)
    rc = main(["symbols", str(kaslr_capture.image), "-m", str(kaslr_capture.system_map), "--grep", "^(init_task|schedule)$", "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0
    assert {r["name"]: int(r["address"], 16) for r in rows} == {n: sm.address(n) + slide for n in ("init_task", "schedule")}
    rc = main(["symbols", str(kaslr_capture.image), "-m", str(kaslr_capture.system_map), "--address", hex(sm.address("schedule") + slide + 4)])
    assert rc == 0 and "schedule+0x4" in capsys.readouterr().out
