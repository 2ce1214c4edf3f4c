"""The shipped sample works from an installed armvmi, with no checkout beside it.

- a copy of the package with no profiles anywhere reads the sample with the
  symbols and BTF the snapshot itself carries (``snapshot pack`` embeds them);
- the wheel ships ``profiles/`` as package data, and an installed armvmi finds
  them there.
Both run in a subprocess whose working directory is outside the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "snapshots" / "deb61-generic-nokaslr.armvmi"
TRUTH = json.loads((REPO / "snapshots" / "deb61-generic-nokaslr.truth.json").read_text())


def _run(site: Path, tmp: Path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMVMI_")}
    env.update(PYTHONPATH=str(site), ARMVMI_CACHE=str(tmp / "cache"), XDG_DATA_HOME=str(tmp / "xdg"), HOME=str(tmp))
    return subprocess.run([sys.executable, "-m", "armvmi_cli", *map(str, args)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)


def _imports_from(site: Path, tmp: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMVMI_")}
    env["PYTHONPATH"] = str(site)
    out = subprocess.run([sys.executable, "-c", "import armvmi_cli; print(armvmi_cli.__file__)"], cwd=tmp, env=env,
                         capture_output=True, text=True, timeout=120)
    return out.stdout.strip()


def test_sample_reads_with_what_it_carries(tmp_path):
    site = tmp_path / "site"
    shutil.copytree(REPO / "armvmi_cli", site / "armvmi_cli", ignore=shutil.ignore_patterns("__pycache__", "profiles"))
    assert _imports_from(site, tmp_path).startswith(str(site))
    out = _run(site, tmp_path, "profile", "list", "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == [], "this copy must see no profile at all"
    out = _run(site, tmp_path, "ps", SAMPLE, "--json")
    assert out.returncode == 0, out.stderr
    (vm,) = json.loads(out.stdout)["vms"]
    got = {(t["pid"], t["ppid"], t["comm"], t["uid"], t["kernel_thread"]) for t in vm["tasks"]}
    assert got == {(t["pid"], t["ppid"], t["comm_task_struct"], t["uid"], t["is_kernel_thread"]) for t in TRUTH["tasks"]}
    info = _run(site, tmp_path, "info", SAMPLE, "--json")
    assert "embedded in the snapshot" in info.stdout


def test_wheel_ships_the_profiles(tmp_path):
    import importlib.util

    pytest.importorskip("setuptools")
    offline = importlib.util.find_spec("wheel") is not None  # else pip fetches the build backend
    build = tmp_path / "src"
    # build from a copy: the wheel build writes build/ and *.egg-info, never into the checkout
    shutil.copytree(REPO, build, ignore=shutil.ignore_patterns(".venv*", ".git", "__pycache__", "build", "*.egg-info",
                                                               "tests", "snapshots", "bench"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *(["--no-build-isolation"] if offline else []),
                          "-q", str(build), "-w", str(tmp_path / "dist")], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0 and "No module named pip" in out.stderr:
        pytest.skip("pip is not available")
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("armvmi-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(site)
    for p in (REPO / "profiles").glob("*/*"):
        assert f"armvmi_cli/profiles/{p.parent.name}/{p.name}" in names
    assert _imports_from(site, tmp_path).startswith(str(site))
    out = _run(site, tmp_path, "profile", "list", "--json")
    assert out.returncode == 0, out.stderr
    found = {p["name"]: p["dir"] for p in json.loads(out.stdout)}
    want = {p.name for p in (REPO / "profiles").iterdir() if (p / "profile.json").exists()}
    assert want <= set(found) and all(found[n].startswith(str(site)) for n in want), (found, site, out.stderr)
