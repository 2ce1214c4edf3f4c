"""psaux / envars / maps / malfind / read --pid / procdump on the real rich capture,
against what the guest's own /proc printed (ground_truth["rich"]["processes"]).

Run with its System.map and without it (kallsyms recovered from memory).

Differences /proc itself introduces, and how each is handled here:
- kernel-thread names: /proc/PID/comm shows the workqueue worker's current
  work (``kworker/0:1-events``) and a kthread's full name
  (``rcu_tasks_rude_kthread``); memory holds only ``task_struct.comm``, 15
  bytes.  ``comm`` is compared for user processes, and for kernel threads as
  a prefix of what /proc showed.
- ``maps_parsed`` writes addresses and offsets zero-padded (``0x00400000``);
  they are compared as numbers.
- ``[vvar]``/``[vdso]`` come from the special mapping's name and
  ``/memfd:payload (deleted)`` from the dentry's d_dname; armvmi reads the same
  sources, so those lines must match exactly, padding included.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from armvmi_cli.cli.app import main


@pytest.fixture(params=["system-map", "kallsyms"])
def rich(request, rich_capture, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    args = ["-m", str(rich_capture.system_map)] if request.param == "system-map" else []
    return rich_capture, args


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, cap


def _gt(cap):
    return {p["pid"]: p for p in cap.ground_truth["rich"]["processes"]}


def _user_pids(cap):
    return cap.ground_truth["rich"]["user_processes"]


def test_psaux_matches_proc(rich, capsys):
    cap, args = rich
    rc, out = _run(capsys, "psaux", cap.image, *args, "--json")
    assert rc == 0, out.err
    vm = json.loads(out.out)["vms"][0]
    rows = {r["pid"]: r for r in vm["processes"]}
    gt = _gt(cap)
    assert set(rows) == set(gt)
    for pid, p in gt.items():
        r = rows[pid]
        assert r["argv"] == p["cmdline"], pid
        assert (r["exe"], r["cwd"], r["root"]) == (p["exe"], p["cwd"], p["root"]), pid
        assert (r["ppid"], r["uid"], r["euid"]) == (p["ppid"], p["uid_real"], p["uid_effective"]), pid
        if p["is_kernel_thread"]:
            assert p["comm"].startswith(r["comm"]) and r["argv"] == [] and r["exe"] is None
        else:
            assert r["comm"] == p["comm"], pid
    assert rows[102]["uid"] == 1000 and rows[102]["euid"] == 0  # dropper: setuid root
    assert vm["complete"]


def test_envars_match_proc(rich, capsys):
    cap, args = rich
    rc, out = _run(capsys, "envars", cap.image, *args, "--jsonl")
    assert rc == 0, out.err
    rows = {r["pid"]: r for r in map(json.loads, out.out.splitlines())}
    gt = _gt(cap)
    assert set(rows) == set(_user_pids(cap))  # kernel threads have no environment
    for pid in _user_pids(cap):
        assert rows[pid]["env"] == gt[pid]["environ"], pid
    assert "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYARMVMI0042" in rows[99]["env"]


def test_maps_match_proc_line_for_line(rich, capsys):
    cap, args = rich
    rc, out = _run(capsys, "maps", cap.image, *args, "--json")
    assert rc == 0, out.err
    rows = json.loads(out.out)["vms"][0]["maps"]
    gt = _gt(cap)
    by_pid: dict = {}
    for r in rows:
        by_pid.setdefault(r["pid"], []).append(r)
    assert set(by_pid) == set(_user_pids(cap))
    for pid in _user_pids(cap):
        mine = by_pid[pid]
        assert [r["line"] for r in mine] == gt[pid]["maps"], pid
        parsed = [(int(m["start"], 16), int(m["end"], 16), m["perms"], int(m["offset"], 16), m["dev"], m["inode"], m["path"])
                  for m in gt[pid]["maps_parsed"]]
        assert [(int(r["start"], 16), int(r["end"], 16), r["perms"], int(r["offset"], 16), r["dev"], r["inode"], r["path"])
                for r in mine] == parsed, pid


def test_maps_of_one_pid_and_a_missing_pid(rich_capture, capsys):
    rc, out = _run(capsys, "maps", rich_capture.image, "--pid", "102")
    assert rc == 0
    assert "/memfd:payload (deleted)" in out.out and "[heap]" in out.out and "tls-gw" not in out.out
    rc, out = _run(capsys, "maps", rich_capture.image, "--pid", "4242")
    assert rc == 4
    assert out.err.strip().count("\n") == 0 and "no process with pid 4242" in out.err


def test_malfind_reports_the_dropper_only(rich, capsys):
    cap, args = rich
    rc, out = _run(capsys, "malfind", cap.image, *args, "--json")
    assert rc == 1
    doc = json.loads(out.out)
    found = {(f["evidence"]["pid"], f["evidence"]["perms"], f["evidence"]["path"]) for f in doc["findings"]}
    assert found == {(102, "rwxp", ""), (102, "r-xs", "/memfd:payload (deleted)")}
    for f in doc["findings"]:
        ev = f["evidence"]
        assert len(bytes.fromhex(ev["first_bytes"])) == 64 and ev["hexdump"].count("\n") == 3
        assert f["severity"] == "critical"
    memfd = next(f for f in doc["findings"] if f["evidence"]["perms"] == "r-xs")
    assert memfd["evidence"]["first_bytes"].startswith("7f454c46")  # the payload is an ELF
    anon = next(f for f in doc["findings"] if f["evidence"]["perms"] == "rwxp")
    assert set(anon["evidence"]["reasons"]) == {"anonymous executable mapping", "writable and executable mapping"}
    # tls-gw's LD_PRELOAD library is a file mapping like any other: not a finding.
    rc, out = _run(capsys, "malfind", cap.image, *args, "--pid", "97", "--json")
    assert rc == 0 and json.loads(out.out)["findings"] == []


def test_read_user_memory(rich_capture, capsys):
    gt = _gt(rich_capture)
    start = int(gt[97]["maps_parsed"][0]["start"], 16)  # tls-gw's ELF header
    rc, out = _run(capsys, "read", rich_capture.image, "--pid", "97", hex(start), "16")
    assert rc == 0 and "7f 45 4c 46" in out.out
    # argv as the process holds it
    import armvmi_cli

    k = armvmi_cli.open(rich_capture.image, system_map=rich_capture.system_map).vm().kernel
    from armvmi_cli.linux.proc import find_process

    t = find_process(k, 99)
    mm = t.mm
    raw = t.read_user(mm.arg_start, mm.arg_end - mm.arg_start)
    assert raw.split(b"\0")[:-1] == [a.encode() for a in gt[99]["cmdline"]]


def test_read_user_hole_is_exit_4_not_zeros(rich_capture, tmp_path, capsys):
    import armvmi_cli
    from armvmi_cli.linux.mm import NotResident
    from armvmi_cli.linux.proc import find_process

    k = armvmi_cli.open(rich_capture.image).vm().kernel
    t = find_process(k, 97)
    from armvmi_cli.linux.mm import mm_pieces

    libc = next(m for m in _gt(rich_capture)[97]["maps_parsed"] if m["path"].endswith("libc.so.6"))
    s, e = int(libc["start"], 16), int(libc["end"], 16)
    holes = [(a, n, why) for a, d, n, why in mm_pieces(k, t.mm.deref(), s, e - s) if d is None]
    assert holes, "libc's text is never all resident in this capture"
    a, n, why = holes[0]
    with pytest.raises(NotResident) as ei:
        t.read_user(a, 16)
    assert "not mapped" in str(ei.value)
    rc, out = _run(capsys, "read", rich_capture.image, "--pid", "97", hex(a), "16")
    assert rc == 4 and "not mapped" in out.err and out.out == ""
    rc, out = _run(capsys, "read", rich_capture.image, "--pid", "31337", hex(a), "16")
    assert rc == 4 and "no process with pid 31337" in out.err


def test_procdump_writes_runs_index_and_a_core(rich_capture, tmp_path, capsys):
    out_dir = tmp_path / "pd"
    rc, out = _run(capsys, "procdump", rich_capture.image, "--pid", "102", "-o", out_dir)
    assert rc == 0, out.err
    index = json.loads((out_dir / "index.json").read_text())
    gt = _gt(rich_capture)[102]
    assert [(v["start"], v["end"]) for v in index["vmas"]] == [
        (hex(int(m["start"], 16)), hex(int(m["end"], 16))) for m in gt["maps_parsed"]]
    total = 0
    for v in index["vmas"]:
        cur = int(v["start"], 16)
        for r in v["runs"]:  # runs and holes tile the VMA exactly
            assert int(r["start"], 16) == cur
            cur = int(r["end"], 16)
            if "file" in r:
                size = (out_dir / r["file"]).stat().st_size
                assert size == cur - int(r["start"], 16)
                total += size
            else:
                assert r["hole"]
        assert cur == int(v["end"], 16)
    assert total == index["bytes"] > 0
    anon = next(v for v in index["vmas"] if v["perms"] == "rwxp")
    first = next(r for r in anon["runs"] if "file" in r)
    data = (out_dir / first["file"]).read_bytes()[:64]
    rc, out2 = _run(capsys, "malfind", rich_capture.image, "--pid", "102", "--json")
    ev = next(f["evidence"] for f in json.loads(out2.out)["findings"] if f["evidence"]["perms"] == "rwxp")
    if int(first["start"], 16) == int(anon["start"], 16):
        assert data.hex() == ev["first_bytes"]
    core = out_dir / index["core"]
    if shutil.which("readelf"):
        r = subprocess.run(["readelf", "-h", "-l", "-n", str(core)], capture_output=True, text=True)
        assert r.returncode == 0 and "CORE (Core file)" in r.stdout and "AArch64" in r.stdout
        assert "NT_PRSTATUS" in r.stdout and "NT_FILE" in r.stdout
        assert r.stdout.count("LOAD") >= sum("file" in x for v in index["vmas"] for x in v["runs"])
    gdb = shutil.which("gdb-multiarch")
    if gdb:
        r = subprocess.run([gdb, "-batch", "-ex", "info files", "-ex", "info registers pc", "-c", str(core)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert f"{int(first['start'], 16):#018x}" in r.stdout
        assert "/tmp/.x/dropper --stage 2" in r.stdout  # NT_PRPSINFO's psargs
        assert "pc " in r.stdout


def test_procdump_refuses_non_empty_dir_and_kernel_threads(rich_capture, tmp_path, capsys):
    out_dir = tmp_path / "busy"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("evidence")
    rc, out = _run(capsys, "procdump", rich_capture.image, "--pid", "97", "-o", out_dir)
    assert rc == 2 and "not empty" in out.err
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.txt"]
    rc, out = _run(capsys, "procdump", rich_capture.image, "--pid", "97", "-o", out_dir, "--force")
    assert rc == 0
    assert (out_dir / "keep.txt").read_text() == "evidence" and (out_dir / "index.json").exists()
    rc, out = _run(capsys, "procdump", rich_capture.image, "--pid", "2", "-o", tmp_path / "k")
    assert rc == 2 and "kernel thread" in out.err and not (tmp_path / "k").exists()
    rc, out = _run(capsys, "procdump", rich_capture.image, "--pid", "5555", "-o", tmp_path / "n")
    assert rc == 4 and not (tmp_path / "n").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_hidden_process_keeps_its_argv_and_maps(rich_capture, tmp_path, monkeypatch, capsys):
    """In the DKOM copy beacon is unlinked from the task list; the PID IDR still
    leads to it, and its mm is untouched: psaux marks it hidden, maps reads it."""
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    gt = _gt(rich_capture)
    image = rich_capture.dkom_image
    rc, out = _run(capsys, "psaux", image, "--json")
    assert rc == 0
    rows = {r["pid"]: r for r in json.loads(out.out)["vms"][0]["processes"]}
    assert [p for p, r in rows.items() if r["hidden"]] == [99]
    assert rows[99]["argv"] == gt[99]["cmdline"] and rows[99]["exe"] == gt[99]["exe"]
    rc, out = _run(capsys, "maps", image, "--pid", "99", "--json")
    assert rc == 0
    assert [r["line"] for r in json.loads(out.out)["vms"][0]["maps"]] == gt[99]["maps"]


def test_procdump_core_has_every_thread_with_its_registers(rich_capture, tmp_path, capsys):
    out_dir = tmp_path / "agentd"
    rc, _ = _run(capsys, "procdump", rich_capture.image, "--pid", "101", "-o", out_dir)
    assert rc == 0
    index = json.loads((out_dir / "index.json").read_text())
    tids = [t["tid"] for t in _gt(rich_capture)[101]["threads"]]
    assert [t["tid"] for t in index["threads"]] == tids and all(t["registers"] for t in index["threads"])
    gdb = shutil.which("gdb-multiarch")
    if not gdb:
        pytest.skip("gdb-multiarch not installed")
    r = subprocess.run([gdb, "-batch", "-ex", "info threads", "-ex", "thread apply all info registers pc sp",
                        "-c", str(out_dir / index["core"])], capture_output=True, text=True, timeout=120)
    assert all(f"LWP {tid}" in r.stdout for tid in tids)
    # Each thread's sp lies in a writable mapping of the process, pc in an executable one.
    import re

    maps = index["vmas"]
    for pc, sp in zip(re.findall(r"^pc\s+(0x[0-9a-f]+)", r.stdout, re.M), re.findall(r"^sp\s+(0x[0-9a-f]+)", r.stdout, re.M)):
        pc, sp = int(pc, 16), int(sp, 16)
        assert any(int(v["start"], 16) <= pc < int(v["end"], 16) and "x" in v["perms"] for v in maps)
        assert any(int(v["start"], 16) <= sp <= int(v["end"], 16) and "w" in v["perms"] for v in maps)
