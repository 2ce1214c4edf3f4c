"""Issue 11: never trust the log.  Every command that lists VMs takes them
from memory as well as from the log, with no extra option; a VM the log does
not know (never created, or destroyed) is listed, labelled, and a critical
``hidden-vm`` finding (exit 1).  Plain guest dumps stay as they were."""

from __future__ import annotations

import json

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.firmware.smclog import read_log, write_log
from armvmi_cli.firmware.vmi_service import VM_CREATE, VM_DESTROY, VMI_EVENT_FAST


def _gt_leaders(gt_vm):
    return {(t["pid"], t["ppid"], t["comm_task_struct"], t["uid"]) for t in gt_vm["tasks"]}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))


def _destroyed_log(cap, tmp_path):
    """The honest log, then a VM_DESTROY of its only VM: the log has no live VM."""
    header, recs = read_log(str(cap.smclog))
    create = next(r for r in recs if r.x1 == VM_CREATE)
    last = recs[-1]
    gone = last._replace(seq=last.seq + 1, timestamp_ns=last.timestamp_ns + 1000, x0=VMI_EVENT_FAST, x1=VM_DESTROY, x2=create.x2,
                         x3=0, x4=0, x5=0, x6=0, x7=0)
    path = tmp_path / "destroyed.smclog"
    write_log(path, list(recs) + [gone], header)
    return path


def _check_hidden(out, gt, why):
    (vm,) = out["vms"]
    assert vm["vm_id"] is None and vm["vm"].startswith("kvm-") and "NOT IN THE EVENT LOG" in vm["label"]
    assert {(t["pid"], t["ppid"], t["comm"], t["uid"]) for t in vm["tasks"]} == _gt_leaders(gt)
    (f,) = out["findings"]
    assert f["kind"] == "hidden-vm" and f["severity"] == "critical" and f["vm"] == vm["vm"]
    assert int(f["evidence"]["struct_kvm"], 16) == int(gt["struct_kvm_va"], 16)
    assert int(f["evidence"]["vttbr"], 16) == int(gt["vttbr"], 16) & ~1
    assert why in f["message"]


def test_ps_until_0_lists_the_vm_the_log_does_not_know(nested_capture, cache, capsys):
    """The log stops at DRIVER_INIT: today ps printed nothing and exited 0."""
    rc = main(["ps", str(nested_capture.image), "--events", str(nested_capture.smclog), "--until", "0", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    _check_hidden(out, nested_capture.ground_truth["vms"][0], "never created")


def test_ps_every_vm_destroyed_in_the_log(nested_capture, cache, capsys, tmp_path):
    rc = main(["ps", str(nested_capture.image), "--events", str(_destroyed_log(nested_capture, tmp_path)), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    _check_hidden(out, nested_capture.ground_truth["vms"][0], "destroyed")


def test_pstree_and_info_report_the_hidden_vm(nested_capture, cache, capsys):
    args = [str(nested_capture.image), "--events", str(nested_capture.smclog), "--until", "0", "--json"]
    assert main(["pstree", *args]) == 1
    tree = json.loads(capsys.readouterr().out)
    assert [f["kind"] for f in tree["findings"]] == ["hidden-vm"] and len(tree["vms"]) == 1
    assert main(["info", *args]) == 1
    info = json.loads(capsys.readouterr().out)
    assert [f["kind"] for f in info["findings"]] == ["hidden-vm"]
    assert "NOT IN THE EVENT LOG" in info["vms"][0]["label"]
    # Text output says so too.
    assert main(["ps", *args[:-1]]) == 1
    cap = capsys.readouterr()
    assert "NOT IN THE EVENT LOG" in cap.out and "hidden-vm" in cap.err


def test_honest_log_has_no_hidden_vm(nested_capture, cache, capsys):
    rc = main(["ps", str(nested_capture.image), "--events", str(nested_capture.smclog), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["findings"] == [] and [v["vm_id"] for v in out["vms"]] == [nested_capture.ground_truth["vms"][0]["vm_id"]]


def test_plain_guest_dump_invents_no_vm(guest_capture, cache, capsys):
    """The host probe on a guest dump finds the guest's own kernel; it has no
    VM, so nothing is invented: one guest, no finding, exit 0."""
    for cmd in ("ps", "info", "pstree"):
        rc = main([cmd, str(guest_capture.image), "--json"])
        out = json.loads(capsys.readouterr().out)
        assert rc == 0, cmd
        assert out.get("findings", []) == [] and [v["vm"] for v in out["vms"]] == ["guest"], cmd
