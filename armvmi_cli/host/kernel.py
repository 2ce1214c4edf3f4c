"""The host kernel in a host memory image.

A host dump holds several kernels' VMCOREINFO texts: the host's own and one
per guest (guest RAM is host memory).  Only the host's page tables live in
host *physical* memory, so :func:`armvmi_cli.symbols.kaslr.find_kernels`'
self-check (walk swapper_pg_dir, ``_stext`` must land on its own physical
address) picks the host and rejects every guest.  When the event log's
DRIVER_INIT is present its kimage_voffset and TTBR1 base are compared with
what memory says — a disagreement is a finding for ``verify``, never a
reason to trust the log over memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ArmvmiError, ProfileMismatchError, SymbolError

TTBR_BADDR = 0x0000_FFFF_FFFF_FFFE  # TTBRn_EL1.BADDR (CnP bit 0 and ASID 63:48 dropped)


@dataclass
class HostKernel:
    kernel: object  # linux.Kernel over host physical memory
    candidate: object  # symbols.kaslr.KernelCandidate
    memstart_addr: int  # PHYS_OFFSET: linear map = (va & ~PAGE_OFFSET) + memstart_addr
    memstart_source: str
    page_offset: int
    rejected: list = field(default_factory=list)  # other kernels' VMCOREINFO seen in host RAM (guests)
    notes: list[str] = field(default_factory=list)

    @property
    def slide(self) -> int:
        return self.candidate.slide

    @property
    def kimage_voffset(self) -> int:
        return self.candidate.vmcoreinfo.kimage_voffset

    @property
    def swapper_pa(self) -> int:
        return self.candidate.swapper_pa

    def is_linear(self, va: int) -> bool:
        """A linear-map VA (PAGE_OFFSET .. the start of vmalloc/kimage space)."""
        vmalloc = self.kernel.vmcoreinfo.raw.get("NUMBER(MODULES_VADDR)")
        end = int(vmalloc, 0) if vmalloc else self.page_offset + (1 << (self.kernel.info.va_bits - 1))
        return self.page_offset <= va < end

    def lm_to_phys(self, va: int) -> int:
        """arm64 ``__lm_to_phys``: no page-table walk."""
        return ((va & ~self.page_offset) + self.memstart_addr) & 0xFFFF_FFFF_FFFF_FFFF

    def log_mismatches(self, host_record) -> list[tuple[str, int, int]]:
        """(what, log, memory) for each DRIVER_INIT fact memory contradicts."""
        out = []
        for what, logged, actual in (
            ("kimage_voffset", host_record.kimage_voffset, self.kimage_voffset),
            ("memstart_addr", host_record.phys_offset, self.memstart_addr),
            ("PAGE_OFFSET", host_record.page_offset, self.page_offset),
            ("TTBR1_EL1 base", host_record.ttbr1 & TTBR_BADDR, self.swapper_pa),
        ):
            if logged != actual:
                out.append((what, logged, actual))
        return out

    def va_to_pa(self, va: int) -> int:
        """Any kernel VA (linear map, vmalloc, image) through the host's own tables."""
        return self.kernel.vmem.translate(va)


def host_kernel(session, host_system_map=None) -> HostKernel:
    """Locate (once per session) the host kernel; see the module docstring.
    The result depends on memory only (never on the log), so sessions over the
    same image may share it (see :func:`armvmi_cli.host.verify.with_events`)."""
    cached = getattr(session, "_armvmi_host", None)
    if cached is not None:
        if isinstance(cached, ArmvmiError):
            raise cached
        return cached
    if host_system_map is None:
        host_system_map = getattr(session, "host_system_map", None)
    try:
        hk = _locate(session, host_system_map)
    except ArmvmiError as e:
        session._armvmi_host = e
        raise
    session._armvmi_host = hk
    return hk


