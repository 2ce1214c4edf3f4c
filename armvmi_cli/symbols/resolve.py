"""How a kernel's symbols and types are chosen and checked, once the kernel
is located: a System.map that fits (checked against the kernel's own
VMCOREINFO), a profile picked by banner, or the kernel's own kallsyms; types
from BTF read out of memory (its parse index cached by the blob's digest).  Used for guest kernels
(:mod:`armvmi_cli.session`) and the host kernel (:mod:`armvmi_cli.host`).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ArmvmiError, SymbolError


# Where the cache lives when the user's cannot be used: every lookup under it
# fails with ENOTDIR, which reads as "absent", and every write fails quietly.
_NO_CACHE_DIR = Path(os.devnull) / "armvmi-cache"


def cache_dir() -> Path:
    """armvmi's cache directory ($ARMVMI_CACHE, else $XDG_CACHE_HOME/armvmi,
    else ~/.cache/armvmi), created if need be.  When it cannot be used (an
    unreadable $HOME, a path under a file) the command still runs, uncached."""
    base = os.environ.get("ARMVMI_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "armvmi")
    try:
        os.makedirs(base, exist_ok=True)
        if not os.access(base, os.R_OK | os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
    except (OSError, ValueError) as e:
        from .cachefile import debug

        debug(f"{base}: unusable ({getattr(e, 'strerror', None) or e}); running without a cache")
        return _NO_CACHE_DIR
    return Path(base)


KERNEL_IMAGE_MAX = 128 << 20  # generous bound on an arm64 kernel image's size


# Bump when the parsed type model changes shape or meaning (a cached model
# from an older armvmi must not be reused).
TYPES_CACHE_VERSION = 3  # 3: a digest-keyed BTF index (2 was a pickle keyed by build id)


def kernel_image_ranges(phys, vi):
    """Physical runs that can hold the kernel image (from _stext's physical
    address), so scans for its tables don't read all of RAM."""
    from ..memory.scan import layer_ranges

    stext = vi.symbol("_stext")
    if stext is None or vi.kimage_voffset is None:
        return None
    lo = ((stext - vi.kimage_voffset) & 0xFFFF_FFFF_FFFF_FFFF) - (2 << 20)
    hi = lo + KERNEL_IMAGE_MAX
    return [(max(s, lo), min(e, hi)) for s, e in layer_ranges(phys) if e > lo and s < hi]


def utsname(kernel, vi):
    """(release, version) from init_uts_ns, located through VMCOREINFO."""
    addr = vi.symbol("init_uts_ns")
    if addr is None:
        return None
    off = vi.offset("uts_namespace.name") or 0
    try:
        raw = kernel.read(addr + off, 65 * 4)
    except ArmvmiError:
        return None
    field = lambda i: raw[65 * i : 65 * (i + 1)].split(b"\0", 1)[0].decode("latin-1")  # noqa: E731
    return field(2), field(3)


def linux_banner(kernel, vi, uts=None) -> str | None:
    """The ``linux_banner`` string as it is in memory (people match debug
    packages by it): at its symbol when one is known, else found by scanning
    the kernel image for ``Linux version <release> (`` -- never rebuilt from
    utsname, which lacks the compiler part."""
    from ..memory.scan import read_cstring, scan

    def read(va):
        try:
            return read_cstring(kernel.vmem, va, 512).decode("latin-1").strip() or None
        except ArmvmiError:
            return None

    syms = getattr(kernel, "symbols", None)
    addr = syms.address("linux_banner") if syms is not None else None
    if addr is not None:
        return read(kernel.symbol("linux_banner"))
    release = (uts[0] if uts else None) or vi.release
    phys = kernel.vmem.lower
    ranges = kernel_image_ranges(phys, vi)
    if not release or not ranges or vi.kimage_voffset is None:
        return None
    for pa in scan(phys, f"Linux version {release} (".encode(), ranges):
        try:
            text = read_cstring(phys, pa, 512).decode("latin-1").strip()
        except ArmvmiError:
            continue
        if not uts or text.endswith(uts[1]):
            return text
    return None


