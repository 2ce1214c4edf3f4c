#!/usr/bin/env python3
"""Benchmark kallsyms recovery and the init_task search.

For each real capture in the capture cache: time to find and decode every
kallsyms table (the whole physical image is scanned), symbols recovered, and
(plain guests) time to locate init_task by structure.  Then the scan rate on a
synthetic 1 GiB image holding no kallsyms at all (the worst case: the whole
image is scanned and every anchor candidate rejected).
Target (issue 5): < 1 s per 256 MiB.

    python bench/bench_kallsyms.py [--size-mib 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from armvmi_cli.errors import SymbolError  # noqa: E402
from armvmi_cli.memory import open_image  # noqa: E402
from armvmi_cli.memory.base import PhysicalMemory, Range  # noqa: E402
from armvmi_cli.symbols.kallsyms import find_kallsyms_tables  # noqa: E402

CACHE = Path(os.environ.get("ARMVMI_CAPTURE_CACHE", Path.home() / ".cache" / "armvmi-captures"))
CAPTURES = {
    "deb61-generic-nokaslr": "dump.elf",
    "deb61-cloud-kaslr": "dump.elf",
    "nested-nvhe-kaslr": "host-mem.elf",
}


class PatternMemory(PhysicalMemory):
    """A large image made of a few MiB of random bytes and zero pages, repeated
    (generated on the fly: no file, no RAM for the whole size)."""

    format = "synthetic"

    def __init__(self, size: int):
        super().__init__(None)
        rnd = random.Random(0)
        # 16 MiB period (the scan's chunk), with digit-token decoys so the validator runs too
        tile = bytearray(rnd.randbytes(8 << 20) + bytes(8 << 20))
        decoy = b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00"
        for off in range(0x1234, len(tile) - 64, 1 << 20):
            tile[off : off + len(decoy)] = decoy
        self._period = len(tile)
        self._tile = bytes(tile) * 2
        self._set_ranges([Range(0x40000000, 0x40000000 + size)])

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            o = (pa + len(out) - 0x40000000) % self._period
            out += self._tile[o : o + min(n - len(out), self._period)]
        return bytes(out)


def best(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    for name, fname in CAPTURES.items():
        path = CACHE / name / fname
        if not path.exists():
            print(f"{name}: not in {CACHE} (run the tests once to decompress), skipped")
            continue
        mem = open_image(str(path))
        t, tables = best(lambda: find_kallsyms_tables(mem), args.repeat)
        mib = mem.size / (1 << 20)
        desc = ", ".join(f"{len(tb)} syms @PA {tb.table_pa:#x} base {tb.relative_base:#x}" for tb in tables)
        print(f"{name}: {mib:.0f} MiB scanned in {t:.3f} s ({t * 256 / mib:.3f} s per 256 MiB); {desc}")

    mem = PatternMemory(args.size_mib << 20)
    t0 = time.perf_counter()
    try:
        find_kallsyms_tables(mem)
    except SymbolError:
        pass
    t = time.perf_counter() - t0
    print(f"synthetic {args.size_mib} MiB without kallsyms: {t:.3f} s ({args.size_mib / t:.0f} MiB/s, {t * 256 / args.size_mib:.3f} s per 256 MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
