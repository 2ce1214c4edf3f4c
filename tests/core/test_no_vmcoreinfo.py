"""A kernel without VMCOREINFO in memory (CRASH_CORE off, or wiped): the slide
is found from the banner and the System.map, confirmed by a page-table walk."""

from __future__ import annotations

import mmap
import shutil

import armvmi_cli
from armvmi_cli.linux.ps import ps


def test_kaslr_guest_without_vmcoreinfo(kaslr_capture, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    img = tmp_path / "wiped.elf"
    shutil.copyfile(kaslr_capture.image, img)
    img.chmod(0o644)
    with open(img, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
        i, wiped = mm.find(b"OSRELEASE="), 0
        while i != -1:
            mm[i : i + 1] = b"X"
            wiped += 1
            i = mm.find(b"OSRELEASE=", i + 1)
    assert wiped >= 2  # the data page and the ELF-note copy
    gt = kaslr_capture.ground_truth
    k = armvmi_cli.open(img, system_map=kaslr_capture.system_map).vm().kernel
    assert k.info.slide == int(gt["kaslr"]["slide"], 16)
    assert k.info.release == gt["kernel_release"]
    assert "banner" in k.info.slide_source
    res = ps(k)
    assert {(t.pid, t.comm) for t in res.tasks} == {(t["pid"], t["comm_task_struct"]) for t in gt["tasks"]}