def map_fits(sm, vi) -> tuple[bool, str]:
    """Does this System.map describe the kernel VMCOREINFO speaks of?"""
    slide = vi.kaslr_offset or 0
    checked = 0
    for name in ("_stext", "init_uts_ns", "swapper_pg_dir", "node_online_map"):
        want = vi.symbol(name)
        have = sm.address(name)
        if want is None or have is None:
            continue
        checked += 1
        if (have + slide) & 0xFFFF_FFFF_FFFF_FFFF != want:
            return False, f"its {name} is {have:#x}+slide {slide:#x}, memory has it at {want:#x}"
    if not checked:
        return False, "it shares no symbol with the image's VMCOREINFO"
    return True, ""


def profile_matches(prof, vi, uts) -> bool:
    banner = getattr(prof, "banner", None) or ""
    release = getattr(prof, "release", None)
    if vi.release and release and release != vi.release:
        return False
    if uts and banner and uts[1] and uts[1] not in banner:
        return False
    return bool(release or banner)


# Data symbols whose extent the type model gives (kernel ABI, not any one capture).
_DATA_TYPES = {"init_task": "task_struct", "init_uts_ns": "uts_namespace", "prb": "printk_ringbuffer",
               "printk_rb_static": "printk_ringbuffer", "vmap_area_list": "list_head", "node_online_map": "nodemask_t"}
_PAGE_SIZED = ("swapper_pg_dir", "init_pg_dir", "tramp_pg_dir", "reserved_pg_dir", "idmap_pg_dir")
# VMCOREINFO SYMBOL() entries that are not the address of a symbol of that name:
# mem_section is VMCOREINFO_SYMBOL_ARRAY (the pointer's value, the array kmalloc'ed
# under SPARSEMEM_EXTREME); node_online_map is a macro for node_states[N_ONLINE]
# (include/linux/nodemask.h), an address inside another symbol.
_NOT_A_SYMBOL = ("mem_section",)
_NOT_IN_THE_TABLE = ("mem_section", "node_online_map")
# kallsyms text runs: a symbol never extends past the end of its run.
_TEXT_RUNS = (("_stext", "_etext"), ("_sinittext", "_einittext"))


class KallsymsWithVmcoreinfo:
    """kallsyms (runtime addresses) plus the data symbols VMCOREINFO names
    and ``init_task`` found by structure, as one symbol table.

    Without CONFIG_KALLSYMS_ALL kallsyms holds text only: an address past the
    end of the text (``_etext``) is never "inside" the last text symbol.  It
    is named by a data symbol armvmi knows (within that object's size where
    the type model gives it, else only at its exact address), or not at all:
    a wrong name is worse than none."""

    runtime_addresses = True

    def __init__(self, ks, vi, kernel):
        self.ks = ks
        self.extra = {}
        for k in vi.raw:
            if k.startswith("SYMBOL(") and k.endswith(")") and k[7:-1] not in _NOT_A_SYMBOL:
                self.extra[k[7:-1]] = vi.symbol(k[7:-1])
        self.kernel = kernel

    def address(self, name):
        a = self.extra.get(name)
        return a if a is not None else self.ks.address(name)

    def add(self, name: str, va: int) -> None:
        """A data symbol found by structure (or any other means)."""
        self.extra[name] = va

    def find_init_task(self, kernel):
        """init_task is data: not in kallsyms without KALLSYMS_ALL. Find it
        by structure in the kernel image (pid 0, real_parent == self, a tasks
        list whose neighbours link back)."""
        from .init_task import find_init_task

        vi = kernel.vmcoreinfo
        start = vi.symbol("_stext")
        offsets = {k: kernel.offsetof("task_struct", k) for k in ("comm", "tasks", "real_parent", "pid", "tgid")}
        va = find_init_task(kernel.read, [(start, start + KERNEL_IMAGE_MAX)], offsets)
        self.add("init_task", va)
        kernel.info.notes.append(f"init_task located by structure at {va:#x}")

    def _extent(self, name: str) -> int:
        """Bytes a data symbol covers: its type's size, a page for page
        tables, else 1 (its own address only)."""
        k = self.kernel
        try:
            if name in _PAGE_SIZED:
                return k.info.page_size or 1
            t = _DATA_TYPES.get(name)
            if t is not None and getattr(k, "types", None) is not None:
                return max(1, int(k.type(t).size))
        except Exception:  # no type model yet, or no such type: exact address only
            pass
        return 1

    def _text_end(self, addr: int) -> bool:
        """Whether ``addr`` lies in a text run of kallsyms (None: unknown runs)."""
        runs = [(self.ks.address(a), self.ks.address(b)) for a, b in _TEXT_RUNS]
        runs = [(a, b) for a, b in runs if a is not None and b is not None]
        if not runs:
            return True
        return any(a <= addr < b for a, b in runs)

    def lookup(self, addr):
        hit = self.ks.lookup(addr) if self._text_end(addr) else None
        best = None
        for name, va in self.extra.items():
            if va is not None and va <= addr < va + self._extent(name) and (best is None or va > best[1]):
                best = (name, va)
        if best is not None and (hit is None or addr - best[1] <= hit[1]):
            return best[0], addr - best[1]
        return hit

    def _data_rows(self):
        """The data symbols kallsyms lacks, as (address, "D", name)."""
        return [(va, "D", name) for name, va in sorted(self.extra.items(), key=lambda kv: (kv[1] or 0, kv[0]))
                if va is not None and self.ks.address(name) is None and name not in _NOT_IN_THE_TABLE]

    def grep(self, pattern):
        import re

        rows = list(self.ks.grep(pattern))
        rx = re.compile(pattern)
        rows.extend(r for r in self._data_rows() if rx.search(r[2]))
        return sorted(rows, key=lambda r: r[0])

    def __len__(self):
        return len(self.ks) + len(self._data_rows())

    def __iter__(self):
        from .system_map import Symbol

        return iter(sorted(list(self.ks) + [Symbol(*r) for r in self._data_rows()], key=lambda s: s[0]))


