"""Helpers for the kallsyms tests: System.map as a set, ground-truth VA->PA
mappings (tests only: library code never reads ground truth)."""

from __future__ import annotations

import functools
import json
import lzma
import struct

import pytest

PAGE_OFFSET_48 = 0xFFFF000000000000
MASK64 = (1 << 64) - 1


@functools.lru_cache(maxsize=None)
def system_map_entries(path: str) -> frozenset[tuple[int, str, str]]:
    out = set()
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                out.add((int(parts[0], 16), parts[1], parts[2]))
    return frozenset(out)


@functools.lru_cache(maxsize=None)
def _by_name(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for addr, _t, n in sorted(system_map_entries(path)):
        out.setdefault(n, addr)
    return out


def symbol(path: str, name: str) -> int:
    return _by_name(path)[name]


def slide_of(capture) -> int:
    gt = capture.ground_truth
    if "kaslr" in gt:
        return int(gt["kaslr"]["slide"], 16)
    return int(gt["host"]["kaslr_slide"], 16)


@functools.lru_cache(maxsize=None)
def task_offsets(capture_name: str, isf: str | None) -> dict[str, int]:
    """task_struct offsets from the capture's ISF (what a Volatility user has)."""
    if isf is None:
        pytest.skip("no ISF for this capture")
    with lzma.open(isf) as f:
        fields = json.load(f)["user_types"]["task_struct"]["fields"]
    return {k: fields[k]["offset"] for k in ("comm", "tasks", "pid", "tgid", "real_parent")}


class GuestVA:
    """read_va for a capture without the MMU: the kernel image mapping (PA =
    VA - kimage_voffset) and the linear map (PA = VA - PAGE_OFFSET +
    PHYS_OFFSET), constants taken from ground truth."""

    def __init__(self, mem, capture):
        gt = capture.ground_truth
        smap = str(capture.system_map)
        slide = slide_of(capture)
        self.mem = mem
        self.image = (symbol(smap, "_text") + slide, symbol(smap, "_end") + slide)
        if "host" in gt:  # the nested capture's host kernel
            self.kimage_voffset = int(gt["host"]["kimage_voffset"], 16)
            self.phys_offset = int(gt["host"]["facts"]["memstart_addr"], 16)
            return
        # /proc/iomem "Kernel code" starts at _stext; _text is 64 KiB before it on arm64
        stext_pa = int(gt["kernel_image_phys"]["iomem_kernel_code"][0]["start"], 16)
        text_pa = stext_pa - (symbol(smap, "_stext") - symbol(smap, "_text"))
        self.kimage_voffset = (self.image[0] - text_pa) & MASK64
        self.phys_offset = int(gt["vmcoreinfo"]["NUMBER(PHYS_OFFSET)"], 16)

    def pa(self, va: int) -> int:
        if self.image[0] <= va < self.image[1]:
            return (va - self.kimage_voffset) & MASK64
        if PAGE_OFFSET_48 <= va < 0xFFFF800000000000:  # linear map (VA_BITS=48)
            return (va - PAGE_OFFSET_48 + self.phys_offset) & MASK64
        from armvmi_cli.errors import TranslationFault

        raise TranslationFault(0, "outside the test's image/linear mappings", va)

    def __call__(self, va: int, n: int) -> bytes:
        return self.mem.read(self.pa(va), n)

    def u64(self, va: int) -> int:
        return struct.unpack("<Q", self(va, 8))[0]
