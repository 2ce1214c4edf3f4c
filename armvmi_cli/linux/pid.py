"""The PID allocator's view of tasks: ``init_pid_ns.idr``.

Every live thread has a ``struct pid`` in the IDR (an xarray / radix tree);
``pid->tasks[PIDTYPE_PID]`` leads back to its task_struct.  A task unlinked
from the task list (the classic rootkit trick) is still here, so comparing
the two views finds hidden processes.
"""

from __future__ import annotations

from ..errors import ArmvmiError

XA_CHUNK_SHIFT_DEFAULT = 6


def _xa_is_node(entry: int) -> bool:
    # include/linux/xarray.h: internal entries end in 0b10; nodes are > 4096.
    return (entry & 3) == 2 and entry > 4096


def xa_entries(kernel, xa_head: int, problems: list, max_nodes: int = 1 << 16):
    """Yield (index, entry) for every present leaf of an xarray/radix tree."""
    node_t = kernel.type("xa_node")
    slots_off = kernel.offsetof("xa_node", "slots")
    shift_off = kernel.offsetof("xa_node", "shift")
    from .object import strip

    nslots = getattr(strip(node_t.fields["slots"].type), "count", None) or (1 << XA_CHUNK_SHIFT_DEFAULT)
    stack = [(xa_head, 0)]
    visited = set()
    while stack:
        entry, base = stack.pop()
        if entry == 0:
            continue
        if not _xa_is_node(entry):
            if entry & 3 == 0:
                yield base, entry
            continue
        node = entry - 2
        if node in visited or len(visited) >= max_nodes:
            problems.append(f"xarray node {node:#x} revisited or tree too large")
            continue
        visited.add(node)
        try:
            shift = kernel.read(node + shift_off, 1)[0]
            raw = kernel.read(node + slots_off, 8 * nslots)
        except ArmvmiError as e:
            problems.append(f"xarray node {node:#x} unreadable: {e}")
            continue
        if shift > 60:
            problems.append(f"xarray node {node:#x} has impossible shift {shift}")
            continue
        for i in range(nslots - 1, -1, -1):
            slot = int.from_bytes(raw[8 * i : 8 * i + 8], "little")
            if slot:
                stack.append((slot, base + (i << shift)))


def init_pid_ns(kernel):
    """``init_pid_ns``: by symbol, else through init_task's own struct pid
    (``init_struct_pid.numbers[0].ns``), for kernels whose symbol table has no
    data symbols."""
    if kernel.has_symbol("init_pid_ns"):
        return kernel.variable("init_pid_ns", "pid_namespace")
    from .tasks import init_task

    return init_task(kernel).thread_pid.numbers[0].ns.deref()


def pid_tasks(kernel, problems: list | None = None):
    """Yield (nr, task Object) for every struct pid in init_pid_ns with a task."""
    problems = problems if problems is not None else []
    ns = init_pid_ns(kernel)
    idr = ns.idr
    rt = idr.idr_rt
    head = int(rt.xa_head) if rt.has_member_("xa_head") else int(rt.rnode)
    tasks_off = kernel.offsetof("pid", "tasks")
    links_off = kernel.offsetof("task_struct", "pid_links")
    task_t = kernel.type("task_struct")
    from .object import Object

    for _, pid_addr in xa_entries(kernel, head, problems):
        try:
            pid = kernel.object("pid", pid_addr)
            nr = pid.numbers[0].nr
            first = kernel.read_u64(pid_addr + tasks_off)  # tasks[PIDTYPE_PID].first
        except ArmvmiError as e:
            problems.append(f"struct pid at {pid_addr:#x} unreadable: {e}")
            continue
        if first == 0:
            continue
        yield nr, Object(kernel, task_t, first - links_off)
