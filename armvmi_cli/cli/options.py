"""Options shared by every command that reads guest memory, so that ``--events``,
``--system-map``, ``--profile``, ``--isf`` and ``--phys-base`` mean the same
thing everywhere."""

from __future__ import annotations

import functools
import re
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, List, Optional

import typer

Image = Annotated[Path, typer.Argument(help="Memory image: raw, LiME, AVML, ELF core or .armvmi snapshot.", show_default=False)]
Events = Annotated[Optional[Path], typer.Option("--events", "-e", help="SMC event log (.smclog); default: embedded in a .armvmi, else IMAGE.smclog.")]
SystemMap = Annotated[Optional[List[Path]], typer.Option("--system-map", "-m", help="Guest kernel System.map (repeatable: each VM gets the map that fits it).")]
HostSystemMap = Annotated[Optional[Path], typer.Option("--host-system-map", help="The host kernel's System.map.")]
Profile = Annotated[Optional[str], typer.Option("--profile", "-p", help="Profile name or directory (see `armvmi profile list`).")]
Isf = Annotated[Optional[Path], typer.Option("--isf", help="Volatility 3 symbol file (.json or .json.xz) for struct layouts.")]
PhysBase = Annotated[Optional[str], typer.Option("--phys-base", help="Physical address of the first byte of a raw image (default 0).")]
Vm = Annotated[Optional[str], typer.Option("--vm", help="VM id (from `armvmi vms`) when the host runs more than one.")]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
Until = Annotated[Optional[int], typer.Option("--until", help="Replay the event log only up to this sequence number.")]
Force = Annotated[bool, typer.Option("--force", help="Replace the output file if it exists (never an input, never anything but a regular file).")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not use or write armvmi's caches (parsed types, where things were found).")]


@dataclass
class SessionOptions:
    """The image/log/symbol options every guest-reading command shares."""

    vm: Optional[str] = None
    events: Optional[Path] = None
    system_map: Optional[List[Path]] = None
    profile: Optional[str] = None
    isf: Optional[Path] = None
    phys_base: Optional[str] = None
    until: Optional[int] = None
    no_cache: bool = False
    host_system_map: Optional[Path] = None

    def open(self, image, record_pages=None):
        from .. import session

        return session.Session.open(
            image,
            events=self.events,
            system_map=list(self.system_map or []),
            profile=self.profile,
            isf=self.isf,
            phys_base=parse_int(self.phys_base, "--phys-base", bits=64),
            until=self.until,
            use_cache=not (self.no_cache or record_pages),
            record_pages=record_pages,
            host_system_map=self.host_system_map,
        )


_SHARED = (("vm", Vm, None), ("events", Events, None), ("system_map", SystemMap, None), ("profile", Profile, None),
           ("isf", Isf, None), ("host_system_map", HostSystemMap, None), ("phys_base", PhysBase, None),
           ("until", Until, None), ("no_cache", NoCache, False))


def image_command(fn):
    """Give a command the shared options: they appear in its --help after its
    own, and reach it as one ``opts: SessionOptions`` argument."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "opts"]
    shared = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in _SHARED]
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind == p.POSITIONAL_OR_KEYWORD else p for p in own]

    @functools.wraps(fn)
    def command(**kwargs):
        opts = SessionOptions(**{n: kwargs.pop(n) for n, _, _ in _SHARED})
        return fn(opts, **kwargs)

    command.__signature__ = sig.replace(parameters=params + shared)
    command.__annotations__ = {p.name: p.annotation for p in params + shared}
    del command.__wrapped__  # typer must see the new signature, not fn's
    return command


_NUMBER = re.compile(r"(0[xX][0-9a-fA-F](_?[0-9a-fA-F])*|0[oO][0-7](_?[0-7])*|0[bB][01](_?[01])*|[0-9](_?[0-9])*)")


def parse_int(text: str | None, what: str = "value", bits: int | None = None, signed: bool = False) -> int | None:
    """Parse 0x-hex, 0o-octal, 0b-binary or decimal (ASCII only, no spaces:
    Python's int() also takes Unicode digits and " 5"), with a clear error.
    ``bits``: refuse values that do not fit in that many bits (no wrapping)."""
    if text is None:
        return None
    from ..errors import UsageError

    if not isinstance(text, str):
        raise UsageError(f"{what} {text!r} is not a number")
    neg = text.startswith("-")
    body = text[1:] if neg else text
    try:
        if not _NUMBER.fullmatch(body):
            raise ValueError
        value = int(body, 0) * (-1 if neg else 1)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a number (use 0x... for hex)") from None
    if neg and not signed:
        raise UsageError(f"{what} {text} must not be negative")
    if bits is not None and not (0 <= value < (1 << bits)):
        raise UsageError(f"{what} {text} is out of range (0 to {(1 << bits) - 1:#x})")
    return value
