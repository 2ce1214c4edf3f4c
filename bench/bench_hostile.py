#!/usr/bin/env python3
"""Hostile inputs must end quickly, in bounded memory (issue 10).

Measures, each in a fresh subprocess (wall time and peak RSS):
  * opening an ELF core with 30,000 PT_LOADs (and 30,000 overlapping ones);
  * opening a LiME file with 300,000 ranges;
  * `armvmi ps` over a log of 64 VM_CREATEs sharing the real nested capture's
    stage 2 (needs ../shared/captures and the decompressed capture cache).
Before the fix (armvmi of issue 10): > 100 s, 6 s, 42 s / 2.3 GB.

    python bench/bench_hostile.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "memory"))

import synth  # noqa: E402

SHARED = Path(os.environ.get("ARMVMI_SHARED_CAPTURES", REPO.parent.parent / "shared" / "captures"))
CACHE = Path(os.environ.get("ARMVMI_CAPTURE_CACHE", Path.home() / ".cache" / "armvmi-captures"))


_HWM = ("\nprint('VmHWM', [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1], "
        "file=sys.stderr)")


def child(code: str, *args, env=None, timeout=600):
    """(exit code, seconds, peak RSS in MB of that process alone: VmHWM, since
    getrusage's maxrss includes what the parent had when it forked)."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code + _HWM, *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO, env=env)
    dt = time.perf_counter() - t
    hwm = r.stderr.rsplit("VmHWM", 1)
    return r.returncode, dt, int(hwm[1].split()[0]) / 1024 if len(hwm) == 2 else None


OPEN = "import sys\nfrom armvmi_cli.memory import open_image\nm = open_image(sys.argv[1])\nprint(len(m.ranges()))"
PS = ("import sys\nfrom armvmi_cli.cli.app import main\nrc = main(['ps', sys.argv[1], '--events', sys.argv[2]])")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="armvmi-bench-hostile-"))
    rows = []
    for name, make in (("ELF, 30,000 PT_LOADs", lambda p: synth.write_many_loads_elf(p, 30000)),
                       ("ELF, 30,000 overlapping PT_LOADs", lambda p: synth.write_many_loads_elf(p, 30000, overlap=True)),
                       ("LiME, 300,000 ranges", lambda p: synth.write_many_ranges_lime(p, 300_000))):
        p = make(work / "img")
        rc, dt, rss = child(OPEN, p)
        rows.append((f"open {name}", dt, rss, rc))
    img, log = CACHE / "nested-nvhe-kaslr" / "host-mem.elf", SHARED / "nested-nvhe-kaslr" / "host-mem.elf.smclog"
    if img.exists() and log.exists():
        from armvmi_cli.firmware.smclog import make_record, read_log, write_log

        header, recs = read_log(log)
        drv, create, run = recs[:3]
        out = [drv]
        for i in range(64):
            for rec in (create, run):
                x = [rec.x0, rec.x1, 1000 + i, *(getattr(rec, f"x{k}") for k in range(3, 8))]
                if rec is create:
                    x[3] += i << 12
                out.append(make_record(len(out), x, timestamp_ns=rec.timestamp_ns + i, ret=0))
        write_log(work / "64.smclog", out, header)
        env = dict(os.environ, ARMVMI_CACHE=str(work / "cache"))
        for label in ("first run", "repeated"):
            rc, dt, rss = child(PS, img, work / "64.smclog", env=env)
            rows.append((f"ps, 64 VMs over one stage 2 ({label})", dt, rss, rc))
    else:
        print(f"(nested capture not in {CACHE}: the 64-VM case is skipped)")
    width = max(len(r[0]) for r in rows)
    for name, dt, rss, rc in rows:
        print(f"{name:<{width}}  {dt:7.2f} s  peak RSS {rss:6.0f} MB  exit {rc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
