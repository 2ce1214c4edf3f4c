"""drgn opens a guest that ``armvmi extract`` took out of a host image.

With drgn installed (``pip install drgn``), the extracted core of the nested
capture's guest must be recognised as a Linux kernel core from its
VMCOREINFO note alone.  With ``ARMVMI_VMLINUX_DBG`` pointing at the guest
kernel's debug vmlinux (``/usr/lib/debug/boot/vmlinux-6.1.0-56-arm64`` from
Debian's ``linux-image-6.1.0-56-arm64-dbg``), drgn's task list, given nothing
but the core and the vmlinux, must equal the guest's ground truth.
"""

from __future__ import annotations

import os

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.memory.elfcore import ElfCoreMemory
from tests.conftest import NESTED_CAPTURE, get_capture

drgn = pytest.importorskip("drgn")


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    cap = get_capture(NESTED_CAPTURE)
    d = tmp_path_factory.mktemp("drgn")
    out = d / "guest.elf"
    mp = pytest.MonkeyPatch()
    mp.setenv("ARMVMI_CACHE", str(d / "cache"))
    try:
        vm = cap.ground_truth["vms"][0]["vm_id"]
        assert main(["extract", str(cap.image), "--events", str(cap.smclog), "--vm", str(vm), "-o", str(out)]) == 0
    finally:
        mp.undo()
    return cap, out


def test_drgn_reads_the_core_from_its_vmcoreinfo(core):
    cap, path = core
    gt = cap.ground_truth["vms"][0]
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    assert prog.platform.arch == drgn.Architecture.AARCH64
    assert prog["UTS_RELEASE"].string_().decode() == gt["guest_release"]
    vmcoreinfo = bytes(prog["VMCOREINFO"].value_()).rstrip(b"\0").decode()
    assert f"KERNELOFFSET={int(gt['guest_kaslr_slide'], 16):x}\n" in vmcoreinfo
    it = gt["guest_init_task"]
    with ElfCoreMemory(cap.image) as host:
        assert prog.read(int(it["gpa"], 16), 4096, True) == host.read(int(it["hpa"], 16), 4096)
    # and through the guest's page tables (drgn walks them from swapper_pg_dir in the note)
    assert prog.read(int(it["va"], 16), 64) == prog.read(int(it["gpa"], 16), 64, True)


def test_drgn_task_list_equals_ground_truth(core):
    vmlinux = os.environ.get("ARMVMI_VMLINUX_DBG")
    if not vmlinux or not os.path.exists(vmlinux):
        pytest.skip("set ARMVMI_VMLINUX_DBG to the guest kernel's debug vmlinux (linux-image-6.1.0-56-arm64-dbg)")
    from drgn.helpers.linux.pid import for_each_task

    cap, path = core
    gt = cap.ground_truth["vms"][0]
    prog = drgn.Program()
    prog.set_core_dump(str(path))
    prog.load_debug_info([vmlinux])
    tasks = list(for_each_task(prog))
    got = {(int(t.pid), int(t.tgid)) for t in tasks}
    assert got == {(t["tid"], t["tgid"]) for t in gt["threads"]}
    leaders = {(int(t.pid), int(t.real_parent.tgid), t.comm.string_().decode()) for t in tasks if t.pid == t.tgid}
    assert leaders == {(t["pid"], t["ppid"], t["comm_task_struct"]) for t in gt["tasks"]}
