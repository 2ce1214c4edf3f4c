#!/usr/bin/env python3
"""Sweep throughput: ``armvmi sweep ps`` over N images with 1 and 2 local workers.

    python bench/bench_sweep.py [--images 8] [--dir DIR] [--warm]

The images are distinct files (copies of the shared guest dumps, alternating
deb61-generic-nokaslr and deb61-cloud-kaslr, ~256 MiB each, made once in DIR
with reflinks/hard copies); every sweep runs as a subprocess with its own
empty ARMVMI_CACHE unless ``--warm`` (then a first sweep fills it and is not
counted).  Reports wall time, images/s (cluster start-up included, and with
the start-up of an empty sweep subtracted) and the 2-worker/1-worker speed-up.
On a shared 2-core machine the scaling is bounded by what else runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def armvmi_cmd() -> list[str]:
    exe = shutil.which("armvmi")
    return [exe] if exe else [sys.executable, "-m", "armvmi_cli"]


def make_images(d: Path, n: int):
    import conftest

    caps = []
    for name in ("deb61-generic-nokaslr", "deb61-cloud-kaslr"):
        src = conftest.SHARED_CAPTURES / name
        if not (src / "ground_truth.json").exists():
            sys.exit(f"bench_sweep: capture {name} not found under {conftest.SHARED_CAPTURES}")
        caps.append(conftest.Capture(name, src))
    d.mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n):
        c = caps[i % 2]
        p = d / f"img{i:03d}-{c.name}.elf"
        if not p.exists() or p.stat().st_size != c.image.stat().st_size:
            subprocess.run(["cp", "--reflink=auto", str(c.image), str(p)], check=True)
        images.append(p)
    return images, [a for c in caps for a in ("--system-map", str(c.system_map))]


def sweep(images, maps, workers: int, cache: Path, out: Path) -> float:
    out.unlink(missing_ok=True)
    env = dict(os.environ, ARMVMI_CACHE=str(cache))
    t0 = time.perf_counter()
    p = subprocess.run([*armvmi_cmd(), "sweep", "ps", *map(str, images), *maps, "-o", str(out), "--workers", str(workers)],
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"bench_sweep: sweep exited {p.returncode}: {p.stderr.decode().strip()[-500:]}")
    return dt


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--dir", type=Path, help="where to keep the image copies (default: a temporary dir, removed)")
    ap.add_argument("--warm", action="store_true", help="time with the symbol/type/facts caches filled")
    a = ap.parse_args(argv)
    d = a.dir or Path(tempfile.mkdtemp(prefix="armvmi-bench-sweep-"))
    try:
        images, maps = make_images(d, a.images)
        res = {}
        for workers in (1, 2):
            cache = Path(tempfile.mkdtemp(prefix="armvmi-bench-cache-"))
            out = d / f"out-{workers}.jsonl"
            try:
                # start-up alone: a sweep of one image already in OUT (resume: nothing to do but the last)
                if a.warm:
                    sweep(images, maps, workers, cache, out)
                t = sweep(images, maps, workers, cache, out)
                rows = sum(1 for _ in open(out))
                t_one = sweep(images[:1], maps, workers, cache, out)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            res[workers] = (t, rows, t_one)
    finally:
        if a.dir is None:
            shutil.rmtree(d, ignore_errors=True)
    print(f"armvmi sweep ps over {a.images} images ({'warm' if a.warm else 'empty'} caches); "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'workers':>7} {'wall s':>7} {'images/s':>9} {'1-image s':>10} {'images/s excl. start-up':>24} {'rows':>6}")
    for w, (t, rows, t_one) in res.items():
        per = a.images / t
        net = (a.images - 1) / (t - t_one) if t > t_one else float("nan")
        print(f"{w:7d} {t:7.2f} {per:9.2f} {t_one:10.2f} {net:24.2f} {rows:6d}")
    s = res[1][0] / res[2][0]
    s_net = (res[1][0] - res[1][2]) / (res[2][0] - res[2][2]) if res[2][0] > res[2][2] else float("nan")
    print(f"speed-up 2 workers / 1 worker: {s:.2f}x wall, {s_net:.2f}x excluding start-up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
