"""Network views: sockstat, ifaddr."""

from __future__ import annotations

from .options import Image, Json, SessionOptions, image_command
from .views import Jsonl, Pids


@image_command
def sockstat(opts: SessionOptions, image: Image, pid: Pids = None, json: Json = False, jsonl: Jsonl = False):
    """Sockets (TCP/UDP/raw over IPv4 and IPv6, unix) from the kernel's tables and the processes' fds, with every owner; a socket no visible process owns is an orphan-socket finding (exit 1)."""
    from ..linux.net import SOCKSTAT
    from .views import run_view

    run_view(opts, image, SOCKSTAT, json=json, jsonl=jsonl, pids=pid)


@image_command
def ifaddr(opts: SessionOptions, image: Image, json: Json = False, jsonl: Jsonl = False):
    """Network devices of each network namespace: name, index, MAC, flags, MTU, IPv4 and IPv6 addresses."""
    from ..linux.net import IFADDR
    from .views import run_view

    run_view(opts, image, IFADDR, json=json, jsonl=jsonl)


def register(app) -> None:
    for fn in (sockstat, ifaddr):
        app.command(fn.__name__)(fn)
