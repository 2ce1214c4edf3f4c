"""Loaded eBPF programs and maps: the ``prog_idr`` and ``map_idr`` IDRs
(kernel/bpf/syscall.c), what ``bpftool prog`` / ``bpftool map`` list.

Both IDRs are static data, absent from kallsyms without KALLSYMS_ALL; they
are then found from ``bpf_prog_get_curr_or_next`` / ``bpf_map_get_curr_or_next``'s
code and accepted only if they look like an IDR (same ``xa_flags`` as the
PID IDR, which is found through ``init_task``).  An empty IDR is a real
empty answer, not a failure.
"""

from __future__ import annotations

from ..errors import ArmvmiError, SymbolError
from ..view import addr, record
from .object import strip
from .pid import init_pid_ns, xa_entries


@record
class BpfObject:
    """One row of ``armvmi ebpf``: a program (tag, attach point) or a map (sizes)."""

    kind: str  # "prog" or "map"
    id: int
    type: str
    name: str
    tag: str = ""
    attach: str = ""
    key_size: int | None = None
    value_size: int | None = None
    max_entries: int | None = None
    address: int = addr(0)  # the struct bpf_prog or struct bpf_map


def _enum_name(kernel, type_name: str, value: int, prefix: str) -> str:
    try:
        t = strip(kernel.type(type_name))
        for k, v in getattr(t, "values", {}).items():
            if v == value:
                return k.removeprefix(prefix).lower()
    except SymbolError:
        pass
    return str(value)


def _idr_flags(kernel) -> int:
    return init_pid_ns(kernel).idr.idr_rt.xa_flags


def find_idr(kernel, name: str, functions) -> int:
    from ..host.adrp import find_data

    flags = _idr_flags(kernel)

    def valid(a):
        idr = kernel.object("idr", a)
        head = int(idr.idr_rt.xa_head)
        return idr.idr_rt.xa_flags == flags and idr.idr_base == 0 and (head == 0 or head >= 1 << 63)

    a = find_data(kernel, name, functions, valid)
    if a is None:
        raise SymbolError(f"{name} not found (no symbol, no validated code reference from {functions[0]})")
    return a


def _idr_objects(kernel, idr_addr: int, problems: list):
    idr = kernel.object("idr", idr_addr)
    for _, entry in xa_entries(kernel, int(idr.idr_rt.xa_head), problems):
        yield entry


def bpf_progs(kernel, problems: list) -> list[BpfObject]:
    out = []
    for p in _idr_objects(kernel, find_idr(kernel, "prog_idr", ("bpf_prog_get_curr_or_next", "bpf_prog_alloc_id")), problems):
        try:
            prog = kernel.object("bpf_prog", p)
            aux = prog.aux.deref()
            tag = kernel.read(p + prog.offsetof_("tag"), 8).hex()
            attach = ""
            if aux.has_member_("attach_func_name") and int(aux.attach_func_name):
                from ..memory.scan import read_cstring

                attach = read_cstring(kernel.vmem, int(aux.attach_func_name), 128).decode("utf-8", "replace")
            out.append(BpfObject("prog", aux.id, _enum_name(kernel, "bpf_prog_type", prog.type, "BPF_PROG_TYPE_"),
                                 aux.name, tag=tag, attach=attach, address=p))
        except ArmvmiError as e:
            problems.append(f"bpf_prog at {p:#x} unreadable: {e}")
    return out


def bpf_maps(kernel, problems: list) -> list[BpfObject]:
    out = []
    for p in _idr_objects(kernel, find_idr(kernel, "map_idr", ("bpf_map_get_curr_or_next", "bpf_map_alloc_id")), problems):
        try:
            m = kernel.object("bpf_map", p)
            out.append(BpfObject("map", m.id, _enum_name(kernel, "bpf_map_type", m.map_type, "BPF_MAP_TYPE_"), m.name,
                                 key_size=m.key_size, value_size=m.value_size, max_entries=m.max_entries, address=p))
        except ArmvmiError as e:
            problems.append(f"bpf_map at {p:#x} unreadable: {e}")
    return out


def ebpf_view(kernel):
    from ..view import ViewResult

    problems: list[str] = []
    out = ViewResult()
    for what, fn in (("programs", bpf_progs), ("maps", bpf_maps)):
        try:
            out.records += fn(kernel, problems)
        except ArmvmiError as e:
            out.complete = False
            problems.append(f"BPF {what} not listed: {e}")
    out.problems = problems
    out.complete = out.complete and not problems
    return out


def _view():
    from ..view import Column, View

    return View("bpf", "loaded eBPF programs (prog_idr) and maps (map_idr)", collect=ebpf_view, columns=(
        Column("kind"), Column("id", align="right"), Column("type"), Column("name"), Column("tag", priority=2),
        Column("attach", priority=3), Column("key_size", "KEY", align="right", priority=4),
        Column("value_size", "VALUE", align="right", priority=4), Column("max_entries", "MAX", align="right", priority=4),
        Column("address", priority=1)))


EBPF = _view()
