"""The mount tree, as ``/proc/mounts`` shows it (fs/proc_namespace.c show_vfsmnt).

Every mount namespace some process uses (``task->nsproxy->mnt_ns``, deduped)
is walked along ``mnt_namespace.list`` (``mount.mnt_list``), in the order
/proc prints it.  Each line is: device (``mnt_devname``), mount point (d_path
of the mount's root), type (``s_type->name`` [``.subtype``]), and options:
``ro``/``rw``, the superblock flags (show_sb_opts), the per-mount flags
(show_mnt_opts) and the file system's own ``s_op->show_options``, which is
reproduced for the file systems whose function is known here (tmpfs/shmem --
also rootfs and devtmpfs --, proc, sysfs/kernfs without options).  For any
other ``show_options`` the fs-specific part is left out and the record says
so (``fs_options: false``) rather than guessing.
"""

from __future__ import annotations

from dataclasses import MISSING

from ..errors import ArmvmiError
from ..view import addr, record
from .fs import Path, PathError, _cstring, _decode, as_path, prepend_path
from .list import ListWalk, list_for_each_entry

# include/linux/mount.h
MNT_NOSUID, MNT_NODEV, MNT_NOEXEC, MNT_NOATIME, MNT_NODIRATIME, MNT_RELATIME, MNT_READONLY, MNT_NOSYMFOLLOW = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)
_MNT_OPTS = ((MNT_NOSUID, "nosuid"), (MNT_NODEV, "nodev"), (MNT_NOEXEC, "noexec"), (MNT_NOATIME, "noatime"),
             (MNT_NODIRATIME, "nodiratime"), (MNT_RELATIME, "relatime"), (MNT_NOSYMFOLLOW, "nosymfollow"))
# include/linux/fs.h SB_* (show_sb_opts)
SB_RDONLY = 1
_SB_OPTS = ((16, "sync"), (128, "dirsync"), (64, "mand"), (1 << 25, "lazytime"))

_HIDEPID = {1: "noaccess", 2: "invisible", 4: "ptraceable"}
_SHMEM_HUGE = {1: "always", 2: "within_size", 3: "advise", -1: "deny", -2: "force"}


@record
class MountRow:
    pid: int  # the process whose /proc/PID/mounts this is (lowest pid in the namespace)
    ns: int  # mount namespace inode number (as /proc/PID/ns/mnt shows it)
    mnt_id: int
    parent_id: int
    device: str
    mountpoint: str
    fstype: str
    options: str
    fs_options: bool  # False: the file system's own options could not be reproduced (see module doc)
    mount: int = addr(MISSING)  # struct mount *
    mnt_ns: int = addr(MISSING)  # struct mnt_namespace *

    def line(self) -> str:
        """The /proc/mounts line."""
        return f"{_mangle(self.device)} {_mangle(self.mountpoint)} {_mangle(self.fstype)} {self.options} 0 0"


def _mangle(s: str) -> str:
    # seq_escape(m, s, " \t\n\\"): octal escapes
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in s)


def mount_namespaces(kernel, procs, problems: list) -> list:
    """The distinct ``mnt_namespace`` objects of ``procs`` (SeenProcess, by pid), each with
    the first process that uses it: [(ns, process)]."""
    seen: dict[int, tuple] = {}
    for p in procs:
        try:
            nsp = int(p.task.nsproxy)
            if not nsp:
                continue  # an exiting task
            ns = int(p.task.nsproxy.mnt_ns)
        except ArmvmiError as e:
            problems.append(f"pid {p.pid}: nsproxy unreadable: {e}")
            continue
        if ns and ns not in seen:
            seen[ns] = (kernel.object("mnt_namespace", ns), p)
    return list(seen.values())


def for_each_mount(kernel, ns, walk: ListWalk | None = None):
    """Every ``struct mount`` of a namespace, in /proc/mounts order."""
    head = ns.address_ + ns.offsetof_("list")
    return list_for_each_entry(kernel, "mount", head, "mnt_list", walk)


def _fn_name(kernel, fn: int) -> str | None:
    hit = kernel.lookup(fn) if fn else None
    return hit[0] if hit and hit[1] == 0 else None


