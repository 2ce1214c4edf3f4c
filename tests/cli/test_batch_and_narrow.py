"""Issue 11, batch use: one bad line never hides the good ones, and tables never
cut an address or a name on a narrow terminal."""

from __future__ import annotations

import io
import json

import pytest

from armvmi_cli.cli.app import main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))


def test_translate_batch_gives_a_record_per_line(nokaslr_capture, cache, capsys, monkeypatch):
    lines = ["init_task", "no_such_symbol_xyz", "0x0", "not-a-number!", "init_task+0x10"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    rc = main(["translate", str(nokaslr_capture.image), "--gva", "-", "--json"])
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 5
    assert len(out) == len(lines)
    good, badsym, unmapped, garbage, good2 = out
    assert good["fault"] is None and good.get("error") is None and good["chain"][-1][0] == "gpa"
    assert "no_such_symbol_xyz" in badsym["error"] and badsym["input"] == "no_such_symbol_xyz"
    assert unmapped["fault"] and "error" not in unmapped
    assert garbage["error"]
    assert int(good2["input"], 16) == int(good["input"], 16) + 0x10 and good2["fault"] is None
    assert all(r["vm"] == "guest" and r["vm_id"] is None for r in out)


def test_translate_batch_all_good_is_exit_0(nokaslr_capture, cache, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("init_task\ninit_task+8\n"))
    assert main(["translate", str(nokaslr_capture.image), "--gva", "-", "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_translate_batch_text_keeps_going(nokaslr_capture, cache, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("bogus_symbol_q\ninit_task\n"))
    assert main(["translate", str(nokaslr_capture.image), "--gva", "-"]) == 5
    cap = capsys.readouterr()
    assert "bogus_symbol_q" in cap.err and "gpa 0x" in cap.out
