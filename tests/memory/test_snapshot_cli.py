"""`armvmi snapshot pack|info|export` through the real entry point: output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.memory import open_image
from armvmi_cli.memory.lime import write_lime

from .synth import sample_memory


@pytest.fixture
def lime(tmp_path):
    p = tmp_path / "img.lime"
    write_lime(sample_memory(), p)
    return p


def test_pack_info_round_trip(lime, tmp_path, capsys):
    (tmp_path / "img.lime.smclog").write_bytes(b"LOG!")
    out = tmp_path / "o.armvmi"
    assert main(["snapshot", "pack", str(lime), str(out), "--host-name", "h7", "--note", "a", "--note", "b", "--boot-id", "bid"]) == 0
    said = capsys.readouterr().out
    assert "sibling file" in said and "3 range(s)" in said
    m = open_image(out)
    assert m.embedded_events == b"LOG!" and m.metadata["notes"] == ["a", "b"] and m.metadata["boot_id"] == "bid"
    assert m.metadata["source_format"] == "lime"
    assert main(["snapshot", "info", str(out), "--json", "--check"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["format"] == "armvmi" and d["checked_chunks"] > 0 and d["event_log"]["size"] == 4
    assert len(d["ranges"]) == 3 and d["metadata"]["host_name"] == "h7"
    assert main(["snapshot", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "armvmi" in text and "embedded in o.armvmi" in text and "host_name: h7" in text


def test_pack_sparse_from_page_list(lime, tmp_path, capsys):
    pages = tmp_path / "pages.txt"
    pages.write_text("# pages ps read\n0x40000000\n40001000\n0x9999000\n")
    out = tmp_path / "sp.armvmi"
    assert main(["snapshot", "pack", str(lime), str(out), "--pages-from", str(pages), "--no-events"]) == 0
    err = capsys.readouterr().err
    assert "1 listed page(s)" in err
    assert open_image(out).size == 0x2000


def test_export_lime_from_snapshot(lime, tmp_path, capsys):
    out = tmp_path / "o.armvmi"
    assert main(["snapshot", "pack", str(lime), str(out)]) == 0
    back = tmp_path / "back.lime"
    assert main(["snapshot", "export", str(out), str(back), "--format", "lime"]) == 0
    assert back.read_bytes() == lime.read_bytes()  # byte for byte, holes and all
    assert main(["snapshot", "export", str(out), str(back), "--format", "zip"]) == 2


def test_bad_inputs_exit_2_one_line(lime, tmp_path, capsys):
    out = tmp_path / "o.armvmi"
    main(["snapshot", "pack", str(lime), str(out)])
    capsys.readouterr()
    trunc = tmp_path / "t.armvmi"
    trunc.write_bytes(out.read_bytes()[:-10])
    badlime = tmp_path / "t.lime"
    badlime.write_bytes(lime.read_bytes()[:5000])
    for args in (["snapshot", "info", str(trunc)], ["snapshot", "info", str(badlime)], ["snapshot", "info", str(tmp_path / "nope")],
                 ["snapshot", "pack", str(lime), str(lime)], ["snapshot", "info", str(lime), "--phys-base", "0x1000"],
                 ["snapshot", "pack", str(lime), str(tmp_path / "x"), "--pages-from", str(tmp_path / "nope")]):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("armvmi: error: ") and err.count("\n") == 1, err
    assert lime.exists() and open_image(lime).size == sample_memory().size


def test_subprocess_entry_point(tmp_path):
    bad = tmp_path / "bad.armvmi"
    bad.write_bytes(b"ARMVMI\x00S" + bytes(100))
    r = subprocess.run([sys.executable, "-m", "armvmi_cli", "snapshot", "info", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("armvmi: error:")
