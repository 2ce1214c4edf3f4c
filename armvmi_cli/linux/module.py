"""Loaded kernel modules, four ways.

``/proc/modules`` walks the ``modules`` list.  A rootkit that unlinks its
``struct module`` from that list disappears from it, but the kernel still
knows the module elsewhere: its kobject stays in ``module_kset`` (what
``/sys/module`` lists), its layouts stay in the module address tree
``mod_tree`` (what ``__module_address`` searches), and the structure itself
stays in module memory.  Each module one of those views sees and the list
does not is reported ``hidden``.

The globals are found without data symbols too (Debian's kallsyms holds
functions only): ``mod_tree`` and ``module_kset`` from the code that uses
them (:func:`armvmi_cli.host.adrp.find_data`), the ``modules`` head from
``find_module_all``'s code or by following any module's ``list`` to the one
node that is not a module.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import field

from ..errors import ArmvmiError
from ..view import addr, record
from .list import ListWalk, list_nodes

STATES = ("Live", "Coming", "Going", "Unformed")  # enum module_state, as /proc/modules names them
# kernel/panic.c taint_flags[] whose .module is true: bit -> letter shown in /proc/modules.
MODULE_TAINTS = {0: "P", 1: "F", 10: "C", 12: "O", 13: "E", 15: "K", 16: "X", 17: "T"}
MODULE_NAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MAX_MODULES = 1 << 14
MAX_TREE_NODES = 1 << 16
GiB = 1 << 30
MASK64 = (1 << 64) - 1
VIEWS = ("module_list", "module_kset", "mod_tree", "memory_scan")


@record
class ModuleInfo:
    name: str
    base: int | None = addr(None)  # core (text) layout base, as /proc/modules shows it
    size: int = 0
    refcount: int | None = None  # module_refcount(): refcnt - MODULE_REF_BASE
    state: str = ""
    taint: str = ""
    module: int = addr(0)  # the struct module
    hidden: bool = False
    seen_by: list = field(default_factory=list)


# -- reading one struct module ---------------------------------------------------------------------

def _layouts(kernel, mod):
    """(base, size) of each memory layout: 6.1's core/init ``module_layout``,
    6.4+'s ``mem[MOD_*]``; the text layout first."""
    if mod.has_member_("core_layout"):
        return [(int(mod.core_layout.base), mod.core_layout.size), (int(mod.init_layout.base), mod.init_layout.size)]
    mem = mod.mem
    return [(int(mem[i].base), mem[i].size) for i in range(len(mem))]


def module_info(kernel, mod) -> ModuleInfo:
    layouts = _layouts(kernel, mod)
    state = mod.state
    refcnt = mod.refcnt.counter - 1 if mod.has_member_("refcnt") else None
    taints = mod.taints if mod.has_member_("taints") else 0
    taint = "".join(c for bit, c in sorted(MODULE_TAINTS.items()) if taints >> bit & 1)
    return ModuleInfo(name=mod.name, base=layouts[0][0] or None, size=sum(s for _, s in layouts), refcount=refcnt,
                      state=STATES[state] if 0 <= state < len(STATES) else str(state), taint=taint,
                      module=mod.address_)


def module_space(kernel) -> list[tuple[int, int]]:
    """Where module memory can be: VMCOREINFO's MODULES_VADDR..MODULES_END and,
    with KASLR, the window module_alloc randomises within (arm64: within 4 GiB
    below the kernel's end, with a 2 GiB PLT fallback either side) -- never
    below the module/vmalloc area (the linear map is not module memory)."""
    out = []
    vi = getattr(kernel, "vmcoreinfo", None)
    raw = getattr(vi, "raw", {}) if vi is not None else {}

    def number(key):
        try:
            return int(raw[f"NUMBER({key})"], 0)
        except (KeyError, ValueError):
            return None

    lo, hi = number("MODULES_VADDR"), number("MODULES_END")
    if lo is not None and hi is not None and lo < hi:
        out.append((lo, hi))
    floor = lo if lo is not None else number("VMALLOC_START")
    if floor is None:  # arm64: modules and vmalloc live in the upper half of the kernel VA space
        floor = (1 << 64) - (1 << (kernel.info.va_bits - 1))
    try:
        stext = kernel.symbol("_stext")
        end = kernel.symbol("_end") if kernel.has_symbol("_end") else kernel.symbol("_etext")
    except ArmvmiError:
        return out
    out += [(max(end - 6 * GiB, floor), stext), (end, min(end + 2 * GiB, (1 << 64) - 1))]
    merged: list[list[int]] = []
    for a, b in sorted(r for r in out if r[0] < r[1]):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _in(space, va: int) -> bool:
    return any(lo <= va < hi for lo, hi in space)


