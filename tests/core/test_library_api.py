"""The scripting API on the shipped sample: objects read like the kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import armvmi_cli
from armvmi_cli.errors import SymbolError

SNAP = Path(__file__).resolve().parents[2] / "snapshots"
TRUTH = {t["pid"]: t for t in json.loads((SNAP / "deb61-generic-nokaslr.truth.json").read_text())["tasks"]}


@pytest.fixture
def session(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    with armvmi_cli.open(SNAP / "deb61-generic-nokaslr.armvmi") as s:
        yield s


def test_tasks_read_like_the_kernel(session):
    (vm,) = session.vms
    tasks = {t.pid: t for t in vm.tasks()}
    assert set(tasks) == set(TRUTH)
    for pid, t in tasks.items():
        want = TRUTH[pid]
        assert (t.comm, t.uid, t.ppid, t.is_kernel_thread) == (want["comm_task_struct"], want["uid"], want["ppid"], want["is_kernel_thread"])
        assert t.tgid == pid
        assert t.parent.tgid == t.ppid or t.ppid == 0
        assert [x.pid for x in t.threads()] == want["threads"]
        if t.is_kernel_thread:
            assert int(t.mm) == 0
    zombie = next(t for t in tasks.values() if t.state == "Z")
    assert TRUTH[zombie.pid]["comm_task_struct"] == "defunct-kid"
    # nested fields through pointers, as in C
    assert tasks[1].cred.euid.val == 0
    assert tasks[1].member_("__state") == 1  # TASK_INTERRUPTIBLE, in the dump


def test_symbols_and_types(session):
    k = session.vm().kernel
    assert k.eval_address("init_task+0x10") == k.symbol("init_task") + 0x10
    assert k.lookup(k.symbol("init_task") + 8) == ("init_task", 8)
    assert k.types.struct("task_struct").fields["comm"].type.resolve().count == 16
    with pytest.raises(SymbolError):
        k.symbol("no_such_symbol_anywhere")
    with pytest.raises(AttributeError):
        k.variable("init_task", "task_struct").no_such_field
