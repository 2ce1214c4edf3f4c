#!/usr/bin/env python3
"""Benchmark the symbol and type sources on the real nokaslr capture.

Measures (median of N runs):
  * System.map parse, cold (no cache) and cached (marshal in $ARMVMI_CACHE);
  * the BTF cache hit: the old unpickle against the digest-checked index;
  * BTF parse of the kernel's own BTF (read out of the memory image), struct
    lookup of task_struct with its fields, and a full check of every type id;
  * Volatility ISF load (.json.xz) and the same task_struct lookup;
  * type-model JSON export/import (what a profile's types.json.xz holds).
Targets (issue 5): System.map well under 0.5 s; BTF parse < ~1 s.

    python bench/bench_symbols.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from armvmi_cli.memory import open_image  # noqa: E402
from armvmi_cli.symbols import cachefile  # noqa: E402
from armvmi_cli.symbols.btf import BtfSource, parse_btf  # noqa: E402
from armvmi_cli.symbols.isf import load_isf  # noqa: E402
from armvmi_cli.symbols.system_map import SystemMap  # noqa: E402
from armvmi_cli.symbols.types import TypeModel  # noqa: E402

SHARED = Path(os.environ.get("ARMVMI_SHARED_CAPTURES", Path(__file__).resolve().parents[2] / "shared" / "captures"))
CACHE = Path(os.environ.get("ARMVMI_CAPTURE_CACHE", Path.home() / ".cache" / "armvmi-captures"))
NAME = "deb61-generic-nokaslr"


def timed(fn, runs):
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def read_btf(sm: SystemMap) -> bytes:
    """The kernel image is linearly mapped with KASLR off: PA = VA - (VA(_text) - PA(_text))."""
    gt = json.loads((SHARED / NAME / "ground_truth.json").read_text())
    code = int(gt["kernel_image_phys"]["iomem_kernel_code"][0]["start"], 16)
    voff = sm["_text"] - (code - (sm["_stext"] - sm["_text"]))
    mem = open_image(CACHE / NAME / "dump.elf")
    return mem.read(sm["__start_BTF"] - voff, sm["__stop_BTF"] - sm["__start_BTF"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    smap = CACHE / NAME / "System.map"
    if not smap.exists() or not (CACHE / NAME / "dump.elf").exists():
        print(f"capture {NAME} not decompressed in {CACHE} (run the tests once)", file=sys.stderr)
        return 2
    os.environ["ARMVMI_CACHE"] = tempfile.mkdtemp(prefix="armvmi-bench-")
    rows = []
    t, sm = timed(lambda: SystemMap.load(smap, cache=False), a.runs)
    rows.append((f"System.map parse, cold ({len(sm)} symbols)", t))
    SystemMap.load(smap)
    t, _ = timed(lambda: SystemMap.load(smap), a.runs)
    rows.append(("System.map load, cached", t))
    zst = SHARED / NAME / "System.map.zst"
    t, _ = timed(lambda: SystemMap.load(zst, cache=False), a.runs)
    rows.append(("System.map parse, cold, from .zst", t))
    t, _ = timed(lambda: [sm.lookup(sm["init_task"] + i) for i in range(10000)], a.runs)
    rows.append(("10k address->symbol lookups", t))

    blob = read_btf(sm)
    t, tm = timed(lambda: parse_btf(blob), a.runs)
    rows.append((f"BTF parse ({len(blob) / 1e6:.1f} MB, {len(tm._src) - 1} types)", t))
    t, _ = timed(lambda: pickle.loads(pickle.dumps(tm, protocol=pickle.HIGHEST_PROTOCOL)).struct("task_struct"), a.runs)
    rows.append(("BTF cache hit as armvmi <= 0.4 did it (unpickle, trusted build id)", t))
    cfile = Path(os.environ["ARMVMI_CACHE"]) / "btf-bench"

    def warm():
        key = cachefile.digest(blob)
        src = BtfSource.from_index(blob, cachefile.read(cfile, "btf-index", 1, key))
        return TypeModel(src).struct("task_struct")

    cachefile.write(cfile, "btf-index", 1, cachefile.digest(blob), tm._src.index_sections())
    t, _ = timed(warm, a.runs)
    rows.append(("BTF cache hit: digest of the blob + checked index + task_struct", t))
    t, _ = timed(lambda: len(parse_btf(blob).struct("task_struct").fields), a.runs)
    rows.append(("BTF parse + task_struct with flattened fields", t))
    t, n = timed(lambda: parse_btf(blob).check_all(), max(1, a.runs // 2))
    rows.append((f"BTF full check (all {n} ids resolve)", t))
    t, doc = timed(lambda: json.dumps(tm.to_json(), separators=(",", ":")), max(1, a.runs // 2))
    rows.append((f"type model export to JSON ({len(doc) / 1e6:.1f} MB)", t))
    t, _ = timed(lambda: TypeModel.from_json(json.loads(doc)).struct("task_struct").fields, max(1, a.runs // 2))
    rows.append(("type model import from JSON + task_struct", t))

    isf = next((SHARED / NAME).glob("isf-*.json.xz"), None)
    if isf is not None:
        t, (itm, _) = timed(lambda: load_isf(isf), max(1, a.runs // 2))
        rows.append((f"ISF load ({isf.name}, {isf.stat().st_size / 1e6:.1f} MB xz)", t))
        t, _ = timed(lambda: len(load_isf(isf)[0].struct("task_struct").fields), 1)
        rows.append(("ISF load + task_struct", t))

    width = max(len(r[0]) for r in rows)
    for name, t in rows:
        print(f"{name:<{width}}  {t * 1000:9.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
