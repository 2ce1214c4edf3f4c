"""The per-run fast path: `armvmi CMD ...` builds only CMD's click command
(cli/app.py _app_for), which must parse, help and fail exactly as the full
app; and a piped or --json view never imports rich."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from armvmi_cli.cli import app as A

SAMPLE = Path(__file__).resolve().parents[2] / "snapshots" / "deb61-generic-nokaslr.armvmi"


def _out(typer_app, argv):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        try:
            typer_app(args=argv, standalone_mode=False, prog_name="armvmi")
        except BaseException as e:  # click's usage errors, typer.Exit
            buf.write(f"<{type(e).__name__}: {e}>")
    return buf.getvalue()


def _names():
    return [A._command_name(c) for c in A.app.registered_commands + A.app.registered_groups]


def test_every_command_is_found_by_name():
    names = _names()
    assert None not in names and {"ps", "vms", "profile", "snapshot", "events"} <= set(names)
    for n in names:
        one = A._app_for([n, "x"])
        assert one is not A.app
        assert len(one.registered_commands) + len(one.registered_groups) == 1


@pytest.mark.parametrize("argv_tail", [["--help"], ["--no-such-option"]])
def test_one_command_app_behaves_like_the_full_app(argv_tail):
    for n in _names():
        argv = [n, *argv_tail]
        assert _out(A._app_for(argv), argv) == _out(A.app, argv), n


def test_root_options_and_unknown_commands_get_the_full_app():
    assert A._app_for([]) is A.app
    assert A._app_for(["--help"]) is A.app
    assert A._app_for(["no-such-command"]) is A.app
    assert A._app_for(["--debug", "ps", "x"]) is not A.app


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--jsonl"]])
def test_piped_view_does_not_import_rich(fmt):
    code = (
        "import sys, json\n"
        "from armvmi_cli.cli.app import main\n"
        f"rc = main(['ps', {str(SAMPLE)!r}, *{fmt!r}])\n"
        "sys.stderr.write(json.dumps([rc, [m for m in ('rich', 'pydantic', 'elftools') if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    rc, heavy = json.loads(out.stderr.strip().splitlines()[-1])
    assert rc == 0 and out.stdout.count("\n") > 40
    assert heavy == []
