"""mounts on the real rich capture: /proc/mounts as the guest printed it."""

from __future__ import annotations

import json

from armvmi_cli.cli.app import main
from armvmi_cli.linux.mount import for_each_mount, mount_namespaces, mounts_view
from armvmi_cli.linux.lsof import seen_processes
from tests.fixtures.rich import patched, u64


def test_proc_mounts_of_init_namespace(rich, rich_kernel):
    """Every line equal, options included: the shmem ones (size/nr_inodes shown only when they
    differ from totalram/2 *now* -- rootfs and devtmpfs were mounted early in boot, when
    totalram was smaller, so theirs show; exfil-tmpfs's default nr_inodes does not)."""
    res = mounts_view(rich_kernel)
    assert res.complete and not res.problems
    init_ns = res.records[0].ns
    assert res.records[0].pid == 1
    lines = [r.line() for r in res.records if r.ns == init_ns]
    assert lines == rich.ground_truth["rich"]["mounts"]
    assert all(r.fs_options for r in res.records)


def test_other_namespace_is_seen_from_its_own_root(rich_kernel):
    """kdevtmpfs unshares its mount namespace and chroots into devtmpfs: its /proc/PID/mounts
    has devtmpfs at '/' and not rootfs (outside its root: seq_path_root skips it)."""
    res = mounts_view(rich_kernel)
    other = [r for r in res.records if r.ns != res.records[0].ns]
    assert [(r.device, r.mountpoint, r.fstype) for r in other] == [("devtmpfs", "/", "devtmpfs")]
    comm = {p.pid: p.comm for p in seen_processes(rich_kernel, [])[0]}
    assert comm[other[0].pid] == "kdevtmpfs"


def test_pid_selects_its_namespace(rich_kernel):
    res = mounts_view(rich_kernel, pids=[1])
    assert len(res.records) == 5 and {r.pid for r in res.records} == {1}


def test_cyclic_mount_list_is_partial(rich_kernel):
    k = rich_kernel
    procs, _ = seen_processes(k, [])
    (ns, _p), *_ = mount_namespaces(k, procs, [])
    mounts = list(for_each_mount(k, ns))
    off = k.offsetof("mount", "mnt_list")
    # the third mount's next points back at the second: a cycle that never returns to the head
    with patched(k, {mounts[2].address_ + off: u64(mounts[1].address_ + off)}):
        res = mounts_view(k, pids=[1])
    assert not res.complete
    assert any("loop" in p or "cycle" in p for p in res.problems)
    assert [r.mountpoint for r in res.records] == ["/", "/proc", "/sys"]
    with patched(k, {mounts[1].address_ + off: u64(0xFFFF_FFFF_DEAD_0000)}):
        res = mounts_view(k, pids=[1])
    assert not res.complete and [r.mountpoint for r in res.records] == ["/", "/proc"]


def test_cli(rich, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["mounts", str(rich.image), "-m", str(rich.system_map), "--pid", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    rows = out["vms"][0]["mounts"]
    assert [r["mountpoint"] for r in rows] == ["/", "/proc", "/sys", "/dev", "/mnt/exfil-staging"]
    assert rows[4]["options"] == "rw,relatime,size=4096k,inode64" and rows[4]["mount"].startswith("0x")
