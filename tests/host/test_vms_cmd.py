"""`armvmi vms IMAGE`: the replayed registry and the VMs KVM holds in memory, side by side."""

from __future__ import annotations

import json

from armvmi_cli.cli.app import main


def num(v):
    """JSON registers are hex strings, other numbers plain ints."""
    return int(v, 0) if isinstance(v, str) else v


def _vms(capsys, *args):
    rc = main(["vms", *map(str, args), "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_vms_with_log_pairs_registry_and_memory(nested_capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    gt = nested_capture.ground_truth["vms"][0]
    rc, out = _vms(capsys, nested_capture.image, "--events", nested_capture.smclog, "-m", nested_capture.system_map)
    assert rc == 0
    (logged,) = [r for r in out["vms"] if r["live"]]
    (mem,) = out["memory_vms"]
    assert logged["vm_id"] == mem["vm_id"] == gt["vm_id"] and mem["in_log"] is True
    assert num(mem["struct_kvm"]) == int(gt["struct_kvm_va"], 16) and num(mem["vttbr"]) == int(gt["vttbr"], 16)
    assert mem["vmm_pid"] == gt["vmm_pid"] and mem["vmm_comm"] == gt["vmm_comm"]


def test_vms_without_log_lists_memory_only(nested_capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    img = tmp_path / "host.elf"
    img.symlink_to(nested_capture.image)
    rc, out = _vms(capsys, img, "-m", nested_capture.system_map)
    assert rc == 0 and out["log"] is None and out["vms"] == []
    (mem,) = out["memory_vms"]
    assert mem["in_log"] is None and num(mem["vtcr"]) == int(nested_capture.ground_truth["vms"][0]["vtcr"], 16)


def test_vms_hidden_from_log_exits_1(nested_capture, tmp_path, monkeypatch, capsys):
    from armvmi_cli.firmware.smclog import read_log, write_log

    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    header, recs = read_log(str(nested_capture.smclog))
    log = tmp_path / "dropped.smclog"
    write_log(log, [r for r in recs if r.x1 == 0], header)
    rc, out = _vms(capsys, nested_capture.image, "--events", log, "-m", nested_capture.system_map)
    assert rc == 1
    assert [m["in_log"] for m in out["memory_vms"]] == [False]


def test_vms_on_a_log_alone_never_reads_memory(nested_capture, capsys):
    rc, out = _vms(capsys, nested_capture.smclog)
    assert rc == 0 and out["memory_vms"] == [] and len(out["vms"]) == 1
