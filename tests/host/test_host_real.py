"""Host introspection and ``verify`` on the real nested capture.

The honest log must give no finding at all; each tampering (of the log, or of
a copy of the image) must give exactly its own finding kind and nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from armvmi_cli.firmware.smclog import SmcLogReader, write_log
from armvmi_cli.host.kernel import host_kernel
from armvmi_cli.host.kvm import vm_list
from armvmi_cli.host.verify import verify_report, with_events
from armvmi_cli.host.vms import host_vm_rows, memory_vms
from armvmi_cli.session import Session
from tests.conftest import NESTED_CAPTURE, get_capture

DRIVER_INIT, VM_CREATE, VM_RUN_CHANGE = 0, 1, 2


def h(v) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


@pytest.fixture(scope="module")
def cap():
    return get_capture(NESTED_CAPTURE)


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARMVMI_CACHE", str(tmp_path_factory.mktemp("armvmi-cache")))
        yield


@pytest.fixture(scope="module")
def honest(cap, cache_env):
    s = Session.open(cap.image, events=cap.smclog, system_map=[cap.system_map])
    host_kernel(s, cap.system_map)
    yield s
    s.close()


@pytest.fixture(scope="module")
def records(cap):
    r = SmcLogReader(cap.smclog)
    recs = list(r)
    header = r.header
    r.close()
    return header, recs


def log_of(tmp_path, records, name="tampered.smclog"):
    header, recs = records
    path = tmp_path / name
    write_log(path, [r._replace(seq=i) for i, r in enumerate(recs)], header)
    return path


def kinds(rep) -> set[str]:
    return {f.kind for f in rep.findings}


# -- vm_list facts --------------------------------------------------------------------------------------
def test_host_kernel_is_the_host_not_the_guest(honest, cap):
    gt = cap.ground_truth
    hk = host_kernel(honest)
    facts = gt["host"]["facts"]
    assert hk.kimage_voffset == h(facts["kimage_voffset"])
    assert hk.memstart_addr == h(facts["memstart_addr"])
    assert hk.page_offset == h(facts["PAGE_OFFSET"])
    assert hk.slide == h(gt["host"]["kaslr_slide"])
    assert hk.swapper_pa == h(gt["host"]["swapper_pg_dir_pa"])
    # the guest's VMCOREINFO is in host RAM too, and was rejected by the page-table self-check
    rejected = {c.vmcoreinfo.kimage_voffset for c in hk.rejected if not c.confirmed}
    assert h(gt["vms"][0]["guest_kimage_voffset"]) in rejected
    assert hk.log_mismatches(honest.host) == []


def test_vm_list_matches_ground_truth(honest, cap):
    g = cap.ground_truth["vms"][0]
    scan = vm_list(host_kernel(honest))
    assert scan.complete and not scan.problems
    assert scan.vhe is False and "linear map" in scan.vhe_source
    (m,) = scan.vms
    assert m.address == h(g["struct_kvm_va"]) and m.pa == h(g["struct_kvm_pa"])
    assert (m.vmid, m.vmid_raw, m.vmid_bits) == (g["vmid"], g["kvm_arch_mmu_vmid_raw"], 8)
    assert m.vttbr == h(g["vttbr"]) and m.pgd_phys == h(g["stage2_base"]) and m.vtcr == h(g["vtcr"])
    assert (m.ia_bits, m.start_level) == (g["ipa_bits"], g["start_level"])
    assert m.pgt_pgd == h(g["kvm_pgtable"]["pgd_va"]) and m.pgt_pgd_pa == m.pgd_phys
    assert (m.vmm_pid, m.vmm_comm, m.stats_id) == (g["vmm_pid"], g["vmm_comm"], g["stats_id"])
    assert sorted((s.id, s.base_gpa, s.size, s.userspace_addr, s.flags) for s in m.memslots) == sorted(
        (s["id"], h(s["base_gpa"]), h(s["size"]), h(s["userspace_addr"]), s["flags"]) for s in g["memslots"])
    assert [s.base_gfn for s in m.memslots] == sorted(s.base_gfn for s in m.memslots)  # rb-tree in-order
    (v,) = m.vcpus
    gv = g["vcpus"][0]
    assert (v.idx, v.address, v.tid) == (gv["vcpu_idx"], h(gv["struct_kvm_vcpu_va"]), gv["thread_tid"])
    assert {r: v.regs[r] for r in ("TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")} == {
        r: h(gv[r]) for r in ("TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")}
    assert not m.problems


class _UnfilledStage2:
    """Stage 2 before the guest touched anything: every IPA faults."""

    def translate(self, ipa):
        from armvmi_cli.errors import TranslationFault

        raise TranslationFault(1, "invalid descriptor 0x0", ipa, "stage2")


def test_gpa_to_hpa_stage2_and_memslot_fallback(honest, cap):
    it = cap.ground_truth["vms"][0]["guest_init_task"]
    (m,) = vm_list(host_kernel(honest)).vms
    gpa, hpa = h(it["gpa"]), h(it["hpa"])
    assert m.gpa_to_hpa(gpa) == (hpa, "stage2")
    # KVM fills stage 2 lazily; where it has no entry the memslot and the VMM's own page
    # tables must land on the same host page.
    saved = m._stage2
    try:
        m._stage2 = _UnfilledStage2()
        assert m.gpa_to_hpa(gpa) == (hpa, "memslot+vmm-page-tables")
        with pytest.raises(Exception, match="no stage-2 entry"):
            m.gpa_to_hpa(0x1000)  # flash slot the VMM never touched
    finally:
        m._stage2 = saved


def test_vms_rows_without_a_log(cap, tmp_path, cache_env):
    img = tmp_path / "host.elf"
    img.symlink_to(cap.image)  # no sibling .smclog
    with Session.open(img, system_map=[cap.system_map]) as s:
        assert s.events is None
        (row,) = host_vm_rows(s)
    g = cap.ground_truth["vms"][0]
    assert row["in_log"] is False and row["vm_id"] is None and row["label"] == g["stats_id"]
    assert (row["vttbr"], row["struct_kvm"], row["vmm_comm"]) == (h(g["vttbr"]), h(g["struct_kvm_va"]), g["vmm_comm"])
    assert (row["ram_base"], row["ram_size"]) == (h(g["guest_ram_base"]), h(g["guest_ram_size"]))
    assert row["vhe"] is False


def test_verify_without_log_runs_memory_checks(cap, tmp_path, cache_env):
    img = tmp_path / "host.elf"
    img.symlink_to(cap.image)
    with Session.open(img, system_map=[cap.system_map]) as s:
        rep = verify_report(s, cap.system_map)
    assert rep.findings == [] and not rep.partial
    assert any("no event log" in x for x in rep.skipped)
    assert any("task list and PID IDR agree" in x for x in rep.checked)


# -- the honest log ---------------------------------------------------------------------------------------
def test_honest_log_has_no_findings(honest, cap):
    rep = verify_report(honest, cap.system_map)
    assert rep.findings == [], [f.message for f in rep.findings]
    assert not rep.skipped and not rep.partial
    vms = memory_vms(honest)
    assert [v.vm_id for v in vms] == [cap.ground_truth["vms"][0]["vm_id"]]


def test_cli_verify_honest_exit_0(cap, capsys, cache_env):
    from armvmi_cli.cli.app import main

    rc = main(["verify", str(cap.image), "--events", str(cap.smclog), "-m", str(cap.system_map),
               "--host-system-map", str(cap.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["findings"] == [] and out["partial"] is False


def test_without_host_symbols_verify_is_partial_not_clean(cap, capsys, cache_env, monkeypatch):
    """No System.map and vm_list not found in KVM's code either: say so, exit 5, no made-up findings."""
    from armvmi_cli.cli.app import main
    from armvmi_cli.host import kvm

    from armvmi_cli.symbols import profiles

    monkeypatch.setattr(kvm, "VM_LIST_USERS", ())
    monkeypatch.setattr(profiles, "find_profiles", lambda dirs=None: [])  # the repo's profile would fit this host
    rc = main(["verify", str(cap.image), "--events", str(cap.smclog), "--no-guests", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 5 and out["partial"] is True and out["findings"] == []
    assert any("vm_list" in x for x in out["skipped"])


# -- tampered logs ----------------------------------------------------------------------------------------
def _tamper(honest, cap, tmp_path, records, edit):
    header, recs = records
    recs = edit(list(recs))
    s = with_events(honest, log_of(tmp_path, (header, recs)))
    return verify_report(s, cap.system_map)


def _event(r):
    return r.x1


def test_dropped_vm_create_is_a_hidden_vm(honest, cap, tmp_path, records):
    rep = _tamper(honest, cap, tmp_path, records, lambda rs: [r for r in rs if _event(r) == DRIVER_INIT])
    assert kinds(rep) == {"hidden-vm"}
    (f,) = rep.findings
    assert f.severity == "critical" and f.details["struct_kvm"] == h(cap.ground_truth["vms"][0]["struct_kvm_va"])


def test_changed_vttbr_is_a_vttbr_mismatch(honest, cap, tmp_path, records):
    def edit(rs):
        return [r._replace(x4=r.x4 ^ (3 << 48)) if _event(r) == VM_CREATE else r for r in rs]

    rep = _tamper(honest, cap, tmp_path, records, edit)
    assert kinds(rep) == {"vttbr-mismatch"}
    assert rep.findings[0].details["memory"] == h(cap.ground_truth["vms"][0]["vttbr"])


def test_phantom_vm(honest, cap, tmp_path, records):
    def edit(rs):
        create = next(r for r in rs if _event(r) == VM_CREATE)
        ghost = create._replace(x2=4242, x3=create.x3 + 0x100000, x4=(7 << 48) | 0x7FF0_0000, x6=0x4000_0000,
                                timestamp_ns=rs[-1].timestamp_ns + 10**9)
        return rs + [ghost]

    rep = _tamper(honest, cap, tmp_path, records, edit)
    assert kinds(rep) == {"phantom-vm"}, [f.message for f in rep.findings]
    assert rep.findings[0].vm_id == 4242


@pytest.mark.parametrize("field,kind", [("ram", "ram-mismatch"), ("ram-at-0", "ram-mismatch"), ("vtcr", "vtcr-mismatch"), ("kvm", "kvm-address-mismatch"),
                                        ("tcr", "vcpu-registers-mismatch"), ("host", "host-mismatch")])
def test_each_field_gives_its_own_finding(honest, cap, tmp_path, records, field, kind):
    def edit(rs):
        out = []
        for r in rs:
            ev = _event(r)
            if ev == VM_CREATE and field == "ram":
                r = r._replace(x7=r.x7 * 2)
            elif ev == VM_CREATE and field == "ram-at-0":
                r = r._replace(x6=0)  # RAM of the right size, over the flash memslots
            elif ev == VM_CREATE and field == "vtcr":
                r = r._replace(x5=r.x5 ^ (1 << 19))  # VS: claims 16-bit VMIDs
            elif ev == VM_CREATE and field == "kvm":
                r = r._replace(x3=r.x3 + 0x2000)
            elif ev == VM_RUN_CHANGE and field == "tcr":
                r = r._replace(x6=r.x6 ^ 0x10)
            elif ev == DRIVER_INIT and field == "host":
                r = r._replace(x4=r.x4 + 0x200000)
            out.append(r)
        return out

    rep = _tamper(honest, cap, tmp_path, records, edit)
    assert kinds(rep) == {kind}, [f.message for f in rep.findings]


def test_records_after_capture_and_gaps(honest, cap, tmp_path, records):
    header, recs = records
    late = [r._replace(timestamp_ns=r.timestamp_ns + 500 * 10**9) if _event(r) == VM_RUN_CHANGE else r for r in recs]
    rep = verify_report(with_events(honest, log_of(tmp_path, (header, late))), cap.system_map)
    assert kinds(rep) == {"log-after-capture"}
    gap = [r._replace(seq=r.seq + (5 if _event(r) == VM_RUN_CHANGE else 0)) for r in recs]
    path = tmp_path / "gap.smclog"
    write_log(path, gap, header)
    rep = verify_report(with_events(honest, path), cap.system_map)
    assert kinds(rep) == {"sequence-gap"}


# -- tampered copies of the image ----------------------------------------------------------------------------
def _elf_loads(path):
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        return [(s["p_paddr"], s["p_offset"], s["p_filesz"]) for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD"]


def _patch(path, loads, pa: int, value: int) -> None:
    for start, off, size in loads:
        if start <= pa < start + size:
            with open(path, "r+b") as f:
                f.seek(off + pa - start)
                f.write(value.to_bytes(8, "little"))
            return
    raise AssertionError(f"PA {pa:#x} not in the image")


def _copy_image(cap, tmp_path):
    dst = tmp_path / "host-copy.elf"
    subprocess.run(["cp", "--sparse=always", str(cap.image), str(dst)], check=True)
    os.chmod(dst, 0o644)
    return dst


def test_unlinked_guest_task_is_a_hidden_process(honest, cap, tmp_path):
    from armvmi_cli.linux.tasks import for_each_task

    (vm,) = memory_vms(honest)
    k = vm.kernel
    want = next(t for t in cap.ground_truth["vms"][0]["tasks"] if not t["is_kernel_thread"] and t["pid"] > 1)
    task = next(t for t in for_each_task(k) if t.pid == want["pid"])
    off = k.offsetof("task_struct", "tasks")
    node = task.address_ + off
    nxt, prv = k.read_u64(node), k.read_u64(node + 8)
    img = _copy_image(cap, tmp_path)
    loads = _elf_loads(img)
    _patch(img, loads, vm.to_host(prv)[-1][1], nxt)  # prev->next = next
    _patch(img, loads, vm.to_host(nxt + 8)[-1][1], prv)  # next->prev = prev
    with Session.open(img, events=cap.smclog, system_map=[cap.system_map]) as s:
        rep = verify_report(s, cap.system_map)
    assert kinds(rep) == {"hidden-process"}, [f.message for f in rep.findings]
    (f,) = rep.findings
    assert (f.vm_id, f.details["pid"], f.details["comm"]) == (vm.vm_id, want["pid"], want["comm_task_struct"])


def test_old_log_against_newer_image_is_a_destroyed_vm(honest, cap, tmp_path, capsys):
    """The image no longer has the VM on vm_list (its struct kvm is still in memory, as after
    kvm_destroy_vm's list_del); the older log still says it is live."""
    from armvmi_cli.cli.app import main

    hk = host_kernel(honest)
    head = hk.kernel.symbol("vm_list")
    head_pa = hk.va_to_pa(head)
    img = _copy_image(cap, tmp_path)
    loads = _elf_loads(img)
    _patch(img, loads, head_pa, head)
    _patch(img, loads, head_pa + 8, head)
    rc = main(["verify", str(img), "--events", str(cap.smclog), "-m", str(cap.system_map),
               "--host-system-map", str(cap.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert {f["kind"] for f in out["findings"]} == {"vm-destroyed"}
    assert out["findings"][0]["vm_id"] == cap.ground_truth["vms"][0]["vm_id"]


def test_vm_list_found_from_code_without_data_symbols(cap, cache_env, tmp_path, monkeypatch):
    """No System.map: kallsyms on this kernel has functions only, yet vm_list is found
    (ADRP/ADD in vm_stat_get & co.) and the VM listed."""
    from armvmi_cli.host.kvm import vm_list_head
    from armvmi_cli.symbols import profiles
    from armvmi_cli.symbols.system_map import SystemMap

    monkeypatch.setattr(profiles, "find_profiles", lambda dirs=None: [])  # the repo's profile would fit this host

    img = tmp_path / "host.elf"
    img.symlink_to(cap.image)
    with Session.open(img) as s:
        hk = host_kernel(s)
        assert "kallsyms" in hk.kernel.info.symbols_source and not hk.kernel.has_symbol("vm_list")
        want = SystemMap.load(cap.system_map).address("vm_list") + hk.slide
        assert vm_list_head(hk) == want
        (row,) = host_vm_rows(s)
    assert row["vttbr"] == h(cap.ground_truth["vms"][0]["vttbr"])
