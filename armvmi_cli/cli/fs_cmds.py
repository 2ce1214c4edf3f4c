"""File system views: lsof, mounts."""

from __future__ import annotations

from .options import Image, Json, SessionOptions, image_command
from .views import Jsonl, Pids


@image_command
def lsof(opts: SessionOptions, image: Image, pid: Pids = None, json: Json = False, jsonl: Jsonl = False):
    """Open files of each process, as /proc/PID/fd and fdinfo show them (fd, kind, path, flags, pos, inode)."""
    from ..linux.lsof import LSOF
    from .views import run_view

    run_view(opts, image, LSOF, json=json, jsonl=jsonl, pids=pid)


@image_command
def mounts(opts: SessionOptions, image: Image, pid: Pids = None, json: Json = False, jsonl: Jsonl = False):
    """The mount tree of each mount namespace in use, as /proc/PID/mounts shows it (device, mount point, type, options)."""
    from ..linux.mount import MOUNTS
    from .views import run_view

    run_view(opts, image, MOUNTS, json=json, jsonl=jsonl, pids=pid)


def register(app) -> None:
    for fn in (lsof, mounts):
        app.command(fn.__name__)(fn)