def _locate(session, host_system_map) -> HostKernel:
    from ..linux.kernel import Kernel, KernelInfo
    from ..symbols.resolve import btf_types, linux_banner, utsname
    from ..symbols.kaslr import clean_hints, find_kernels

    mem = session.memory
    absent = session._facts_get("host:absent")
    if absent:  # memory alone decides this: a scan of this image already found no host kernel
        raise SymbolError(absent)
    hints = clean_hints(session._facts_get("vmcoreinfo:host"))
    cands = find_kernels(mem, None, mem.vmcoreinfo, hints)
    good = [c for c in cands if c.confirmed]
    if not good:
        why = "; ".join(f"{c.vmcoreinfo.release} ({c.reason})" for c in cands) or "no VMCOREINFO text in the image"
        msg = f"no host kernel found: no kernel's page tables live in this image's physical memory: {why}"
        session._facts_put("host:absent", msg)
        raise SymbolError(msg)
    host = session.host
    if host is not None and len(good) > 1:
        # Several kernels pass (an unusual layout): prefer the one the log names.
        good.sort(key=lambda c: c.vmcoreinfo.kimage_voffset != host.kimage_voffset)
    cand = good[0]
    vi = cand.vmcoreinfo
    if vi.address is not None and vi.address not in hints:
        session._facts_put("vmcoreinfo:host", [vi.address])
    info = KernelInfo.from_candidate(cand, f"KERNELOFFSET from {vi.source}, confirmed by the host page-table walk",
                                     "swapper_pg_dir (from the host's VMCOREINFO)")
    kernel = Kernel(cand.stage1, None, None, info, name="host")
    kernel.vmcoreinfo = vi
    uts = utsname(kernel, vi)
    kernel.symbols = _host_symbols(session, kernel, vi, host_system_map, uts)
    info.banner = linux_banner(kernel, vi, uts)
    kernel.types = btf_types(kernel, session.symopts.use_cache)
    if info.build_id:
        session._types_memo.setdefault(info.build_id, (kernel.types, info.types_source))
    from ..symbols.resolve import KallsymsWithVmcoreinfo

    if isinstance(kernel.symbols, KallsymsWithVmcoreinfo) and kernel.symbols.address("init_task") is None:
        try:
            session.find_init_task(kernel, kernel.symbols)
        except SymbolError as e:
            info.notes.append(f"init_task not found by structure: {e}")
    page_offset = (-(1 << info.va_bits)) & 0xFFFF_FFFF_FFFF_FFFF
    memstart, src = _memstart(kernel, vi)
    hk = HostKernel(kernel, cand, memstart, src, page_offset, [c for c in cands if c is not cand])
    if len(good) > 1:
        hk.notes.append(f"{len(good) - 1} other kernel(s) also pass the page-table self-check in host memory")
    return hk


def _memstart(kernel, vi) -> tuple[int, str]:
    if kernel.has_symbol("memstart_addr"):
        try:
            return kernel.read_u64(kernel.symbol("memstart_addr")), "memstart_addr in host memory"
        except ArmvmiError:
            pass
    if vi.phys_offset is not None:
        return vi.phys_offset, "NUMBER(PHYS_OFFSET) in the host's VMCOREINFO"
    raise SymbolError("host: neither memstart_addr nor VMCOREINFO PHYS_OFFSET is readable")


def _host_symbols(session, kernel, vi, host_system_map, uts=None):
    """--host-system-map, else a guest --system-map that fits the host, else a
    profile matching its banner, else kallsyms."""
    from ..symbols.resolve import KallsymsWithVmcoreinfo, map_fits

    info = kernel.info
    if host_system_map is not None:
        sm = session._load_map(str(host_system_map))
        ok, why = map_fits(sm, vi)
        if not ok:
            raise ProfileMismatchError(f"--host-system-map {host_system_map} does not fit the host kernel {vi.release}: {why}")
        info.symbols_source = f"System.map {host_system_map}"
        return sm
    for path in session.symopts.system_maps:
        sm = session._load_map(path)
        if map_fits(sm, vi)[0]:
            info.symbols_source = f"System.map {path} (the guests' map also fits the host)"
            session._maps_used.add(path)
            return sm
    prof = session._find_profile(vi, uts) if not session.symopts.profile else None
    if prof is not None and map_fits(session.profile_map(prof), vi)[0]:
        info.symbols_source = f"profile {prof.name}"
        return session.profile_map(prof)
    ks = session.kallsyms(session.memory, vi)
    info.symbols_source = f"kallsyms recovered from the image ({len(ks)} symbols)"
    return KallsymsWithVmcoreinfo(ks, vi, kernel)