def totalram_pages(kernel) -> int | None:
    """``_totalram_pages``: by symbol, else from the code of shmem_show_options
    (its inlined totalram_pages() loads it: an ADRP+LDR target whose value is a
    plausible page count)."""
    cached = getattr(kernel, "_mount_totalram", False)
    if cached is not False:
        return cached
    addr_ = None
    if kernel.has_symbol("_totalram_pages"):
        addr_ = kernel.symbol("_totalram_pages")
    else:
        from ..host.adrp import function_references

        cands = set()
        for a in function_references(kernel, "shmem_show_options"):
            try:
                v = kernel.read_u64(a)
            except ArmvmiError:
                continue
            if 256 <= v < 1 << 36:  # at least 1 MiB of RAM, at most 2**48 bytes of 4K pages
                cands.add(a)
        addr_ = cands.pop() if len(cands) == 1 else None
    val = None
    if addr_ is not None:
        try:
            val = kernel.read_u64(addr_)
        except ArmvmiError:
            val = None
    kernel._mount_totalram = val
    return val


def _init_user_ns(kernel) -> int | None:
    try:
        if kernel.has_symbol("init_user_ns"):
            return kernel.symbol("init_user_ns")
        from .tasks import init_task

        return int(init_task(kernel).cred.user_ns)  # init_cred.user_ns = &init_user_ns
    except ArmvmiError:
        return None


def _shmem_options(kernel, sb) -> tuple[list[str], bool]:
    """mm/shmem.c shmem_show_options."""
    info = kernel.object("shmem_sb_info", int(sb.s_fs_info))
    out, known = [], True
    total = totalram_pages(kernel)
    if total is None:
        known = False  # size/nr_inodes are shown only when they differ from totalram/2
    else:
        default = total // 2  # totalhigh_pages() is 0 on arm64
        page_kib = kernel.info.page_size // 1024
        if info.max_blocks != default:
            out.append(f"size={info.max_blocks * page_kib}k")
        if info.max_inodes != default:
            out.append(f"nr_inodes={info.max_inodes}")
    if info.mode != 0o1777:
        out.append(f"mode={info.mode:03o}")
    uid, gid = info.uid.val, info.gid.val
    if uid:
        out.append(f"uid={uid}")
    if gid:
        out.append(f"gid={gid}")
    # full_inums shows "inode64"; without it "inode32" is shown only if CONFIG_TMPFS_INODE64,
    # which memory does not tell: leave it out and say the options are not complete.
    if info.full_inums:
        out.append("inode64")
    else:
        known = False
    if info.has_member_("huge") and info.huge:
        out.append(f"huge={_SHMEM_HUGE.get(info.huge, '?')}")
    if info.has_member_("mpol") and int(info.mpol):
        known = False  # shmem_show_mpol: NUMA policy text not reproduced
    return out, known


def _proc_options(kernel, sb) -> tuple[list[str], bool]:
    """fs/proc/root.c proc_show_options."""
    fi = kernel.object("proc_fs_info", int(sb.s_fs_info))
    out = []
    gid = fi.pid_gid.val
    if gid:
        out.append(f"gid={gid}")
    if fi.hide_pid:
        out.append(f"hidepid={_HIDEPID.get(fi.hide_pid, str(fi.hide_pid))}")
    if fi.pidonly:
        out.append("subset=pid")
    return out, True


def _kernfs_options(kernel, sb) -> tuple[list[str], bool]:
    """fs/kernfs/mount.c kernfs_sop_show_options: the root's syscall_ops decide;
    none (sysfs) means no options."""
    info = kernel.object("kernfs_super_info", int(sb.s_fs_info))
    scops = int(info.root.syscall_ops)
    if not scops or not int(kernel.object("kernfs_syscall_ops", scops).show_options):
        return [], True
    return [], False  # cgroup & co.: their own options are not reproduced


_SHOW_OPTIONS = {"shmem_show_options": _shmem_options, "proc_show_options": _proc_options,
                 "kernfs_sop_show_options": _kernfs_options}


