"""Helpers for the evidence-safety tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "snapshots" / "deb61-generic-nokaslr.armvmi"


def cli(capsys, *args) -> tuple[int, str, str]:
    from armvmi_cli.cli.app import main

    rc = main([os.fspath(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def run(*args, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """armvmi in a child process, with a timeout so a regression that hangs fails instead."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "armvmi_cli", *map(os.fspath, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("armvmi: error: "), err
    return lines[0]


def dev_null() -> str:
    """/dev/null, checked: on a shared machine a tool without armvmi's rules
    may have replaced it with a regular file (which is what these tests guard against)."""
    import pytest
    import stat

    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        pytest.skip("/dev/null on this machine is not a character device (something replaced it)")
    return "/dev/null"
