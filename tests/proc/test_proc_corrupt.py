"""Corrupt VMA trees in real memory (a patched copy of the rich capture): the
walk for that process ends with a warning, the output is marked partial
(exit 5), the other processes are still listed in full, and nothing hangs or
raises."""

from __future__ import annotations

import json

import pytest

import armvmi_cli
from armvmi_cli.cli.app import main
from armvmi_cli.linux.maple_tree import MAPLE_ARANGE_64, MapleLayout
from tests.fixtures.patch import copy_image, patch_u64


@pytest.fixture
def rich_copy(rich_capture, tmp_path, monkeypatch):
    return copy_image(rich_capture.image, tmp_path, monkeypatch)


def _root(path, pid):
    from armvmi_cli.linux.proc import find_process

    k = armvmi_cli.open(path).vm().kernel
    mm = find_process(k, pid).mm.deref()
    root = k.read_u64(mm.address_ + mm.offsetof_("mm_mt") + k.offsetof("maple_tree", "ma_root"))
    node = root & ~0xFF
    assert (root >> 3) & 0xF == MAPLE_ARANGE_64, "tls-gw's tree has an internal root in this capture"
    return k, node, MapleLayout.of(k).kinds[MAPLE_ARANGE_64]


def _maps(capsys, path):
    rc = main(["maps", str(path), "--json"])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, json.loads(cap.out)["vms"][0], cap.err


def _check_partial(rc, vm, err, rich_capture):
    assert rc == 5
    assert not vm["complete"] and any(p.startswith("pid 97:") for p in vm["problems"])
    assert "PARTIAL" in err
    gt = {p["pid"]: p for p in rich_capture.ground_truth["rich"]["processes"]}
    lines = {}
    for r in vm["maps"]:
        lines.setdefault(r["pid"], []).append(r["line"])
    for pid in (1, 96, 99, 100, 101, 102, 104):  # the others are whole
        assert lines[pid] == gt[pid]["maps"]
    assert lines.get(97, []) == gt[97]["maps"][: len(lines.get(97, []))]  # a prefix, never made up


def test_cycle_in_a_maple_node(rich_copy, rich_capture, capsys):
    k, node, a64 = _root(rich_copy, 97)
    first_child = k.read_u64(node + a64.slot_off)
    # The second child points back at the root: a loop.
    patch_u64(rich_copy, k.vmem.translate(node + a64.slot_off + 8), node | (MAPLE_ARANGE_64 << 3))
    assert first_child
    rc, vm, err = _maps(capsys, rich_copy)
    _check_partial(rc, vm, err, rich_capture)
    assert any("cycle" in p for p in vm["problems"])


def test_pivots_out_of_order(rich_copy, rich_capture, capsys):
    k, node, a64 = _root(rich_copy, 97)
    leaf = k.read_u64(node + a64.slot_off) & ~0xFF  # the first leaf: the lowest VMAs
    r64 = MapleLayout.of(k).kinds[1]
    p0 = k.read_u64(leaf + r64.pivot_off)
    p1 = k.read_u64(leaf + r64.pivot_off + 8)
    assert p0 < p1
    patch_u64(rich_copy, k.vmem.translate(leaf + r64.pivot_off + 8), p0 - 0x1000)
    rc, vm, err = _maps(capsys, rich_copy)
    _check_partial(rc, vm, err, rich_capture)
    assert any("bad-pivots" in p for p in vm["problems"])


def test_slot_outside_the_tree(rich_copy, rich_capture, capsys):
    k, node, a64 = _root(rich_copy, 97)
    child = k.read_u64(node + a64.slot_off + 8)
    # A child pointer into unmapped kernel space, keeping its type bits.
    patch_u64(rich_copy, k.vmem.translate(node + a64.slot_off + 8), 0xFFFF_7000_0000_0000 | (child & 0xFF))
    rc, vm, err = _maps(capsys, rich_copy)
    _check_partial(rc, vm, err, rich_capture)
    # malfind and psaux on the same image: same partial mark, no traceback.
    rc = main(["malfind", str(rich_copy)])
    cap = capsys.readouterr()
    assert rc == 1 and "Traceback" not in cap.err and "PARTIAL" in cap.err
