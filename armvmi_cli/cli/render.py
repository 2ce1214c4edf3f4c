"""Rendering helpers shared by the commands: rich for people, JSON for scripts.

Imported lazily from inside commands (rich is not needed for --help)."""

from __future__ import annotations

import json
import struct
import sys


def console(stderr: bool = False):
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output (grep, less, a log file) should not be cut to 80 columns.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, highlight=False, soft_wrap=False, width=width)


def warn(msg: str) -> None:
    import os

    # Plain text (no rich: a piped view must not pay for importing it); msg
    # quotes memory (task names, symbols), so it is never markup.
    color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    head = "\x1b[33mwarning:\x1b[0m" if color else "warning:"
    sys.stderr.write(f"{head} {msg}\n")


def hexaddr(v) -> str | None:
    return None if v is None else f"{v:#x}"


def _default(o):
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if isinstance(o, bytes):
        return o.hex()
    return str(o)


def _convention(obj):
    """Every printed document follows the one convention (man/armvmi.1, JSON OUTPUT)."""
    from ..view import json_convention

    return json_convention(json.loads(json.dumps(obj, default=_default)))


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(_convention(obj), indent=2) + "\n")


def print_jsonl(obj) -> None:
    sys.stdout.write(json.dumps(_convention(obj), separators=(",", ":")) + "\n")


_ASCII = bytes(b if 32 <= b < 127 else 0x2E for b in range(256))


def hexdump(data: bytes, base: int) -> str:
    """``address  16 hex bytes  |ascii|`` lines.  Every full line has the same
    width, so each column is filled for all lines at once by a strided slice
    assignment (a 1 GiB ``read`` streams through this chunk by chunk)."""
    data = bytes(data)
    n = len(data)
    lines = n // 16
    full = lines * 16
    out = ""
    if lines:
        w = 86  # 16 address + 2 + 47 hex + 2 + |16 ascii| + newline
        buf = bytearray(b" ") * (w * lines)
        addrs = struct.pack(f">{lines}Q", *range(base, base + full, 16)).hex().encode()
        for j in range(16):
            buf[j::w] = addrs[j::16]
        hexs = data[:full].hex(" ").encode() + b" "
        for j in range(47):
            buf[18 + j :: w] = hexs[j::48]
        asc = data[:full].translate(_ASCII)
        for j in range(16):
            buf[68 + j :: w] = asc[j::16]
        buf[67::w] = buf[84::w] = b"|" * lines
        buf[85::w] = b"\n" * lines
        out = buf[:-1].decode("ascii")
    if full < n:
        rest = data[full:]
        tail = f"{base + full:016x}  {rest.hex(' '):<47}  |{rest.translate(_ASCII).decode('ascii')}|"
        out = f"{out}\n{tail}" if out else tail
    return out


def stdout_closed() -> None:
    """The reader of our stdout went away (``armvmi read ... | head``): not
    an error; point stdout at /dev/null so the flush at exit stays quiet."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
