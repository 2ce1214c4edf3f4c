"""Processes and threads: ``task_struct``.

``for_each_task`` walks ``init_task.tasks`` like the kernel's
``for_each_process``; ``for_each_thread`` walks a thread group; ``TaskInfo``
is the flat record that ``ps`` prints.  Layout differences between kernel
versions (``__state`` vs ``state``, ``thread_node`` vs ``thread_group``) are
resolved through the type model, not version checks.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field

from ..view import addr

from ..errors import ArmvmiError
from .list import ListWalk, list_for_each_entry
from .object import Object

PF_KTHREAD = 0x00200000

# include/linux/sched.h: the report bits and their letters (fs/proc/array.c).
TASK_REPORT = 0x7F
TASK_NOLOAD = 0x400
TASK_UNINTERRUPTIBLE = 0x2
TASK_IDLE = TASK_UNINTERRUPTIBLE | TASK_NOLOAD
TASK_RTLOCK_WAIT = 0x1000
TASK_STATE_CHARS = "RSDTtXZPI"


def task_state_char(state: int, exit_state: int) -> str:
    """The letter /proc/PID/stat shows (``task_state_index``)."""
    s = (state | exit_state) & TASK_REPORT
    if (state & TASK_IDLE) == TASK_IDLE:
        s = TASK_REPORT + 1
    if state & TASK_RTLOCK_WAIT:
        s = TASK_UNINTERRUPTIBLE
    idx = s.bit_length()
    return TASK_STATE_CHARS[idx] if idx < len(TASK_STATE_CHARS) else "?"


class Task(Object):
    """A ``task_struct`` with the few derived values people ask for by name.

    Every real field reads as in the kernel (``task.pid``, ``task.mm.pgd``,
    ``task.cred.euid``); ``state`` is the letter /proc shows (the raw value is
    ``task.member_("__state")``), ``uid`` the real uid, ``ppid`` the real
    parent's tgid, ``is_kernel_thread`` the PF_KTHREAD flag.
    """

    __slots__ = ()

    @property
    def state(self) -> str:
        return task_state_char(task_state(self), self.exit_state)

    @property
    def uid(self) -> int:
        return _kuid(self.real_cred.uid)

    @property
    def ppid(self) -> int:
        return self.real_parent.tgid

    @property
    def is_kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)

    def threads(self):
        return for_each_thread(self._kernel, self)

    def read_user(self, address: int, n: int) -> bytes:
        """``n`` bytes of this process's user memory (through its own page
        tables); raises ``mm.NotResident`` for a page the image does not hold."""
        from .mm import mm_read

        if not int(self.mm):
            raise ArmvmiError(f"pid {self.pid} ({self.comm}) is a kernel thread: it has no user memory")
        return mm_read(self._kernel, self.mm.deref(), address, n)


def as_task(obj) -> Task:
    return obj if isinstance(obj, Task) else Task(obj._kernel, obj.type_, obj.address_)


def init_task(kernel):
    return as_task(kernel.variable("init_task", "task_struct"))


def for_each_task(kernel, walk: ListWalk | None = None):
    """Every thread-group leader, in task-list order (init_task excluded)."""
    head = init_task(kernel).address_ + kernel.offsetof("task_struct", "tasks")
    return (as_task(t) for t in list_for_each_entry(kernel, "task_struct", head, "tasks", walk))


def for_each_thread(kernel, task, walk: ListWalk | None = None):
    """Every thread of ``task``'s group, leader first."""
    if kernel.has_member("signal_struct", "thread_head") and kernel.has_member("task_struct", "thread_node"):
        sig = task.signal.deref()
        head = sig.address_ + sig.offsetof_("thread_head")
        yield from (as_task(t) for t in list_for_each_entry(kernel, "task_struct", head, "thread_node", walk))
        return
    # Older kernels: a circular list through the leader's thread_group.
    yield as_task(task)
    head = task.address_ + task.offsetof_("thread_group")
    yield from (as_task(t) for t in list_for_each_entry(kernel, "task_struct", head, "thread_group", walk))


def task_state(task) -> int:
    """The raw state word (``__state`` since 5.14, ``state`` before)."""
    return task.member_("__state") if task.has_member_("__state") else task.member_("state")


@dataclass
class TaskInfo:
    """The flat record ``ps`` prints.  ``task_struct_phys`` is where the
    task_struct lies in the image's physical memory (host physical on a host
    image, guest physical on a plain guest dump); ``seen_by`` names the views
    that found it (``task_list``, ``pid_idr``)."""

    pid: int
    tgid: int
    ppid: int
    uid: int | None
    euid: int | None
    state: str
    kernel_thread: bool
    comm: str
    start_time: int | None
    flags: int
    task_struct: int = addr(MISSING)  # GVA
    task_struct_phys: int | None = addr(None)  # filled by the view
    threads: list[int] | None = None
    mm: int = addr(0)
    hidden: bool = False  # found by the PID IDR, not on the task list
    seen_by: list[str] = field(default_factory=lambda: ["task_list"])
    error: str | None = None

    __view_record__ = True

    def to_dict(self) -> dict:
        return asdict(self)


def _kuid(v) -> int:
    # kuid_t is a struct with one member `val`.
    return v.val if hasattr(v, "member_") else int(v)


def task_info(kernel, task, with_threads: bool = False) -> TaskInfo:
    flags = task.flags
    try:
        ppid = task.real_parent.tgid
    except ArmvmiError:
        ppid = -1
    uid = euid = None
    try:
        cred = task.real_cred.deref()
        uid = _kuid(cred.uid)
        euid = _kuid(task.cred.deref().euid)
    except ArmvmiError:
        pass
    info = TaskInfo(
        pid=task.pid,
        tgid=task.tgid,
        ppid=ppid,
        uid=uid,
        euid=euid,
        state=task_state_char(task_state(task), task.exit_state),
        kernel_thread=bool(flags & PF_KTHREAD),
        comm=task.comm,
        start_time=task.start_time if task.has_member_("start_time") else None,
        flags=flags,
        task_struct=task.address_,
        mm=int(task.mm),
    )
    if with_threads:
        info.threads = [t.pid for t in for_each_thread(kernel, task)]
    return info
