"""lsof / for_each_file on the real rich capture: every fd of every process
as /proc/PID/fd + fdinfo printed them in the guest."""

from __future__ import annotations

import json

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.linux.fs import for_each_file
from armvmi_cli.linux.lsof import lsof_view
from armvmi_cli.linux.tasks import for_each_task
from tests.fixtures.rich import patched, u64


def _want_fds(p):
    out = {}
    for fd, d in (p.get("fds") or {}).items():
        # flags_int is the ground truth's own parse of "flags"; ino and mnt_id are fdinfo text
        row = {"path": d["path"], "pos": d["pos"], "flags": d["flags"], "ino": int(d["ino"]), "mnt_id": int(d["mnt_id"])}
        if "scm_fds" in d:
            row["scm_fds"] = int(d["scm_fds"])
        out[int(fd)] = row
    return out


def _got(r):
    row = {"path": r.path, "pos": r.pos, "flags": r.flags, "ino": r.inode, "mnt_id": r.mnt_id}
    if r.scm_fds is not None:
        row["scm_fds"] = r.scm_fds
    return row


def test_every_fd_of_every_process(rich, rich_kernel):
    want = {p["pid"]: _want_fds(p) for p in rich.ground_truth["rich"]["processes"]}
    res = lsof_view(rich_kernel)
    assert res.complete and not res.problems and not res.findings
    got: dict[int, dict] = {pid: {} for pid in want}
    for r in res.records:
        got[r.pid][r.fd] = _got(r)
    assert got == want
    kinds = {(r.pid, r.fd): r.kind for r in res.records}
    by_comm = {p["comm"]: p["pid"] for p in rich.ground_truth["rich"]["processes"]}
    assert kinds[by_comm["dropper"], 3] == "regular"  # /tmp/.x/stage2.bin (deleted)
    assert kinds[by_comm["dropper"], 4] == "memfd"
    assert kinds[by_comm["dropper"], 0] == "chardev"
    assert kinds[by_comm["agentd"], 7] == "pipe"
    assert kinds[by_comm["agentd"], 3] == "socket"
    assert not any(r.hidden for r in res.records)


def test_reserved_fd_is_not_shown(rich, rich_kernel):
    """tls-gw is blocked in accept(): fd 5 is reserved (open_fds bit set, fd[5] NULL).
    /proc/PID/fd does not list it (proc_readfd_common skips NULL files); neither do we."""
    k = rich_kernel
    t = next(t for t in for_each_task(k) if t.comm == "tls-gw")
    fdt = t.files.fdt.deref()
    open_fds = k.read(int(fdt.open_fds), 1)[0]
    assert open_fds >> 5 & 1  # reserved...
    assert k.read_u64(int(fdt.fd) + 8 * 5) == 0  # ...but nothing installed
    assert [f.fd for f in for_each_file(k, t)] == [0, 1, 2, 3, 4]
    assert "5" not in rich.ground_truth["rich"]["processes"][[p["comm"] for p in rich.ground_truth["rich"]["processes"]].index("tls-gw")]["fds"]


def test_hidden_process_files_on_dkom_copy(rich, tmp_path_factory):
    """beacon is unlinked from the task list; its files are still found through the PID IDR, marked hidden."""
    from tests.fixtures.rich import open_rich

    with open_rich(rich, "system_map", tmp_path_factory.mktemp("c"), image=rich.dkom_image) as k:
        res = lsof_view(k, pids=[99])
    assert res.records and all(r.hidden and r.comm == "beacon" for r in res.records)
    beacon = next(p for p in rich.ground_truth["rich"]["processes"] if p["comm"] == "beacon")
    assert {r.fd: _got(r) for r in res.records} == _want_fds(beacon)


def test_corrupt_fdtable_is_partial_not_a_crash(rich_kernel):
    k = rich_kernel
    t = next(t for t in for_each_task(k) if t.comm == "tls-gw")
    fdt = t.files.fdt.deref()
    with patched(k, {fdt.address_ + fdt.offsetof_("max_fds"): (1 << 30).to_bytes(4, "little")}):
        res = lsof_view(k, pids=[t.pid])
    assert not res.complete and not res.records
    assert any("max_fds" in p for p in res.problems)
    # a file pointer into nowhere: that fd is reported unreadable, the others still listed
    with patched(k, {int(fdt.fd) + 8 * 3: u64(0xFFFF_FFFF_DEAD_0000)}):
        res = lsof_view(k, pids=[t.pid])
    assert not res.complete
    assert [r.fd for r in res.records] == [0, 1, 2, 3, 4] and res.records[3].error and res.records[4].path == "socket:[9016]"


def test_cli_json_and_missing_pid(rich, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["lsof", str(rich.image), "-m", str(rich.system_map), "--pid", "102", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    (vm,) = out["vms"]
    rows = {r["fd"]: r for r in vm["files"]}
    assert rows[4]["path"] == "/memfd:payload (deleted)" and rows[4]["flags"] == "02400002"
    assert rows[4]["file"].startswith("0x")
    rc = main(["lsof", str(rich.image), "-m", str(rich.system_map), "--pid", "4242"])
    err = capsys.readouterr().err
    assert rc == 4 and "no process with pid 4242" in err
