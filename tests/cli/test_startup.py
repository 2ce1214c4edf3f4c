"""Start-up stays light, --help lists every command, --version works, and
usage errors are one line with exit code 2 (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("elftools", "construct", "lz4", "cramjam", "rich", "pydantic", "distributed")
COMMANDS = ("ps", "pstree", "translate", "struct", "read", "info", "symbols", "vms", "events", "profile", "snapshot", "verify", "lsof", "mounts", "psaux", "envars", "maps", "malfind", "procdump", "lsmod", "dmesg", "ebpf", "check", "extract", "sweep", "sockstat", "ifaddr")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "armvmi_cli", *args], capture_output=True, text=True, timeout=120)


def test_help_imports_no_heavy_library():
    code = (
        "import sys, json\n"
        "from armvmi_cli.cli.app import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_help_lists_every_command():
    out = _run("--help")
    assert out.returncode == 0
    for c in COMMANDS:
        assert f"  {c} " in out.stdout, c


def test_version():
    out = _run("--version")
    assert out.returncode == 0 and out.stdout.startswith("armvmi ")


def test_usage_errors_are_one_line_exit_2(tmp_path):
    bad_option = _run("ps", "--no-such-option", "x")
    assert bad_option.returncode == 2 and "Traceback" not in bad_option.stderr
    missing = _run("ps", str(tmp_path / "nope.img"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0
    assert "nope.img" in missing.stderr
    garbage = tmp_path / "garbage.img"
    garbage.write_bytes(b"\x00" * 8192)
    out = _run("ps", str(garbage))
    assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0


def test_debug_shows_the_traceback(tmp_path):
    out = _run("--debug", "ps", str(tmp_path / "nope.img"))
    assert out.returncode == 2 and "Traceback" in out.stderr
