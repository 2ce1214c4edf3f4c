"""``armvmi extract`` on composed hosts: each VM's pages, scattered through
stage-2 tables of 4K/16K/64K granules (a LiME host too), come out as one
guest-physical ELF core on which ``ps`` sees what ``ps --vm ID`` sees on the host."""

from __future__ import annotations

import json

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.memory.elfcore import ElfCoreMemory

from .test_composed_hosts import _capture_of, _image_args, _map_args, captures, env  # noqa: F401


def _ps(capsys, argv):
    capsys.readouterr()
    rc = main(["ps", "--threads", "--json", *argv])
    out = capsys.readouterr().out
    assert rc == 0, out
    (vm,) = json.loads(out)["vms"]
    return [{k: v for k, v in t.items() if k != "task_struct_phys"} for t in vm["tasks"]]


@pytest.mark.parametrize("name", ["elf3"])
def test_extract_each_vm_reads_like_the_vm(name, env, captures, capsys, tmp_path):  # noqa: F811
    host = env(name)
    for vm in host.vms:
        out = tmp_path / f"vm{vm.vm_id}.elf"
        capsys.readouterr()
        rc = main(["extract", *_image_args(host), *_map_args(captures), "--vm", str(vm.vm_id), "-o", str(out)])
        text = capsys.readouterr().out
        assert rc == 0, text
        assert "0 absent pages" in text  # the composer maps every page of the guest's RAM
        assert ": 1 runs," in text  # one PT_LOAD: the guest's RAM is contiguous in guest physical
        gt = _capture_of(host, vm.vm_id, captures).ground_truth
        with ElfCoreMemory(out) as core:
            assert core.vmcoreinfo["OSRELEASE"] == gt["kernel_release"]
            assert core.size == gt["physical_ram"]["size_int"]  # all of the guest's RAM, nothing more
            assert [(r.start, r.end) for r in core.ranges()] == [(int(gt["physical_ram"]["base"], 16),
                                                                 int(gt["physical_ram"]["base"], 16) + gt["physical_ram"]["size_int"])]
        on_host = _ps(capsys, [*_image_args(host), *_map_args(captures), "--vm", str(vm.vm_id)])
        assert _ps(capsys, [str(out), *_map_args(captures)]) == on_host
