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

    @property
    def slide(self) -> int:
        return self.vmcoreinfo.kaslr_offset or 0


def _confirm(layer, info: VmcoreInfo) -> KernelCandidate:
    from ..mmu import Stage1

    cand = KernelCandidate(info)
    kv = info.kimage_voffset
    swapper = info.symbol("swapper_pg_dir")
    stext = info.symbol("_stext")
    cand.swapper_pa = pa = (swapper - kv) & 0xFFFF_FFFF_FFFF_FFFF
    if not layer.is_mapped(pa):
        cand.reason = f"swapper_pg_dir would be at {pa:#x}, which is not in this memory"
        return cand
    page_size, va_bits = info.page_size or 4096, info.va_bits or 48
    if page_size not in (4096, 16384, 65536):
        cand.reason = f"its PAGESIZE {page_size} is not an AArch64 granule (4096, 16384, 65536): corrupt VMCOREINFO"
        return cand
    if not 36 <= va_bits <= 52:
        cand.reason = f"its NUMBER(VA_BITS) {va_bits} is not an AArch64 VA size (36-52): corrupt VMCOREINFO"
        return cand
    try:
        s1 = Stage1.for_kernel(layer, pa, va_bits, page_size, name="kernel stage1")
        checks = [(swapper, pa)]
        if stext is not None:
            checks.append((stext, (stext - kv) & 0xFFFF_FFFF_FFFF_FFFF))
        for va, want in checks:
            got = s1.translate(va)
            if got != want:
                cand.reason = f"page tables map {va:#x} to {got:#x}, not {want:#x}"
                return cand
    except ArmvmiError as e:
        cand.reason = f"page-table self-check failed: {e}"
        return cand
    cand.stage1 = s1
    cand.confirmed = True
    cand.reason = "swapper_pg_dir walk maps _stext and swapper_pg_dir to their physical addresses"
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
# (page size, VA bits) arm64 kernels are built with, most common first.
_GEOMETRIES = ((4096, 48), (4096, 39), (16384, 47), (65536, 48), (65536, 42), (16384, 36), (65536, 52), (4096, 52))


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
        for page_size, va_bits in _GEOMETRIES:
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
            cand = KernelCandidate(info, swapper_pa, s1, True, f"walk of swapper_pg_dir at {swapper_pa:#x} maps _text and linux_banner")
            return cand
    raise SymbolError(
        f"no kernel found in {what}: no VMCOREINFO, and no 'Linux version' banner whose page tables confirm this System.map"
        + (f" ({'; '.join(reasons[:3])})" if reasons else "")
    )


def _va_of(s1, pa: int, unslid: int, va_bits: int) -> int | None:
    """The kernel VA mapping physical ``pa`` at the same offset within its
    page as ``unslid`` (KASLR moves the image by whole pages)."""
    lo = (1 << 64) - (1 << va_bits)
    for m in s1.mappings(lo, (1 << 64) - 1):
        if m.out <= pa < m.out + m.size:
            va = m.va + (pa - m.out)
            # The image mapping, not the linear map: the slide keeps the offset within 64K.
            if (va - unslid) % 4096 == 0 and va >= unslid:
                return va
    return None