def mount_options(kernel, m) -> tuple[str, bool]:
    """The options field of show_vfsmnt and whether it is complete."""
    vfs = m.mnt
    sb = vfs.mnt_sb.deref()
    mflags = int(vfs.mnt_flags)
    sflags = int(sb.s_flags)
    opts = ["ro" if (mflags & MNT_READONLY) or (sflags & SB_RDONLY) else "rw"]
    opts += [name for bit, name in _SB_OPTS if sflags & bit]
    opts += [name for bit, name in _MNT_OPTS if mflags & bit]
    if vfs.has_member_("mnt_userns"):
        init_ns = _init_user_ns(kernel)
        if init_ns is not None and int(vfs.mnt_userns) not in (0, init_ns):
            opts.append("idmapped")
    known = True
    fn = int(sb.s_op.show_options) if int(sb.s_op) else 0
    if fn:
        handler = _SHOW_OPTIONS.get(_fn_name(kernel, fn))
        if handler is None:
            known = False
        else:
            extra, known = handler(kernel, sb)
            opts += extra
    return ",".join(opts), known


def mount_row(kernel, ns, m, ns_inum: int, pid: int = 0, root: Path | None = None) -> MountRow | None:
    """One /proc/mounts line; None for a mount outside ``root`` (the reader's
    root: seq_path_root skips it)."""
    vfs = m.mnt
    sb = vfs.mnt_sb.deref()
    devname = int(m.mnt_devname)
    device = _decode(_cstring(kernel, devname, 4096)) if devname else "none"
    known = not int(sb.s_op.show_devname) if int(sb.s_op) else True
    mountpoint, inside = prepend_path(kernel, kernel.object("dentry", int(vfs.mnt_root)), m, root)
    if not inside:
        return None  # SEQ_SKIP
    fstype = _decode(_cstring(kernel, int(sb.s_type.name), 256))
    sub = int(sb.s_subtype) if sb.has_member_("s_subtype") else 0
    if sub:
        st = _decode(_cstring(kernel, sub, 256))
        if st:
            fstype += "." + st
    options, opts_known = mount_options(kernel, m)
    parent = int(m.mnt_parent)
    parent_id = int(kernel.object("mount", parent).mnt_id) if parent else 0
    return MountRow(pid, ns_inum, int(m.mnt_id), parent_id, device, mountpoint, fstype, options, opts_known and known,
                    m.address_, ns.address_)


def mounts_view(kernel, pids=None):
    """``armvmi mounts``: /proc/mounts of every mount namespace in use (or of ``pids``' namespaces)."""
    from ..view import ViewResult
    from .lsof import seen_processes, select_processes

    out = ViewResult()
    procs, complete = seen_processes(kernel, out.problems)
    out.complete = complete
    for ns, p in mount_namespaces(kernel, select_processes(procs, pids), out.problems):
        walk = ListWalk()
        try:
            inum = int(ns.ns.inum)
            # /proc/PID/mounts shows mount points relative to that task's root and skips
            # the mounts outside it (a chrooted kthread such as kdevtmpfs sees only its own)
            root = as_path(p.task.fs.root) if int(p.task.fs) else None
        except ArmvmiError as e:
            out.problems.append(f"mount namespace {ns.address_:#x} unreadable: {e}")
            out.complete = False
            continue
        for m in for_each_mount(kernel, ns, walk):
            try:
                row = mount_row(kernel, ns, m, inum, p.pid, root)
                if row is not None:
                    out.records.append(row)
            except (ArmvmiError, PathError) as e:
                out.problems.append(f"mount {m.address_:#x} in namespace {inum}: unreadable: {e}")
                out.complete = False
        if walk.problems:
            out.problems += [f"mount list of namespace {inum}: {p}" for p in walk.problems]
        out.complete &= walk.complete
    return out


def _view():
    from ..view import Column, View

    return View("mounts", "mounts of each mount namespace (/proc/mounts)", collect=mounts_view, columns=(
        Column("pid", align="right", priority=2), Column("ns", "NS", align="right", priority=2), Column("mnt_id", "ID", align="right", priority=3),
        Column("device"), Column("mountpoint"), Column("fstype", "TYPE"), Column("options"),
        Column("fs_options", "FSOPTS", fmt=lambda v: "" if v else "partial", priority=1),
        Column("mount", "MOUNT", priority=4)))


MOUNTS = _view()
