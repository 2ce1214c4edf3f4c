"""armvmi on composed KVM hosts: the real guests' pages scattered through stage-2
tables of every granule, several VMs (two different kernels) per host, with the
``.smclog`` that records their lives.

For each live VM, ``ps`` must list exactly the thread-group leaders (and with
``--threads`` exactly the threads) of that guest's ground_truth.json, and
``translate --gva init_task`` must end at the host frame where the composer put
that guest page.
"""

from __future__ import annotations

import json

import pytest

import armvmi_cli
from armvmi_cli.cli.app import main
from armvmi_cli.linux.ps import ps

from .conftest import HOSTS, SLOW, get_host

ALL_HOSTS = list(HOSTS)
DEFAULT_HOSTS = ALL_HOSTS if SLOW else ["elf3", "lime2", "pa52"]


@pytest.fixture
def captures(nokaslr_capture, kaslr_capture):
    return {"nokaslr": nokaslr_capture, "kaslr": kaslr_capture}


@pytest.fixture
def env(captures, composed_cache, armvmi_cache, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(armvmi_cache))

    def host(name):
        return get_host(name, composed_cache, captures)

    return host


def _maps(captures):
    return [captures["nokaslr"].system_map, captures["kaslr"].system_map]


def _map_args(captures):
    return [a for m in _maps(captures) for a in ("--system-map", str(m))]


def _capture_of(host, vm_id, captures):
    return captures["nokaslr" if host.vm(vm_id).capture == captures["nokaslr"].name else "kaslr"]


def _gt_leaders(gt):
    return {(t["pid"], t["ppid"], t["comm_task_struct"], t["uid"], t["is_kernel_thread"]) for t in gt["tasks"]}


def _gt_threads(gt):
    return {(tid, t["pid"]) for t in gt["tasks"] for tid in t["threads"]}


def _image_args(host):
    args = [str(host.image), "--events", str(host.smclog)]
    if host.phys_base is not None:
        args += ["--phys-base", hex(host.phys_base)]
    return args


def _open(host, captures):
    return armvmi_cli.open(host.image, events=host.smclog, system_map=_maps(captures), phys_base=host.phys_base)


def _run(capsys, argv):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ---- the library ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL_HOSTS)
def test_library_ps_per_vm_matches_its_capture(name, env, captures):
    host = env(name)
    s = _open(host, captures)
    try:
        assert sorted(v.vm_id for v in s.vms) == [v.vm_id for v in host.vms]  # the destroyed VM is gone
        for vm in s.vms:
            cap = _capture_of(host, vm.vm_id, captures)
            gt = cap.ground_truth
            k = vm.kernel
            assert k.info.release == gt["kernel_release"]
            assert k.info.slide == int(gt["kaslr"]["slide"], 16)
            # the stage 2 armvmi decoded from the logged VTCR is the one composed
            geom = host.vm(vm.vm_id).geometry
            assert vm.stage2.geometry.granule == geom.granule and vm.stage2.geometry.ia_bits == geom.ipa_bits
            assert vm.stage2.geometry.start_level == host.vm(vm.vm_id).start_level
            res = ps(k, threads=True)
            assert res.complete and not res.problems, res.problems
            assert not res.hidden and not res.unlisted_in_idr
            assert {(t.pid, t.ppid, t.comm, t.uid, t.kernel_thread) for t in res.tasks if t.pid == t.tgid} == _gt_leaders(gt)
            assert {(t.pid, t.tgid) for t in res.tasks} == _gt_threads(gt)
            # drgn-like object access works through both translations
            init = next(iter(vm.tasks()))
            assert init.pid == 1 and init.real_parent.pid == 0 and int(init.mm.pgd) != 0
    finally:
        s.close()


# ---- the CLI -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DEFAULT_HOSTS)
def test_cli_ps_json_every_vm(name, env, captures, capsys):
    host = env(name)
    rc, out, err = _run(capsys, ["ps", *_image_args(host), *_map_args(captures), "--json"])
    assert rc == 0, err
    data = json.loads(out)
    assert [v["vm"] for v in data["vms"]] and sorted(v["vm_id"] for v in data["vms"]) == [v.vm_id for v in host.vms]
    assert all(v["vm"] == str(v["vm_id"]) for v in data["vms"])
    # A composed host has no host kernel: a VM the log hides cannot be ruled out, and ps says so.
    assert any("VMs in host memory not examined" in w for w in data["warnings"]), data["warnings"]
    for v in data["vms"]:
        cap = _capture_of(host, v["vm_id"], captures)
        assert v["release"] == cap.ground_truth["kernel_release"]
        got = {(t["pid"], t["ppid"], t["comm"], t["uid"], t["kernel_thread"]) for t in v["tasks"]}
        assert got == _gt_leaders(cap.ground_truth)
        assert v["complete"] and not data["findings"] and not any(t["hidden"] for t in v["tasks"])
        # each task_struct's host physical address is where the composer put that guest page
        s1 = {t["pid"]: t for t in v["tasks"]}
        assert all(t["task_struct_phys"] is not None for t in v["tasks"])
        assert len({t["task_struct_phys"] for t in s1.values()}) == len(s1)


