"""What /proc/PID shows, read from memory: argv, environment, exe/cwd/root,
maps -- and the views built on them (``psaux``, ``envars``, ``maps``,
``malfind``).

Processes are the task list's leaders plus any the PID IDR holds that the list
does not (a process unlinked to hide it still has its mm and files), marked
``hidden``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ArmvmiError, ExitCode
from ..view import addr
from .list import ListWalk
from .mm import NotResident, VmaInfo, VmaWalk, cmdline, environ, for_each_vma, mm_read, vma_info
from .tasks import as_task, for_each_task, task_info


class NoSuchProcess(ArmvmiError):
    exit_code = ExitCode.NOT_FOUND


@dataclass
class Processes:
    tasks: list = field(default_factory=list)  # Task, leaders in task-list order, then hidden ones
    hidden: set = field(default_factory=set)  # task_struct addresses found only by the PID IDR
    problems: list[str] = field(default_factory=list)
    complete: bool = True


def processes(kernel, pids=None, cross_view: bool = True) -> Processes:
    """Thread-group leaders (optionally only ``pids``): the task list, then
    leaders the PID IDR has that the list does not."""
    out = Processes()
    walk = ListWalk()
    seen = set()
    for t in for_each_task(kernel, walk):
        seen.add(t.address_)
        out.tasks.append(t)
    out.problems += [f"task list: {p}" for p in walk.problems]
    out.complete = walk.complete
    if cross_view:
        from .pid import pid_tasks

        problems: list[str] = []
        try:
            for _nr, t in pid_tasks(kernel, problems):
                try:
                    if t.address_ in seen or t.pid != t.tgid:
                        continue
                except ArmvmiError:
                    continue
                seen.add(t.address_)
                out.tasks.append(as_task(t))
                out.hidden.add(t.address_)
        except ArmvmiError as e:
            problems.append(f"unavailable: {e}")
        out.problems += [f"PID IDR: {p}" for p in problems]
    if pids:
        want = set(pids)
        out.tasks = [t for t in out.tasks if _pid(t) in want]
    return out


def _pid(t) -> int | None:
    try:
        return t.pid
    except ArmvmiError:
        return None


def _found(result, pids, tasks):
    """Note which of the asked-for pids this VM has (the CLI says exit 4 for none)."""
    result.pids_found = {t.pid for t in tasks} if pids else None
    return result


def find_process(kernel, pid: int):
    """The task with thread id ``pid`` (a leader, a hidden leader, or a thread)."""
    from .tasks import for_each_thread

    leaders = processes(kernel).tasks  # walked once: the leaders first, then their threads
    for t in leaders:
        if _pid(t) == pid:
            return t
    for t in leaders:
        try:
            for th in for_each_thread(kernel, t):
                if th.pid == pid:
                    return th
        except ArmvmiError:
            continue
    raise NoSuchProcess(f"no process with pid {pid} in {kernel.name}")


class _UserReader:
    def __init__(self, task):
        self.task = task

    def read(self, address: int, n: int) -> bytes:
        return self.task.read_user(address, n)


def user_reader(vm, pid: int):
    """Something with ``read(addr, n)`` over ``pid``'s user memory in ``vm``."""
    return _UserReader(find_process(vm.kernel, pid))


# -- exe, cwd, root (proc_exe_link, proc_cwd_link, proc_root_link: fs.task_exe/cwd/root) ---------------

def exe(task) -> str | None:
    from .fs import task_exe

    return task_exe(task._kernel, task)


def cwd(task) -> str | None:
    from .fs import task_cwd

    return task_cwd(task._kernel, task)


def root(task) -> str | None:
    from .fs import task_root

    return task_root(task._kernel, task)


# -- psaux ---------------------------------------------------------------------------------------

@dataclass
class PsauxRecord:
    pid: int
    ppid: int
    uid: int | None
    euid: int | None
    comm: str
    argv: list[str] | None = None  # None: unreadable (see error)
    exe: str | None = None
    cwd: str | None = None
    root: str | None = None
    kernel_thread: bool = False
    hidden: bool = False
    task_struct: int = addr(0)
    error: str | None = None

    __view_record__ = True


