"""Corrupt kernel structures in a patched copy of the rich capture: a cyclic
module list, a torn printk descriptor, a VBAR_EL1 that is not the kernel's.
Each walk ends with a warning and a partial mark (exit 5) or a finding —
never a hang or a traceback."""

from __future__ import annotations

import json

import pytest

import armvmi_cli
from armvmi_cli.cli.app import main
from tests.fixtures.patch import copy_image, patch_u64


@pytest.fixture
def rich_copy(rich_capture, tmp_path, monkeypatch):
    dst = copy_image(rich_capture.image, tmp_path, monkeypatch)
    return dst, armvmi_cli.open(dst, system_map=rich_capture.system_map).vm().kernel


def test_cyclic_module_list_is_partial(rich_copy, rich_capture, capsys):
    from armvmi_cli.linux.module import lsmod

    path, k = rich_copy
    mods = {m.name: m for m in lsmod(k)[0]}
    node = mods["ifb"].module + k.offsetof("module", "list")
    patch_u64(path, k.vmem.translate(node), node)  # ifb.list.next -> itself: a loop that never reaches the head
    rc = main(["lsmod", str(path), "-m", str(rich_capture.system_map), "--json"])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert rc == 5 and "Traceback" not in cap.err
    vm = doc["vms"][0]
    assert not vm["complete"] and any("cycle" in p for p in vm["problems"])
    # dummy is past the loop: still listed (by the other views), not called hidden on a cut list
    assert sorted(m["name"] for m in vm["modules"]) == ["dummy", "ifb", "nlmon"]
    assert not any(m["hidden"] for m in vm["modules"]) and doc["findings"] == []
    rc = main(["check", str(path), "-m", str(rich_capture.system_map), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 5 and doc["findings"] == [] and "hidden-module" in [n["check"] for n in doc["not_run"]]


def test_torn_printk_descriptor_is_skipped_with_a_warning(rich_copy, rich_capture, capsys):
    from armvmi_cli.linux.printk import find_prb

    path, k = rich_copy
    rb = k.object("printk_ringbuffer", find_prb(k))
    count = 1 << rb.desc_ring.count_bits
    head = int(rb.desc_ring.head_id.counter)
    victim = head - 10  # the 11th newest record
    desc = int(rb.desc_ring.descs) + (victim % count) * k.type("prb_desc").resolve().size
    state_var = k.read_u64(desc)
    patch_u64(path, k.vmem.translate(desc), 0x1234)  # state_var: another id, state reserved
    rc = main(["dmesg", str(path), "-m", str(rich_capture.system_map), "--json"])
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    raw = rich_capture.ground_truth["rich"]["dmesg"]
    vm = doc["vms"][0]
    assert rc == 5 and "Traceback" not in cap.err
    assert not vm["complete"] and any("skipped" in p for p in vm["problems"])
    assert [r["text"] for r in vm["log"]] == raw[:-11] + raw[-10:]

    # the descriptor back, but its text block's end far beyond the ring: that record alone is skipped
    patch_u64(path, k.vmem.translate(desc), state_var)
    lpos = desc + k.offsetof("prb_desc", "text_blk_lpos")
    patch_u64(path, k.vmem.translate(lpos + 8), 1 << 60)
    rc = main(["dmesg", str(path), "-m", str(rich_capture.system_map), "--json"])
    cap = capsys.readouterr()
    vm = json.loads(cap.out)["vms"][0]
    assert rc == 5 and "Traceback" not in cap.err
    assert [r["text"] for r in vm["log"]] == raw[:-11] + raw[-10:]
    assert any("text block" in p for p in vm["problems"])


def test_corrupt_ring_header_is_a_clear_error(rich_copy, rich_capture, capsys):
    from armvmi_cli.linux.printk import find_prb

    path, k = rich_copy
    rb = find_prb(k)
    patch_u64(path, k.vmem.translate(rb), 0xFFFF)  # count_bits 65535
    rc = main(["dmesg", str(path), "-m", str(rich_capture.system_map)])
    err = capsys.readouterr().err
    assert rc == 5 and "Traceback" not in err and "corrupt" in err and "PARTIAL" in err


def test_vbar_patched_in_saved_vcpu_registers_is_a_finding(nested_capture, tmp_path, monkeypatch, capsys):
    dst = copy_image(nested_capture.image, tmp_path, monkeypatch, "host.elf")
    s = armvmi_cli.open(dst)
    vm = s.vms[0]
    hk = s.vm("host").kernel
    idx = hk.type("vcpu_sysreg").resolve().values["VBAR_EL1"]
    slot = vm.kvm.vcpus[0].address + hk.offsetof("kvm_vcpu", "arch.ctxt.sys_regs") + 8 * idx
    evil = vm.kernel.symbol("vectors") + 0x10000  # kernel text, not a vector table
    patch_u64(dst, hk.vmem.translate(slot), evil)
    rc = main(["check", str(dst), "--check", "vector-hook", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert [(f["kind"], f["severity"], f["evidence"]["vbar_el1"], f["evidence"]["vcpu"]) for f in doc["findings"]] == [
        ("vector-hook", "critical", f"{evil:#x}", 0)]


@pytest.mark.parametrize("no_map", [False, True], ids=["system_map", "kallsyms_only"])
def test_entry_redirected_to_another_syscalls_wrapper(rich_copy, rich_capture, capsys, no_map, monkeypatch):
    """ftrace's syscall metadata records at boot which wrapper belongs in each slot,
    so an entry swapped for another real wrapper is a hook too."""
    path, k = rich_copy
    if no_map:
        import armvmi_cli.symbols.profiles as profiles

        monkeypatch.setattr(profiles, "find_profiles", lambda dirs=None: [])
    sh = rich_capture.tamper["syscall_hook"]
    slot = int(sh["table_va"], 16) + 8 * sh["nr"]
    read = k.symbol("__arm64_sys_read")
    patch_u64(path, k.vmem.translate(slot), read)
    rc = main(["check", str(path), *([] if no_map else ["-m", str(rich_capture.system_map)]), "--check", "syscall-hook", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert [(f["kind"], f["evidence"]["index"], f["evidence"]["syscall"], f["evidence"]["symbol"]) for f in doc["findings"]] == [
        ("syscall-hook", sh["nr"], "sys_getdents64", "__arm64_sys_read")]


def test_module_unlinked_from_the_list_and_sysfs_is_still_seen(rich_capture, tmp_path, monkeypatch, capsys):
    """The DKOM copy, with nlmon's kobject also unlinked from module_kset: the
    address tree and the memory scan still see it."""
    path = copy_image(rich_capture.dkom_image, tmp_path, monkeypatch, "dkom.elf")
    k = armvmi_cli.open(path, system_map=rich_capture.system_map).vm().kernel
    mod = int(rich_capture.tamper["hide_module"]["struct_module_va"], 16)
    entry = mod + k.offsetof("module", "mkobj") + k.offsetof("module_kobject", "kobj") + k.offsetof("kobject", "entry")
    nxt, prv = k.read_u64(entry), k.read_u64(entry + 8)
    patch_u64(path, k.vmem.translate(prv), nxt)
    patch_u64(path, k.vmem.translate(nxt + 8), prv)
    rc = main(["lsmod", str(path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert [(m["name"], m["seen_by"]) for m in doc["vms"][0]["modules"] if m["hidden"]] == [("nlmon", ["mod_tree", "memory_scan"])]
