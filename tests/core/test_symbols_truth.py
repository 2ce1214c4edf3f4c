"""Issue 11: a wrong symbol name is worse than none.  On kernels whose kallsyms
holds text only (Debian 6.1), an address past the text is never attributed
to the last text symbol; the data symbols armvmi knows are used and listed;
an --isf file's symbol table is used like a System.map."""

from __future__ import annotations

import bisect
import json
import random

import pytest

import armvmi_cli
from armvmi_cli.cli.app import main
from armvmi_cli.symbols.system_map import SystemMap


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def no_profiles(monkeypatch):
    from armvmi_cli.symbols import profiles

    monkeypatch.setattr(profiles, "find_profiles", lambda dirs=None: [])  # the repo's profile would fit


def _kernel(cap, **kw):
    return armvmi_cli.open(cap.image, **kw).vm().kernel


def test_data_addresses_are_never_named_after_text(guest_capture, cache, no_profiles):
    k = _kernel(guest_capture)
    assert k.info.symbols_source.startswith("kallsyms")
    sm = SystemMap.load(guest_capture.system_map)
    slide = k.info.slide
    addrs = sorted({(s.address, s.name) for s in sm if s.type in "dDbBrR"})
    starts = [a for a, _ in addrs]
    random.seed(11)
    sample = random.sample(addrs, 400) + [(sm.address("idle_sched_class"), "idle_sched_class")]
    named = 0
    for a, name in sample:
        va = a + slide
        hit = k.lookup(va + 8)
        if hit is None:
            continue
        named += 1
        # the name must be a symbol at that very address (or an alias of it) in the System.map
        i = bisect.bisect_right(starts, a + 8) - 1
        assert hit[0] in {n for x, n in addrs if x == starts[i]} | {n for x, n in addrs if x == a}, (hex(va), hit)
        assert not hit[0].startswith("_e"), hit
    assert k.lookup(sm.address("idle_sched_class") + slide) is None


def test_known_data_symbols_name_their_own_extent(guest_capture, cache, no_profiles, capsys):
    k = _kernel(guest_capture)
    it = k.symbol("init_task")
    size = k.type("task_struct").size
    assert k.lookup(it) == ("init_task", 0)
    assert k.lookup(it + 0x100) == ("init_task", 0x100)
    assert k.lookup(it + size) is None or k.lookup(it + size)[0] != "init_task"
    # symbols --grep lists them (init_task was missing although `read ... init_task` worked)
    assert main(["symbols", str(guest_capture.image), "--grep", "^init_task$", "--json"]) == 0
    (row,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert int(row["address"], 16) == it and row["name"] == "init_task"
    assert main(["symbols", str(guest_capture.image), "--address", hex(it + 0x10)]) == 0
    assert capsys.readouterr().out.strip().endswith("init_task+0x10")


def test_struct_pointer_targets_are_not_labelled_as_text(nokaslr_capture, cache, no_profiles, capsys):
    assert main(["struct", "task_struct", "init_task", str(nokaslr_capture.image), "--json"]) == 0
    text = capsys.readouterr().out
    assert "_etext+" not in text and "_einittext+" not in text


def test_isf_symbol_table_is_used(guest_capture, cache, no_profiles, capsys):
    isf = guest_capture.isf
    if isf is None:
        pytest.skip("no ISF for this capture")
    k = _kernel(guest_capture, isf=isf)
    assert k.info.symbols_source.startswith("ISF")
    sm = SystemMap.load(guest_capture.system_map)
    va = sm.address("idle_sched_class") + k.info.slide
    assert k.lookup(va) == ("idle_sched_class", 0)
    assert k.symbol("init_task") == sm.address("init_task") + k.info.slide
    assert main(["symbols", str(guest_capture.image), "--isf", str(isf), "--address", hex(va + 4)]) == 0
    assert capsys.readouterr().out.strip().endswith("idle_sched_class+0x4")


def test_nothing_is_named_after_the_end_of_the_image(nokaslr_capture, cache, capsys):
    sm = SystemMap.load(nokaslr_capture.system_map)
    k = _kernel(nokaslr_capture, system_map=nokaslr_capture.system_map)
    end = sm.address("_end") + k.info.slide
    assert k.lookup(end - 8) is not None
    assert k.lookup(end) is None and k.lookup(end + 0x1FF0000) is None
    assert main(["symbols", str(nokaslr_capture.image), "-m", str(nokaslr_capture.system_map), "--address", hex(end + 0x100)]) == 4