def is_module(kernel, address: int, space=None) -> bool:
    """Does ``address`` hold a plausible ``struct module``?  State in range,
    a module name, list pointers into kernel space, ``mkobj.mod`` pointing
    back at it, its core layout in module space and holding the structure."""
    try:
        mod = kernel.object("module", address)
        if not 0 <= mod.state < len(STATES):
            return False
        raw = kernel.read(address + kernel.offsetof("module", "name"), 56)
        name = raw.split(b"\0", 1)[0]
        if not name or b"\0" not in raw or not set(name) <= MODULE_NAME_CHARS:
            return False
        link = address + kernel.offsetof("module", "list")
        if kernel.read_u64(link) < 1 << 63 or kernel.read_u64(link + 8) < 1 << 63:
            return False
        if int(mod.mkobj.mod) != address:
            return False
        layouts = _layouts(kernel, mod)
        base, size = layouts[0]
        if space is None:
            space = module_space(kernel)
        if not _in(space, base) or not 0 < size < GiB:
            return False
        # struct module is the module's .gnu.linkonce.this_module, inside one of its layouts.
        return any(b <= address < b + s for b, s in layouts if b)
    except (ArmvmiError, AttributeError, IndexError):
        return False


# -- the four views ----------------------------------------------------------------------------------

def modules_head(kernel, hint_modules=(), space=None):
    """The ``modules`` list head: the symbol, else a list head ``find_module_all``
    refers to whose first entry is a module, else the one node on a known
    module's ``list`` ring that is not itself a module."""
    from ..host.adrp import find_data

    off = kernel.offsetof("module", "list")
    space = space if space is not None else module_space(kernel)

    def valid(a):
        nxt = kernel.read_u64(a)
        return kernel.read_u64(nxt + 8) == a and is_module(kernel, nxt - off, space)

    fns = ("find_module_all", "module_get_kallsym", "lookup_module_symbol_name", "module_kallsyms_on_each_symbol")
    head = find_data(kernel, "modules", fns, valid)
    if head is None:
        # No module loaded: an empty list head (next == prev == itself) that
        # find_module_all walks, unless a known module says otherwise.
        head = None if hint_modules else find_data(kernel, "modules", fns, lambda a: kernel.read_u64(a) == a == kernel.read_u64(a + 8))
    if head is not None:
        return head
    for m in hint_modules:
        for node in list_nodes(kernel, m + off, ListWalk(), limit=MAX_MODULES):
            if not is_module(kernel, node - off, space):
                return node
    return None


def module_list(kernel, head: int, walk: ListWalk) -> list[int]:
    off = kernel.offsetof("module", "list")
    return [node - off for node in list_nodes(kernel, head, walk, limit=MAX_MODULES)]


def module_kset(kernel, hint_modules=(), space=None):
    """``module_kset`` (a ``struct kset *``): the symbol, else from the code
    that registers module kobjects, else any module's ``mkobj.kobj.kset``."""
    from ..host.adrp import find_data

    def valid_kset(p):
        ks = kernel.object("kset", p)
        return p >= 1 << 63 and _kobj_name(kernel, ks.kobj) == "module"

    ptr = find_data(kernel, "module_kset", ("mod_sysfs_setup", "mod_sysfs_init", "module_add_driver", "param_sysfs_init"),
                    lambda a: valid_kset(kernel.read_u64(a)))
    if ptr is not None:
        return kernel.read_u64(ptr)
    for m in hint_modules:
        try:
            p = int(kernel.object("module", m).mkobj.kobj.kset)
            if valid_kset(p):
                return p
        except ArmvmiError:
            continue
    return None


