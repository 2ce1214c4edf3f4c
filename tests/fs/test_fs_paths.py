"""d_path on the real rich capture: /proc/PID/{cwd,exe,root} of every process."""

from __future__ import annotations

import pytest

from armvmi_cli.linux.fs import Path, PathError, d_path, task_cwd, task_exe, task_root
from armvmi_cli.errors import ArmvmiError
from armvmi_cli.linux.tasks import for_each_task
from tests.fixtures.rich import patched, u64


def test_cwd_exe_root_of_every_process(rich, rich_kernel):
    want = {p["pid"]: p for p in rich.ground_truth["rich"]["processes"]}
    k = rich_kernel
    seen = 0
    for t in for_each_task(k):
        p = want[t.pid]
        # kernel threads have no mm: /proc shows no exe link (None in the ground truth too)
        assert (task_cwd(k, t), task_exe(k, t), task_root(k, t)) == (p.get("cwd"), p.get("exe"), p.get("root")), t.comm
        seen += 1
    assert seen == len(want)  # the ground truth lists every process (init_task, pid 0, is not on the task list)
    by_comm = {p["comm"]: p for p in want.values()}
    # the interesting ones, spelled out: a cwd on the tmpfs mounted at /mnt/exfil-staging crosses a mount point
    assert by_comm["dropper"]["cwd"] == "/mnt/exfil-staging/.stage2"
    assert by_comm["tls-gw"]["cwd"] == "/var/www/html"


def test_root_stops_the_walk(rich_kernel):
    """With the reader's root set to a process's cwd, that cwd is '/' (as for a chrooted reader)."""
    k = rich_kernel
    t = next(t for t in for_each_task(k) if t.comm == "dropper")
    pwd = t.fs.pwd
    root = Path(int(pwd.mnt), int(pwd.dentry))
    assert d_path(k, pwd, root) == "/"


def test_cyclic_dentry_chain_is_an_error_not_a_hang(rich_kernel):
    """A dentry whose d_parent chain loops (never reaching a root) ends with PathError."""
    k = rich_kernel
    t = next(t for t in for_each_task(k) if t.comm == "tls-gw")
    pwd = t.fs.pwd
    d, parent = int(pwd.dentry), int(pwd.dentry.d_parent)
    off = k.offsetof("dentry", "d_parent")
    with patched(k, {parent + off: u64(d)}):  # www's parent points back at html
        with pytest.raises(PathError, match="loops"):
            d_path(k, pwd)
    assert d_path(k, pwd) == "/var/www/html"


def test_unreadable_dentry_is_an_error(rich_kernel):
    k = rich_kernel
    t = next(t for t in for_each_task(k) if t.comm == "dropper")
    pwd = t.fs.pwd
    off = k.offsetof("dentry", "d_parent")
    with patched(k, {int(pwd.dentry) + off: u64(0xFFFF_FFFF_DEAD_0000)}):
        with pytest.raises(ArmvmiError):
            d_path(k, pwd)