@pytest.mark.parametrize("name", DEFAULT_HOSTS)
def test_cli_ps_threads_one_vm(name, env, captures, capsys):
    host = env(name)
    vm = host.vms[-1]
    rc, out, err = _run(capsys, ["ps", *_image_args(host), *_map_args(captures), "--threads", "--vm", str(vm.vm_id), "--json"])
    assert rc == 0, err
    (v,) = json.loads(out)["vms"]
    assert v["vm_id"] == vm.vm_id and v["vm"] == str(vm.vm_id)
    gt = _capture_of(host, vm.vm_id, captures).ground_truth
    assert {(t["pid"], t["tgid"]) for t in v["tasks"]} == _gt_threads(gt)


@pytest.mark.parametrize("name", DEFAULT_HOSTS)
def test_translate_init_task_ends_where_it_was_placed(name, env, captures, capsys):
    host = env(name)
    for vm in host.vms:
        cap = _capture_of(host, vm.vm_id, captures)
        gt = cap.ground_truth
        init_task = _system_map_symbol(cap.system_map, "init_task")
        gva = init_task + int(gt["kaslr"]["slide"], 16)
        gpa = gva - int(gt["vmcoreinfo"]["NUMBER(kimage_voffset)"], 16)
        rc, out, err = _run(capsys, ["translate", "--gva", "init_task", "--vm", str(vm.vm_id), *_image_args(host),
                                     *_map_args(captures), "--json"])
        assert rc == 0, err
        r = json.loads(out)
        assert [(k, int(a, 16)) for k, a in r["chain"]] == [("gva", gva), ("gpa", gpa), ("hpa", vm.hpa(gpa))]
        s1, s2 = r["walks"]
        assert s2["steps"][0]["level"] == vm.start_level
        assert s2["steps"][-1]["kind"] in ("page", "block")
        # a 2 MiB/32 MiB block ends the stage-2 walk one level early
        in_block = any(ipa <= gpa < ipa + size for ipa, _hpa, size in vm.blocks)
        assert (s2["steps"][-1]["level"] < 3) == in_block


def test_info_shows_each_vms_stage2(env, captures, capsys):
    host = env("elf3")
    rc, out, err = _run(capsys, ["info", *_image_args(host), *_map_args(captures), "--json"])
    assert rc == 0, err
    data = json.loads(out)
    assert data["host"] is not None and data["image"]["format"] == "elf" and len(data["image"]["ranges"]) == 2
    by_id = {v["vm_id"]: v for v in data["vms"]}
    for vm in host.vms:
        s2 = by_id[vm.vm_id]["stage2"]
        assert (s2["granule"], s2["ia_bits"], s2["start_level"], s2["concatenated_tables"]) == (
            vm.geometry.granule, vm.geometry.ipa_bits, vm.start_level, vm.concatenated)
        assert by_id[vm.vm_id]["kernel"]["release"] == _capture_of(host, vm.vm_id, captures).ground_truth["kernel_release"]


# ---- selection and errors ------------------------------------------------------------------------
def test_one_map_is_enough_for_the_vm_it_fits(env, captures, capsys):
    """VMs are opened lazily: --vm 1 needs only its own kernel's System.map."""
    host = env("elf3")
    rc, out, err = _run(capsys, ["ps", *_image_args(host), "--system-map", str(captures["nokaslr"].system_map),
                                 "--vm", "1", "--json"])
    assert rc == 0, err
    (v,) = json.loads(out)["vms"]
    assert {t["pid"] for t in v["tasks"]} == {t["pid"] for t in captures["nokaslr"].ground_truth["tasks"]}


