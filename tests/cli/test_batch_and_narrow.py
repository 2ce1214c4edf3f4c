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


# -- narrow terminals ---------------------------------------------------------------------------------
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
HEXWORD = re.compile(r"0x[0-9a-f]{8,}")


@pytest.fixture
def tty80(monkeypatch):
    """A forced 80-column terminal: stdout (capsys's, patched inside the test) claims to be a tty."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERM", "xterm")

    def tty(on=True):
        monkeypatch.setattr(sys.stdout, "isatty", lambda: on)

    return tty


def _screen(capsys):
    out = ANSI.sub("", capsys.readouterr().out)
    assert all(len(line) <= 80 for line in out.splitlines()), max(out.splitlines(), key=len)
    return out


def _addresses(doc) -> set[str]:
    return set(HEXWORD.findall(json.dumps(doc)))


def _json(capsys, argv):
    main([*argv, "--json"])
    return json.loads(capsys.readouterr().out)


def test_translate_table_keeps_every_address_whole(nokaslr_capture, cache, capsys, tty80, monkeypatch):
    img = str(nokaslr_capture.image)
    doc = _json(capsys, ["translate", img, "--gva", "init_task"])
    tty80()
    assert main(["translate", img, "--gva", "init_task"]) == 0
    screen = _screen(capsys)
    want = {st["table_address"] for w in doc["walks"] for st in w["steps"]}
    want |= {st["descriptor"] for w in doc["walks"] for st in w["steps"]}
    assert want and want <= set(HEXWORD.findall(screen)), want - set(HEXWORD.findall(screen))


def test_host_tables_keep_every_address_whole(nested_capture, cache, capsys, tty80, monkeypatch):
    """verify's findings, vms' memory and registry tables at 80 columns."""
    img, log = str(nested_capture.image), str(nested_capture.smclog)
    gt = nested_capture.ground_truth["vms"][0]
    kvm, vttbr = f"{int(gt['struct_kvm_va'], 16):#x}", f"{int(gt['vttbr'], 16) & ~1:#x}"
    tty80()
    assert main(["verify", img, "--events", log, "--until", "0", "--no-guests"]) == 1
    screen = _screen(capsys)
    assert kvm in screen and vttbr in screen and "hidden-vm" in screen
    assert main(["vms", img, "--events", log]) == 0
    screen = _screen(capsys)
    words = set(HEXWORD.findall(screen))
    assert kvm in words and f"{int(gt['stage2_base'], 16):#x}" in words
