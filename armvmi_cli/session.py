"""The core library: one lookup and two translations over a memory image.

A :class:`Session` opens a host (or plain guest) memory image, replays the
front-end's SMC event log into the EL3 registry model, and gives one
:class:`VM` per guest with its layer stack::

    host physical (image) -> Stage2 (VTTBR/VTCR) -> guest physical
                          -> Stage1 (swapper_pg_dir) -> guest kernel virtual

A plain guest dump (no event log) is a one-VM session without stage 2.
Expensive per-kernel work (the guest kernel's location, symbols and types) is
done lazily, on first use, and cached by build id where it can be.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import ArmvmiError, ProfileMismatchError, SymbolError, UsageError
from .symbols.resolve import (KallsymsWithVmcoreinfo, btf_types, cache_dir, kernel_image_ranges, linux_banner, map_fits,
                              profile_matches, utsname)


@dataclass
class SymbolOptions:
    system_maps: list = field(default_factory=list)
    profile: str | None = None
    isf: str | None = None
    use_cache: bool = True
    use_profiles: bool = True  # off: symbols and types only from the image (or what is given)


class VM:
    """One guest: its stage-2 layer (None for a plain guest dump) and, lazily,
    its kernel."""

    def __init__(self, session: "Session", vm_id, label: str, gphys, stage2=None, record=None, ram=None):
        self.session = session
        self.vm_id = vm_id
        self.label = label
        self.gphys = gphys  # guest-physical layer: the Stage2, or the image itself
        self.stage2 = stage2
        self.record = record  # firmware registry record, when from the log
        self.ram = ram  # (base, size) guest RAM from the log, for scans
        self._kernel = None
        self._kernel_error: Exception | None = None

    def __repr__(self) -> str:
        return f"<VM {self.label}>"

    @property
    def name(self) -> str:
        """The short label ``--vm`` takes and JSON's ``vm`` holds: the log's
        vm_id, a memory-only VM's ``kvm-...`` label, ``guest`` or ``host``."""
        kvm = getattr(self, "kvm", None)
        if isinstance(self.vm_id, int):
            return str(self.vm_id)
        if kvm is not None:
            return kvm.label
        return str(self.vm_id)

    @property
    def json_vm_id(self):
        """The registry's vm_id (a number), or None for a VM the log does not know."""
        return self.vm_id if isinstance(self.vm_id, int) and not isinstance(self.vm_id, bool) else None

    @property
    def kernel(self):
        if self._kernel is None:
            if self._kernel_error is not None:
                raise self._kernel_error
            try:
                self._kernel = self.session._open_kernel(self)
            except ArmvmiError as e:
                self._kernel_error = e
                raise
        return self._kernel

    # -- drgn-like helpers ----------------------------------------------------
    def tasks(self, walk=None):
        from .linux.tasks import for_each_task

        return for_each_task(self.kernel, walk)

    def to_host(self, gva: int) -> list[tuple[str, int]]:
        """GVA -> GPA -> HPA: each layer's name and address."""
        from .mmu import resolve_chain

        return resolve_chain(self.kernel.vmem, gva)

    def gpa_to_hpa(self, gpa: int) -> int:
        return self.stage2.translate(gpa) if self.stage2 is not None else gpa


