"""``armvmi lsof``: every process's open files, as ``/proc/PID/fd`` and
``fdinfo`` show them.

Processes come from the task list *and* the PID IDR (as ``ps`` cross-views
them), so a process unlinked from the task list still shows its files --
marked ``hidden``.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from ..errors import ArmvmiError, ExitCode
from ..view import addr, record
from .list import ListWalk
from .tasks import as_task, for_each_task


class NoSuchProcess(ArmvmiError):
    exit_code = ExitCode.NOT_FOUND


@dataclass
class SeenProcess:
    task: object  # Task
    pid: int
    comm: str
    hidden: bool  # found through the PID IDR only


def seen_processes(kernel, problems: list) -> tuple[list[SeenProcess], bool]:
    """Thread-group leaders from the task list plus those only the PID IDR
    has (hidden), by pid; and whether the task-list walk was complete."""
    from .pid import pid_tasks

    walk = ListWalk()
    out: dict[int, SeenProcess] = {}
    for t in for_each_task(kernel, walk):
        try:
            out[t.address_] = SeenProcess(t, t.pid, t.comm, False)
        except ArmvmiError as e:
            problems.append(f"task_struct at {t.address_:#x} unreadable: {e}")
    problems += [f"task list: {p}" for p in walk.problems]
    try:
        idr_problems: list[str] = []
        for _, t in pid_tasks(kernel, idr_problems):
            if t.address_ in out:
                continue
            try:
                t = as_task(t)
                if t.pid == t.tgid:
                    out[t.address_] = SeenProcess(t, t.pid, t.comm, True)
            except ArmvmiError as e:
                idr_problems.append(f"task at {t.address_:#x} unreadable: {e}")
        problems += [f"PID IDR: {p}" for p in idr_problems]
    except ArmvmiError as e:
        problems.append(f"PID IDR not readable, hidden processes not looked for: {e}")
    return sorted(out.values(), key=lambda p: p.pid), walk.complete


def select_processes(procs: list[SeenProcess], pids) -> list[SeenProcess]:
    """Only the processes in ``pids``; a pid that is not there is exit 4."""
    if not pids:
        return procs
    want = set(pids)
    missing = sorted(want - {p.pid for p in procs})
    if missing:
        raise NoSuchProcess(f"no process with pid {', '.join(map(str, missing))}")
    return [p for p in procs if p.pid in want]


@record
class FdRow:
    pid: int
    comm: str
    fd: int
    kind: str
    path: str | None
    flags: str  # octal, as fdinfo prints it ("0%o")
    pos: int
    inode: int
    mnt_id: int
    file: int = addr(MISSING)  # struct file *
    scm_fds: int | None = None  # unix sockets only (fdinfo "scm_fds:")
    hidden: bool = False  # the process is only in the PID IDR
    error: str | None = None


def lsof_view(kernel, pids=None):
    from ..view import ViewResult
    from .fs import for_each_file

    out = ViewResult()
    procs, complete = seen_processes(kernel, out.problems)
    out.complete = complete
    for p in select_processes(procs, pids):
        try:
            for f in for_each_file(kernel, p.task, out.problems):
                out.records.append(FdRow(p.pid, p.comm, f.fd, f.kind, f.path, f"0{f.flags:o}", f.pos, f.inode,
                                         f.mnt_id, f.file, f.scm_fds, p.hidden, f.error))
                out.complete &= f.error is None
        except ArmvmiError as e:
            out.problems.append(f"pid {p.pid} ({p.comm}): fd table unreadable: {e}")
            out.complete = False
    return out


def _view():
    from ..view import Column, View

    return View("files", "open files of each process (/proc/PID/fd and fdinfo)", collect=lsof_view, columns=(
        Column("pid", align="right"), Column("comm", priority=2), Column("fd", align="right"), Column("kind"),
        Column("path"), Column("flags", align="right", priority=1), Column("pos", align="right", priority=1),
        Column("inode", align="right", priority=3), Column("mnt_id", "MNT", align="right", priority=4),
        Column("hidden", "HIDDEN", fmt=lambda v: "HIDDEN" if v else "", priority=1),
        Column("file", "FILE", priority=5)))


LSOF = _view()
