"""Finding a kernel in (guest) physical memory: KASLR slide, image mapping,
and the page tables that map it — without being told.

Method, in order:
1. VMCOREINFO (the ELF note when the image has one, else the text every
   CRASH_CORE kernel keeps in memory) gives KERNELOFFSET (the slide),
   kimage_voffset, VA_BITS, PAGESIZE and ``swapper_pg_dir``.
2. Each candidate is *confirmed by walking its own page tables*: with
   TTBR1 = swapper_pg_dir's physical address (VA - kimage_voffset), the
   kernel VA of ``_stext`` must translate to ``_stext - kimage_voffset``.  In a
   host image the guests' VMCOREINFO texts are in memory too; they fail this
   check against host physical memory, so a guest is never taken for the host
   (and vice versa).
Using swapper_pg_dir rather than a recorded TTBR1 also sidesteps KPTI, where
the CPU's TTBR1 may point at the trampoline tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ArmvmiError, SymbolError
from .vmcoreinfo import VmcoreInfo, iter_memory, parse


@dataclass
class KernelCandidate:
    vmcoreinfo: VmcoreInfo
    swapper_pa: int | None = None
    stage1: object = None
    confirmed: bool = False
    reason: str = ""
    page_size: int | None = None  # the stage-1 geometry the walk confirmed
    va_bits: int | None = None
    geometry_note: str = ""  # VMCOREINFO's geometry was corrupt and the tables' was used

    @property
    def slide(self) -> int:
        return self.vmcoreinfo.kaslr_offset or 0


MASK64 = 0xFFFF_FFFF_FFFF_FFFF
# (page size, VA bits) arm64 kernels are built with, most common first; then every other
# stage-1 size the architecture allows (TxSZ 12..28; over 48 bits needs LPA2 or, with 64K, LVA).
_GEOMETRIES = ((4096, 48), (4096, 39), (16384, 47), (65536, 48), (65536, 42), (16384, 36), (65536, 52), (4096, 52),
               (16384, 48), (16384, 52))
ARCH_VA_BITS = range(52, 35, -1)


def kernel_geometries(page_size: int | None = None, va_bits: int | None = None):
    """(page size, VA bits) to try on a kernel's TTBR1 tables: the stated one
    first, then the common builds, then every other the architecture allows."""
    seen = set()
    stated = [(page_size, va_bits)] if page_size and va_bits else []
    rest = [(ps, vb) for ps in (4096, 16384, 65536) for vb in ARCH_VA_BITS]
    for g in (*stated, *_GEOMETRIES, *rest):
        if g not in seen:
            seen.add(g)
            yield g


def image_region(va_bits: int) -> int:
    """Lowest VA of the kernel image's region: arm64 puts the linear map in the
    lower half of the TTBR1 range and modules/vmalloc/the image in the upper
    half (``_PAGE_END(VA_BITS_MIN)``; VA_BITS_MIN is 48 for a 52-bit build).
    A walk that finds the image below it has read the tables with the wrong
    geometry and found the linear map's alias."""
    return (1 << 64) - (1 << (min(va_bits, 48) - 1))


def _walks_to(layer, table_pa: int, page_size: int, va_bits: int, checks):
    """A kernel Stage1 of this geometry if every (va, pa) of ``checks`` walks to its pa, else None."""
    from ..mmu import Stage1

    try:
        s1 = Stage1.for_kernel(layer, table_pa, va_bits, page_size, name="kernel stage1")
        for va, want in checks:
            if va < image_region(va_bits) or s1.translate(va) != want:
                return None
    except (ArmvmiError, ValueError):
        return None
    return s1


