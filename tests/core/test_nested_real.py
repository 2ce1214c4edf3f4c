"""The real nested capture: a KVM host's memory, its front-end event log, one guest.

One lookup and two translations: the guest's init_task GVA -> GPA (guest
stage 1) -> HPA (KVM stage 2), and the guest's process list, read from host
physical memory only.
"""

from __future__ import annotations

import json

from armvmi_cli.cli.app import main
import armvmi_cli
from armvmi_cli.linux.ps import ps


def _open(cap):
    return armvmi_cli.open(cap.image, events=cap.smclog, system_map=cap.system_map)


def test_nested_guest_ps_matches_ground_truth(nested_capture, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    gt = nested_capture.ground_truth["vms"][0]
    s = _open(nested_capture)
    (vm,) = s.vms
    assert vm.vm_id == gt["vm_id"]
    k = vm.kernel
    assert k.info.slide == int(gt["guest_kaslr_slide"], 16)
    res = ps(k, threads=True)
    assert res.complete and not res.hidden and not res.unlisted_in_idr
    leaders = {(t.pid, t.ppid, t.comm, t.uid, t.kernel_thread) for t in res.tasks if t.pid == t.tgid}
    assert leaders == {(t["pid"], t["ppid"], t["comm_task_struct"], t["uid"], t["is_kernel_thread"]) for t in gt["tasks"]}
    assert {(t.pid, t.tgid) for t in res.tasks} == {(t["tid"], t["tgid"]) for t in gt["threads"]}


def test_nested_init_task_two_translations(nested_capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    it = nested_capture.ground_truth["vms"][0]["guest_init_task"]
    rc = main(["translate", "--gva", "init_task", str(nested_capture.image), "--events", str(nested_capture.smclog),
               "--system-map", str(nested_capture.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["chain"] == [["gva", it["va"]], ["gpa", it["gpa"]], ["hpa", it["hpa"]]]
    # both walks are shown level by level; stage 2 starts at level 1 (40-bit IPA, 4K)
    s1, s2 = out["walks"]
    assert [st["level"] for st in s1["steps"]][0] == 0
    assert s2["steps"][0]["level"] == 1


def test_unmapped_gva_is_a_clean_fault(nested_capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["translate", "--gva", "0xffff800000000000", str(nested_capture.image), "--events", str(nested_capture.smclog),
               "--system-map", str(nested_capture.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 4
    assert out["fault"] and "level" in out["fault"]


def test_maps_are_matched_per_kernel_and_kpti_is_named(nested_capture, kaslr_capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    # the cloud kernel's map first: it must be skipped for this guest, and reported as fitting nothing
    rc = main(["info", str(nested_capture.image), "--events", str(nested_capture.smclog),
               "-m", str(kaslr_capture.system_map), "-m", str(nested_capture.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    (vm,) = out["vms"]
    assert vm["kernel"]["symbols"].endswith(str(nested_capture.system_map))
    assert out["unused_system_maps"] == [str(kaslr_capture.system_map)]
    gt_vcpu = nested_capture.ground_truth["vms"][0]["vcpus"][0]
    assert vm["vcpus"][0]["ttbr1"] == gt_vcpu["TTBR1_EL1"]
    assert vm["vcpus"][0]["ttbr1_points_at"].startswith(gt_vcpu["TTBR1_EL1_is"])


def _gt_leaders(gt_vm):
    return {(t["pid"], t["ppid"], t["comm_task_struct"], t["uid"]) for t in gt_vm["tasks"]}


def test_host_image_without_a_log_lists_the_guest_from_vm_list(nested_capture, tmp_path, monkeypatch, capsys):
    """Most incident captures have no front-end log: the VMs come from KVM's vm_list."""
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    img = tmp_path / "host.elf"
    img.symlink_to(nested_capture.image)  # no sibling .smclog here
    rc = main(["ps", str(img), "-m", str(nested_capture.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    (vm,) = out["vms"]
    gt = nested_capture.ground_truth["vms"][0]
    assert {(t["pid"], t["ppid"], t["comm"], t["uid"]) for t in vm["tasks"]} == _gt_leaders(gt)
    assert "kvm-" in str(vm["vm"])


def test_vm_hidden_from_the_log_is_still_listed(nested_capture, tmp_path, monkeypatch):
    """A log that never created the VM (a lying front-end): with the host's
    symbols, ps still shows the VM KVM holds, labelled as missing from the log."""
    from armvmi_cli.firmware.smclog import read_log, write_log

    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    header, recs = read_log(str(nested_capture.smclog))
    log = tmp_path / "dropped.smclog"
    write_log(log, [r for r in recs if r.x1 == 0], header)  # DRIVER_INIT only
    s = armvmi_cli.open(nested_capture.image, events=log, system_map=nested_capture.system_map,
                        host_system_map=nested_capture.system_map)
    (vm,) = s.vms
    assert vm.record is None and "NOT IN THE EVENT LOG" in vm.label
    res = ps(vm.kernel)
    assert {(t.pid, t.ppid, t.comm, t.uid) for t in res.tasks} == _gt_leaders(nested_capture.ground_truth["vms"][0])


def test_nested_guest_with_no_symbols_at_all(nested_capture, tmp_path, monkeypatch):
    """Guest kallsyms, BTF and init_task recovered through stage 2, from host memory."""
    from armvmi_cli.symbols import profiles

    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(profiles, "find_profiles", lambda dirs=None: [])  # the repo's profile would fit
    gt = nested_capture.ground_truth["vms"][0]
    k = armvmi_cli.open(nested_capture.image, events=nested_capture.smclog).vm().kernel
    assert k.info.symbols_source.startswith("kallsyms")
    assert k.symbol("init_task") == int(gt["guest_init_task"]["va"], 16)
    res = ps(k)
    assert res.complete and res.cross_view
    assert {(t.pid, t.ppid, t.comm, t.uid) for t in res.tasks} == _gt_leaders(gt)
