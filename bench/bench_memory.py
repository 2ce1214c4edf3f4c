#!/usr/bin/env python3
"""Benchmark the memory readers: raw mmap vs .armvmi snapshot.

Generates an image of >= 1 GiB in a temporary directory (pages from the real
nokaslr capture when it is in the capture cache, plus random and zero pages),
then measures:
  * pack speed (raw -> .armvmi), MB/s of memory packed;
  * random 4 KiB reads (page aligned) and random 8-byte reads, per read;
  * sequential reads in 1 MiB pieces, MB/s.
Targets (issue 2): .armvmi random 4 KiB reads within 3x of raw; pack >= 300 MB/s.
Both files are read once before timing, so the page cache is warm for both.

    python bench/bench_memory.py [--size-mib 1024] [--reads 200000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from armvmi_cli.memory import open_image  # noqa: E402
from armvmi_cli.memory.armvmi_snapshot import pack  # noqa: E402

PAGE = 4096
BLOCK = 1 << 20


def capture_source():
    cache = Path(os.environ.get("ARMVMI_CAPTURE_CACHE", Path.home() / ".cache" / "armvmi-captures"))
    p = cache / "deb61-generic-nokaslr" / "dump.elf"
    return open_image(p) if p.exists() else None


def generate(path: Path, size: int, seed: int = 1) -> str:
    """Write ``size`` bytes: per 1 MiB block, capture memory (tiled) 60%, random 20%,
    zero 10%, text 10%.  Returns a description of the mix."""
    rnd = random.Random(seed)
    cap = capture_source()
    cap_range = cap.ranges()[0] if cap else None
    text = (b"task_struct sshd-session cryptominer /usr/lib/x86_64 GLIBC_2.34 " * 20000)[:BLOCK]
    kinds = {"capture": 0, "random": 0, "zero": 0, "text": 0}
    cap_off = 0
    with open(path, "wb") as f:
        for _ in range(size // BLOCK):
            x = rnd.random()
            if cap and x < 0.6:
                f.write(cap.read(cap_range.start + cap_off, BLOCK))
                cap_off = (cap_off + BLOCK) % cap_range.size
                kinds["capture"] += 1
            elif x < 0.8:
                f.write(rnd.randbytes(BLOCK))
                kinds["random"] += 1
            elif x < 0.9:
                f.write(bytes(BLOCK))
                kinds["zero"] += 1
            else:
                f.write(text)
                kinds["text"] += 1
    n = sum(kinds.values())
    return ", ".join(f"{k} {v * 100 // n}%" for k, v in kinds.items() if v) + (" (capture: nokaslr dump.elf)" if cap else " (capture absent)")


def warm(mem) -> None:
    for r in mem.ranges():
        for pa in range(r.start, r.end, 16 * BLOCK):
            mem.read(pa, min(16 * BLOCK, r.end - pa))


def time_random(mem, addrs, n) -> float:
    read = mem.read
    t = time.perf_counter()
    for pa in addrs:
        read(pa, n)
    return (time.perf_counter() - t) / len(addrs)


def time_sequential(mem) -> float:
    t = time.perf_counter()
    total = 0
    for r in mem.ranges():
        for pa in range(r.start, r.end, BLOCK):
            total += len(mem.read(pa, min(BLOCK, r.end - pa)))
    return total / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--reads", type=int, default=200_000)
    ap.add_argument("--dir", default=None, help="where to put the generated files (default: a temp dir)")
    ap.add_argument("--chunk-size", type=int, default=4096)
    args = ap.parse_args()
    size = args.size_mib * BLOCK
    work = Path(tempfile.mkdtemp(prefix="armvmi-bench-", dir=args.dir))
    try:
        raw_p, snap_p = work / "image.raw", work / "image.armvmi"
        t = time.perf_counter()
        mix = generate(raw_p, size)
        print(f"image: {size >> 20} MiB raw, {mix}; generated in {time.perf_counter() - t:.1f} s")
        raw = open_image(raw_p)
        warm(raw)
        t = time.perf_counter()
        info = pack(raw, snap_p, chunk_size=args.chunk_size)
        dt = time.perf_counter() - t
        pack_mbs = size / dt / 1e6
        print(f"pack: {pack_mbs:.0f} MB/s ({dt:.2f} s, {os.cpu_count()} CPUs, chunk {args.chunk_size}); "
              f".armvmi is {info['file_size'] / size:.3f} of raw ({info['file_size'] >> 20} MiB)")
        snap = open_image(snap_p)
        warm(snap)
        rnd = random.Random(2)
        pages = [rnd.randrange(size // PAGE) * PAGE for _ in range(args.reads)]
        odd = [rnd.randrange(size - 8) & ~7 for _ in range(args.reads)]
        rows = []
        for name, mem in (("raw mmap", raw), (".armvmi", snap)):
            r4 = min(time_random(mem, pages, PAGE) for _ in range(2))
            r8 = min(time_random(mem, odd, 8) for _ in range(2))
            seq = time_sequential(mem)
            rows.append((name, r4, r8, seq))
        print(f"{'reader':<10} {'rand 4KiB/read':>15} {'rand 4KiB MB/s':>15} {'rand 8B/read':>13} {'seq MB/s':>10}")
        for name, r4, r8, seq in rows:
            print(f"{name:<10} {r4 * 1e6:>12.2f} us {PAGE / r4 / 1e6:>15.0f} {r8 * 1e6:>10.2f} us {seq / 1e6:>10.0f}")
        ratio = rows[1][1] / rows[0][1]
        ok_r, ok_p = ratio <= 3.0, pack_mbs >= 300
        print(f"random 4 KiB: .armvmi/raw = {ratio:.2f}x (target <= 3x): {'PASS' if ok_r else 'FAIL'}")
        print(f"pack: {pack_mbs:.0f} MB/s (target >= 300): {'PASS' if ok_p else 'FAIL'}")
        raw.close()
        snap.close()
        return 0 if ok_r and ok_p else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
