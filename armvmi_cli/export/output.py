"""Output files that never clobber evidence: written to a temporary file in the
target's directory and renamed into place only when complete, refused when the
target is one of the inputs, and refused when it exists unless forced."""

from __future__ import annotations

import contextlib
import os

from ..errors import UsageError


def check_output(path, inputs=(), force: bool = False) -> str:
    out = os.path.abspath(os.fspath(path))
    for src in inputs:
        if src is None:
            continue
        src = os.fspath(src)
        same = os.path.abspath(src) == out
        if not same and os.path.exists(out) and os.path.exists(src):
            same = os.path.samefile(src, out)
        if same:
            raise UsageError(f"refusing to write {path}: it is an input of this command")
    if os.path.isdir(out):
        raise UsageError(f"refusing to write {path}: it is a directory")
    if os.path.lexists(out) and not force:
        raise UsageError(f"refusing to overwrite {path}: it exists (use --force)")
    if not os.path.isdir(os.path.dirname(out)):
        raise UsageError(f"cannot write {path}: directory {os.path.dirname(out)} does not exist")
    return out


@contextlib.contextmanager
def atomic_output(path, inputs=(), force: bool = False, mode: str = "wb"):
    """``with atomic_output(p, inputs=[image]) as f:`` writes ``p`` whole or not at all."""
    out = check_output(path, inputs, force)
    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.tmp{os.getpid()}")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
