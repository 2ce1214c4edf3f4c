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
    """fs/d_path.c __prepend_path: names from the dentry up, crossing mounts."""
    parts: list[bytes] = []
    seen = set()
    root_key = (root.dentry, root.mnt) if root else None
    while True:
        daddr = d.address_
        vfsmnt = mnt.address_ + mnt.offsetof_("mnt")
        if root_key == (daddr, vfsmnt):
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
        return "/"
    return "".join("/" + _decode(p) for p in reversed(parts))


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
