#!/usr/bin/env python3
"""Replay throughput and memory of the EL3 model on generated event logs.

    python bench/bench_firmware.py              # 1,000,000 records, plus the 100k vs 1M memory comparison
    python bench/bench_firmware.py --records 200000 --repeat 1

Throughput: records/s of ``replay()`` over a log on disk (best of --repeat runs; target >= 300,000/s).
Memory: peak RSS of a fresh process replaying 100k and 1M records, and tracemalloc peaks of the
replay alone; both should be flat in the log length (the reader streams in fixed blocks).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def generate(path: Path, n: int) -> None:
    """A realistic mix: DRIVER_INIT, 48 VMs, mostly VM_RUN_CHANGE on several vCPUs, with VMs being
    destroyed and re-created, migrated out and in, secure-world queries and PSCI calls in between."""
    from armvmi_cli.firmware.smclog import LogHeader, SmcLogWriter, make_record
    from armvmi_cli.firmware.vmi_service import (PSCI_VERSION, VMI_EVENT_FAST, VMI_EVENT_YIELD, VMI_GET_INFORMATION)

    vtcr, tcr = 0x80243558, 0x500074B5503510
    with SmcLogWriter(path, LogHeader(created_ns=time.time_ns())) as w:
        seq = 0
        t = 1_000_000

        def put(x, caller=0, ret=0):
            nonlocal seq, t
            w.write(make_record(seq, x, timestamp_ns=t, cpu=seq & 3, caller=caller, ret=ret))
            seq += 1
            t += 997

        put([VMI_EVENT_FAST, 0, 0xFFFF94B280000000, 0xFFFF000000000000, 0xFFFFA4C0B8200000, 0x42000041858000, tcr, 0])
        live = list(range(1, 49))
        for vm in live:
            put([VMI_EVENT_YIELD, 1, vm, 0xFFFF6B4DC3116000 + vm * 0x4000, (vm << 48) | (0x43000000 + vm * 0x10000), vtcr,
                 0x40000000, 128 << 20])
        next_id = 100
        while seq < n:
            k = seq % 1000
            vm = live[seq % len(live)]
            if k == 1:  # destroy one VM and create a new one with a fresh id
                put([VMI_EVENT_FAST, 4, vm, 0, 0, 0, 0, 0])
                live.remove(vm)
                next_id += 1
                live.append(next_id)
                put([VMI_EVENT_YIELD, 1, next_id, 0xFFFF6B4DC3116000, (next_id << 48) | (0x50000000 + (next_id << 16)),
                     vtcr | 1 << 19, 0x40000000, 64 << 20])  # 16-bit VMIDs (VTCR.VS): unique
            elif k == 2:  # migrate one out and back in
                put([VMI_EVENT_YIELD, 3, vm, 1, 0, 0, 0, 0])
                put([VMI_EVENT_YIELD, 3, vm, 2, 0, 0, 0, 0])
                put([VMI_EVENT_YIELD, 3, vm, 3, (vm << 48) | (0x60000000 + (vm << 16)), vtcr | 1 << 19, 0x40000000, 64 << 20])
            elif k == 3:
                put([VMI_GET_INFORMATION, 0], caller=1)
            elif k == 4:
                put([PSCI_VERSION], ret=0x10001)
            else:
                put([VMI_EVENT_YIELD, 2, vm, seq % 4, 0x43471000 + (seq & 0xFFF000), 0x2D000041856000, tcr, 1 + (seq & 1)])
        w.count = seq


def measure_child(path: str, tracemalloc_on: bool) -> None:
    import resource

    from armvmi_cli.firmware.replay import replay

    if tracemalloc_on:
        import tracemalloc

        tracemalloc.start()
    t = time.perf_counter()
    res = replay(path)
    dt = time.perf_counter() - t
    peak = 0
    if tracemalloc_on:
        peak = tracemalloc.get_traced_memory()[1]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"{res.records_seen} {dt:.4f} {rss} {peak} {res.anomaly_total} {len(res.registry)}")


def run_child(path: Path, tracemalloc_on: bool) -> tuple[int, float, int, int, int, int]:
    out = subprocess.run([sys.executable, __file__, "--child", str(path)] + (["--tracemalloc"] if tracemalloc_on else []),
                         check=True, capture_output=True, text=True).stdout.split()
    n, dt, rss, peak, anomalies, live = out
    return int(n), float(dt), int(rss), int(peak), int(anomalies), int(live)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--child")
    ap.add_argument("--tracemalloc", action="store_true")
    args = ap.parse_args()
    if args.child:
        measure_child(args.child, args.tracemalloc)
        return
    with tempfile.TemporaryDirectory() as d:
        big, small = Path(d) / "big.smclog", Path(d) / "small.smclog"
        t = time.perf_counter()
        generate(big, args.records)
        gen = time.perf_counter() - t
        generate(small, args.small)
        size = big.stat().st_size
        print(f"generated {args.records:,} records ({size / 2**20:.1f} MiB) in {gen:.1f} s")
        best = None
        for _ in range(args.repeat):
            n, dt, rss, _, anomalies, live = run_child(big, False)
            best = dt if best is None else min(best, dt)
        print(f"replay: {n:,} records in {best:.2f} s = {n / best:,.0f} records/s "
              f"(best of {args.repeat}; {anomalies} anomalies, {live} live VMs; target >= 300,000/s)")
        for label, p in ((f"{args.small:,}", small), (f"{args.records:,}", big)):
            n, dt, rss, _, _, _ = run_child(p, False)
            _, _, _, peak, _, _ = run_child(p, True)
            print(f"memory {label:>10} records: peak RSS {rss / 1024:.1f} MiB, replay tracemalloc peak {peak / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