def test_wrong_map_for_the_chosen_vm_is_one_line(env, captures, capsys):
    host = env("elf3")
    rc, out, err = _run(capsys, ["ps", *_image_args(host), "--system-map", str(captures["nokaslr"].system_map),
                                 "--vm", "2"])
    assert rc == 2
    assert err.startswith("armvmi: error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "6.1.0-56-cloud-arm64" in err


@pytest.mark.parametrize("vm_arg", ["42", "nonsense"])
def test_unknown_vm_is_a_one_line_error(vm_arg, env, captures, capsys):
    host = env("elf3")
    rc, out, err = _run(capsys, ["ps", *_image_args(host), *_map_args(captures), "--vm", vm_arg])
    assert rc == 2
    assert err.startswith("armvmi: error:") and len(err.strip().splitlines()) == 1
    assert vm_arg in err and all(str(v.vm_id) in err for v in host.vms)


def test_translate_needs_vm_on_a_multi_vm_host(env, captures, capsys):
    host = env("elf3")
    rc, out, err = _run(capsys, ["translate", "--gva", "init_task", *_image_args(host), *_map_args(captures)])
    assert rc == 2
    assert "--vm" in err and len(err.strip().splitlines()) == 1


def test_destroyed_vm_is_not_listed_but_its_id_is_reused(env, captures):
    host = env("elf3")
    (dead,) = host.destroyed
    s = _open(host, captures)
    try:
        live = s.vm(dead.vm_id)
        # the live VM with that id is the re-created one, with its own stage 2
        assert live.stage2.vttbr == host.vm(dead.vm_id).vttbr != dead.vttbr
        hist = [r for r in s.registry.history if r.vm_id == dead.vm_id]
        assert hist and hist[0].vttbr == dead.vttbr
        assert not s.events.anomalies
    finally:
        s.close()


def _system_map_symbol(path, name):
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == name:
                return int(parts[0], 16)
    raise KeyError(name)


def test_pa52_host_really_uses_52_bit_addresses(env, captures):
    """The fixture's own check: tables and guest pages above 2**48, so the LPA/LPA2 encodings matter."""
    host = env("pa52")
    for vm in host.vms:
        assert any(f >> 48 for f in vm.frames)
        assert vm.vttbr & 0x3C  # VTTBR_EL2 BADDR[51:48] lives in bits 5:2
    s = _open(host, captures)
    try:
        for vm in s.vms:
            assert vm.stage2.base >> 48
    finally:
        s.close()


def test_read_gva_gpa_and_hpa_agree(env, captures, capsys, tmp_path):
    """The same guest bytes by GVA (two walks), GPA (stage 2) and at the HPA the composer chose."""
    host = env("lime2")
    vm = host.vms[0]
    cap = _capture_of(host, vm.vm_id, captures)
    gt = cap.ground_truth
    gva = _system_map_symbol(cap.system_map, "init_task") + int(gt["kaslr"]["slide"], 16)
    gpa = gva - int(gt["vmcoreinfo"]["NUMBER(kimage_voffset)"], 16)
    got = {}
    for flag, addr in (("--gva", "init_task"), ("--gpa", hex(gpa)), ("--hpa", hex(vm.hpa(gpa)))):
        out = tmp_path / f"{flag[2:]}.bin"
        rc, _out, err = _run(capsys, ["read", *_image_args(host), *_map_args(captures), "--vm", str(vm.vm_id), flag,
                                      "-o", str(out), addr, "0x200"])
        assert rc == 0, err
        got[flag] = out.read_bytes()
    assert got["--gva"] == got["--gpa"] == got["--hpa"] and len(got["--hpa"]) == 0x200
    # and they are the capture's own bytes at that guest-physical address
    from armvmi_cli.memory import open_image

    with open_image(cap.image) as m:
        assert m.read(gpa, 0x200) == got["--hpa"]


def test_pstree_json_per_vm(env, captures, capsys):
    host = env("elf3")
    rc, out, err = _run(capsys, ["pstree", *_image_args(host), *_map_args(captures), "--json"])
    assert rc == 0, err
    trees = {v["vm_id"]: v["tree"] for v in json.loads(out)["vms"]}
    assert sorted(trees) == [v.vm_id for v in host.vms]

    def walk(nodes, parent, acc):
        for n in nodes:
            acc.add((n["pid"], parent))
            walk(n["children"], n["pid"], acc)
        return acc

    for vm in host.vms:
        gt = _capture_of(host, vm.vm_id, captures).ground_truth
        assert walk(trees[vm.vm_id], 0, set()) == {(t["pid"], t["ppid"]) for t in gt["tasks"]}
