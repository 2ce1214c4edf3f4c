"""Issue 11: the kernel's stage-1 geometry (granule, VA bits, start level,
LPA2) inferred from its own tables, for every granule and VA size the
architecture allows.  Synthetic kernels: swapper_pg_dir inside the image,
the image mapped at its KASLR'd VA and the linear map aliasing all of RAM
(so a wrong geometry that reads the linear map's alias is rejected)."""

from __future__ import annotations

import pytest

from armvmi_cli.mmu.builder import PageAllocator, PageTables, SparseMemory
from armvmi_cli.mmu.geometry import Granule
from armvmi_cli.symbols.kaslr import _confirm, locate_by_banner
from armvmi_cli.symbols.system_map import SystemMap
from armvmi_cli.symbols.vmcoreinfo import VmcoreInfo

MASK = (1 << 64) - 1
RAM = 0x4000_0000
TEXT_PA = 0x4040_0000  # mapped with page leaves, so any granule fits
IMAGE = 0x40_0000  # 4 MiB image
BANNER_OFF, SWAPPER_OFF = 0x8_0000, 0x20_0000
SLIDE = 0x60_0000
BANNER = b"Linux version 9.9.9-synth (geometry@test) #1 SMP PREEMPT\n\0"

def image_region(va_bits: int) -> int:
    """arm64: the image lives in the upper half of the TTBR1 range (_PAGE_END(VA_BITS_MIN))."""
    return (1 << 64) - (1 << (min(va_bits, 48) - 1))


COMBOS = [(g, vb) for g in (Granule.K4, Granule.K16, Granule.K64) for vb in range(36, 53)]


def synth_kernel(granule: Granule, va_bits: int):
    mem = SparseMemory("guest physical")
    ds = va_bits > 48 and granule != Granule.K64
    swapper_pa = TEXT_PA + SWAPPER_OFF
    pt = PageTables(mem, PageAllocator(RAM + 0x100_0000), granule=granule, ia_bits=va_bits, oa_bits=52 if ds else 48,
                    ds=ds, root=swapper_pa)
    page = int(granule)
    unslid_text = image_region(va_bits) + 0x800_0000  # KIMAGE_VADDR-like: upper half of TTBR1 space
    text_va = unslid_text + SLIDE
    ia = lambda va: va & ((1 << va_bits) - 1)  # noqa: E731
    for off in range(0, IMAGE, page):  # page leaves: no block-alignment constraints for any granule
        pt.map(ia(text_va + off), TEXT_PA + off, page, level=3)
    page_offset = (1 << 64) - (1 << va_bits)
    for off in range(0, 0x80_0000, page):  # linear map of the first 8 MiB of RAM (aliases the image)
        pt.map(ia(page_offset + off), RAM + off, page, level=3)
    mem.write(TEXT_PA, b"\x1f\x20\x03\xd5" * 16)  # some "text"
    mem.write(TEXT_PA + BANNER_OFF, BANNER)
    sm = SystemMap([(unslid_text, "T", "_text"), (unslid_text, "T", "_stext"),
                    (unslid_text + BANNER_OFF, "D", "linux_banner"), (unslid_text + SWAPPER_OFF, "B", "swapper_pg_dir")])
    return mem, sm, text_va, unslid_text


@pytest.mark.parametrize("granule,va_bits", COMBOS, ids=[f"{int(g) >> 10}K-{vb}" for g, vb in COMBOS])
def test_geometry_inferred_without_vmcoreinfo(granule, va_bits):
    mem, sm, text_va, unslid = synth_kernel(granule, va_bits)
    cand = locate_by_banner(mem, sm, [(RAM, RAM + 0x200_0000)])
    assert (cand.page_size, cand.va_bits) == (int(granule), va_bits)
    assert cand.slide == SLIDE and cand.swapper_pa == TEXT_PA + SWAPPER_OFF
    g = cand.stage1.describe() if hasattr(cand.stage1, "describe") else None
    assert cand.stage1.translate(text_va + 0x1234) == TEXT_PA + 0x1234
    assert cand.stage1.translate(text_va + BANNER_OFF) == TEXT_PA + BANNER_OFF
    assert g is None or g  # describe() works on the inferred geometry


@pytest.mark.parametrize("granule,va_bits", [(Granule.K16, 47), (Granule.K64, 42), (Granule.K4, 39), (Granule.K16, 36),
                                             (Granule.K4, 52), (Granule.K64, 52)])
@pytest.mark.parametrize("stated", ["absent", "wrong"])
def test_vmcoreinfo_geometry_checked_against_the_tables(granule, va_bits, stated):
    """VMCOREINFO without PAGESIZE/VA_BITS (or with the wrong ones) must not
    make the walk start at the wrong level: the tables decide."""
    mem, sm, text_va, unslid = synth_kernel(granule, va_bits)
    kv = (text_va - TEXT_PA) & MASK
    raw = {"OSRELEASE": "9.9.9-synth", "KERNELOFFSET": f"{SLIDE:x}", "NUMBER(kimage_voffset)": f"{kv:#x}",
           "SYMBOL(swapper_pg_dir)": f"{text_va + SWAPPER_OFF:x}", "SYMBOL(_stext)": f"{text_va:x}"}
    if stated == "wrong":
        raw.update({"PAGESIZE": "4096", "NUMBER(VA_BITS)": "48"} if (int(granule), va_bits) != (4096, 48) else
                   {"PAGESIZE": "16384", "NUMBER(VA_BITS)": "47"})
    cand = _confirm(mem, VmcoreInfo(raw, source="test"))
    assert cand.confirmed, cand.reason
    assert (cand.page_size, cand.va_bits) == (int(granule), va_bits)
    assert cand.stage1.translate(text_va + 8) == TEXT_PA + 8
