"""Paths of files: ``struct path`` (vfsmount + dentry) as the kernel prints it.

``d_path`` follows fs/d_path.c: a dentry whose ``d_op->d_dname`` generates its
name (pipes, sockets, anon inodes, memfds, namespace files) is named by that
function; any other is the chain of ``d_parent`` names, crossing each mount
point through the mount tree (``struct mount`` around the vfsmount:
``mnt_parent``, ``mnt_mountpoint``) up to the root, with `` (deleted)``
appended for an unlinked dentry (``d_unhashed && !IS_ROOT``).

``task_root``, ``task_cwd`` and ``task_exe`` are what ``/proc/PID/root``,
``cwd`` and ``exe`` link to.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ArmvmiError

NAME_MAX_READ = 4096  # a dentry name longer than PATH_MAX is corrupt
MAX_DEPTH = 4096  # components (PATH_MAX / 1): a longer chain is a cycle or garbage


class PathError(ArmvmiError):
    """A dentry/mount chain that cannot be followed (unreadable, cyclic, too deep)."""


# d_dname functions (function symbols: present in kallsyms without KALLSYMS_ALL)
# and, when a function is unknown, the pseudo file system that uses it.
_DNAME_FUNCS = ("pipefs_dname", "sockfs_dname", "anon_inodefs_dname", "simple_dname", "ns_dname")
_DNAME_BY_FSTYPE = {"pipefs": "pipefs_dname", "sockfs": "sockfs_dname", "anon_inodefs": "anon_inodefs_dname",
                    "nsfs": "ns_dname"}


@dataclass(frozen=True)
class Path:
    """A ``struct path``: the vfsmount and dentry addresses."""

    mnt: int
    dentry: int


def as_path(obj) -> Path:
    """A ``struct path`` Object (``file.f_path``, ``fs.pwd``) as a :class:`Path`."""
    return Path(int(obj.mnt), int(obj.dentry))


def dentry_name(kernel, dentry) -> bytes:
    """``dentry->d_name`` as bytes (the qstr's ``len`` bytes at ``name``)."""
    d = _dentry(kernel, dentry)
    q = d.d_name
    n = q.len
    if n > NAME_MAX_READ:
        raise PathError(f"dentry {d.address_:#x} has an impossible name length {n}")
    return kernel.read(int(q.name), n) if n else b""


def _dentry(kernel, dentry):
    if hasattr(dentry, "address_"):
        return dentry
    return kernel.object("dentry", int(dentry))


def real_mount(kernel, vfsmount: int):
    """``struct mount`` around a ``struct vfsmount`` (container_of(mnt, struct mount, mnt))."""
    return kernel.container_of(int(vfsmount), "mount", "mnt")


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "backslashreplace")


def is_root(d) -> bool:
    return int(d.d_parent) == d.address_


def d_unhashed(d) -> bool:
    return int(d.d_hash.pprev) == 0


def d_unlinked(d) -> bool:
    return d_unhashed(d) and not is_root(d)


def _dname_kind(kernel, d) -> str | None:
    """Which d_dname generator names this dentry (by function address, else by
    the superblock's file system type), or None when it has none."""
    op = int(d.d_op)
    if not op:
        return None
    fn = int(kernel.object("dentry_operations", op).d_dname)
    if not fn:
        return None
    cache = _dname_cache(kernel)
    kind = cache.get(fn)
    if kind is not None:
        return kind
    try:
        fstype = _decode(_cstring(kernel, int(d.d_sb.s_type.name), 64))
    except ArmvmiError:
        fstype = ""
    return _DNAME_BY_FSTYPE.get(fstype, "simple_dname" if fstype in ("tmpfs", "shmem", "hugetlbfs") else f"?{fstype}")


def _dname_cache(kernel) -> dict:
    cache = getattr(kernel, "_fs_dname_funcs", None)
    if cache is None:
        cache = {}
        for name in _DNAME_FUNCS:
            try:
                cache[kernel.symbol(name)] = name
            except ArmvmiError:
                pass
        kernel._fs_dname_funcs = cache
    return cache


def _cstring(kernel, va: int, limit: int) -> bytes:
    return kernel.read(va, limit).split(b"\0", 1)[0]


def _inode_ino(d) -> int:
    return int(d.d_inode.i_ino)


