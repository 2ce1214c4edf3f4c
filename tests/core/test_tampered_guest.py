"""Process hiding and corrupt task lists on real memory (a patched copy of a capture)."""

from __future__ import annotations

import json

import pytest

import armvmi_cli
from armvmi_cli.cli.app import main
from tests.fixtures.patch import copy_image, patch_u64


@pytest.fixture
def guest_copy(nokaslr_capture, tmp_path, monkeypatch):
    dst = copy_image(nokaslr_capture.image, tmp_path, monkeypatch)
    k = armvmi_cli.open(dst, system_map=nokaslr_capture.system_map).vm().kernel
    return dst, k


def _task(k, comm):
    from armvmi_cli.linux.tasks import for_each_task

    return next(t for t in for_each_task(k) if t.comm == comm)


def test_unlinked_process_is_found_through_the_pid_idr(guest_copy, nokaslr_capture, capsys):
    path, k = guest_copy
    victim = _task(k, "backdoor_x")
    off = k.offsetof("task_struct", "tasks")
    node = victim.address_ + off
    nxt, prv = k.read_u64(node), k.read_u64(node + 8)
    # list_del: prev->next = next; next->prev = prev (in guest physical = the image)
    patch_u64(path, k.vmem.translate(prv), nxt)
    patch_u64(path, k.vmem.translate(nxt + 8), prv)
    rc = main(["ps", str(path), "-m", str(nokaslr_capture.system_map), "--json"])
    doc = json.loads(capsys.readouterr().out)
    out = doc["vms"][0]
    assert rc == 1
    assert [t["comm"] for t in out["tasks"] if t["hidden"]] == ["backdoor_x"]
    assert [t["seen_by"] for t in out["tasks"] if t["hidden"]] == [["pid_idr"]]
    assert [(f["kind"], f["severity"], f["evidence"]["comm"]) for f in doc["findings"]] == [("hidden-process", "critical", "backdoor_x")]
    assert out["complete"]


def test_cut_task_list_is_partial_with_a_warning(guest_copy, nokaslr_capture, capsys):
    path, k = guest_copy
    victim = _task(k, "sshd-fake")
    node = victim.address_ + k.offsetof("task_struct", "tasks")
    patch_u64(path, k.vmem.translate(node), 0xFFFF_8000_DEAD_0000)  # next -> unmapped
    rc = main(["ps", str(path), "-m", str(nokaslr_capture.system_map)])
    cap = capsys.readouterr()
    # The tasks past the cut are still found through the PID IDR (hidden-process
    # findings), and findings take precedence over the partial mark.
    assert rc == 1
    assert "PARTIAL" in cap.err and "sshd-fake" in cap.out
    assert "Traceback" not in cap.err