def _confirm(layer, info: VmcoreInfo) -> KernelCandidate:
    cand = KernelCandidate(info)
    kv = info.kimage_voffset
    swapper = info.symbol("swapper_pg_dir")
    stext = info.symbol("_stext")
    cand.swapper_pa = pa = (swapper - kv) & MASK64
    if not layer.is_mapped(pa):
        cand.reason = f"swapper_pg_dir would be at {pa:#x}, which is not in this memory"
        return cand
    # A PAGESIZE or VA_BITS that no AArch64 kernel can have is corrupt VMCOREINFO:
    # ignore it and let the tables decide (said in the reason and the kernel's notes).
    stated_ps, stated_vb = info.page_size, info.va_bits
    bad = []
    if stated_ps is not None and stated_ps not in (4096, 16384, 65536):
        bad.append(f"its PAGESIZE {stated_ps} is not an AArch64 granule")
        stated_ps = None
    if stated_vb is not None and not 36 <= stated_vb <= 52:
        bad.append(f"its NUMBER(VA_BITS) {stated_vb} is not an AArch64 VA size")
        stated_vb = None
    checks = [(stext, (stext - kv) & MASK64)] if stext is not None else []
    checks.append((swapper, pa))
    # The running size of the kernel VA space: TCR_EL1.T1SZ when VMCOREINFO has it (a 52-bit
    # build on a CPU without LPA2 runs with 48), else VA_BITS.
    t1sz = info._num("NUMBER(TCR_EL1_T1SZ)")
    running = 64 - t1sz if t1sz and 12 <= t1sz <= 28 else stated_vb
    s1 = geometry = None
    for page_size, va_bits in kernel_geometries(stated_ps, running):
        s1 = _walks_to(layer, pa, page_size, va_bits, checks)
        if s1 is not None:
            geometry = (page_size, va_bits)
            break
    if s1 is None:
        cand.reason = (f"page-table self-check failed: no stage-1 geometry (4K/16K/64K, {ARCH_VA_BITS[-1]}-"
                       f"{ARCH_VA_BITS[0]}-bit VAs) walks swapper_pg_dir at {pa:#x} to _stext's physical address")
        return cand
    cand.stage1 = s1
    cand.page_size, cand.va_bits = geometry
    cand.confirmed = True
    cand.reason = "swapper_pg_dir walk maps _stext and swapper_pg_dir to their physical addresses"
    if (info.page_size, running) != geometry:
        cand.reason += f" (geometry inferred from the tables: {geometry[0] >> 10}K pages, {geometry[1]}-bit VAs)"
    if bad:
        cand.geometry_note = (f"corrupt VMCOREINFO: {'; '.join(bad)}; the page tables say {geometry[0] >> 10}K pages, "
                              f"{geometry[1]}-bit VAs")
        cand.reason += f" ({cand.geometry_note})"
    return cand


def _at(layer, addr: int) -> VmcoreInfo | None:
    from ..memory.scan import read_cstring

    try:
        text = read_cstring(layer, addr, 8192)
    except ArmvmiError:
        return None
    if not text.startswith(b"OSRELEASE="):
        return None
    info = VmcoreInfo(parse(text), address=addr, source=f"VMCOREINFO text in memory at {addr:#x}")
    return info if info.complete else None


def clean_hints(v) -> list[int]:
    """The addresses in a cached hint (a cache file anyone may have written:
    anything else in it is ignored, and each address is re-checked anyway)."""
    return [a for a in (v if isinstance(v, (list, tuple)) else ()) if type(a) is int and 0 <= a < 1 << 64]


def find_kernels(layer, ranges=None, note: dict | None = None, hints=(), first: bool = False) -> list[KernelCandidate]:
    """Every kernel whose VMCOREINFO is in ``layer`` and whose page tables live
    in ``layer`` (confirmed candidates first).

    ``hints`` are addresses where VMCOREINFO text was found before (a cache):
    when one still holds a confirmed kernel, the full-memory scan is skipped.
    With ``first``, the search stops at the first confirmed kernel (a guest's
    own RAM holds one kernel; a host's holds its guests' texts too, so the
    host search must see them all).
    """
    infos: list[VmcoreInfo] = []
    if note:
        infos.append(VmcoreInfo(dict(note), source="VMCOREINFO ELF note"))
    hints = clean_hints(hints)
    hinted = [i for i in (_at(layer, a) for a in hints) if i is not None]
    if hinted:
        cands = [_confirm(layer, i) for i in hinted]
        if any(c.confirmed for c in cands):
            cands.sort(key=lambda c: not c.confirmed)
            return cands
    import itertools

    out = []
    seen = set()
    for info in itertools.chain(infos, iter_memory(layer, ranges)):
        if not info.complete:
            continue
        key = (info.symbol("swapper_pg_dir"), info.kimage_voffset)
        if key in seen:
            continue
        seen.add(key)
        out.append(_confirm(layer, info))
        if first and out[-1].confirmed:
            break
    out.sort(key=lambda c: not c.confirmed)
    return out


def locate_kernel(layer, ranges=None, note: dict | None = None, what: str = "memory", hints=(),
                  first: bool = False) -> KernelCandidate:
    cands = find_kernels(layer, ranges, note, hints, first)
    good = [c for c in cands if c.confirmed]
    if not good:
        if cands:
            why = "; ".join(f"{c.vmcoreinfo.release} ({c.reason})" for c in cands)
            raise SymbolError(f"no kernel in {what} passes the page-table self-check: {why}")
        raise SymbolError(
            f"no VMCOREINFO found in {what}: cannot locate the kernel (is this an arm64 Linux image? "
            "kernels without CONFIG_CRASH_CORE are not supported yet)"
        )
    if len(good) > 1:
        # Several kernels whose tables live in this memory: pick the one whose
        # VMCOREINFO note came with the image, else the first; say so.
        good[0].reason += f" (note: {len(good) - 1} other kernel(s) also pass in this memory)"
    return good[0]