def _kobj_name(kernel, kobj) -> str | None:
    from ..memory.scan import read_cstring

    p = int(kobj.name)
    if not p:
        return None
    return read_cstring(kernel.vmem, p, 64).decode("utf-8", "replace")


def kset_modules(kernel, kset: int, walk: ListWalk) -> list[int]:
    """Modules behind the kobjects of ``module_kset`` (built-in modules'
    entries have no ``struct module`` and are skipped)."""
    ks = kernel.object("kset", kset)
    head = kset + ks.offsetof_("list")
    entry_off = kernel.offsetof("kobject", "entry")
    kobj_off = kernel.offsetof("module_kobject", "kobj")
    mod_off = kernel.offsetof("module_kobject", "mod")
    mkobj_off = kernel.offsetof("module", "mkobj")
    out = []
    for node in list_nodes(kernel, head, walk, limit=MAX_MODULES):
        mk = node - entry_off - kobj_off
        try:
            m = kernel.read_u64(mk + mod_off)
        except ArmvmiError:
            continue
        if m and m + mkobj_off == mk:
            out.append(m)
    return out


def mod_tree(kernel, space=None):
    """The module address tree root (``struct mod_tree_root``), or None."""
    from ..host.adrp import find_data

    if not kernel.has_member("mod_tree_root", "root"):
        return None
    space = space if space is not None else module_space(kernel)

    def valid(a):
        t = kernel.object("mod_tree_root", a)
        lo, hi = t.addr_min, t.addr_max
        return lo <= hi and _in(space, lo) and _in(space, hi - 1) and int(t.root.tree[0].rb_node) >= 1 << 63

    def empty(a):  # no module loaded yet: addr_min = ULONG_MAX, addr_max = 0, no nodes
        t = kernel.object("mod_tree_root", a)
        return t.addr_min == (1 << 64) - 1 and t.addr_max == 0 and not int(t.root.tree[0].rb_node) and not int(t.root.tree[1].rb_node)

    fns = ("__module_address", "mod_find", "mod_tree_insert", "is_module_text_address")
    return find_data(kernel, "mod_tree", fns, valid) or find_data(kernel, "mod_tree", fns[:1], empty)


def tree_modules(kernel, root: int, problems: list) -> list[int]:
    """Modules in the latch tree's first copy (``tree[0]``, linked through
    ``latch_tree_node.node[0]``), in address order; a module is in it once per layout."""
    from ..host.kvm import rb_inorder

    t = kernel.object("mod_tree_root", root)
    mod_at = kernel.offsetof("mod_tree_node", "mod") - kernel.offsetof("mod_tree_node", "node")
    walk: list[str] = []
    out: dict[int, None] = {}
    for n in rb_inorder(kernel, int(t.root.tree[0].rb_node), walk, MAX_TREE_NODES):
        try:
            out.setdefault(kernel.read_u64(n + mod_at))
        except ArmvmiError as e:
            walk.append(f"mod_tree_node of {n:#x} unreadable ({e})")
    problems += [f"mod_tree: {p}" for p in walk]
    return list(out)


