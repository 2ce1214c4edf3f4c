"""Hostile inputs end quickly and in bounded memory (issue 10).

Each runs in a subprocess with a timeout, so a regression fails instead of
hanging the suite; the bounds are generous (speed numbers live in bench/).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "memory"))

import synth  # noqa: E402


def _child(code: str, timeout: float, *args):
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO)
    assert r.returncode == 0, r.stderr
    return r.stdout


_OPEN = """
import sys, time
from armvmi_cli.memory import open_image
t = time.perf_counter()
m = open_image(sys.argv[1])
assert len(m.ranges()) == int(sys.argv[2]), len(m.ranges())
m.read(m.ranges()[-1].start, 1)
print(time.perf_counter() - t)
"""


def test_elf_with_30000_loads_opens_quickly(tmp_path):
    p = synth.write_many_loads_elf(tmp_path / "many.elf", 30000)
    _child(_OPEN, 30, p, 30000)  # was > 100 s (quadratic overlap resolution)


def test_elf_with_30000_overlapping_loads(tmp_path):
    # every segment covers its neighbour's page too: first-come-wins resolution has work to do
    p = synth.write_many_loads_elf(tmp_path / "overlap.elf", 30000, overlap=True)
    _child(_OPEN, 30, p, 30000)  # one run per segment: each loses the page its neighbour has


def test_lime_with_300k_ranges_opens_quickly(tmp_path):
    p = synth.write_many_ranges_lime(tmp_path / "many.lime", 300_000)
    _child(_OPEN, 30, p, 300_000)  # was 13 s (construct per header)


def test_overlap_resolution_keeps_first_segment():
    from armvmi_cli.memory.elfcore import _resolve

    # later pieces lose where earlier ones cover; file offsets follow the cut
    got = _resolve([(10, 20, 100), (0, 30, 0), (15, 40, None), (5, 12, 500)])
    assert got == [(0, 10, 0), (10, 20, 100), (20, 30, 20), (30, 40, None)]


def test_many_vms_sharing_one_stage2(nested_capture, tmp_path):
    """64 VM_CREATEs over the one real stage 2: took 42 s and 2.3 GB for ps."""
    from armvmi_cli.firmware.smclog import make_record, read_log, write_log

    gt = {t["pid"]: t["comm_task_struct"] for t in nested_capture.ground_truth["vms"][0]["tasks"]}
    header, recs = read_log(nested_capture.smclog)
    drv, create, run = recs[:3]
    out = [drv]
    for i in range(64):
        for r in (create, run):
            x = [r.x0, r.x1, 1000 + i, *(getattr(r, f"x{k}") for k in range(3, 8))]
            if r is create:
                x[3] = r.x3 + (i << 12)  # its own struct kvm address; same VTTBR and VTCR
            out.append(make_record(len(out), x, timestamp_ns=r.timestamp_ns + i, ret=0))
    log = tmp_path / "many.smclog"
    write_log(log, out, header)
    env_code = f"""
        import os, sys
        os.environ["ARMVMI_CACHE"] = {str(tmp_path / "cache")!r}
        from armvmi_cli.cli.app import main
        rc = main(["ps", sys.argv[1], "--events", sys.argv[2], "--json"])
        # VmHWM: this process's own peak (getrusage's maxrss includes the forking parent's)
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]
        print("MAXRSS", hwm, file=sys.stderr)
        sys.exit(rc)
    """
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(env_code), str(nested_capture.image), str(log)],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)
    assert len(doc["vms"]) == 64
    for vm in doc["vms"]:
        rows = {t["pid"]: t["comm"] for t in vm["tasks"] if t["pid"] == t["tgid"]}
        assert rows == gt, vm["vm"]
    assert any("same stage-2 tables" in w for w in doc["warnings"])
    maxrss_mb = int(r.stderr.rsplit("MAXRSS", 1)[1].split()[0]) / 1024  # this child's own peak
    assert maxrss_mb < 1200, maxrss_mb  # was 2.3 GB
