"""Is the guest kernel compromised: lsmod, dmesg, ebpf, sys_call_table, check —
against the rich capture's ground truth and its DKOM-tampered copy, with a
System.map and with nothing but the image (kallsyms without data symbols)."""

from __future__ import annotations

import json

import pytest

import armvmi_cli
from armvmi_cli.cli.app import main


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One armvmi cache for this module (a temporary one; the cold path is tests/core's)."""
    return tmp_path_factory.mktemp("armvmi-cache")


@pytest.fixture(autouse=True)
def _cache(monkeypatch, shared_cache):
    monkeypatch.setenv("ARMVMI_CACHE", str(shared_cache))


@pytest.fixture
def no_profiles(monkeypatch):
    """Neither System.map nor profile: kallsyms (functions only), BTF and VMCOREINFO from the image."""
    import armvmi_cli.symbols.profiles as profiles

    monkeypatch.setattr(profiles, "find_profiles", lambda dirs=None: [])


def _kernel(image, system_map=None):
    return armvmi_cli.open(image, system_map=system_map).vm().kernel


def _kernels(cap, image, no_map: bool):
    return _kernel(image) if no_map else _kernel(image, cap.system_map)


@pytest.mark.parametrize("no_map", [False, True], ids=["system_map", "kallsyms_only"])
def test_lsmod_is_the_ground_truth(rich_capture, no_map, request):
    from armvmi_cli.linux.module import lsmod

    if no_map:
        request.getfixturevalue("no_profiles")
    k = _kernels(rich_capture, rich_capture.image, no_map)
    if no_map:
        assert not k.has_symbol("modules") and k.info.symbols_source.startswith("kallsyms")
    recs, problems, complete = lsmod(k)
    assert complete and not problems
    gt = rich_capture.ground_truth["rich"]["modules"]
    got = sorted((m.name, m.size, m.refcount, m.state, f"{m.base:#x}", f"{m.module:#x}", m.taint) for m in recs)
    want = sorted((m["name"], m["size"], m["refcnt"], m["state"], m["base"], m["struct_module_addr_from_gnu_linkonce_this_module"],
                   m["taint"]) for m in gt)
    assert got == want
    assert all(not m.hidden and m.seen_by == ["module_list", "module_kset", "mod_tree", "memory_scan"] for m in recs)


def test_lsmod_cli_json_on_the_tampered_copy(rich_capture, capsys):
    rc = main(["lsmod", str(rich_capture.dkom_image), "-m", str(rich_capture.system_map), "--json"])
    doc = json.loads(capsys.readouterr().out)
    hm = rich_capture.tamper["hide_module"]
    assert rc == 1
    mods = doc["vms"][0]["modules"]
    hidden = [m for m in mods if m["hidden"]]
    assert [(m["name"], m["module"], m["base"]) for m in hidden] == [(hm["name"], hm["struct_module_va"], hm["core_base"])]
    assert hidden[0]["seen_by"] == ["module_kset", "mod_tree", "memory_scan"]
    assert sorted(m["name"] for m in mods if not m["hidden"]) == ["dummy", "ifb"]
    assert [(f["kind"], f["severity"], f["evidence"]["name"]) for f in doc["findings"]] == [("hidden-module", "critical", "nlmon")]


@pytest.mark.parametrize("no_map", [False, True], ids=["system_map", "kallsyms_only"])
def test_dmesg_is_the_ground_truth(rich_capture, no_map, request):
    from armvmi_cli.linux.printk import kernel_log

    if no_map:
        request.getfixturevalue("no_profiles")
    k = _kernels(rich_capture, rich_capture.image, no_map)
    recs, problems, complete = kernel_log(k)
    gt = rich_capture.ground_truth["rich"]
    assert complete and not problems
    assert [r.raw for r in recs] == gt["dmesg_raw"]
    assert [r.text for r in recs] == gt["dmesg"]
    assert [r.text for r in recs if r.text.startswith("armvmi-canary:")] == gt["canaries"]
    assert [r.seq for r in recs] == list(range(recs[0].seq, recs[0].seq + len(recs)))


def test_dmesg_cli_raw_and_jsonl(rich_capture, capsys):
    rc = main(["dmesg", str(rich_capture.image), "-r"])
    assert rc == 0
    assert capsys.readouterr().out.splitlines() == rich_capture.ground_truth["rich"]["dmesg_raw"]
    rc = main(["dmesg", str(rich_capture.image), "--jsonl"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 0 and rows[-1]["text"] == rich_capture.ground_truth["rich"]["canaries"][-1]
    assert {"seq", "ts", "level", "caller", "text", "vm"} <= set(rows[0])


@pytest.mark.parametrize("no_map", [False, True], ids=["system_map", "kallsyms_only"])
def test_syscall_tables_clean_and_hooked(rich_capture, no_map, request):
    from armvmi_cli.linux.module import lsmod
    from armvmi_cli.linux.syscalls import check_syscalls

    if no_map:
        request.getfixturevalue("no_profiles")
    tamper = rich_capture.tamper["syscall_hook"]
    clean = _kernels(rich_capture, rich_capture.image, no_map)
    res = check_syscalls(clean, lsmod(clean)[0])
    assert not res.hooks and not res.not_run
    assert [(t.name, len(t.entries)) for t in res.tables] == [("sys_call_table", 451), ("compat_sys_call_table", 451)]
    assert f"{res.tables[0].address:#x}" == tamper["table_va"]
    assert res.tables[0].how.startswith("code reference") if no_map else res.tables[0].how == "symbol"
    bad = _kernels(rich_capture, rich_capture.dkom_image, no_map)
    res = check_syscalls(bad, lsmod(bad)[0])
    assert [(h["index"], h["target"], h["module"], h["symbol"]) for h in res.hooks] == [
        (tamper["nr"], tamper["new_value"], tamper["new_symbol_module"], tamper["new_symbol"])]


def test_syscall_table_found_by_structure(rich_capture, no_profiles):
    from armvmi_cli.linux.syscalls import COMPAT, NATIVE, _by_structure

    k = _kernel(rich_capture.image)
    assert f"{_by_structure(k, NATIVE, True):#x}" == rich_capture.tamper["syscall_hook"]["table_va"]
    assert _by_structure(k, COMPAT, False) not in (None, _by_structure(k, NATIVE, True))


def test_ebpf_empty_is_a_real_empty(rich_capture, no_profiles, capsys):
    from armvmi_cli.linux.bpf import ebpf_view, find_idr

    k = _kernel(rich_capture.image)
    from armvmi_cli.symbols.system_map import SystemMap

    real = SystemMap.load(rich_capture.system_map)
    slide = k.info.slide
    assert find_idr(k, "prog_idr", ("bpf_prog_get_curr_or_next",)) == real.address("prog_idr") + slide
    assert find_idr(k, "map_idr", ("bpf_map_get_curr_or_next",)) == real.address("map_idr") + slide
    res = ebpf_view(k)
    assert res.complete and res.records == [] and not res.problems
    rc = main(["ebpf", str(rich_capture.image), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["vms"][0]["bpf"] == [] and doc["vms"][0]["complete"]


# -- check ------------------------------------------------------------------------------------------

def _check(argv, capsys):
    rc = main(["check", *argv, "--json"])
    return rc, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("no_map", [False, True], ids=["system_map", "kallsyms_only"])
def test_check_tampered_copy_has_exactly_the_three_findings(rich_capture, no_map, request, capsys):
    if no_map:
        request.getfixturevalue("no_profiles")
    argv = [str(rich_capture.dkom_image)] + ([] if no_map else ["-m", str(rich_capture.system_map)])
    rc, doc = _check(argv, capsys)
    t = rich_capture.tamper
    assert rc == 1
    got = sorted((f["kind"], f["severity"], f["vm"]) for f in doc["findings"])
    assert got == [("hidden-module", "critical", "guest"), ("hidden-process", "critical", "guest"),
                   ("syscall-hook", "critical", "guest")]
    ev = {f["kind"]: f["evidence"] for f in doc["findings"]}
    assert (ev["hidden-process"]["pid"], ev["hidden-process"]["comm"]) == (t["hide_process"]["pid"], t["hide_process"]["comm"])
    assert ev["hidden-process"]["task_struct"] == t["hide_process"]["task_struct_va"]
    assert (ev["hidden-module"]["name"], ev["hidden-module"]["module"]) == (t["hide_module"]["name"], t["hide_module"]["struct_module_va"])
    sh = t["syscall_hook"]
    assert (ev["syscall-hook"]["index"], ev["syscall-hook"]["target"], ev["syscall-hook"]["module"], ev["syscall-hook"]["symbol"],
            ev["syscall-hook"]["syscall"]) == (sh["nr"], sh["new_value"], sh["new_symbol_module"], sh["new_symbol"],
                                                sh["syscall"].removeprefix("__arm64_"))
    # a plain guest dump has no vCPU system registers: said, not skipped silently
    assert [(n["check"], n["vm"]) for n in doc["not_run"]] == [("vector-hook", "guest")]


@pytest.mark.parametrize("no_map", [False, True], ids=["system_map", "kallsyms_only"])
def test_check_clean_rich_dump_has_no_findings(rich_capture, no_map, request, capsys):
    if no_map:
        request.getfixturevalue("no_profiles")
    argv = [str(rich_capture.image)] + ([] if no_map else ["-m", str(rich_capture.system_map)])
    rc, doc = _check(argv, capsys)
    assert doc["findings"] == []
    assert rc == 5 and [n["check"] for n in doc["not_run"]] == ["vector-hook"]


def test_check_other_guest_captures_are_clean(guest_capture, capsys):
    rc, doc = _check([str(guest_capture.image)], capsys)
    assert doc["findings"] == []
    assert rc == 5 and [n["check"] for n in doc["not_run"]] == ["vector-hook"]


def test_check_nested_host_is_clean(nested_capture, capsys):
    rc, doc = _check([str(nested_capture.image), "--events", str(nested_capture.smclog)], capsys)
    assert (rc, doc["findings"], doc["not_run"]) == (0, [], [])
    assert set(doc["targets"]) == {"97", "host"} or len(doc["targets"]) == 2
    assert any("vector-hook: vCPU 0: VBAR_EL1" in c for c in doc["checked"])
    rc, doc = _check([str(nested_capture.image)], capsys)
    assert (rc, doc["findings"]) == (0, [])


def test_check_nested_host_without_any_symbols(nested_capture, no_profiles, capsys):
    rc, doc = _check([str(nested_capture.image)], capsys)
    assert (rc, doc["findings"], doc["not_run"]) == (0, [], [])
    assert any("VBAR_EL1" in c and "KPTI trampoline alias" in c for c in doc["checked"])
    assert sum("sys_call_table (451 entries, found by code reference from do_el0_svc)" in c for c in doc["checked"]) == 2


def test_check_jsonl_and_table(rich_capture, capsys):
    rc = main(["check", str(rich_capture.dkom_image), "--jsonl"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 1 and len(rows) == 3 and all({"kind", "severity", "vm", "evidence", "message"} <= set(r) for r in rows)
    rc = main(["check", str(rich_capture.dkom_image)])
    cap = capsys.readouterr()
    assert rc == 1 and "syscall-hook" in cap.out and "could not run vector-hook" in cap.err


def test_check_registry_takes_one_line(rich_capture, capsys, monkeypatch):
    from armvmi_cli import checks
    from armvmi_cli.view import Finding

    monkeypatch.setattr(checks, "CHECKS", list(checks.CHECKS))
    checks.register("always", lambda kernel: checks.Outcome(findings=[Finding("test-kind", "warning", None, "x")]))
    rc, doc = _check([str(rich_capture.image), "--check", "always"], capsys)
    assert rc == 1 and [(f["kind"], f["vm"]) for f in doc["findings"]] == [("test-kind", "guest")]
    assert main(["check", str(rich_capture.image), "--check", "nope"]) == 2


def test_bpf_idr_walk_is_the_pid_idr_walk(rich_capture, no_profiles):
    """The captures load no BPF, so the walk ebpf uses is checked on the one IDR
    whose contents the ground truth knows: init_pid_ns.idr holds one struct pid per thread."""
    from armvmi_cli.linux.bpf import _idr_objects
    from armvmi_cli.linux.pid import init_pid_ns

    k = _kernel(rich_capture.image)
    ns = init_pid_ns(k)
    problems = []
    pids = [k.object("pid", p).numbers[0].nr for p in _idr_objects(k, ns.address_ + ns.offsetof_("idr"), problems)]
    tids = sorted(t for task in rich_capture.ground_truth["tasks"] for t in task["threads"])
    assert not problems and sorted(pids) == tids


def test_check_vm_host_on_a_plain_guest_dump_is_a_usage_error(rich_capture, capsys):
    assert main(["check", str(rich_capture.image), "--vm", "host"]) == 2
    assert "no host kernel" in capsys.readouterr().err