def scan_modules(kernel, space) -> list[int]:
    """``struct module`` candidates anywhere in mapped module memory, by
    structure: the one self-reference every module has (``mkobj.mod`` holds
    the structure's own address, ``back`` bytes before it), found by searching
    each page for qwords whose upper 48 bits are the page's, then :func:`is_module`."""
    import re

    back = kernel.offsetof("module", "mkobj") + kernel.offsetof("module_kobject", "mod")
    stext = kernel.symbol("_stext") if kernel.has_symbol("_stext") else None
    kv = kernel.info.kimage_voffset
    out = []
    for lo, hi in space:
        for m in kernel.vmem.mappings(lo, hi):
            if m.size > 1 << 21 or (stext is not None and m.va <= stext < m.va + m.size):
                continue  # module memory is vmalloc'ed pages, not the kernel image's blocks
            if kv is not None and m.out == (m.va - kv) & MASK64:
                continue  # the kernel image's own pages (its data and bss: the space runs from _etext without _end)
            try:
                buf = kernel.read(m.va, m.size)
            except ArmvmiError:
                continue
            # the structure may start in the page before (or 64 KiB region before) this one
            highs = {((m.va + off) >> 16).to_bytes(6, "little") for off in (-back, 0, m.size - 1)}
            for high in highs:
                for hit in re.finditer(b"(?=" + re.escape(high) + b")", buf):  # overlapping: no hit hides another
                    pos = hit.start() - 2
                    if pos < 0 or pos % 8:
                        continue
                    here = m.va + pos
                    a = int.from_bytes(buf[pos : pos + 8], "little")
                    if a == here - back and a not in out and is_module(kernel, a, space):
                        out.append(a)
    return out


def lsmod(kernel, scan: bool = True):
    """Every module, from the ``modules`` list and the cross-views:
    (records, problems, complete).  Computed once per kernel (``check`` asks
    for it from several checks)."""
    cache = kernel.__dict__.setdefault("_lsmod", {})
    if scan not in cache:
        cache[scan] = _lsmod(kernel, scan)
    recs, problems, complete = cache[scan]
    return [dataclasses.replace(r, seen_by=list(r.seen_by)) for r in recs], list(problems), complete


def _lsmod(kernel, scan: bool):
    problems: list[str] = []
    complete = True
    space = module_space(kernel)
    views: dict[str, list[int]] = {}
    if scan:
        try:
            views["memory_scan"] = scan_modules(kernel, space)
        except ArmvmiError as e:
            problems.append(f"memory scan for struct module failed: {e}")
    hints = list(views.get("memory_scan", ()))
    tree = None
    try:
        tree = mod_tree(kernel, space)
    except ArmvmiError as e:
        problems.append(f"mod_tree not readable: {e}")
    if tree is not None:
        tp: list[str] = []
        views["mod_tree"] = [m for m in tree_modules(kernel, tree, tp) if m]
        problems += tp
        complete = complete and not tp
        hints += views["mod_tree"]
    head = None
    try:
        head = modules_head(kernel, hints, space)
    except ArmvmiError as e:
        problems.append(f"modules list head not found: {e}")
    walk = ListWalk()
    if head is not None:
        views["module_list"] = module_list(kernel, head, walk)
        problems += [f"modules list: {p}" for p in walk.problems]
        complete = complete and walk.complete
    else:
        complete = False
        problems.append("modules list head not found (no symbol, no code reference, no module to follow)")
    try:
        ks = module_kset(kernel, views.get("module_list", []) + hints, space)
    except ArmvmiError as e:
        ks = None
        problems.append(f"module_kset not readable: {e}")
    if ks is not None:
        kw = ListWalk()
        views["module_kset"] = kset_modules(kernel, ks, kw)
        problems += [f"module_kset list: {p}" for p in kw.problems]
        complete = complete and kw.complete
    for v in VIEWS:
        if v not in views and not (v == "memory_scan" and not scan):
            problems.append(f"{v}: not available on this kernel")
    # Sets: a hostile image can fill each view with thousands of candidates.
    members = {v: set(ms) for v, ms in views.items()}
    listed = members.get("module_list", set())
    order = dict.fromkeys(m for v in VIEWS for m in views.get(v, ()))  # the list's order, then each view's
    records = []
    for m in order:
        seen = [v for v in VIEWS if m in members.get(v, ())]
        try:
            info = module_info(kernel, kernel.object("module", m))
        except ArmvmiError as e:
            problems.append(f"struct module at {m:#x} ({', '.join(seen)}) unreadable: {e}")
            complete = complete and m not in listed
            continue
        if m not in listed:
            if not is_module(kernel, m, space):
                problems.append(f"{', '.join(seen)}: {m:#x} is not a valid struct module")
                continue
            if seen == ["memory_scan"] and info.state == "Unformed":
                # free_module() marks a module UNFORMED before vfree(); lazily
                # unmapped vmalloc pages can still hold it: a remnant, not a hidden module.
                problems.append(f"memory scan: remnant of an unloaded module {info.name} at {m:#x} (state Unformed)")
                continue
            info.hidden = head is not None and walk.complete
        info.seen_by = seen
        records.append(info)
    return records, problems, complete