# ---------------------------------------------------------------------------
# Without VMCOREINFO: banner + System.map + a walk of the candidate tables.
# ---------------------------------------------------------------------------

BANNER = b"Linux version "


def locate_by_banner(layer, sm, ranges=None, what: str = "memory") -> KernelCandidate:
    """Find a kernel that keeps no VMCOREINFO, given its System.map.

    The kernel image is physically contiguous, so each ``Linux version`` banner
    in memory gives a candidate physical ``_text`` (banner - (linux_banner -
    _text)) and ``swapper_pg_dir``.  A candidate is confirmed by walking those
    tables: some kernel VA must map ``_text``'s physical page, and that VA fixes
    the slide; the slid ``linux_banner`` and ``swapper_pg_dir`` must then
    translate back to where they were found.
    """
    from ..memory.scan import read_cstring, scan
    from ..mmu import Stage1

    text, banner_sym, swapper = sm.address("_text"), sm.address("linux_banner"), sm.address("swapper_pg_dir")
    if None in (text, banner_sym, swapper):
        raise SymbolError("System.map lacks _text, linux_banner or swapper_pg_dir: cannot locate the kernel without VMCOREINFO")
    mask = 0xFFFF_FFFF_FFFF_FFFF
    reasons = []
    for banner_pa in scan(layer, BANNER, ranges):
        text_pa = banner_pa - (banner_sym - text)
        swapper_pa = text_pa + (swapper - text)
        if text_pa < 0 or not layer.is_mapped(swapper_pa):
            continue
        for page_size, va_bits in kernel_geometries():
            try:
                s1 = Stage1.for_kernel(layer, swapper_pa, va_bits, page_size, name="kernel stage1")
                # Anchor on the banner itself: [_text, _stext) may be unmapped.
                va = _va_of(s1, banner_pa, banner_sym, va_bits)
            except ArmvmiError:
                continue
            if va is None:
                continue
            slide = (va - banner_sym) & mask
            try:
                ok = s1.translate((banner_sym + slide) & mask) == banner_pa and s1.translate((swapper + slide) & mask) == swapper_pa
            except ArmvmiError:
                ok = False
            if not ok:
                reasons.append(f"banner at {banner_pa:#x}: tables do not map it back")
                continue
            kv = (va - banner_pa) & mask
            release = read_cstring(layer, banner_pa, 256)[len(BANNER):].split(b" ", 1)[0].decode("latin-1")
            raw = {
                "OSRELEASE": release,
                "PAGESIZE": str(page_size),
                "NUMBER(VA_BITS)": str(va_bits),
                "KERNELOFFSET": f"{slide:x}",
                "NUMBER(kimage_voffset)": f"{kv:#x}",
                "SYMBOL(swapper_pg_dir)": f"{(swapper + slide) & mask:x}",
            }
            for name in ("_stext", "init_uts_ns"):
                a = sm.address(name)
                if a is not None:
                    raw[f"SYMBOL({name})"] = f"{(a + slide) & mask:x}"
            info = VmcoreInfo(raw, address=None, source=f"banner at {banner_pa:#x} and System.map (no VMCOREINFO in memory)", derived=True)
            cand = KernelCandidate(info, swapper_pa, s1, True, f"walk of swapper_pg_dir at {swapper_pa:#x} maps _text and "
                                   f"linux_banner ({page_size >> 10}K pages, {va_bits}-bit VAs, inferred from the tables)",
                                   page_size, va_bits)
            return cand
    raise SymbolError(
        f"no kernel found in {what}: no VMCOREINFO, and no 'Linux version' banner whose page tables confirm this System.map"
        + (f" ({'; '.join(reasons[:3])})" if reasons else "")
    )


def _va_of(s1, pa: int, unslid: int, va_bits: int) -> int | None:
    """The kernel VA mapping physical ``pa`` at the same offset within its
    page as ``unslid`` (KASLR moves the image by whole pages)."""
    lo = image_region(va_bits)  # never the linear map's alias of the image
    for m in s1.mappings(lo, (1 << 64) - 1):
        if m.out <= pa < m.out + m.size:
            va = m.va + (pa - m.out)
            # The image mapping, not the linear map: the slide keeps the offset within 64K.
            if (va - unslid) % 4096 == 0 and va >= unslid:
                return va
    return None
