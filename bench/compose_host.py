#!/usr/bin/env python3
"""Compose a KVM host image (default: 4 VMs, >= 2 GiB) and its .smclog from the real guest captures.

    python bench/compose_host.py OUT_DIR [--size 2G] [--format elf|lime|raw] [--fill]

Four VMs, two kernels (6.1.0-56-arm64 and 6.1.0-56-cloud-arm64), each capture twice,
with four different stage-2 geometries (4K/40-bit level 1 with 2 concatenated tables and
2 MiB blocks, 16K/36-bit with 32 MiB blocks, 64K/42-bit pages, 4K/48-bit level 0), one
destroyed VM whose vm_id was re-used.  Writes OUT_DIR/host.<fmt>, host.<fmt>.smclog and
host.<fmt>.compose.json (what was placed where) and prints the commands to run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from fixtures.compose import GuestSpec, S2Geometry, compose_host  # noqa: E402

VMS = [
    (1, "deb61-generic-nokaslr", S2Geometry(4096, 40, 1)),
    (2, "deb61-cloud-kaslr", S2Geometry(16384, 36)),
    (3, "deb61-generic-nokaslr", S2Geometry(65536, 42, blocks=False)),
    (4, "deb61-cloud-kaslr", S2Geometry(4096, 48, 0)),
]


def _size(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("IB")
    return int(float(text[:-1]) * mult[text[-1]]) if text[-1] in mult else int(text, 0)


def load_captures():
    """The conftest Capture objects (decompressed once into the shared capture cache)."""
    import conftest  # tests/conftest.py: Capture, SHARED_CAPTURES

    caps = {}
    for name in {name for _, name, _ in VMS}:
        src = conftest.SHARED_CAPTURES / name
        if not (src / "ground_truth.json").exists():
            sys.exit(f"compose_host: capture {name} not found under {conftest.SHARED_CAPTURES}")
        caps[name] = conftest.Capture(name, src)
    return caps


def compose(out_dir: Path, size: int = 2 << 30, fmt: str = "elf", fill: bool = False, reuse_id: bool = True,
            vms: int = len(VMS)):
    caps = load_captures()
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [GuestSpec(vm_id, caps[name], geom) for vm_id, name, geom in VMS[:vms]]
    host = compose_host(out_dir / f"host.{fmt}", specs, fmt=fmt, host_size=size, reuse_id=reuse_id, fill=fill)
    return host, caps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--size", default="2G", help="host RAM (default 2G; at least the guests' 1 GiB + tables)")
    ap.add_argument("--format", default="elf", choices=("elf", "lime", "raw"))
    ap.add_argument("--fill", action="store_true", help="fill unused host frames with noise (dense file)")
    ap.add_argument("--vms", type=int, default=len(VMS), help=f"how many of the {len(VMS)} VMs (default all)")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    host, caps = compose(a.out_dir, _size(a.size), a.format, a.fill, reuse_id=a.vms == len(VMS), vms=a.vms)
    dt = time.perf_counter() - t0
    size = os.path.getsize(host.image)
    print(f"composed {host.image} ({size / (1 << 30):.2f} GiB, {a.format}) and {host.smclog} in {dt:.1f} s")
    for v in host.vms:
        print(f"  vm {v.vm_id}: {v.capture}, stage 2 {v.geometry.label}, VTTBR {v.vttbr:#x}, VTCR {v.vtcr:#x}")
    maps = " ".join(f"--system-map {caps[n].system_map}" for n in sorted(caps))
    pb = f" --phys-base {host.phys_base:#x}" if host.phys_base is not None else ""
    print(f"armvmi ps {host.image}{pb} {maps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