def lsmod_view(kernel, scan: bool = True):
    """``armvmi lsmod``: the modules list, with the modules only the other
    views see marked ``hidden`` and reported as ``hidden-module`` findings."""
    from ..view import Finding, ViewResult

    records, problems, complete = lsmod(kernel, scan=scan)
    out = ViewResult(records=records, problems=problems, complete=complete)
    for m in records:
        if m.hidden:
            out.findings.append(Finding("hidden-module", "critical", None,
                                        f"module {m.name} (struct module {m.module:#x}) is seen by {', '.join(m.seen_by)} "
                                        "but is not on the modules list (unlinked to hide it)",
                                        {"name": m.name, "module": f"{m.module:#x}", "base": f"{m.base:#x}" if m.base else None,
                                         "size": m.size, "seen_by": m.seen_by}))
    return out


# -- module symbols (mod->kallsyms) ---------------------------------------------------------------

def _module_symtab(kernel, module: int):
    """``(strtab, values, symbols)``: the module's defined NOTYPE/OBJECT/FUNC
    symbols as ``(value, index, st_name)`` sorted by value, ``values`` their
    values (for bisect); None without kallsyms.  Parsed once per module:
    every syscall hook into a module looks its symbol up here."""
    cache = kernel.__dict__.setdefault("_module_symtabs", {})
    if module not in cache:
        mod = kernel.object("module", module)
        ks = mod.kallsyms
        table = None
        if int(ks):
            ks = ks.deref()
            n, symtab, strtab = ks.num_symtab, int(ks.symtab), int(ks.strtab)
            if 0 < n < 1 << 20:
                syms = sorted((value, i, st_name) for i, (st_name, st_info, _other, shndx, value, _size)
                              in enumerate(struct.iter_unpack("<IBBHQQ", kernel.read(symtab, 24 * n)))
                              if shndx != 0 and (st_info & 0xF) in (0, 1, 2))
                table = (strtab, [v for v, _, _ in syms], syms)
        cache[module] = table
    return cache[module]


def module_symbol(kernel, module: int, va: int):
    """(name, offset) of the module symbol at or below ``va`` (from the
    module's own ``kallsyms`` symtab/strtab), or None: the highest value
    with a real name, the first in the symtab among equal values."""
    from bisect import bisect_left, bisect_right

    from ..memory.scan import read_cstring

    table = _module_symtab(kernel, module)
    if table is None:
        return None
    strtab, values, syms = table
    hi = bisect_right(values, va)
    while hi:
        lo = bisect_left(values, values[hi - 1])
        for value, _i, st_name in syms[lo:hi]:
            name = read_cstring(kernel.vmem, strtab + st_name, 128).decode("utf-8", "replace")
            if name and not name.startswith("$"):  # not a mapping symbol ($x, $d)
                return name, va - value
        hi = lo
    return None


def module_containing(kernel, va: int, modules) -> ModuleInfo | None:
    """The module (a ModuleInfo from :func:`lsmod`) whose memory holds ``va``."""
    for m in modules:
        try:
            for b, s in _layouts(kernel, kernel.object("module", m.module)):
                if b and b <= va < b + s:
                    return m
        except ArmvmiError:
            continue
    return None


def _view():
    from ..view import Column, View

    return View("modules", "loaded kernel modules (modules list, cross-checked with sysfs, mod_tree and a memory scan)",
                collect=lsmod_view, columns=(
                    Column("name"), Column("base"), Column("size", align="right"),
                    Column("refcount", "REFS", align="right"), Column("state"), Column("taint", priority=3),
                    Column("hidden", fmt=lambda v: "HIDDEN" if v else ""),
                    Column("module", "STRUCT MODULE", priority=1),
                    Column("seen_by", "SEEN BY", priority=2)))


LSMOD = _view()
