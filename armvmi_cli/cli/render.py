"""Rendering helpers shared by the commands: rich for people, JSON for scripts.

Imported lazily from inside commands (rich is not needed for --help)."""

from __future__ import annotations

import json
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
    from rich.markup import escape

    # msg quotes memory (task names, symbols like sys_call_table[3]): never markup.
    console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(msg)}", markup=True, highlight=False)


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


def hexdump(data: bytes, base: int) -> str:
    lines = []
    for off in range(0, len(data), 16):
        chunk = data[off : off + 16]
        hexpart = " ".join(f"{b:02x}" for b in chunk)
        asc = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{base + off:016x}  {hexpart:<47}  |{asc}|")
    return "\n".join(lines)
