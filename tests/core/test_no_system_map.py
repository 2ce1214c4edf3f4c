"""ps with neither System.map nor profile: kallsyms, BTF and init_task are all
recovered from the image itself, and the answer is still the ground truth."""

from __future__ import annotations

import armvmi_cli
from armvmi_cli.linux.ps import ps
from armvmi_cli.symbols.system_map import SystemMap


def test_cloud_guest_without_any_symbols(kaslr_capture, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    gt = kaslr_capture.ground_truth
    k = armvmi_cli.open(kaslr_capture.image, use_cache=False).vm().kernel
    assert k.info.symbols_source.startswith("kallsyms recovered from memory")
    assert "found by its header" in k.info.types_source
    real = SystemMap.load(kaslr_capture.system_map)
    slide = int(gt["kaslr"]["slide"], 16)
    assert k.symbol("init_task") == real.address("init_task") + slide
    assert k.symbol("schedule") == real.address("schedule") + slide
    res = ps(k)
    assert res.complete and res.cross_view and not res.hidden
    got = {(t.pid, t.ppid, t.comm, t.uid) for t in res.tasks}
    assert got == {(t["pid"], t["ppid"], t["comm_task_struct"], t["uid"]) for t in gt["tasks"]}
