"""The process views through stage 2: the rich guest composed into a KVM host
(a 4K and a 64K stage-2 granule, two VMs of the same capture), and the real
nested capture (its guest by --vm, the host kernel's own processes by --vm host).

User page tables and user pages are then guest-physical addresses that only
the VM's stage 2 resolves: every row must still equal the guest's /proc."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from armvmi_cli.cli.app import main

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixtures.compose import GuestSpec, S2Geometry, compose_host  # noqa: E402


@pytest.fixture(scope="module")
def rich_host(tmp_path_factory):
    from tests.conftest import RICH_CAPTURE, get_capture

    cap = get_capture(RICH_CAPTURE)
    d = tmp_path_factory.mktemp("rich-host")
    host = compose_host(d / "host.elf", [GuestSpec(1, cap, S2Geometry(4096, 40, 1)),
                                         GuestSpec(2, cap, S2Geometry(65536, 42, blocks=False))], seed=14)
    return cap, d / "host.elf", host


def _json(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, json.loads(cap.out)


@pytest.mark.parametrize("vm_id", [1, 2])
def test_maps_and_psaux_through_stage2(rich_host, vm_id, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    cap, image, host = rich_host
    assert host.vm(vm_id).geometry.granule == (4096 if vm_id == 1 else 65536)
    gt = {p["pid"]: p for p in cap.ground_truth["rich"]["processes"]}
    users = cap.ground_truth["rich"]["user_processes"]
    m = ["-m", cap.system_map]
    rc, doc = _json(capsys, "maps", image, "--vm", vm_id, *m, "--json")
    assert rc == 0
    (vm,) = doc["vms"]
    lines: dict = {}
    for r in vm["maps"]:
        lines.setdefault(r["pid"], []).append(r["line"])
    assert {p: lines.get(p) for p in users} == {p: gt[p]["maps"] for p in users}
    rc, doc = _json(capsys, "psaux", image, "--vm", vm_id, *m, "--json")
    assert rc == 0
    rows = {r["pid"]: r for r in doc["vms"][0]["processes"]}
    assert {p: (rows[p]["argv"], rows[p]["exe"]) for p in gt} == {p: (gt[p]["cmdline"], gt[p]["exe"]) for p in gt}
    rc = main(["malfind", str(image), "--vm", str(vm_id), *map(str, m), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and {f["evidence"]["pid"] for f in doc["findings"]} == {102}


def test_nested_guest_and_host_processes(nested_capture, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    gt = nested_capture.ground_truth
    args = [nested_capture.image, "-e", nested_capture.smclog, "-m", nested_capture.system_map]
    g = gt["vms"][0]
    rc, doc = _json(capsys, "psaux", *args, "--vm", g["vm_id"], "--json")
    assert rc == 0
    rows = {r["pid"]: r for r in doc["vms"][0]["processes"]}
    users = [t for t in g["tasks"] if not t["is_kernel_thread"]]
    assert {t["pid"] for t in g["tasks"]} == set(rows)
    for t in users:
        r = rows[t["pid"]]
        assert r["comm"] == t["comm_task_struct"] and r["argv"], t["pid"]
        assert r["exe"] and r["exe"].startswith("/")
    # The host kernel's processes: the VMM that runs the guest, its argv naming it.
    rc, doc = _json(capsys, "psaux", *args, "--vm", "host", "--json")
    assert rc == 0
    rows = {r["pid"]: r for r in doc["vms"][0]["processes"]}
    host_users = [t for t in gt["host"]["tasks"] if not t["is_kernel_thread"]]
    assert {t["pid"] for t in host_users} <= set(rows)
    qemu = [r for r in rows.values() if r["exe"] and r["exe"].endswith("/qemu-system-aarch64")]
    assert len(qemu) == 1
    argv = qemu[0]["argv"]
    assert argv[0].endswith("qemu-system-aarch64") and "-accel" in argv and "kvm" in argv
    assert any(a.startswith("g1") for a in argv)  # -name g1,...: which VM this is
    rc, doc = _json(capsys, "maps", *args, "--vm", "host", "--pid", qemu[0]["pid"], "--json")
    assert rc == 0
    paths = {r["path"] for r in doc["vms"][0]["maps"]}
    assert "/usr/bin/qemu-system-aarch64" in paths and "[stack]" in paths


def test_procdump_through_stage2_equals_the_guest_dump(rich_host, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    cap, image, _host = rich_host
    assert main(["procdump", str(cap.image), "--pid", "97", "-o", str(tmp_path / "plain")]) == 0
    assert main(["procdump", str(image), "--vm", "2", "-m", str(cap.system_map), "--pid", "97",
                 "-o", str(tmp_path / "s2")]) == 0
    capsys.readouterr()
    a = json.loads((tmp_path / "plain" / "index.json").read_text())
    b = json.loads((tmp_path / "s2" / "index.json").read_text())
    assert [v["runs"] for v in a["vmas"]] == [v["runs"] for v in b["vmas"]] and a["bytes"] == b["bytes"] > 0
    for v in a["vmas"]:
        for r in v["runs"]:
            if "file" in r:
                assert (tmp_path / "plain" / r["file"]).read_bytes() == (tmp_path / "s2" / r["file"]).read_bytes()


def test_page_missing_from_stage2_is_named(rich_capture, tmp_path, capsys, monkeypatch):
    """KVM fills stage 2 on the guest's first touch: a user page whose stage-2
    entry is invalid is reported as such (exit 4, a hole in procdump), never zeros."""
    import armvmi_cli
    from armvmi_cli.linux.mm import mm_layer
    from armvmi_cli.linux.proc import find_process

    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    image = tmp_path / "host.elf"
    compose_host(image, [GuestSpec(3, rich_capture, S2Geometry(65536, 42, blocks=False))], seed=3)
    s = armvmi_cli.open(image, system_map=rich_capture.system_map)
    vm = s.vm(3)
    k = vm.kernel
    t = find_process(k, 97)
    gt = {p["pid"]: p for p in rich_capture.ground_truth["rich"]["processes"]}[97]
    va = int(gt["maps_parsed"][0]["start"], 16)  # tls-gw's first text page
    gpa = mm_layer(k, t.mm.deref()).translate(va)
    leaf = vm.stage2.walk(gpa).steps[-1]
    assert leaf.kind == "page"
    hpa = leaf.descriptor_address
    s.close()
    from elftools.elf.elffile import ELFFile

    with open(image, "rb") as f:
        off = next(seg["p_offset"] + hpa - seg["p_paddr"] for seg in ELFFile(f).iter_segments()
                   if seg["p_type"] == "PT_LOAD" and seg["p_paddr"] <= hpa < seg["p_paddr"] + seg["p_filesz"])
    with open(image, "r+b") as f:
        f.seek(off)
        f.write(bytes(8))  # the stage-2 page entry, invalid
    m = ["-m", str(rich_capture.system_map)]
    rc = main(["read", str(image), "--vm", "3", *m, "--pid", "97", hex(va), "16"])
    cap = capsys.readouterr()
    assert rc == 4 and "stage 2" in cap.err and cap.out == ""
    rc = main(["procdump", str(image), "--vm", "3", *m, "--pid", "97", "-o", str(tmp_path / "pd")])
    capsys.readouterr()
    assert rc == 0
    index = json.loads((tmp_path / "pd" / "index.json").read_text())
    first = index["vmas"][0]["runs"][0]
    assert first["start"] == hex(va) and "stage 2" in first["hole"]