class Session:
    def __init__(self, image_path, memory, events=None, events_source: str = "", symbols: SymbolOptions | None = None):
        self.image_path = image_path
        self.memory = memory
        self.events = events  # firmware ReplayResult, or None
        self.events_source = events_source
        self.symopts = symbols or SymbolOptions()
        self._vms: list[VM] | None = None
        self._maps_cache: dict = {}
        self._maps_used: set = set()
        self._facts: dict | None = None  # per-image cache, loaded on first use
        self._facts_file = None  # its path (the image's identity), computed once
        self._types_memo: dict = {}  # build id -> BTF type model (host probe and guest share one)
        self._init_tasks: dict = {}  # (layer id, _stext) -> init_task VA found by structure
        self._kallsyms: dict = {}
        self.warnings: list[str] = []  # things the user asked for that could not be done
        self.findings: list = []  # view.Finding s met while building the VM list (a VM the log hides)
        self.host_system_map: str | None = None
        self.vm_source = ""  # how the VM list was made: "event log", "host memory", "plain guest dump"

    # -- opening --------------------------------------------------------------
    @classmethod
    def open(cls, image, events=None, profile=None, system_map=None, isf=None, phys_base=None, until=None, use_cache=True,
             record_pages=None, host_system_map=None):
        from .memory import open_image

        _check_open_args(image, events, profile, system_map, isf, phys_base, until, record_pages, host_system_map)
        mem = open_image(os.fspath(image), phys_base)
        if record_pages:
            # Note every page read, to pack a sparse snapshot of just what a
            # command needs (how snapshots/ samples are made).
            from .memory.recording import RecordingMemory

            mem = RecordingMemory(mem)
            mem.record_to = os.fspath(record_pages)
        from .memory.events import find_event_log

        log, source = find_event_log(os.fspath(image), mem, os.fspath(events) if events else None)
        result = None
        if log is not None:
            from .firmware.replay import replay

            result = replay(log, until=until)
        maps = system_map if isinstance(system_map, (list, tuple)) else ([system_map] if system_map else [])
        s = cls(image, mem, result, source, SymbolOptions([os.fspath(m) for m in maps], profile, os.fspath(isf) if isf else None, use_cache))
        s.host_system_map = os.fspath(host_system_map) if host_system_map else None
        if s.host_system_map:  # asked for by name: a missing or garbage map is an error now, not a warning later
            s._load_map(s.host_system_map)
        return s

    def close(self):
        self.save_recorded_pages()
        self.memory.close()

    def save_recorded_pages(self) -> int | None:
        path = getattr(self.memory, "record_to", None)
        if path is None:
            return None
        return self.memory.write_page_list(path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- VMs ------------------------------------------------------------------
    @property
    def registry(self):
        return self.events.registry if self.events is not None else None

    @property
    def host(self):
        return self.registry.host if self.registry is not None else None

    @property
    def vms(self) -> list[VM]:
        if self._vms is None:
            self._vms = self._build_vms()
        return self._vms

    def _build_vms(self) -> list[VM]:
        """The VMs to look into.

        With an event log: its live VMs (the EL3 registry's view), plus every
        VM KVM holds in memory that the log does not know -- always, with no
        extra option: the log is the host's word, memory is the evidence.
        Each such VM is labelled and is a ``hidden-vm`` finding
        (``self.findings``).  Without a log: the VMs in KVM's vm_list; if
        there are none (or no hypervisor), the image is a plain guest dump:
        one VM, no stage 2.
        """
        if self.registry is None:
            mem_vms = self._memory_vms()
            if mem_vms:
                self.vm_source = "KVM's vm_list in host memory (no event log)"
                return mem_vms
            self.vm_source = "plain guest dump (no event log, no VMs in memory)"
            # No hypervisor: the image is guest physical memory (errors and walks say so).
            for m in (self.memory, getattr(self.memory, "inner", None)):
                if m is not None and hasattr(m, "layer_name"):
                    m.layer_name = "guest physical"
            return [VM(self, "guest", "guest (plain dump, no stage 2)", self.memory)]
        from .mmu import Stage2

        self.vm_source = "event log (EL3 registry)"
        out = []
        shared: dict[tuple[int, int], Stage2] = {}
        sharing: dict[int, list] = {}
        for rec in self.registry.live():
            s2 = Stage2(self.memory, rec.vttbr, rec.vtcr, name=f"stage2 vm {rec.vm_id}")
            # VMs whose stage 2 is the same tables under the same VTCR see the
            # same guest memory: one layer (one table cache), one kernel search.
            s2 = shared.setdefault((s2.base, rec.vtcr), s2)
            sharing.setdefault(id(s2), []).append(rec.vm_id)
            out.append(VM(self, rec.vm_id, f"vm {rec.vm_id}", s2, stage2=s2, record=rec, ram=(rec.ram_base, rec.ram_size)))
        for ids in sharing.values():
            if len(ids) > 1:
                few = ", ".join(map(str, ids[:4])) + (", ..." if len(ids) > 4 else "")
                self.warnings.append(f"{len(ids)} VMs ({few}) have the same stage-2 tables and VTCR: "
                                     "read as one guest memory, its kernel located once")
        out.extend(self._unlogged_vms())
        return out

    def _unlogged_vms(self) -> list[VM]:
        """VMs on KVM's vm_list that the log does not hold live, each with
        its ``hidden-vm`` finding.  The host kernel is located once per
        session (and cached per image); a dump with no host kernel or no KVM
        in it gives none."""
        try:
            from .host.vms import unlogged_vms

            found = unlogged_vms(self)
        except ArmvmiError as e:
            # Said every time: a VM the log hides cannot be ruled out.
            self.warnings.append(f"VMs in host memory not examined ({e}); only the event log's VMs are listed")
            return []
        for vm, finding in found:
            self.findings.append(finding)
        return [vm for vm, _ in found]

    def _memory_vms(self) -> list[VM] | None:
        """VMs found through the host kernel's vm_list, or None when the
        host kernel or its KVM state cannot be read (the reason is kept)."""
        try:
            from .host.vms import memory_vms

            return memory_vms(self, self.host_system_map)
        except ArmvmiError as e:
            if self.host_system_map:  # asked for; without it this was only a probe
                self.warnings.append(f"VMs in host memory not examined: {e}")
            return None

    def host_vm(self) -> VM:
        """The host kernel as a target like any VM (``--vm host``)."""
        vm = getattr(self, "_host_vm", None)
        if vm is None:
            if self.registry is None and not self.vms_from_memory():
                raise UsageError("--vm host: this is a plain guest dump (no hypervisor in it), there is no host kernel")
            from .host.kernel import host_kernel

            hk = host_kernel(self)
            vm = VM(self, "host", "host", self.memory)
            vm._kernel = hk.kernel
            self._host_vm = vm
        return vm

    def vms_from_memory(self) -> bool:
        """Whether any VM of this session came from KVM's vm_list."""
        return any(getattr(v, "kvm", None) is not None for v in self.vms)

    def vm(self, vm_id=None) -> VM:
        if vm_id is not None and str(vm_id) == "host":
            return self.host_vm()
        vms = self.vms
        if vm_id is None:
            if len(vms) == 1:
                return vms[0]
            if not vms:
                raise UsageError("the event log records no live VM (see `armvmi vms`; --until may help)")
            raise UsageError(f"{len(vms)} VMs live in this image; choose one with --vm ({', '.join(str(v.vm_id) for v in vms)})")
        for v in vms:
            if str(v.vm_id) == str(vm_id) or v.name == str(vm_id) or (isinstance(v.vm_id, int) and _int_or_none(vm_id) == v.vm_id):
                return v
        raise UsageError(f"no VM {vm_id!r} in this image (VMs: {', '.join(str(v.vm_id) for v in vms) or 'none'})")

    def select(self, vm_id=None) -> list[VM]:
        return [self.vm(vm_id)] if vm_id is not None else self.vms

    # -- kernels --------------------------------------------------------------
    def _open_kernel(self, vm: VM):
        from .linux.kernel import Kernel, KernelInfo
        from .symbols.kaslr import clean_hints, locate_kernel

        same = self._kernel_behind_same_stage2(vm)
        if same is not None:
            return same
        note = self.memory.vmcoreinfo if vm.stage2 is None else None
        ranges = None
        if vm.stage2 is not None:
            ranges = _guest_ranges(vm)
        hints = clean_hints(self._facts_get(f"vmcoreinfo:{vm.label}"))
        if vm.stage2 is None:
            # A plain dump's kernel is the one the host probe just found (same
            # memory): its VMCOREINFO address is a hint, verified like any.
            hk = getattr(self, "_armvmi_host", None)
            addr = getattr(getattr(getattr(hk, "kernel", None), "vmcoreinfo", None), "address", None)
            if addr is not None and addr not in hints:
                hints = [*hints, addr]
        try:
            # A guest's own RAM (behind stage 2) holds one kernel: stop at the first.
            cand = locate_kernel(vm.gphys, ranges, note, what=vm.label, hints=hints, first=vm.stage2 is not None)
        except SymbolError as no_vmcoreinfo:
            cand = self._locate_by_banner(vm, ranges, no_vmcoreinfo)
        vi = cand.vmcoreinfo
        if vi.address is not None and vi.address not in hints:
            self._facts_put(f"vmcoreinfo:{vm.label}", [vi.address])
        info = KernelInfo.from_candidate(
            cand,
            ("" if vi.derived else "KERNELOFFSET from ") + f"{vi.source}, confirmed by page-table walk",
            "swapper_pg_dir (from VMCOREINFO)",
        )
        kernel = Kernel(cand.stage1, None, None, info, name=vm.label)
        kernel.vmcoreinfo = vi
        uts = utsname(kernel, vi)
        symbols = self._pick_symbols(kernel, vi, uts)
        kernel.symbols = symbols
        info.banner = linux_banner(kernel, vi, uts)
        kernel.types = self._load_types(kernel)
        if isinstance(symbols, KallsymsWithVmcoreinfo) and symbols.address("init_task") is None:
            self.find_init_task(kernel, symbols)
        return kernel

    def find_init_task(self, kernel, symbols) -> None:
        """init_task by structure (kallsyms has no data symbols), once per
        kernel per session, and from the image's facts across runs: a cached
        VA is used only when it passes the same structural check."""
        from .symbols.init_task import validate_init_task

        stext = kernel.vmcoreinfo.symbol("_stext")
        key = (id(kernel.vmem.lower), stext)
        va = self._init_tasks.get(key)
        if va is None:
            hint = self._facts_get(f"init_task:{stext:#x}") if stext is not None else None
            if isinstance(hint, int):
                offsets = {k: kernel.offsetof("task_struct", k) for k in ("comm", "tasks", "real_parent", "pid", "tgid")}
                if validate_init_task(kernel.read, hint, offsets) is None:
                    va = hint
        if va is None:
            symbols.find_init_task(kernel)
            va = symbols.extra["init_task"]
            if stext is not None:
                self._facts_put(f"init_task:{stext:#x}", va)
        else:
            symbols.extra["init_task"] = va
            kernel.info.notes.append(f"init_task located by structure at {va:#x}")
        self._init_tasks[key] = va

    def _kernel_behind_same_stage2(self, vm: VM):
        """The kernel of a VM already opened through the very same stage-2
        layer (a log can create many VMs over one set of tables), as a view
        named for this VM; None if there is none."""
        if vm.stage2 is None:
            return None
        for other in self._vms or ():
            if other is not vm and other.gphys is vm.gphys and other._kernel is not None:
                import copy

                k = copy.copy(other._kernel)
                k.name = vm.label
                return k
        return None

    # -- a small per-image cache of where things were found ----------------------
    def _facts_path(self):
        """The facts file for this image, or None (caching off, or no file).

        Keyed by the image's identity: path, size, mtime, inode *and* a digest
        of sampled pages (:func:`image_digest`), so an image rewritten in place
        with its mtime forged back still gets fresh facts.  Facts are hints
        only: each is re-verified before use, so a cache never changes an
        answer."""
        if not self.symopts.use_cache or getattr(self.memory, "record_to", None):
            return None
        if self._facts_file is None:
            try:
                st = os.stat(self.image_path)
                digest = image_digest(self.image_path, st.st_size)
            except OSError:
                return None
            import hashlib

            key = f"{os.path.abspath(os.fspath(self.image_path))}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{digest}"
            self._facts_file = cache_dir() / "images" / (hashlib.sha1(key.encode()).hexdigest() + ".json")
        return self._facts_file

    def _facts_get(self, key):
        import json

        if self._facts is None:
            self._facts = {}
            p = self._facts_path()
            if p is not None and p.exists():
                try:
                    self._facts = json.loads(p.read_text())
                except (OSError, ValueError):
                    self._facts = {}
                if not isinstance(self._facts, dict):  # `null`, `[]`: a cache of the wrong shape is absent
                    self._facts = {}
        return self._facts.get(key)

    def _facts_put(self, key, value):
        import json

        self._facts_get(key)
        self._facts[key] = value
        p = self._facts_path()
        if p is None:
            return
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self._facts))
            os.replace(tmp, p)
        except OSError:
            pass  # a cache that cannot be written is no error

    def _locate_by_banner(self, vm, ranges, why):
        """No usable VMCOREINFO: try each System.map (given, else profiles)
        against the banners in memory, confirmed by a page-table walk."""
        from .symbols.kaslr import locate_by_banner

        maps = [(p, self._load_map(p)) for p in self.symopts.system_maps]
        if not maps:
            try:
                from .symbols import profiles

                profs = [profiles.load_profile(self.symopts.profile)] if self.symopts.profile else profiles.find_profiles()
                maps = [(f"profile {p.name}", self.profile_map(p)) for p in profs]
            except (ImportError, SymbolError):
                maps = []
        if not maps:
            raise SymbolError(f"{why}; without VMCOREINFO armvmi needs the kernel's System.map (--system-map) to find it")
        errors = []
        for name, sm in maps:
            try:
                return locate_by_banner(vm.gphys, sm, ranges, what=vm.label)
            except SymbolError as e:
                errors.append(f"{name}: {e}")
        raise SymbolError(f"{why}; and by banner: {'; '.join(errors)}")

    def _pick_symbols(self, kernel, vi, uts):
        info = kernel.info
        tried = []
        for path in self.symopts.system_maps:
            sm = self._load_map(path)
            ok, why = map_fits(sm, vi)
            if ok:
                info.symbols_source = f"System.map {path}"
                self._maps_used.add(path)
                return sm
            tried.append(f"{path} ({why})")
        if self.symopts.isf and not self.symopts.system_maps:
            # An ISF carries the kernel's symbol table too: use it like a System.map.
            _, isf_syms = self._load_isf()
            if len(isf_syms) and map_fits(isf_syms, vi)[0]:
                info.symbols_source = f"ISF {self.symopts.isf} (its symbol table)"
                return isf_syms
        if self.symopts.system_maps:
            rel = vi.release or "?"
            raise ProfileMismatchError(
                f"no --system-map fits {kernel.name}: banner in image says {rel}"
                + (f" {uts[1]}" if uts else "")
                + "; "
                + "; ".join(tried)
            )
        emb = self._embedded(vi)
        if emb is not None:
            from .symbols.embedded import embedded_symbols

            sm = embedded_symbols(self.memory, emb)
            ok, why = map_fits(sm, vi) if sm is not None else (False, "")
            if ok:
                info.symbols_source = f"{sm.source} ({emb.get('symbols_source') or 'packed'})"
                return sm
        prof = self._find_profile(vi, uts)
        if prof is not None:
            sm = self.profile_map(prof)
            ok, why = map_fits(sm, vi)
            if not ok:
                raise ProfileMismatchError(f"profile {prof.name} does not fit {kernel.name} ({why})")
            info.symbols_source = f"profile {prof.name}"
            kernel.profile = prof
            return sm
        # No map, no profile: recover the kernel's own symbol table.
        ks = self.kallsyms(kernel.vmem.lower, vi)
        info.symbols_source = f"kallsyms recovered from memory ({len(ks)} symbols)"
        info.notes.append("kallsyms holds functions only on kernels without CONFIG_KALLSYMS_ALL; data symbols come from VMCOREINFO and structure scans")
        return KallsymsWithVmcoreinfo(ks, vi, kernel)

    def _embedded(self, vi):
        """The kernel packed with a snapshot that VMCOREINFO ``vi`` describes, if any."""
        if vi is None or not getattr(self.memory, "kernels", None):
            return None
        from .symbols.embedded import find_record

        return find_record(self.memory, vi)

    def kallsyms(self, phys, vi):
        """The kallsyms table of the kernel VMCOREINFO describes, recovered
        from ``phys`` once per session (the host probe and a plain guest's
        own kernel are the same kernel)."""
        from .symbols.kallsyms import recover_kallsyms

        stext = vi.symbol("_stext")
        key = (id(phys), stext)
        if key not in self._kallsyms:
            # Where the table was found before (the image's facts): decoded and
            # validated in place, else searched for as on a first run.
            fact = f"kallsyms:{getattr(phys, 'name', '')}:{stext:#x}" if stext is not None else None
            hint = self._facts_get(fact) if fact else None
            ks = None
            if isinstance(hint, list) and len(hint) == 3 and all(isinstance(v, int) for v in hint):
                from .symbols.kallsyms import table_at

                try:
                    ks = table_at(phys, hint[0], (hint[1], hint[2]))
                    if not ks.symbols[0][0] <= stext <= ks.symbols[-1][0]:
                        ks = None
                except ArmvmiError:
                    ks = None
            if ks is None:
                ranges = kernel_image_ranges(phys, vi)  # walks all of stage 2: only on a miss
                ks = recover_kallsyms(phys, ranges, prefer=stext)
                tt = ks.layout.token_table
                rng = next(((a, b) for a, b in (ranges or []) if a <= tt < b), None)
                if fact and rng is not None:
                    self._facts_put(fact, [tt, int(rng[0]), int(rng[1])])
            self._kallsyms[key] = ks
        return self._kallsyms[key]

    def unused_system_maps(self) -> list[str]:
        """--system-map files that fit none of the kernels opened so far."""
        return [p for p in self.symopts.system_maps if p not in self._maps_used]

    def _load_map(self, path):
        from .symbols.system_map import SystemMap

        sm = self._maps_cache.get(path)
        if sm is None:
            sm = SystemMap.load(path, cache=self.symopts.use_cache)
            if hasattr(sm, "check"):
                sm.check()
            self._maps_cache[path] = sm
        return sm

    def profile_map(self, prof):
        """A profile's System.map, honouring --no-cache."""
        load = getattr(prof, "load_system_map", None)
        if load is not None:
            return load(cache=self.symopts.use_cache)
        return prof.system_map() if callable(getattr(prof, "system_map", None)) else prof.system_map

    def _find_profile(self, vi, uts):
        try:
            from .symbols import profiles
        except ImportError:
            return None
        if self.symopts.profile:
            return profiles.load_profile(self.symopts.profile)
        if not self.symopts.use_profiles:
            return None
        for prof in profiles.find_profiles():
            if profile_matches(prof, vi, uts):
                return prof
        return None

    def _load_isf(self):
        """(type model, symbols) of ``--isf``, read once per session."""
        if getattr(self, "_isf", None) is None:
            from .symbols.isf import load_isf

            self._isf = load_isf(self.symopts.isf)
        return self._isf

    def _load_types(self, kernel):
        info = kernel.info
        if self.symopts.isf:
            tm, isf_syms = self._load_isf()
            # An ISF is one kernel build's layouts: refuse another kernel's.
            vi = kernel.vmcoreinfo
            release = getattr(isf_syms, "release", None)
            if release and info.release and release != info.release:
                raise ProfileMismatchError(f"--isf {self.symopts.isf} is for {release}; the kernel in {kernel.name} is {info.release}")
            ok, why = map_fits(isf_syms, vi)
            if not ok and "shares no symbol" not in why:
                raise ProfileMismatchError(f"--isf {self.symopts.isf} does not fit the kernel in {kernel.name}: {why}")
            info.types_source = f"ISF {self.symopts.isf}"
            return tm
        emb = self._embedded(kernel.vmcoreinfo)
        if emb is not None:
            # The packed BTF is the kernel's own: read it from memory (and the
            # types cache) when the pages are there, from the snapshot when not.
            try:
                return btf_types(kernel, self.symopts.use_cache)
            except ArmvmiError:
                from .symbols.embedded import embedded_types

                tm = embedded_types(self.memory, emb)
                if tm is not None:
                    info.types_source = "BTF embedded in the snapshot"
                    return tm
        prof = getattr(kernel, "profile", None)
        if prof is not None and callable(getattr(prof, "types", None)):
            tm = prof.types()
            if tm is not None:
                info.types_source = f"profile {prof.name}"
                return tm
        bid = info.build_id
        if bid and bid in self._types_memo:
            tm, info.types_source = self._types_memo[bid]
            return tm
        tm = btf_types(kernel, self.symopts.use_cache)
        if bid:
            self._types_memo[bid] = (tm, info.types_source)
        return tm