def _generated_name(kernel, d, kind: str) -> str:
    name = dentry_name(kernel, d)
    if kind == "pipefs_dname":
        return f"pipe:[{_inode_ino(d)}]"
    if kind == "sockfs_dname":
        return f"socket:[{_inode_ino(d)}]"
    if kind == "anon_inodefs_dname":
        return "anon_inode:" + _decode(name)
    if kind == "ns_dname":
        # fs/nsfs.c: "%s:[%lu]", ns_ops->name, inode->i_ino (ns_ops in d_fsdata)
        ops = kernel.object("proc_ns_operations", int(d.d_fsdata))
        return f"{_decode(_cstring(kernel, int(ops.name), 32))}:[{_inode_ino(d)}]"
    if kind == "simple_dname":
        # fs/d_path.c simple_dname: "/" name " (deleted)" -- memfd and other pseudo files
        return "/" + _decode(name) + " (deleted)"
    # A d_dname this module does not know: say so rather than invent its format.
    return f"{kind[1:] or 'unknown'}:{_decode(name)}"


def d_path(kernel, path, root: Path | None = None) -> str:
    """The path the kernel's ``d_path`` prints for ``path`` (a :class:`Path`
    or ``struct path`` Object).  ``root`` is the reader's root (``fs->root``);
    None walks to the top of the mount tree, as a reader at the global root
    (an admin's shell reading ``/proc/PID/fd``) sees it."""
    if not isinstance(path, Path):
        path = as_path(path)
    d = _dentry(kernel, path.dentry)
    if not int(path.dentry) or not int(path.mnt):
        raise PathError("NULL dentry or vfsmount in struct path")
    mnt = real_mount(kernel, path.mnt)
    # d_path: a d_dname dentry names itself unless it is the root of its mount.
    if int(d.d_op) and (not is_root(d) or path.dentry != int(mnt.mnt.mnt_root)):
        kind = _dname_kind(kernel, d)
        if kind is not None:
            return _generated_name(kernel, d, kind)
    suffix = " (deleted)" if d_unlinked(d) else ""
    return _prepend_path(kernel, d, mnt, root) + suffix


def _prepend_path(kernel, d, mnt, root: Path | None) -> str:
    return prepend_path(kernel, d, mnt, root)[0]


def prepend_path(kernel, d, mnt, root: Path | None) -> tuple[str, bool]:
    """fs/d_path.c __prepend_path: names from the dentry up, crossing mounts.
    Returns the path and whether ``root`` was met (False: the walk reached the
    top of the mount tree or a detached tree first -- __d_path gives NULL then)."""
    parts: list[bytes] = []
    seen = set()
    root_key = (root.dentry, root.mnt) if root else None
    reached = root is None
    while True:
        daddr = d.address_
        vfsmnt = mnt.address_ + mnt.offsetof_("mnt")
        if root_key == (daddr, vfsmnt):
            reached = True
            break
        key = (daddr, vfsmnt)
        if key in seen or len(seen) > MAX_DEPTH:
            raise PathError(f"dentry/mount chain loops or is too deep at dentry {daddr:#x}")
        seen.add(key)
        if daddr == int(mnt.mnt.mnt_root):
            parent = int(mnt.mnt_parent)
            if parent != mnt.address_ and parent:
                d = kernel.object("dentry", int(mnt.mnt_mountpoint))
                mnt = kernel.object("mount", parent)
                continue
            break  # the global root of this namespace (or a detached tree)
        parent = int(d.d_parent)
        if parent == daddr:
            break  # escaped: a file system root that is not its mount's root
        parts.append(dentry_name(kernel, d))
        d = kernel.object("dentry", parent)
    if not parts:
        return "/", reached
    return "".join("/" + _decode(p) for p in reversed(parts)), reached


def file_path(kernel, file, root: Path | None = None) -> str:
    """``d_path(&file->f_path)``."""
    f = file if hasattr(file, "address_") else kernel.object("file", int(file))
    return d_path(kernel, f.f_path, root)


def task_root(kernel, task, root: Path | None = None) -> str | None:
    """``/proc/PID/root``: the task's ``fs->root`` (None for a task without fs)."""
    fs = int(task.fs)
    return None if not fs else d_path(kernel, task.fs.root, root)


def task_cwd(kernel, task, root: Path | None = None) -> str | None:
    """``/proc/PID/cwd``: the task's ``fs->pwd``."""
    fs = int(task.fs)
    return None if not fs else d_path(kernel, task.fs.pwd, root)


def task_exe(kernel, task, root: Path | None = None) -> str | None:
    """``/proc/PID/exe``: ``mm->exe_file->f_path`` (None for kernel threads)."""
    mm = int(task.mm)
    if not mm:
        return None
    exe = int(task.mm.exe_file)
    return None if not exe else file_path(kernel, exe, root)


# -- the fd table ---------------------------------------------------------------------------------

MAX_FDS = 1 << 20  # fs.nr_open's ceiling: a larger max_fds is a corrupt fdtable

