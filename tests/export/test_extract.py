"""``armvmi extract``: a VM out of a host image as an ELF core (or LiME) that
armvmi itself, and drgn, read like the VM.

The nested capture's guest is read through stage 2 on the host image, and
again from the extracted file as a plain guest dump: ``ps`` must give the same
processes, and the notes must carry the guest's VMCOREINFO and its vCPU.
"""

from __future__ import annotations

import json
import os

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.memory.elfcore import ElfCoreMemory
from armvmi_cli.memory.lime import LimeMemory

# The columns that are the same whichever image the guest is read from (the
# task's physical address is host-physical in one, guest-physical in the other).
PHYS_FIELDS = {"task_struct_phys"}


def _ps(capsys, *args):
    capsys.readouterr()
    rc = main(["ps", "--threads", "--json", *map(str, args)])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out
    (vm,) = out["vms"]
    return [{k: v for k, v in r.items() if k not in PHYS_FIELDS} for r in vm["tasks"]]


def _extract(capsys, *args):
    capsys.readouterr()
    rc = main(["extract", *map(str, args)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture
def nested_core(nested_capture, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path_factory.getbasetemp() / "armvmi-cache"))
    return nested_capture


def test_extracted_guest_reads_like_the_vm(nested_core, tmp_path, capsys):
    cap = nested_core
    gt = cap.ground_truth["vms"][0]
    out = tmp_path / "guest.elf"
    rc, text, err = _extract(capsys, cap.image, "--events", cap.smclog, "--vm", gt["vm_id"], "-o", out)
    assert rc == 0, err
    # 192 MiB of the guest's memslots (two flash banks, untouched RAM) exist nowhere: counted, not written
    slots = sum(int(str(m["size"]), 0) for m in gt["memslots"])
    mapped = int(gt["stage2_vs_pagemap"]["stage2_mapped_pages"], 16) * 4096
    assert f"{(slots - mapped) // 4096} absent pages" in text
    with ElfCoreMemory(out) as core:
        assert core.size == mapped  # no zero-filled pages
        vi = core.vmcoreinfo
        assert vi["OSRELEASE"] == gt["guest_release"]
        assert int(vi["KERNELOFFSET"], 16) == int(gt["guest_kaslr_slide"], 16)
        assert int(vi["NUMBER(kimage_voffset)"], 16) == int(gt["guest_kimage_voffset"], 16)
        for key in ("BUILD-ID", "PAGESIZE", "SYMBOL(swapper_pg_dir)", "SYMBOL(_stext)", "SYMBOL(init_uts_ns)",
                    "NUMBER(PHYS_OFFSET)", "NUMBER(VA_BITS)", "NUMBER(TCR_EL1_T1SZ)"):
            assert key in vi, key
        # the one vCPU, as KVM saved it: stopped in the guest's user space (EL0t)
        (st,) = core.prstatus
        assert st["pid"] == 1
        assert st["regs"]["pstate"] & 0xF == 0
        assert st["regs"]["pc"] == int(cap.ground_truth["registers"]["pc"], 16)
        assert st["regs"]["sp"] == int(cap.ground_truth["registers"]["values"]["SP_EL0"], 16)
        # guest-physical bytes: the guest's init_task where ground truth puts it
        it = gt["guest_init_task"]
        with ElfCoreMemory(cap.image) as host:
            assert core.read(int(it["gpa"], 16), 4096) == host.read(int(it["hpa"], 16), 4096)
    on_host = _ps(capsys, cap.image, "--events", cap.smclog, "--vm", gt["vm_id"])
    assert _ps(capsys, out) == on_host
    assert {(r["pid"], r["tgid"]) for r in on_host} == {(t["tid"], t["tgid"]) for t in gt["threads"]}


def test_lime_format(nested_core, tmp_path, capsys):
    cap = nested_core
    vm = cap.ground_truth["vms"][0]["vm_id"]
    out = tmp_path / "guest.lime"
    rc, text, err = _extract(capsys, cap.image, "--events", cap.smclog, "--vm", vm, "-o", out, "--format", "lime")
    assert rc == 0, err
    with LimeMemory(out) as lime:
        assert lime.size == int(cap.ground_truth["vms"][0]["stage2_vs_pagemap"]["stage2_mapped_pages"], 16) * 4096
    assert _ps(capsys, out) == _ps(capsys, cap.image, "--events", cap.smclog, "--vm", vm)


def test_plain_guest_dump_gets_a_vmcoreinfo_note(kaslr_capture, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    with ElfCoreMemory(kaslr_capture.image) as src:
        assert src.vmcoreinfo is None  # QEMU wrote none
        size = src.size
    out = tmp_path / "guest.elf"
    rc, text, err = _extract(capsys, kaslr_capture.image, "-o", out)
    assert rc == 0, err
    assert "0 absent pages" in text and "0 NT_PRSTATUS" in text
    with ElfCoreMemory(out) as core:
        assert core.size == size
        gt = kaslr_capture.ground_truth
        assert int(core.vmcoreinfo["KERNELOFFSET"], 16) == gt["kaslr"]["slide_int"]
        # the kernel's own VMCOREINFO text, every line as the kernel wrote it
        assert {k: v for k, v in core.vmcoreinfo.items() if k in gt["vmcoreinfo"]} == gt["vmcoreinfo"]
    assert _ps(capsys, out) == _ps(capsys, kaslr_capture.image)


def test_never_overwrites(kaslr_capture, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    img = kaslr_capture.image
    before = os.stat(img)
    rc, _, err = _extract(capsys, img, "-o", img, "--force")
    assert rc == 2 and "input" in err
    exists = tmp_path / "exists.elf"
    exists.write_bytes(b"keep me")
    rc, _, err = _extract(capsys, img, "-o", exists)
    assert rc == 2 and "--force" in err and exists.read_bytes() == b"keep me"
    rc, _, err = _extract(capsys, img, "-o", tmp_path / "nodir" / "x.elf")
    assert rc == 2
    after = os.stat(img)
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["exists.elf"]  # no temp file left