SAMPLE_PAGES = 16


def image_digest(path, size: int, pages: int = SAMPLE_PAGES) -> str:
    """A digest of the first 64 KiB (headers), ``pages`` pages spread evenly
    over the file and its last page: a few reads, whatever the image's size."""
    import hashlib

    h = hashlib.sha256(str(size).encode())
    spread = [(size * i // (pages + 1)) & ~0xFFF for i in range(1, pages + 1)] + [max(size - 4096, 0)]
    with open(path, "rb", buffering=0) as f:
        h.update(os.pread(f.fileno(), 65536, 0))
        for off in spread:
            h.update(os.pread(f.fileno(), 4096, off))
    return h.hexdigest()[:32]


def _check_open_args(image, events, profile, system_map, isf, phys_base, until, record_pages, host_system_map):
    """Bad arguments from a script are ArmvmiErrors too, with the argument's name."""

    def path(v, what, optional=True):
        if v is None and optional:
            return
        if isinstance(v, bool) or not isinstance(v, (str, os.PathLike)) or not os.fspath(v):
            raise UsageError(f"{what}: expected a file path, got {v!r}")

    path(image, "image", optional=False)
    for v, what in ((events, "events"), (isf, "isf"), (record_pages, "record_pages"), (host_system_map, "host_system_map")):
        path(v, what)
    for m in system_map if isinstance(system_map, (list, tuple)) else [system_map]:
        path(m, "system_map")
    if profile is not None and (isinstance(profile, bool) or not isinstance(profile, (str, os.PathLike))):
        raise UsageError(f"profile: expected a profile name or directory, got {profile!r}")
    for v, what in ((phys_base, "phys_base"), (until, "until")):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise UsageError(f"{what}: expected an integer, got {v!r}")
    if phys_base is not None and not 0 <= phys_base < 1 << 64:
        raise UsageError(f"phys_base {phys_base:#x} is out of range (0 to 2**64-1)")


def _int_or_none(text):
    try:
        return int(str(text), 0)
    except ValueError:
        return None


def _guest_ranges(vm: VM):
    """Guest-physical runs to scan: the RAM the log declares, clipped to what
    stage 2 maps (KVM fills stage 2 lazily)."""
    from .memory.scan import layer_ranges

    if vm.ram and vm.ram[1]:
        lo, hi = vm.ram[0], vm.ram[0] + vm.ram[1]
        # The scan walks stage 2 within the range itself; only check that the
        # declared RAM is mapped at all (a lying log may name the wrong range).
        if next(iter(vm.stage2.mappings(lo, hi - 1)), None) is not None:
            return [(lo, hi)]
    return layer_ranges(vm.stage2)