# include/uapi/linux/stat.h
S_IFMT = 0o170000
_KIND_BY_MODE = {0o140000: "socket", 0o120000: "symlink", 0o100000: "regular", 0o060000: "blockdev",
                 0o040000: "directory", 0o020000: "chardev", 0o010000: "fifo"}
O_CLOEXEC = 0o2000000  # arm64 (asm-generic/fcntl.h)


@dataclass
class OpenFile:
    """One ``/proc/PID/fd`` entry with what ``/proc/PID/fdinfo`` adds."""

    fd: int
    file: int  # struct file *
    kind: str
    path: str | None
    flags: int  # f_flags, plus O_CLOEXEC from the close_on_exec bitmap (fs/proc/fd.c seq_show)
    pos: int
    inode: int
    mnt_id: int
    scm_fds: int | None = None  # unix sockets: fds in flight (fdinfo's "scm_fds:", unix_show_fdinfo)
    error: str | None = None


def file_kind(kernel, file, path: str | None = None) -> str:
    """What the file is: from ``i_mode``, with pipes, anon inodes and memfds
    told apart by how their dentry is named."""
    d = file.f_path.dentry
    dkind = _dname_kind(kernel, d) if int(d.d_op) else None
    if dkind == "pipefs_dname":
        return "pipe"
    if dkind == "anon_inodefs_dname":
        return "anon_inode"  # anon_inode_inode has no S_IFMT bits at all
    if dkind == "ns_dname":
        return "namespace"
    if dkind == "simple_dname" and dentry_name(kernel, d).startswith(b"memfd:"):
        return "memfd"
    mode = int(file.f_inode.i_mode) & S_IFMT
    return _KIND_BY_MODE.get(mode, f"mode-{mode:o}")


def _bitmap(raw: bytes, i: int) -> bool:
    return bool(raw[i >> 3] >> (i & 7) & 1) if (i >> 3) < len(raw) else False


def for_each_file(kernel, task, problems: list | None = None, root: Path | None = None):
    """Every open file of ``task``'s fd table, as ``/proc/PID/fd`` lists them:
    the fds whose ``fdt->fd[i]`` is set.  A *reserved* fd (``open_fds`` bit
    set by alloc_fd, ``fd[i]`` still NULL: a task blocked in accept() between
    get_unused_fd and fd_install) is not shown, as /proc does not show it;
    an installed file whose ``open_fds`` bit is clear is shown, with a problem."""
    problems = problems if problems is not None else []
    if not int(task.files):
        return
    fdt = task.files.fdt.deref()
    max_fds = int(fdt.max_fds)
    if not 0 < max_fds <= MAX_FDS:
        raise PathError(f"fdtable {fdt.address_:#x} has an impossible max_fds {max_fds}")
    arr = kernel.read(int(fdt.fd), 8 * max_fds)
    nbytes = (max_fds + 7) // 8
    open_fds = kernel.read(int(fdt.open_fds), nbytes)
    cloexec = kernel.read(int(fdt.close_on_exec), nbytes)
    for i in range(max_fds):
        fp = int.from_bytes(arr[8 * i : 8 * i + 8], "little")
        if not fp:
            continue
        if not _bitmap(open_fds, i):
            problems.append(f"pid {task.pid} fd {i}: file {fp:#x} installed but its open_fds bit is clear")
        try:
            yield _open_file(kernel, i, fp, _bitmap(cloexec, i), root)
        except ArmvmiError as e:
            problems.append(f"pid {task.pid} fd {i}: file {fp:#x} unreadable: {e}")
            yield OpenFile(i, fp, "?", None, 0, 0, 0, 0, error=str(e))


def _open_file(kernel, fd: int, fp: int, cloexec: bool, root) -> OpenFile:
    f = kernel.object("file", fp)
    path = d_path(kernel, f.f_path, root)
    flags = int(f.f_flags) | (O_CLOEXEC if cloexec else 0)
    mnt_id = int(real_mount(kernel, int(f.f_path.mnt)).mnt_id)
    kind = file_kind(kernel, f)
    return OpenFile(fd, fp, kind, path, flags, int(f.f_pos), int(f.f_inode.i_ino), mnt_id,
                    _scm_fds(kernel, f) if kind == "socket" else None)


AF_UNIX = 1


def _scm_fds(kernel, f) -> int | None:
    if not kernel.has_member("unix_sock", "scm_stat"):
        return None
    sk = int(kernel.object("socket", int(f.private_data)).sk)
    if not sk or kernel.object("sock", sk).member_("__sk_common.skc_family") != AF_UNIX:
        return None
    u = kernel.container_of(sk, "unix_sock", "sk")
    return int(u.scm_stat.nr_fds.counter)
