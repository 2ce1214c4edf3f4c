"""The process list, two ways: the task list and the PID IDR.

Walking ``init_task.tasks`` is what ``ps`` does; enumerating ``struct pid``
in ``init_pid_ns`` is what the kernel's PID lookups do.  A process unlinked
from the task list to hide it is still in the IDR (and the reverse would be a
forged task-list entry), so each one missing from the other view is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ArmvmiError
from .list import ListWalk
from .pid import pid_tasks
from .tasks import TaskInfo, for_each_task, for_each_thread, task_info


@dataclass
class PsResult:
    tasks: list[TaskInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    complete: bool = True
    hidden: list[TaskInfo] = field(default_factory=list)  # in the PID IDR, not in the task list
    unlisted_in_idr: list[TaskInfo] = field(default_factory=list)  # in the task list, not in the IDR
    cross_view: bool = False


def ps(kernel, threads: bool = False, cross_view: bool = True) -> PsResult:
    res = PsResult()
    walk = ListWalk()
    leaders: dict[int, TaskInfo] = {}
    for task in for_each_task(kernel, walk):
        try:
            ti = task_info(kernel, task)
        except ArmvmiError as e:
            res.problems.append(f"task_struct at {task.address_:#x} unreadable: {e}")
            res.complete = False
            continue
        leaders[ti.task_struct] = ti
        res.tasks.append(ti)
        if threads:
            tw = ListWalk()
            try:
                members = [task_info(kernel, t) for t in for_each_thread(kernel, task, tw)]
            except ArmvmiError as e:
                res.problems.append(f"threads of pid {ti.pid} unreadable: {e}")
                members = []
            ti.threads = [m.pid for m in members if m.task_struct != ti.task_struct] if members else []
            res.tasks.extend(m for m in members if m.task_struct != ti.task_struct)
            res.problems += [f"thread list of pid {ti.pid}: {p}" for p in tw.problems]
    res.problems = [str(p) for p in walk.problems] + res.problems
    if not walk.complete:
        res.complete = False
    if cross_view:
        _cross_view(kernel, res, leaders)
    return res


def _cross_view(kernel, res: PsResult, leaders: dict[int, TaskInfo]) -> None:
    problems: list[str] = []
    try:
        idr = {}
        for nr, task in pid_tasks(kernel, problems):
            idr[task.address_] = (nr, task)
    except ArmvmiError as e:
        res.problems.append(f"PID IDR cross-view unavailable: {e}")
        return
    res.cross_view = True
    res.problems += [f"PID IDR: {p}" for p in problems]
    idr_leaders = {}
    for addr, (nr, task) in idr.items():
        try:
            if task.pid == task.tgid:
                idr_leaders[addr] = task
        except ArmvmiError:
            continue
    for addr, task in idr_leaders.items():
        if addr not in leaders:
            try:
                res.hidden.append(task_info(kernel, task))
            except ArmvmiError as e:
                res.problems.append(f"hidden task at {addr:#x} unreadable: {e}")
    for addr, ti in leaders.items():
        if addr not in idr_leaders and ti.state not in ("X",):
            res.unlisted_in_idr.append(ti)


MAX_TREE_DEPTH = 512  # a corrupt ppid chain must not recurse without end


def process_tree(tasks: list[TaskInfo]) -> list[dict]:
    """Tasks as a forest by real parent (``pstree``), children by pid; a task
    whose parent is not in the list hangs from the root."""
    pids = {t.pid for t in tasks}
    children: dict[int, list[TaskInfo]] = {}
    for t in tasks:
        children.setdefault(t.ppid if t.ppid in pids else 0, []).append(t)

    def node(t: TaskInfo, depth: int) -> dict:
        kids = children.get(t.pid, []) if depth < MAX_TREE_DEPTH else []
        return {"pid": t.pid, "comm": t.comm, "uid": t.uid, "state": t.state,
                "children": [node(c, depth + 1) for c in sorted(kids, key=lambda c: c.pid) if c.pid != t.pid]}

    return [node(t, 0) for t in sorted(children.get(0, []), key=lambda t: t.pid)]


# -- the ps view -----------------------------------------------------------------------------------

def _phys(kernel, va: int):
    """Where ``va`` lies in the image's own physical memory (through every layer)."""
    from ..mmu import resolve_chain

    try:
        return resolve_chain(kernel.vmem, va)[-1][1]
    except ArmvmiError:
        return None


def ps_view(kernel, threads: bool = False, cross_view: bool = True, pids=None):
    """``armvmi ps``: the task list (and threads), with the PID IDR's hidden
    processes marked ``hidden`` and reported as findings."""
    from ..view import Finding, ViewResult

    res = ps(kernel, threads=threads, cross_view=cross_view)
    out = ViewResult(problems=list(res.problems), complete=res.complete)
    unlisted = {t.task_struct for t in res.unlisted_in_idr}
    for t in res.tasks:
        if res.cross_view and t.task_struct not in unlisted and t.pid == t.tgid:
            t.seen_by = ["task_list", "pid_idr"]
    for t in res.hidden:
        t.hidden, t.seen_by = True, ["pid_idr"]
        out.findings.append(Finding("hidden-process", "critical", None,
                                    f"pid {t.pid} ({t.comm}) is in the PID IDR but not on the task list (unlinked to hide it)",
                                    {"pid": t.pid, "comm": t.comm, "task_struct": f"{t.task_struct:#x}"}))
    for t in res.unlisted_in_idr:
        out.findings.append(Finding("unlisted-process", "warning", None,
                                    f"pid {t.pid} ({t.comm}) is on the task list but has no PID IDR entry (a forged task-list entry?)",
                                    {"pid": t.pid, "comm": t.comm, "task_struct": f"{t.task_struct:#x}"}))
    rows = res.tasks + res.hidden
    if pids:
        want = set(pids)
        rows = [t for t in rows if t.pid in want or t.tgid in want]
    for t in rows:
        t.task_struct_phys = _phys(kernel, t.task_struct)
    out.records = rows
    return out


def _start(v):
    return "-" if v is None else f"{v / 1e9:.2f}"


def _view():
    from ..view import Column, View

    return View("tasks", "processes (task list, cross-checked with the PID IDR)", collect=ps_view, columns=(
        Column("pid", align="right"), Column("ppid", align="right"), Column("tgid", align="right", priority=3),
        Column("uid", align="right", priority=2), Column("state", "S"),
        Column("kernel_thread", "K", fmt=lambda v: "k" if v else ""), Column("comm"),
        Column("hidden", "HIDDEN", fmt=lambda v: "HIDDEN" if v else ""),
        Column("start_time", "START(s)", align="right", priority=4, fmt=_start),
        Column("task_struct", "TASK (GVA)", priority=1), Column("task_struct_phys", "TASK (PHYS)", priority=5)))


PS = _view()