def _try(rec_errors: list, what: str, fn, *a):
    try:
        return fn(*a)
    except NotResident as e:
        rec_errors.append(f"{what}: {e}")
    except ArmvmiError as e:
        rec_errors.append(f"{what} unreadable: {e}")
    return None


def psaux_view(kernel, pids=None):
    """``armvmi psaux``: each process with its argv and executable."""
    from ..view import ViewResult

    ps = processes(kernel, pids)
    res = ViewResult(problems=list(ps.problems), complete=ps.complete)
    for t in ps.tasks:
        errors: list[str] = []
        try:
            ti = task_info(kernel, t)
        except ArmvmiError as e:
            res.problems.append(f"task_struct at {t.address_:#x} unreadable: {e}")
            res.complete = False
            continue
        rec = PsauxRecord(ti.pid, ti.ppid, ti.uid, ti.euid, ti.comm, kernel_thread=ti.kernel_thread,
                          hidden=t.address_ in ps.hidden, task_struct=t.address_)
        rec.argv = _try(errors, "argv", cmdline, t)
        rec.exe = _try(errors, "exe", exe, t)
        rec.cwd = _try(errors, "cwd", cwd, t)
        rec.root = _try(errors, "root", root, t)
        if errors:
            rec.error = "; ".join(errors)
            res.problems.append(f"pid {rec.pid} ({rec.comm}): {rec.error}")
        res.records.append(rec)
    return _found(res, pids, res.records)


# -- envars --------------------------------------------------------------------------------------

@dataclass
class EnvRecord:
    pid: int
    comm: str
    env: list[str] | None = None
    error: str | None = None

    __view_record__ = True


def envars_view(kernel, pids=None):
    """``armvmi envars``: each user process's environment."""
    from ..view import ViewResult

    ps = processes(kernel, pids)
    res = ViewResult(problems=list(ps.problems), complete=ps.complete)
    found = []
    for t in ps.tasks:
        try:
            pid, comm, mm = t.pid, t.comm, int(t.mm)
        except ArmvmiError as e:
            res.problems.append(f"task_struct at {t.address_:#x} unreadable: {e}")
            continue
        found.append(t)
        if not mm:
            continue  # kernel threads have no environment
        errors: list[str] = []
        rec = EnvRecord(pid, comm, _try(errors, "environ", environ, t))
        if errors:
            rec.error = "; ".join(errors)
            res.problems.append(f"pid {pid} ({comm}): {rec.error}")
        res.records.append(rec)
    return _found(res, pids, found)


# -- maps ----------------------------------------------------------------------------------------

def task_maps(kernel, task, walk: VmaWalk | None = None) -> list[VmaInfo]:
    """``/proc/PID/maps`` of ``task`` (empty for a kernel thread)."""
    if not int(task.mm):
        return []
    walk = walk if walk is not None else VmaWalk()
    mm = task.mm.deref()
    out = []
    pid, comm = task.pid, task.comm
    for vma in for_each_vma(kernel, mm, walk):
        try:
            out.append(vma_info(kernel, mm, vma, pid, comm))
        except ArmvmiError as e:
            walk.problem(f"VMA at {vma.address_:#x} unreadable: {e}")
            break
    return out


def _each_maps(kernel, ps: Processes, res):
    """``(task, task_maps)`` for each of ``ps``; a VMA walk that stops early
    is a problem of ``res`` and marks it partial."""
    for t in ps.tasks:
        w = VmaWalk()
        try:
            vmas = task_maps(kernel, t, w)
        except ArmvmiError as e:
            w.problem(f"mm unreadable: {e}")
            vmas = []
        if not w.complete:
            res.complete = False
        res.problems += [f"pid {_pid(t)}: {p}" for p in w.problems]
        yield t, vmas


def maps_view(kernel, pids=None):
    """``armvmi maps``: one row per VMA of each process."""
    from ..view import ViewResult

    ps = processes(kernel, pids)
    res = ViewResult(problems=list(ps.problems), complete=ps.complete)
    for _t, vmas in _each_maps(kernel, ps, res):
        res.records += vmas
    return _found(res, pids, ps.tasks)


# -- malfind -------------------------------------------------------------------------------------

