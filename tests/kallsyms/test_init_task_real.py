"""init_task found by structure on the real guest captures equals System.map's."""

from __future__ import annotations

import pytest

from armvmi_cli.errors import SymbolError
from armvmi_cli.memory import open_image
from armvmi_cli.symbols.init_task import find_init_task, validate_init_task

from .conftest import GuestVA, slide_of, symbol, task_offsets


def _setup(capture):
    mem = open_image(str(capture.image))
    read_va = GuestVA(mem, capture)
    offsets = task_offsets(capture.name, str(capture.isf) if capture.isf else None)
    return read_va, offsets


def test_init_task_by_structure(guest_capture):
    read_va, offsets = _setup(guest_capture)
    smap = str(guest_capture.system_map)
    expected = symbol(smap, "init_task") + slide_of(guest_capture)
    # search the whole kernel image, text included: the string also occurs
    # elsewhere only where validation must reject it
    found = find_init_task(read_va, [read_va.image], offsets)
    assert found == expected
    assert read_va(found + offsets["comm"], 10) == b"swapper/0\0"


def test_init_task_rejects_neighbours(guest_capture):
    read_va, offsets = _setup(guest_capture)
    init = symbol(str(guest_capture.system_map), "init_task") + slide_of(guest_capture)
    assert validate_init_task(read_va, init, offsets) is None
    assert validate_init_task(read_va, init + 8, offsets) is not None
    # the task after init_task on the list is not init_task (pid != 0)
    nxt = read_va.u64(init + offsets["tasks"]) - offsets["tasks"]
    assert validate_init_task(read_va, nxt, offsets) is not None


def test_init_task_wrong_offsets_refused(guest_capture):
    read_va, offsets = _setup(guest_capture)
    bad = dict(offsets, tasks=offsets["tasks"] + 16)
    with pytest.raises(SymbolError, match="init_task not found"):
        find_init_task(read_va, [read_va.image], bad)


def test_init_task_missing_offset(guest_capture):
    read_va, offsets = _setup(guest_capture)
    with pytest.raises(SymbolError, match="task_struct.tasks"):
        find_init_task(read_va, [read_va.image], {"comm": offsets["comm"]})


def test_init_task_from_kallsyms_alone(guest_capture):
    """The no-System.map path: kallsyms gives the text, init_task is searched
    in the window after it (the VA->PA mapping still comes from ground truth)."""
    from armvmi_cli.symbols.init_task import data_ranges_after_text
    from armvmi_cli.symbols.kallsyms import recover_kallsyms

    read_va, offsets = _setup(guest_capture)
    table = recover_kallsyms(read_va.mem)
    expected = symbol(str(guest_capture.system_map), "init_task") + slide_of(guest_capture)
    assert find_init_task(read_va, data_ranges_after_text(table), offsets) == expected


def test_host_init_task_in_nested_capture(nested_capture):
    """The KVM host's init_task, found in the 1 GiB host image (offsets from the
    ground truth's BTF dump of the same kernel build)."""
    gt = nested_capture.ground_truth["btf_offsets"]
    offsets = {k: gt[f"task_struct.{k}"] for k in ("comm", "tasks", "pid", "tgid", "real_parent")}
    read_va = GuestVA(open_image(str(nested_capture.image)), nested_capture)
    expected = symbol(str(nested_capture.system_map), "init_task") + slide_of(nested_capture)
    assert find_init_task(read_va, [read_va.image], offsets) == expected
