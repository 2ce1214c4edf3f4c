"""Walks on the real captures, checked against their ground_truth.json (skip when absent)."""

import pytest

from armvmi_cli.memory import open_image
from armvmi_cli.mmu import Stage1, Stage2, TranslationFault, resolve_chain


@pytest.fixture
def opened():
    """open_image, closing every image at the end of the test."""
    images = []

    def open_(path):
        images.append(open_image(str(path)))
        return images[-1]

    yield open_
    for m in images:
        m.close()


def h(v) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def symbol(system_map, name: str) -> int:
    with open(system_map) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == name:
                return int(parts[0], 16)
    raise KeyError(name)


def test_guest_init_task_lands_in_kernel_data(guest_capture, opened):
    gt = guest_capture.ground_truth
    regs = gt["registers"]
    mem = opened(guest_capture.image)
    s1 = Stage1(mem, h(regs["TTBR0_EL1"]), h(regs["TTBR1_EL1"]), h(regs["TCR_EL1"]))
    slide = h(gt["kaslr"]["slide"])
    init_task = symbol(guest_capture.system_map, "init_task") + slide
    pa = s1.translate(init_task)
    data = gt["kernel_image_phys"]["iomem_kernel_data"][0]
    assert h(data["start"]) <= pa <= h(data["end"])
    # init_task.comm is "swapper/0" (offset found by scanning the first 4 KiB of the object)
    assert b"swapper/0\0" in s1.read(init_task, 4096)
    # the same walk from swapper_pg_dir (what a tool does without registers)
    pgd_pa = s1.translate(symbol(guest_capture.system_map, "swapper_pg_dir") + slide)
    k = Stage1.for_kernel(mem, pgd_pa, va_bits=48, page_size=4096)
    assert k.translate(init_task) == pa
    trace = k.walk(init_task)
    assert [s.level for s in trace.steps] == [0, 1, 2, 3] and trace.steps[0].table_address == pgd_pa


def test_guest_kernel_enumeration_covers_linear_map(guest_capture, opened):
    gt = guest_capture.ground_truth
    mem = opened(guest_capture.image)
    regs = gt["registers"]
    s1 = Stage1(mem, None, h(regs["TTBR1_EL1"]), h(regs["TCR_EL1"]))
    ram = gt["physical_ram"]
    base, size = h(ram["base"]), h(ram["size"])
    covered = set()
    for m in s1.mappings():
        if base <= m.out < base + size:
            covered.update(range(m.out >> 21, (m.out + m.size - 1 >> 21) + 1))
    # every 2 MiB of RAM is mapped somewhere in the kernel half (the linear map)
    assert covered >= set(range(base >> 21, (base + size) >> 21))


def test_nested_stage2_and_guest_chain(nested_capture, opened):
    gt = nested_capture.ground_truth
    vm = gt["vms"][0]
    host = opened(nested_capture.image)
    s2 = Stage2(host, h(vm["vttbr"]), h(vm["vtcr"]), name="stage2")
    assert (s2.geometry.start_level, s2.geometry.concat, s2.geometry.ia_bits) == (
        h(vm["start_level"]), h(vm["concatenated_tables"]), h(vm["ipa_bits"]))
    assert s2.translate(h(vm["guest_swapper_pg_dir_gpa"])) == h(vm["guest_swapper_pg_dir_hpa"])
    leaves = list(s2.mappings())
    cmp = vm["stage2_vs_pagemap"]
    assert len(leaves) == h(cmp["stage2_leaf_mappings"])
    assert sum(m.size for m in leaves) // 4096 == h(cmp["stage2_mapped_pages"])
    # KVM maps lazily: every mapped IPA run lies inside a memslot, and runs are coalesced
    slots = [(h(s["base_gpa"]), h(s["base_gpa"]) + h(s["size"])) for s in vm["memslots"]]
    runs = s2.ranges()
    assert all(any(a <= lo and hi <= b for a, b in slots) for lo, hi in runs)
    assert all(b1 < a2 for (_a1, b1), (a2, _b2) in zip(runs, runs[1:])) and len(runs) < len(leaves)
    # the guest's kernel, walked from swapper_pg_dir (its TTBR1 points at the KPTI trampoline)
    vcpu = vm["vcpus"][0]
    s1 = Stage1(s2, None, h(vm["guest_swapper_pg_dir_gpa"]), h(vcpu["TCR_EL1"]), name="guest")
    it = vm["guest_init_task"]
    assert resolve_chain(s1, h(it["va"])) == [("guest", h(it["va"])), ("stage2", h(it["gpa"])),
                                            ("host physical", h(it["hpa"]))]
    assert s1.read(h(it["va"]), 64) == host.read(h(it["hpa"]), 64)
    # through the trampoline tables the kernel is not mapped: a clean fault, not a crash
    tramp = Stage1(s2, None, h(vcpu["TTBR1_EL1"]), h(vcpu["TCR_EL1"]))
    with pytest.raises(TranslationFault):
        tramp.translate(h(it["va"]))


def test_nested_host_kernel(nested_capture, opened):
    gt = nested_capture.ground_truth
    facts = gt["host"]["facts"]
    host = opened(nested_capture.image)
    s1 = Stage1(host, None, h(facts["TTBR1_EL1"]), h(facts["TCR_EL1"]), name="host kernel")
    vm = gt["vms"][0]
    assert s1.translate(h(vm["struct_kvm_va"])) == h(vm["struct_kvm_pa"])
    assert s1.walk(h(vm["struct_kvm_va"])).steps[0].table_address == h(gt["host"]["swapper_pg_dir_pa"])