@dataclass
class MalfindRecord:
    pid: int
    comm: str
    start: int = addr(0)
    end: int = addr(0)
    perms: str = ""
    path: str = ""
    reasons: list[str] = field(default_factory=list)
    first_bytes: str | None = None  # hex of the first 64 bytes, None when not resident
    hexdump: str | None = None
    error: str | None = None

    __view_record__ = True


PEEK = 64


def suspicious(v: VmaInfo) -> list[str]:
    """Why a mapping looks like injected code (empty: it does not)."""
    from .mm import VM_EXEC, VM_WRITE

    why = []
    x = v.flags & VM_EXEC
    if x and v.kind == "memfd":
        why.append("executable mapping of a memfd")
    elif x and v.kind == "file" and v.deleted:
        why.append("executable mapping of a deleted file")
    if x and not v.file and v.kind != "special":
        why.append("anonymous executable mapping")
    if x and v.flags & VM_WRITE:
        why.append("writable and executable mapping")
    return why


def malfind_view(kernel, pids=None):
    """``armvmi malfind``: mappings that look like injected code, as findings."""
    from ..cli.render import hexdump  # the one `armvmi read` prints (stdlib only)
    from ..view import Finding, ViewResult

    ps = processes(kernel, pids)
    res = ViewResult(problems=list(ps.problems), complete=ps.complete)
    for t, vmas in _each_maps(kernel, ps, res):
        for v in vmas:
            why = suspicious(v)
            if not why:
                continue
            rec = MalfindRecord(v.pid, v.comm, v.start, v.end, v.perms, v.path, why)
            try:
                data = mm_read(kernel, t.mm.deref(), v.start, min(PEEK, v.end - v.start))
                rec.first_bytes, rec.hexdump = data.hex(), hexdump(data, v.start)
            except ArmvmiError as e:
                rec.error = str(e)
            res.records.append(rec)
            severe = any(r.startswith(("executable mapping of", "writable")) for r in why)
            res.findings.append(Finding(
                "injected-code", "critical" if severe else "warning", None,
                f"pid {v.pid} ({v.comm}): {v.start:#x}-{v.end:#x} {v.perms} {v.path or '(anonymous)'}: {', '.join(why)}",
                {"pid": v.pid, "comm": v.comm, "start": f"{v.start:#x}", "end": f"{v.end:#x}", "perms": v.perms,
                 "path": v.path, "reasons": why, "first_bytes": rec.first_bytes, "hexdump": rec.hexdump,
                 "not_resident": rec.error}))
    return _found(res, pids, ps.tasks)


# -- the views -----------------------------------------------------------------------------------

def _views():
    from ..view import Column, View

    psaux = View("processes", "processes with their command line and executable", collect=psaux_view, columns=(
        Column("pid", align="right"), Column("ppid", align="right"), Column("uid", align="right", priority=2),
        Column("euid", align="right", priority=2), Column("comm"), Column("exe", priority=1),
        Column("hidden", fmt=lambda v: "HIDDEN" if v else "", priority=1),
        Column("argv")))  # a list: space-joined, "-" when unreadable
    envars = View("environ", "the environment of each process", collect=envars_view, columns=(
        Column("pid", align="right"), Column("comm"), Column("env")))
    maps = View("maps", "memory maps of each process, as /proc/PID/maps", collect=maps_view, columns=(
        Column("pid", align="right"), Column("start"), Column("end"), Column("perms", "PERM"),
        Column("offset", fmt=lambda v: f"{v:08x}", priority=2), Column("dev", priority=3),
        Column("inode", align="right", priority=3), Column("path")))
    malfind = View("malfind", "mappings that look like injected code", collect=malfind_view, columns=(
        Column("pid", align="right"), Column("comm"), Column("start"), Column("end"), Column("perms", "PERM"),
        Column("path", priority=1), Column("reasons", "WHY", fmt=lambda v: "; ".join(v)),
        Column("first_bytes", "FIRST BYTES", priority=2, fmt=lambda v: "-" if v is None else v[:32])))
    return psaux, envars, maps, malfind


PSAUX, ENVARS, MAPS, MALFIND = _views()
