"""The system call tables, and whether each entry is the kernel's own.

On arm64 every ``sys_call_table`` entry is a ``__arm64_sys_<name>`` wrapper
in kernel text (``__arm64_sys_ni_syscall`` for holes); the compat table holds
``__arm64_compat_sys_*`` too.  A rootkit redirects an entry to its own code,
usually in a module.  The table is a data symbol, absent from kallsyms
without CONFIG_KALLSYMS_ALL, so it is also found from the code that indexes
it (``do_el0_svc`` builds its address with ADRP+ADD) or by its structure
(hundreds of pointers to syscall wrappers, ``ni_syscall`` repeated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ArmvmiError

MAX_SYSCALLS = 1024
MIN_SYSCALLS = 200  # a table this long of syscall wrappers is not an accident
GAP = 8  # consecutive foreign entries tolerated inside a table (hooks)
SCAN_LIMIT = 64 << 20  # bytes of read-only data after _etext searched by structure
NATIVE = ("__arm64_sys_",)
COMPAT = ("__arm64_compat_sys_", "__arm64_sys_")
NI = ("sys_ni_syscall", "__arm64_sys_ni_syscall", "compat_sys_ni_syscall")

TABLES = (  # (symbol, functions that index it, accepted wrapper prefixes)
    ("sys_call_table", ("do_el0_svc", "el0_svc_common", "invoke_syscall"), NATIVE),
    ("compat_sys_call_table", ("do_el0_svc_compat",), COMPAT),
)


@dataclass
class SyscallTable:
    name: str
    address: int
    entries: list[int]
    how: str  # "symbol", "code reference from do_el0_svc", "structure"


@dataclass
class SyscallCheck:
    tables: list[SyscallTable] = field(default_factory=list)
    hooks: list[dict] = field(default_factory=list)  # evidence of each bad entry
    not_run: list[str] = field(default_factory=list)


def _text(kernel):
    return kernel.symbol("_stext"), kernel.symbol("_etext")


def is_wrapper(kernel, ptr: int, prefixes) -> bool:
    """Is ``ptr`` the start of a syscall wrapper in kernel text?"""
    lo, hi = _text(kernel)
    if not lo <= ptr < hi:
        return False
    hit = kernel.lookup(ptr)
    return hit is not None and hit[1] == 0 and (hit[0].startswith(prefixes) or hit[0] in NI)


def _entries(kernel, address: int, prefixes, length: int | None = None) -> list[int]:
    """The table's entries: ``length`` of them, else up to the last wrapper
    (a run of ``GAP`` foreign pointers ends it)."""
    n = length or MAX_SYSCALLS
    raw = kernel.read(address, 8 * n)
    vals = [int.from_bytes(raw[8 * i : 8 * i + 8], "little") for i in range(n)]
    if length:
        return vals
    last, miss = -1, 0
    for i, v in enumerate(vals):
        if is_wrapper(kernel, v, prefixes):
            last, miss = i, 0
        else:
            miss += 1
            if miss >= GAP:
                break
    return vals[: last + 1]


def _plausible(kernel, address: int, prefixes) -> bool:
    vals = _entries(kernel, address, prefixes)
    good = sum(1 for v in vals if is_wrapper(kernel, v, prefixes))
    return len(vals) >= MIN_SYSCALLS and good >= 0.9 * len(vals)


def _by_structure(kernel, prefixes, native: bool):
    """A table found by what it is: search read-only data after ``_etext``
    for ``ni_syscall``'s address and grow a run of wrappers around it."""
    try:
        ni = kernel.symbol("__arm64_sys_ni_syscall")
    except ArmvmiError:
        return None
    _, etext = _text(kernel)
    needle = ni.to_bytes(8, "little")
    pos, chunk = etext, 1 << 20
    while pos < etext + SCAN_LIMIT:
        try:
            buf = kernel.read(pos, chunk)
        except ArmvmiError:
            pos += chunk
            continue
        i = buf.find(needle)
        while i != -1:
            if i % 8 == 0:
                hit = pos + i
                start = hit
                while start > etext and is_wrapper(kernel, kernel.read_u64(start - 8), prefixes):
                    start -= 8
                if _plausible(kernel, start, prefixes):
                    vals = _entries(kernel, start, prefixes)
                    compat = any((hit := kernel.lookup(v)) and hit[0].startswith("__arm64_compat_sys_") for v in vals)
                    if compat != native:
                        return start
                    i = buf.find(needle, i + 8 * max(1, len(vals)))
                    continue
            i = buf.find(needle, i + 1)
        pos += chunk
    return None


def syscall_tables(kernel, problems: list | None = None) -> list[SyscallTable]:
    """``sys_call_table`` (required) and ``compat_sys_call_table`` (when the
    kernel has compat support).  Raises when the native table is not found."""
    from ..host.adrp import find_data, function_references, symbol_extent

    problems = problems if problems is not None else []
    out = []
    for name, functions, prefixes in TABLES:
        how = "symbol"
        if kernel.has_symbol(name):
            a = kernel.symbol(name)
            n = symbol_extent(kernel, a, 8, 8 * (MAX_SYSCALLS + 1)) // 8
            # a symbol table without data symbols makes the "next symbol" far away
            entries = _entries(kernel, a, prefixes, n if n <= MAX_SYSCALLS else None)
        else:
            a = find_data(kernel, name, functions, lambda x: _plausible(kernel, x, prefixes), chained=False)
            by = next((f for f in functions if a is not None and a in function_references(kernel, f)), None)
            how = f"code reference from {by}"
            if a is None:
                a, how = _by_structure(kernel, prefixes, native=name == "sys_call_table"), "structure"
            if a is None:
                if name == "sys_call_table":
                    raise ArmvmiError("sys_call_table not found: no symbol, no code reference from do_el0_svc, "
                                      "and no array of __arm64_sys_* pointers after _etext")
                if any(kernel.has_symbol(f) for f in functions):
                    problems.append(f"{name} not found although {functions[0]} exists")
                continue
            entries = _entries(kernel, a, prefixes)
        out.append(SyscallTable(name, a, entries, how))
    return out


