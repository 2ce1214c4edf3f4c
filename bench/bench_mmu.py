#!/usr/bin/env python3
"""Benchmark the AArch64 translation layers.

Figures: GVA->HPA translations per second through both stages (cold: empty TLBs and
table caches; TLB-cold: empty TLBs, tables cached; warm: TLB hits), and the time to
enumerate every kernel mapping of a guest through both stages (stage-1 tables read via
stage 2; then every leaf carried down to host physical).

Uses the nested capture (../shared/captures/nested-nvhe-kaslr) when present, and
always a synthetic 256 MiB guest built with armvmi_cli.mmu.builder (linear map in 4K
pages as with rodata=full, a 2M-block kernel image, stage 2 in 2M blocks and 4K pages).

    python bench/bench_mmu.py [--json]
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from armvmi_cli.mmu import Stage1, Stage2, bottom_mappings  # noqa: E402
from armvmi_cli.mmu.builder import LayerWriter, PageAllocator, SparseMemory, Stage1Tables, Stage2Tables  # noqa: E402

TARGET_WARM = 200_000  # GVA->HPA per second
TARGET_ENUM = 2.0  # seconds for a 256 MiB guest


def synthetic():
    """A 256 MiB guest at IPA 0x4000_0000 in host memory at 0x1_0000_0000 (+1 MiB skew)."""
    host = SparseMemory()
    s2t = Stage2Tables(host, PageAllocator(0x8000_0000), ia_bits=40)
    s2t.map(0x4000_0000, 0x1_0000_0000, 128 << 20)  # 2 MiB blocks
    s2t.map(0x4800_0000, 0x1_0810_0000, 128 << 20, level=3)  # 4K pages, not 2M aligned below
    s2 = Stage2(host, *s2t.registers(vmid=1))
    guest = LayerWriter(s2)
    s1t = Stage1Tables(guest, PageAllocator(0x4FC0_0000), va_bits=48, lower=False)
    page_offset = 0xFFFF_0000_0000_0000
    s1t.map(page_offset + 0x4000_0000, 0x4000_0000, 254 << 20, level=3)  # linear map, rodata=full
    s1t.map(0xFFFF_8000_0800_0000, 0x4020_0000, 32 << 20)  # kernel image, 2M blocks
    s1 = Stage1(s2, *s1t.registers())
    sample = [page_offset + 0x4000_0000 + (i << 12) for i in range(0, 254 << 8, 7)]
    return "synthetic 256 MiB guest", host, s1, sample


def nested():
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import NESTED_CAPTURE, SHARED_CAPTURES, Capture

    src = SHARED_CAPTURES / NESTED_CAPTURE
    if not (src / "ground_truth.json").exists():
        return None
    from armvmi_cli.memory import open_image

    cap = Capture(NESTED_CAPTURE, src)
    gt = cap.ground_truth
    vm = gt["vms"][0]
    host = open_image(str(cap.image))
    s2 = Stage2(host, int(vm["vttbr"], 16), int(vm["vtcr"], 16))
    s1 = Stage1(s2, None, int(vm["guest_swapper_pg_dir_gpa"], 16), int(vm["vcpus"][0]["TCR_EL1"], 16), name="guest")
    # addresses whose stage-1 output stage 2 maps (KVM fills stage 2 lazily)
    sample = [m.va + off for m in s1.mappings() for off in range(0, m.size, 4096 * 7)
              if s2.is_mapped(m.out + off)][:40_000]
    s1.flush()
    s2.flush()
    return f"nested capture ({NESTED_CAPTURE}, {int(vm['guest_ram_size'], 16) >> 20} MiB guest)", host, s1, sample


def rate(fn, addrs) -> float:
    t0 = time.perf_counter()
    fn(addrs)
    return len(addrs) / (time.perf_counter() - t0)


def measure(label, s1, sample) -> dict:
    s2 = s1.lower
    random.Random(1).shuffle(sample)

    def both(addrs):
        t1, t2 = s1.translate, s2.translate
        for va in addrs:
            t2(t1(va))

    cold_n = sample[:5000]
    s1.flush(), s2.flush()
    cold = rate(both, cold_n)
    s1._tlb.clear(), s2._tlb.clear()
    tlb_cold = rate(both, cold_n)
    warm_set = sample[:4096]
    both(warm_set)
    warm = rate(both, warm_set * 50)

    s1.flush(), s2.flush()
    t0 = time.perf_counter()
    leaves = list(s1.mappings(1 << 63))  # the kernel half; tables read through stage 2
    t_s1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    runs = list(bottom_mappings(s1, 1 << 63))
    t_both = time.perf_counter() - t0 + t_s1
    s1.flush(), s2.flush()
    t0 = time.perf_counter()
    list(bottom_mappings(s1, 1 << 63))
    t_cold_total = time.perf_counter() - t0
    return {
        "setup": label,
        "cold_translations_per_s": round(cold),
        "tlb_cold_translations_per_s": round(tlb_cold),
        "warm_translations_per_s": round(warm),
        "kernel_leaves": len(leaves),
        "kernel_bytes_mapped": sum(m.size for m in leaves),
        "enumerate_stage1_s": round(t_s1, 3),
        "enumerate_to_hpa_runs": len(runs),
        "enumerate_to_hpa_s": round(t_both, 3),
        "enumerate_to_hpa_cold_s": round(t_cold_total, 3),
    }


def main() -> int:
    results = []
    for make in (nested, synthetic):
        got = make()
        if got is None:
            continue
        label, host, s1, sample = got
        results.append(measure(label, s1, sample))
        host.close()
    if "--json" in sys.argv:
        print(json.dumps(results, indent=2))
        return 0
    ok = True
    for r in results:
        print(f"== {r['setup']}")
        print(f"  GVA->HPA cold (caches empty):   {r['cold_translations_per_s']:>10,}/s")
        print(f"  GVA->HPA TLB-cold, tables hot:  {r['tlb_cold_translations_per_s']:>10,}/s")
        print(f"  GVA->HPA warm (TLB hits):       {r['warm_translations_per_s']:>10,}/s   target >= {TARGET_WARM:,}")
        print(f"  kernel mappings: {r['kernel_leaves']:,} leaves, {r['kernel_bytes_mapped'] >> 20} MiB; "
              f"stage-1 walk {r['enumerate_stage1_s']} s; to HPA ({r['enumerate_to_hpa_runs']:,} runs) "
              f"{r['enumerate_to_hpa_s']} s (cold {r['enumerate_to_hpa_cold_s']} s)   target < {TARGET_ENUM} s")
        ok &= r["warm_translations_per_s"] >= TARGET_WARM and r["enumerate_to_hpa_cold_s"] < TARGET_ENUM
    print("targets met" if ok else "TARGETS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
