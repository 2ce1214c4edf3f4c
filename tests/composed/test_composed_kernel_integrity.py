"""lsmod, dmesg and check through stage 2: a host composed from the rich
capture and its DKOM-tampered copy (16K and 4K stage 2), with its .smclog."""

from __future__ import annotations

import json

import pytest

from armvmi_cli.cli.app import main

from .conftest import S2Geometry, get_host

HOSTS = {"rich2": ("elf", [(1, "rich", S2Geometry(16384, 40)), (2, "dkom", S2Geometry(4096, 40, 1))], False)}


class _Dkom:
    """The tampered copy as a composable guest: same ground truth, other pages."""

    def __init__(self, cap):
        self.name, self._cap = cap.name + "-dkom", cap

    @property
    def image(self):
        return self._cap.dkom_image

    @property
    def ground_truth(self):
        return self._cap.ground_truth


@pytest.fixture
def rich_host(rich_capture, composed_cache, armvmi_cache, monkeypatch):
    from . import conftest

    monkeypatch.setenv("ARMVMI_CACHE", str(armvmi_cache))
    monkeypatch.setitem(conftest.HOSTS, "rich2", HOSTS["rich2"])
    return get_host("rich2", composed_cache, {"rich": rich_capture, "dkom": _Dkom(rich_capture)})


def test_dmesg_and_lsmod_through_stage2(rich_host, rich_capture, capsys):
    gt = rich_capture.ground_truth["rich"]
    rc = main(["dmesg", str(rich_host.image), "--events", str(rich_host.smclog), "--vm", "1", "-r"])
    assert rc == 0 and capsys.readouterr().out.splitlines() == gt["dmesg_raw"]
    rc = main(["lsmod", str(rich_host.image), "--events", str(rich_host.smclog), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    by_vm = {v["vm"]: v["modules"] for v in doc["vms"]}
    want = sorted((m["name"], m["base"], m["size"]) for m in gt["modules"])
    assert sorted((m["name"], m["base"], m["size"]) for m in by_vm["1"]) == want
    assert sorted((m["name"], m["base"], m["size"]) for m in by_vm["2"]) == want
    assert [m["name"] for m in by_vm["2"] if m["hidden"]] == ["nlmon"]


def test_check_through_stage2_finds_exactly_the_tampering(rich_host, capsys):
    rc = main(["check", str(rich_host.image), "--events", str(rich_host.smclog), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert sorted((f["vm"], f["kind"]) for f in doc["findings"]) == [
        ("2", "hidden-module"), ("2", "hidden-process"), ("2", "syscall-hook")]