def _read_span(kernel, va: int, n: int) -> bytes:
    """``n`` bytes at ``va``, read one leaf mapping (a 2 MiB block of the kernel
    image, say) at a time: the BTF is read on every run to check its digest."""
    span = getattr(kernel.vmem, "span", None)
    if span is None:
        return kernel.read(va, n)
    parts, cur, left = [], va, n
    while left:
        out, size, fault = span(cur)
        if fault is not None:
            raise fault
        take = min(left, size)
        parts.append(kernel.vmem.lower.read(out, take))
        cur, left = cur + take, left - take
    return b"".join(parts)


def _read_btf(kernel) -> tuple[bytes, str]:
    """The BTF blob and where it was found."""
    try:
        start, stop = kernel.symbol("__start_BTF"), kernel.symbol("__stop_BTF")
        if not 0 < stop - start < (256 << 20):
            raise SymbolError(f"{kernel.name}: implausible BTF bounds {start:#x}-{stop:#x}")
        return _read_span(kernel, start, stop - start), f"at {start:#x}"
    except SymbolError:
        # No data symbols (kallsyms without KALLSYMS_ALL): find it by its header.
        from .btf_locate import locate_btf

        phys = kernel.vmem.lower
        found = locate_btf(phys, kernel_image_ranges(phys, kernel.vmcoreinfo))
        if found is None:
            raise SymbolError(
                f"{kernel.name}: no BTF in the kernel image (CONFIG_DEBUG_INFO_BTF off?); give --isf or a profile with types"
            ) from None
        pa, size = found
        return phys.read(pa, size), f"found by its header at physical {pa:#x}"


def btf_types(kernel, use_cache: bool):
    """The kernel's own BTF (CONFIG_DEBUG_INFO_BTF), read through its page
    tables.  The blob is always read from the image; what is cached is the
    index its parse builds (where each type starts, names to ids), keyed by a
    digest of the blob itself: an image whose BTF was altered, with its build
    id left as is, gets an index of its own and never poisons another's."""
    from . import cachefile
    from .btf import BtfSource, parse_btf
    from .types import TypeModel

    info = kernel.info
    data, where = _read_btf(kernel)
    info.types_source = f"BTF in memory ({len(data)} bytes {where})"
    if not use_cache:
        return parse_btf(data)
    key = cachefile.digest(data)
    cfile = cache_dir() / "btf" / f"{key.hex()[:40]}.v{TYPES_CACHE_VERSION}"
    sec = cachefile.read(cfile, "btf-index", TYPES_CACHE_VERSION, key)
    if sec is not None:
        src = BtfSource.from_index(data, sec)
        if src is not None:
            info.types_source += " (index cached)"
            return TypeModel(src)
        cachefile.debug(f"{cfile}: malformed content; rebuilding")
    tm = parse_btf(data)
    cachefile.write(cfile, "btf-index", TYPES_CACHE_VERSION, key, tm._src.index_sections())
    return tm