def syscall_names(kernel, n: int) -> dict[int, str]:
    """nr -> syscall name from ftrace's ``syscalls_metadata`` (CONFIG_FTRACE_SYSCALLS:
    an array by nr the kernel filled from the clean table at boot; found by
    symbol or from ``get_syscall_name``'s code); {} when absent."""
    from ..host.adrp import find_data
    from ..memory.scan import read_cstring

    if not kernel.types or kernel.types.get("syscall_metadata") is None:
        return {}
    name_off, nr_off = kernel.offsetof("syscall_metadata", "name"), kernel.offsetof("syscall_metadata", "syscall_nr")

    def entries(arr):
        raw = kernel.read(arr, 8 * n)
        return [int.from_bytes(raw[8 * i : 8 * i + 8], "little") for i in range(n)]

    def valid(a):  # an array of metadata each naming its own slot
        arr = kernel.read_u64(a)
        if arr < 1 << 63:
            return False
        ok = 0
        for i, p in enumerate(entries(arr)[:64]):
            if p and int.from_bytes(kernel.read(p + nr_off, 4), "little", signed=True) == i:
                ok += 1
        return ok >= 16

    a = find_data(kernel, "syscalls_metadata", ("get_syscall_name", "ftrace_syscall_enter", "print_syscall_enter"), valid)
    if a is None:
        return {}
    out = {}
    try:
        ptrs = entries(kernel.read_u64(a))
    except ArmvmiError:
        return {}
    for i, p in enumerate(ptrs):
        try:
            if p and int.from_bytes(kernel.read(p + nr_off, 4), "little", signed=True) == i:
                out[i] = read_cstring(kernel.vmem, kernel.read_u64(p + name_off), 64).decode("utf-8", "replace")
        except ArmvmiError:
            continue
    return out


def _other_wrapper(kernel, ptr: int, meta_name: str | None) -> str | None:
    """The wrapper's name when it is not the one ftrace's metadata recorded
    for this slot at boot (``sys_getdents64`` -> ``__arm64_sys_getdents64``)."""
    if not meta_name:
        return None
    name = kernel.lookup(ptr)[0]
    if name in NI or name.removeprefix("__arm64_sys_") == meta_name.removeprefix("sys_"):
        return None
    return name


def check_syscalls(kernel, modules=None) -> SyscallCheck:
    """Every entry of every table checked; ``modules`` (ModuleInfo list from
    lsmod, hidden ones included) names the module a hook points into."""
    from .module import module_containing, module_symbol

    res = SyscallCheck()
    problems: list[str] = []
    try:
        res.tables = syscall_tables(kernel, problems)
    except ArmvmiError as e:
        res.not_run.append(str(e))
        return res
    res.not_run += problems
    native = next((t for t in res.tables if t.name == "sys_call_table"), None)
    names = syscall_names(kernel, len(native.entries)) if native is not None else {}
    lo, hi = _text(kernel)
    for t in res.tables:
        prefixes = NATIVE if t.name == "sys_call_table" else COMPAT
        for i, ptr in enumerate(t.entries):
            if is_wrapper(kernel, ptr, prefixes):
                other = _other_wrapper(kernel, ptr, names.get(i)) if t is native else None
                if other is None:
                    continue
                ev = {"table": t.name, "table_address": f"{t.address:#x}", "index": i, "target": f"{ptr:#x}",
                      "syscall": names[i], "symbol": other,
                      "message": f"{t.name}[{i}] ({names[i]}) = {ptr:#x} points at {other}, another syscall's wrapper"}
                res.hooks.append(ev)
                continue
            ev = {"table": t.name, "table_address": f"{t.address:#x}", "index": i, "target": f"{ptr:#x}"}
            if t is native and i in names:
                ev["syscall"] = names[i]
            hit = kernel.lookup(ptr)
            m = module_containing(kernel, ptr, modules or [])
            if m is not None:
                ev["module"] = m.name
                try:
                    sym = module_symbol(kernel, m.module, ptr)
                except ArmvmiError:
                    sym = None
                if sym:
                    ev["symbol"] = sym[0] if not sym[1] else f"{sym[0]}+{sym[1]:#x}"
                where = f"into module {m.name}" + (f" ({ev['symbol']})" if "symbol" in ev else "")
            elif lo <= ptr < hi and hit is not None:
                ev["symbol"] = hit[0] if not hit[1] else f"{hit[0]}+{hit[1]:#x}"
                where = f"at {ev['symbol']} in kernel text, not a syscall wrapper"
            else:
                where = "outside the kernel text and every known module"
            ev["message"] = f"{t.name}[{i}]" + (f" ({ev['syscall']})" if "syscall" in ev else "") + f" = {ptr:#x} points {where}"
            res.hooks.append(ev)
    return res
