"""Locate ``init_task`` by its structure when no symbol gives it.

Distro kernels are built without CONFIG_KALLSYMS_ALL, so kallsyms has no data
symbols.  ``init_task`` is a static ``task_struct`` in the kernel image's data
whose ``comm`` is ``"swapper"`` (``"swapper/0"`` once the boot CPU's idle task
is named).  Each place that string occurs is a candidate, accepted only when
the task it implies is self-consistent: pid 0, ``real_parent`` pointing at
itself, and a ``tasks`` list whose neighbours link back to it.
"""

from __future__ import annotations

import re
import struct
from typing import Callable

from ..errors import ArmvmiError, SymbolError
from ..memory.scan import scan

COMMS = (b"swapper/0\0", b"swapper\0")
TASK_COMM_LEN = 16
_PRINTABLE_COMM = re.compile(rb"[\x20-\x7e]{1,15}\0")


def _off(offsets, key: str) -> int | None:
    try:
        v = offsets[key]
    except (KeyError, IndexError, TypeError):
        return None
    return getattr(v, "offset", v)  # a type-model field or a plain int


def _ranges(kernel_ranges_va) -> list[tuple[int, int]]:
    out = []
    for r in kernel_ranges_va:
        if isinstance(r, tuple):
            out.append((int(r[0]), int(r[1])))
        else:
            out.append((r.start, r.end))
    return out


class _KernelVA:
    """Adapts ``read_va`` to the layer interface :func:`scan` expects."""

    def __init__(self, read_va):
        self.read = read_va


def _comm_hits(read_va: Callable[[int, int], bytes], ranges: list[tuple[int, int]]):
    """VAs where a candidate comm string starts."""
    for hit in scan(_KernelVA(read_va), b"swapper", ranges):
        try:
            tail = read_va(hit, len(COMMS[0]))
        except ArmvmiError:
            tail = b""
        if any(tail.startswith(c) for c in COMMS):
            yield hit


def _u64(read_va, va: int) -> int:
    return struct.unpack("<Q", read_va(va, 8))[0]


def _u32(read_va, va: int) -> int:
    return struct.unpack("<I", read_va(va, 4))[0]


def validate_init_task(read_va, task: int, offsets) -> str | None:
    """Why ``task`` is not init_task, or None when it is consistent."""
    comm_off, tasks_off = _off(offsets, "comm"), _off(offsets, "tasks")
    pid_off, parent_off = _off(offsets, "pid"), _off(offsets, "real_parent")
    tgid_off = _off(offsets, "tgid")
    try:
        if task & 7:
            return "misaligned"
        if pid_off is not None and _u32(read_va, task + pid_off) != 0:
            return "pid != 0"
        if tgid_off is not None and _u32(read_va, task + tgid_off) != 0:
            return "tgid != 0"
        if parent_off is not None and _u64(read_va, task + parent_off) != task:
            return "real_parent is not itself"
        head = task + tasks_off
        nxt, prv = _u64(read_va, head), _u64(read_va, head + 8)
        if nxt == head and prv == head:
            return None  # alone on the list (very early boot): still consistent
        if _u64(read_va, nxt + 8) != head:
            return "tasks.next->prev does not point back"
        if _u64(read_va, prv) != head:
            return "tasks.prev->next does not point back"
        # the next task must look like a task: a printable comm and a pid > 0
        other = nxt - tasks_off
        if not _PRINTABLE_COMM.match(read_va(other + comm_off, TASK_COMM_LEN)):
            return "next task has no printable comm"
        if pid_off is not None and _u32(read_va, other + pid_off) == 0:
            return "next task has pid 0"
    except ArmvmiError as e:
        return f"unreadable: {e}"
    return None


def find_init_task(read_va: Callable[[int, int], bytes], kernel_ranges_va, offsets) -> int:
    """The VA of ``init_task``, found by scanning ``kernel_ranges_va`` (the
    kernel image's data, as (start, end) VA pairs) for its ``comm``.

    ``offsets`` maps ``comm``, ``tasks``, ``real_parent``, ``pid`` (and
    optionally ``tgid``) to byte offsets in ``task_struct``.  Raises
    :class:`SymbolError` when no candidate or more than one validates.
    """
    for key in ("comm", "tasks"):
        if _off(offsets, key) is None:
            raise SymbolError(f"cannot locate init_task: task_struct.{key} offset unknown")
    comm_off = _off(offsets, "comm")
    valid: list[int] = []
    rejected: dict[str, int] = {}
    for hit in _comm_hits(read_va, _ranges(kernel_ranges_va)):
        task = hit - comm_off
        if task in valid:
            continue
        why = validate_init_task(read_va, task, offsets)
        if why is None:
            valid.append(task)
        else:
            rejected[why] = rejected.get(why, 0) + 1
    if len(valid) == 1:
        return valid[0]
    if not valid:
        detail = ", ".join(f"{k} ×{v}" for k, v in rejected.items()) or "no 'swapper' comm in the kernel image"
        raise SymbolError(f"init_task not found by structure ({detail})")
    raise SymbolError("init_task is ambiguous: " + ", ".join(f"{v:#x}" for v in valid) + " all look like it")


def data_ranges_after_text(symbols, span: int = 32 << 20) -> list[tuple[int, int]]:
    """Where to look for init_task when only kallsyms (text symbols) is known:
    arm64 lays out .data right after the init sections, so a window starting
    at the last text symbol (``_einittext``) covers it; ``find_init_task``
    skips the unmapped tail past ``_end``."""
    last = max(addr for addr, _t, _n in symbols)
    start = last & ~0xFFF
    return [(start, start + span)]
