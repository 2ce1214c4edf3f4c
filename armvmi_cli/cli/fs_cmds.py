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


def register(app) -> None:
    for fn in (lsof,):
        app.command(fn.__name__)(fn)
