"""Options shared by every command that reads guest memory, so that ``--events``,
``--system-map``, ``--profile``, ``--isf`` and ``--phys-base`` mean the same
thing everywhere."""

from __future__ import annotations

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


def parse_int(text: str | None, what: str = "value") -> int | None:
    """Parse 0x-hex or decimal, with a clear error."""
    if text is None:
        return None
    from ..errors import UsageError

    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        raise UsageError(f"{what} {text!r} is not a number (use 0x... for hex)") from None
