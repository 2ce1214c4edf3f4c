"""Every file armvmi writes goes through :class:`Output`.

Evidence is sacred: an output may not be any input (same device and inode,
links resolved), may not replace an existing file without ``--force``, and
must be a regular file or a new path (never a symlink, a device, a FIFO or a
directory).  It is written under a hidden temporary name in the same
directory, which no reader accepts as an input (see
:data:`armvmi_cli.inputs.PARTIAL_RE`), fsynced, and renamed into place only
when complete; on SIGINT/SIGTERM/SIGHUP or a full disk the temporary file is
removed and any previous output is left as it was.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import stat
import threading

from .errors import ArmvmiError, ExitCode, UsageError
from .inputs import _kind, os_reason


class OutputError(UsageError):
    exit_code = ExitCode.BAD_INPUT


class Interrupted(ArmvmiError):
    """A signal arrived while an output was being written (exit 130)."""

    exit_code = 130

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def check_output(path, inputs=(), force: bool = False, what: str = "output") -> bool:
    """Refuse an output that is an input, a non-regular file, or an existing
    file without ``force``; returns whether it exists (to be replaced)."""
    p = os.fspath(path)
    if not p:
        raise OutputError(f"{what}: empty path")
    ins = {}
    for i in inputs:
        if i is None:
            continue
        ident = _identity(i)
        if ident is not None:
            ins.setdefault(ident, os.fspath(i))
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(p))
        if not os.path.isdir(parent):
            raise OutputError(f"{what} {p}: directory {parent} does not exist") from None
        return False
    except OSError as e:
        raise OutputError(f"{what} {p}: {os_reason(e)}") from None
    if stat.S_ISLNK(st.st_mode):
        target = _identity(p)
        if target in ins:
            raise OutputError(f"{what} {p}: is a link to the input {ins[target]}; armvmi never writes over an input")
        raise OutputError(f"{what} {p}: is a symbolic link; armvmi writes only to regular files or new paths")
    if (st.st_dev, st.st_ino) in ins:
        raise OutputError(f"{what} {p}: is the input {ins[(st.st_dev, st.st_ino)]}; armvmi never writes over an input")
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{what} {p}: is {_kind(st.st_mode)}; armvmi writes only to regular files or new paths")
    if not force:
        raise OutputError(f"{what} {p}: exists (use --force to replace it)")
    return True


class Output:
    """``with Output(path, inputs, force) as out:`` write ``out.tmp`` (a path)
    or ``out.file()``; the result appears at ``path`` only when the block
    ends without an exception."""

    def __init__(self, path, inputs=(), force: bool = False, what: str = "output"):
        self.path = os.fspath(path)
        self.inputs = [i for i in inputs if i is not None]
        self.force = force
        self.what = what
        self.existed = check_output(self.path, self.inputs, force, what)
        d, base = os.path.split(os.path.abspath(self.path))
        self.dir = d
        self.tmp = os.path.join(d, f".{base[:180]}.armvmi-partial-{os.getpid()}_{secrets.token_hex(4)}")
        self._f = None
        self._saved = {}

    # -- signals: turn them into an exception so the temp file goes away ----
    def _on_signal(self, signum, frame):
        raise Interrupted(signum)

    def _trap(self):
        if threading.current_thread() is not threading.main_thread():
            return
        for s in _SIGNALS:
            try:
                self._saved[s] = signal.signal(s, self._on_signal)
            except (ValueError, OSError):  # pragma: no cover
                pass

    def _untrap(self):
        for s, h in self._saved.items():
            signal.signal(s, h)
        self._saved = {}

    def __enter__(self) -> "Output":
        self._trap()
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            self._untrap()
            raise OutputError(f"{self.what} {self.path}: cannot create a file in {self.dir}: {os_reason(e)}") from None
        os.close(fd)
        return self

    def file(self, mode: str = "wb"):
        """The temporary file, opened for writing (closed by the block's end)."""
        if self._f is None:
            self._f = open(self.tmp, mode)
        return self._f

    def _remove_tmp(self):
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass

    def _left(self) -> str:
        return f"the previous {self.path} is unchanged" if self.existed else "nothing was written"

    def __exit__(self, et, e, tb):
        try:
            if et is None:
                try:
                    self._commit()
                    return False
                except BaseException as err:
                    et, e = type(err), err
                    self._remove_tmp()
                    raise self._translate(e) from None
            self._remove_tmp()
            if isinstance(e, (KeyboardInterrupt, Interrupted, OSError, MemoryError)):
                raise self._translate(e) from None
            return False
        finally:
            self._untrap()

    def _translate(self, e: BaseException) -> BaseException:
        if isinstance(e, KeyboardInterrupt):
            e = Interrupted(signal.SIGINT)
        if isinstance(e, Interrupted):
            err = Interrupted(e.signum)
            err.args = (f"interrupted by {signal.Signals(e.signum).name} while writing {self.path}; {self._left()}",)
            return err
        if isinstance(e, OSError):
            why = "no space left on device" if e.errno in (errno.ENOSPC, errno.EDQUOT) else os_reason(e)
            return OutputError(f"{self.what} {self.path}: cannot write: {why}; {self._left()}")
        if isinstance(e, MemoryError):
            return OutputError(f"{self.what} {self.path}: out of memory while writing; {self._left()}")
        return e

    def _commit(self):
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None
        else:
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        # The world may have changed while we wrote: check again just before the rename.
        check_output(self.path, self.inputs, self.force or self.existed, self.what)
        os.replace(self.tmp, self.path)
        try:
            fd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:  # pragma: no cover - some filesystems refuse a directory fsync
            pass


def write_atomic(path, data: bytes, inputs=(), force: bool = False, what: str = "output") -> None:
    with Output(path, inputs, force, what) as out:
        out.file().write(data)


def session_inputs(image, events=None, system_map=(), isf=None, host_system_map=None, profile=None, pages_from=None) -> list:
    """Every file a command that opens IMAGE may read: the image, its event
    log (given or the sibling IMAGE.smclog), symbol files, the profile's files."""
    ins = [image, events, isf, host_system_map, pages_from, *(system_map or ())]
    if image is not None and events is None:
        ins.append(os.fspath(image) + ".smclog")
    if profile:
        d = profile if os.path.isdir(os.fspath(profile)) else None
        if d is None:
            try:
                from .symbols.profiles import load_profile

                d = load_profile(profile).dir
            except (ArmvmiError, ImportError):
                d = None
        if d is not None:
            try:
                ins += [os.path.join(d, n) for n in os.listdir(d)]
            except OSError:
                pass
    return [i for i in ins if i is not None]


def options_inputs(image, opts) -> list:
    """:func:`session_inputs` from a command's :class:`SessionOptions`."""
    return session_inputs(image, opts.events, opts.system_map or (), opts.isf, opts.host_system_map, opts.profile)
