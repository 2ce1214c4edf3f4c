#!/usr/bin/env python3
"""Benchmark the banner / VMCOREINFO streaming scan, and `vms` / `verify` on the nested capture.

1. Writes a raw image of --size-gib (default 4) GiB in --dir (default /tmp): the real
   nested host capture's 1 GiB repeated (real kernel, page-cache and user pages, with
   several VMCOREINFO texts and banners), so the scan finds real hits.  It is read
   once first, so the page cache is warm: what is measured is the search, not the disk.
2. Times ``memory.scan.scan`` for ``OSRELEASE=`` (VMCOREINFO) and ``Linux version ``
   (banner) over the whole image, in GB/s (target issue 7: >= 1 GB/s).
3. On the nested capture: host kernel location (the only full-image scan), listing
   the VMs from vm_list (``host_vm_rows``) and ``verify_report`` with the honest log,
   each cold (fresh session, cached BTF) — and how many distinct host pages each read.

    python bench/bench_scan.py [--size-gib 4] [--dir /tmp] [--keep]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from armvmi_cli.memory import open_image  # noqa: E402
from armvmi_cli.memory.scan import scan  # noqa: E402

GIB = 1 << 30
CACHE = Path(os.environ.get("ARMVMI_CAPTURE_CACHE", Path.home() / ".cache" / "armvmi-captures")) / "nested-nvhe-kaslr"


def build_raw(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    src = open_image(CACHE / "host-mem.elf")
    r = src.ranges()[0]
    block = 64 << 20
    with open(path, "wb") as f:
        done = 0
        while done < size:
            off = done % r.size
            f.write(src.read(r.start + off, min(block, r.size - off, size - done)))
            done = f.tell()
    src.close()


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def bench_scan(path: Path) -> None:
    mem = open_image(path, phys_base=0x4000_0000)
    for needle in (b"OSRELEASE=", b"Linux version "):
        t = time.perf_counter()
        hits = sum(1 for _ in scan(mem, needle))
        dt = time.perf_counter() - t
        print(f"scan {needle.decode()!r:18} {mem.size / GIB:.0f} GiB: {dt:6.2f} s  {mem.size / dt / 1e9:6.2f} GB/s  {hits} hits")
    mem.close()


def bench_host() -> None:
    from armvmi_cli.host.kernel import host_kernel
    from armvmi_cli.host.verify import verify_report
    from armvmi_cli.host.vms import host_vm_rows
    from armvmi_cli.session import Session

    img, smclog, smap = CACHE / "host-mem.elf", CACHE / "host-mem.elf.smclog", CACHE / "System.map"
    if not img.exists():
        print("nested capture not in the cache: vms/verify timings skipped")
        return
    for what in ("vms", "verify"):
        # record_pages wraps host memory in a RecordingMemory (the scan itself is not recorded).
        s = Session.open(img, events=smclog, system_map=[smap], record_pages=os.devnull)
        t = time.perf_counter()
        host_kernel(s, smap)
        t_host = time.perf_counter() - t
        before = len(s.memory.pages)
        t = time.perf_counter()
        if what == "vms":
            extra = f"{len(host_vm_rows(s))} VM(s)"
        else:
            rep = verify_report(s)
            extra = f"{len(rep.findings)} finding(s), {len(rep.checked)} checks, incl. guest kernel location + ps"
        dt = time.perf_counter() - t
        pages = len(s.memory.pages) - before
        print(f"{what:6}: host kernel located in {t_host:5.2f} s (the one VMCOREINFO scan); then {dt:5.2f} s "
              f"reading {pages} more distinct host pages ({extra})")
        s.memory.record_to = None
        s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=int, default=4)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--keep", action="store_true", help="keep the generated image")
    args = ap.parse_args()
    if not (CACHE / "host-mem.elf").exists():
        sys.exit(f"{CACHE}/host-mem.elf missing: run the tests once to decompress the captures")
    path = Path(args.dir) / f"armvmi-bench-scan-{args.size_gib}g.raw"
    t = time.perf_counter()
    build_raw(path, args.size_gib * GIB)
    warm(path)
    print(f"image {path} ({args.size_gib} GiB) ready in {time.perf_counter() - t:.1f} s")
    try:
        bench_scan(path)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    bench_host()


if __name__ == "__main__":
    main()
