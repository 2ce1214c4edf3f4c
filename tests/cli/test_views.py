"""The one view renderer: JSON convention, plain columns, narrow terminals."""

from __future__ import annotations

import io
import json
from dataclasses import MISSING

from armvmi_cli.cli.views import fit_columns, plain_table
from armvmi_cli.view import Column, Finding, addr, cell, record, to_json


@record
class Row:
    pid: int
    start: int = addr(MISSING)
    ptrs: list = addr(None)
    name: str = ""
    ok: bool = False


def test_addresses_are_hex_strings_and_counts_numbers():
    r = Row(7, 0xFFFF_8000_0801_0000, [0x10, 0x20], "x", True)
    d = to_json(r)
    assert d == {"pid": 7, "start": "0xffff800008010000", "ptrs": ["0x10", "0x20"], "name": "x", "ok": True}
    # a 64-bit address survives a JSON round trip as text
    assert json.loads(json.dumps(d))["start"] == "0xffff800008010000"


def test_finding_evidence_is_json_able():
    f = Finding("hidden-process", "critical", "1", "pid 9 hidden", {"pid": 9, "comm": "x"})
    assert f.to_dict() == {"kind": "hidden-process", "severity": "critical", "vm": "1", "message": "pid 9 hidden",
                           "evidence": {"pid": 9, "comm": "x"}}


def test_cells():
    r = Row(1, 0x1000, None, "init", True)
    assert cell(r, Column("start")) == "0x1000"
    assert cell(r, Column("ptrs")) == "-"
    assert cell(r, Column("ok")) == "yes"
    assert cell(r, Column("pid", fmt=lambda v: f"<{v}>")) == "<1>"


def test_plain_table_aligns_and_never_cuts():
    cols = (Column("pid", align="right"), Column("name"), Column("start"))
    rows = [["1", "a-very-long-process-name", "0xffff800008010000"], ["100", "b", "0x1"]]
    out = io.StringIO()
    plain_table("vm 1", cols, rows, out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "# vm 1"
    assert lines[1].split() == ["PID", "NAME", "START"]
    assert "a-very-long-process-name" in lines[2] and "0xffff800008010000" in lines[2]
    assert lines[2].index("a-very") == lines[3].index("b")  # aligned columns
    assert lines[2].startswith("  1") and lines[3].startswith("100")


def test_narrow_terminal_drops_columns_by_priority_not_cuts():
    cols = (Column("pid"), Column("comm"), Column("gva", priority=1), Column("phys", priority=5), Column("start", priority=4))
    rows = [["1", "init", "0xffff0000025ae180", "0x425ae180", "0.06"]]
    assert fit_columns(cols, rows, 200) == [0, 1, 2, 3, 4]
    keep = fit_columns(cols, rows, 40)
    assert 0 in keep and 1 in keep and 3 not in keep  # phys (priority 5) goes first
    assert fit_columns(cols, rows, 5) == [0, 1]  # priority 0 always stays
