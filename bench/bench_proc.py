#!/usr/bin/env python3
"""Speed of the process views (issue 14), as a user runs them (subprocesses, warm caches).

    python bench/bench_proc.py [--repeat 5] [--out DIR]

Cases:
  psaux vs ps   both over every process of deb61-rich-kaslr with its System.map,
                run in alternation; target: psaux median <= 1.5 x ps median;
  maps          every VMA of every process on the same image; target <= 1 s warm;
  procdump      the largest process there is in the shared captures: the nested host's
                QEMU (its 128 MiB of guest RAM is its own anonymous memory), read
                through the host kernel's tables (--vm host); MB/s = resident bytes
                written / time inside the command (its --json "seconds"), into a
                tmpfs (/dev/shm) and into --out (default: a temporary directory on
                the disk).  Target >= 200 MB/s.  procdump writes every byte twice
                (its run file and the core), so on a disk the figure is bounded by
                half its write bandwidth, shown too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ps import armvmi_cmd, child_env, precompile, run_once  # noqa: E402


def capture(name):
    import conftest

    src = conftest.SHARED_CAPTURES / name
    if not (src / "ground_truth.json").exists():
        sys.exit(f"bench_proc: capture {name} not found under {conftest.SHARED_CAPTURES}")
    return conftest.Capture(name, src)


def write_bandwidth(d: Path, mb: int = 256) -> float:
    buf = os.urandom(1 << 20)
    p = d / "bench-write.tmp"
    t0 = time.perf_counter()
    with open(p, "wb") as f:
        for _ in range(mb):
            f.write(buf)
        f.flush()
    dt = time.perf_counter() - t0
    p.unlink()
    return mb / dt


def procdump_rate(cmd, args, pid, out_parent: Path, cache: Path, repeat: int) -> tuple[float, int, float]:
    rates, nbytes, walls = [], 0, []
    for _ in range(repeat):
        out = out_parent / f"pd-{os.getpid()}"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        r = subprocess.run([*cmd, "procdump", *args, "--pid", str(pid), "-o", str(out), "--json"],
                           capture_output=True, text=True, env=child_env(cache))
        walls.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"bench_proc: procdump exited {r.returncode}: {r.stderr.strip()}")
        doc = json.loads(r.stdout)
        nbytes = doc["bytes"]
        rates.append(doc["bytes"] / doc["seconds"] / 1e6)
        shutil.rmtree(out, ignore_errors=True)
    return statistics.median(rates), nbytes, statistics.median(walls)


def library_maps_time(cap) -> float:
    """The maps view alone, in this process, warm (best of 5)."""
    import armvmi_cli
    from armvmi_cli.linux.proc import maps_view

    k = armvmi_cli.open(cap.image, system_map=cap.system_map).vm().kernel
    maps_view(k)
    best = float("inf")
    for _ in range(5):
        k.__dict__.pop("_mm_layers", None)
        t0 = time.perf_counter()
        maps_view(k)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, help="directory on the disk for procdump output (default: a temporary one)")
    a = ap.parse_args(argv)
    cmd = armvmi_cmd()
    precompile()
    rich = capture("deb61-rich-kaslr")
    nested = capture("nested-nvhe-kaslr")
    cache = Path(tempfile.mkdtemp(prefix="armvmi-bench-cache-"))
    try:
        base = [str(rich.image), "--system-map", str(rich.system_map)]
        run_once([*cmd, "ps", *base], cache)  # fill the caches
        ps_t, psaux_t, maps_t = [], [], []
        for _ in range(a.repeat):
            ps_t.append(run_once([*cmd, "ps", *base], cache)[:2])
            psaux_t.append(run_once([*cmd, "psaux", *base], cache)[:2])
            maps_t.append(run_once([*cmd, "maps", *base], cache)[:2])
        ps_m, psaux_m, maps_m = (statistics.median(w for w, _ in t) for t in (ps_t, psaux_t, maps_t))
        ps_c, psaux_c, maps_c = (statistics.median(c for _, c in t) for t in (ps_t, psaux_t, maps_t))
        lib = library_maps_time(rich)

        hargs = [str(nested.image), "-e", str(nested.smclog), "--system-map", str(nested.system_map), "--vm", "host"]
        r = subprocess.run([*cmd, "psaux", *hargs, "--json"], capture_output=True, text=True, env=child_env(cache))
        rows = json.loads(r.stdout)["vms"][0]["processes"]
        qemu = next(p for p in rows if (p["exe"] or "").endswith("qemu-system-aarch64"))
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
        disk = a.out or Path(tempfile.mkdtemp(prefix="armvmi-bench-pd-"))
        disk.mkdir(parents=True, exist_ok=True)
        results = []
        for label, d in (("tmpfs", shm), ("disk", disk)):
            if d is None:
                continue
            rate, nbytes, wall = procdump_rate(cmd, hargs, qemu["pid"], d, cache, max(1, a.repeat // 2))
            results.append((label, d, rate, nbytes, wall, write_bandwidth(d)))
        if a.out is None:
            shutil.rmtree(disk, ignore_errors=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; medians of {a.repeat} warm runs (wall s)")
    ratio = psaux_m / ps_m
    print(f"  ps     {ps_m:6.3f} s (cpu {ps_c:.3f})   psaux {psaux_m:6.3f} s (cpu {psaux_c:.3f})   ratio {ratio:4.2f}"
          f" (cpu {psaux_c / ps_c:4.2f})  target <= 1.5  {'ok' if ratio <= 1.5 else 'MISSED'}")
    print(f"  maps   {maps_m:6.3f} s (cpu {maps_c:.3f}; the walk itself {lib * 1000:.1f} ms in-process) every process,"
          f"  target <= 1.0 s  {'ok' if maps_m <= 1.0 else 'MISSED'}")
    for label, d, rate, nbytes, wall, bw in results:
        print(f"  procdump pid {qemu['pid']} ({qemu['comm']}) -> {label} {d}: {nbytes / 1e6:.1f} MB resident, "
              f"{rate:6.1f} MB/s (wall {wall:.2f} s incl. start-up); write bandwidth there {bw:.0f} MB/s; "
              f"target >= 200 MB/s  {'ok' if rate >= 200 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
