"""``armvmi extract`` (a VM as an ELF core or LiME file for drgn, crash and
Volatility) and ``armvmi profile isf`` (a Volatility 3 symbol file from the
kernel's own BTF and symbols)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import Image, Json, SessionOptions, image_command

Out = Annotated[Path, typer.Option("--output", "-o", help="File to write (never an input; an existing file only with --force).", show_default=False)]
Force = Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT if it exists.")]


@image_command
def extract(opts: SessionOptions, image: Image, output: Out, format: Annotated[str, typer.Option("--format", help="elf (kdump-style core with VMCOREINFO and NT_PRSTATUS notes) or lime.")] = "elf",
            force: Force = False, json: Json = False):
    """Write one VM's guest-physical memory as an ELF core (or LiME) that drgn, crash and Volatility open."""
    from ..export.vmcore import extract as do_extract
    from . import render

    inputs = [image, opts.events, opts.isf, opts.host_system_map, *(opts.system_map or [])]
    with opts.open(image) as s:
        vm = s.vm(opts.vm)
        summ = do_extract(vm, output, format, inputs=inputs, force=force)
    if json:
        render.print_json(summ.to_dict())
    else:
        print(summ.line())
        for p in summ.problems:
            print(f"warning: {p}")


def isf(
    image: Image,
    output: Out,
    vm: Annotated[Optional[str], typer.Option("--vm", help="VM id (from `armvmi vms`), or host.")] = None,
    system_map: Annotated[Optional[Path], typer.Option("--system-map", "-m", help="The kernel's System.map (default: its kallsyms, recovered from memory).")] = None,
    events: Annotated[Optional[Path], typer.Option("--events", "-e", help="SMC event log (.smclog).")] = None,
    force: Force = False,
    json: Json = False,
):
    """Write a Volatility 3 symbol file (ISF, .json or .json.xz) for a kernel in IMAGE from its BTF and symbols."""
    from ..export.isf import write_isf
    from . import render

    opts = SessionOptions(vm=vm, events=events, system_map=[system_map] if system_map else None)
    with opts.open(image) as s:
        s.symopts.use_profiles = False  # from the image (and -m) only: never another profile's types
        k = s.vm(vm).kernel
        summ = write_isf(k, output, inputs=[image, system_map, events], force=force)
    if json:
        render.print_json(summ)
    else:
        print(f"wrote {output}: {summ['base_types']} base types, {summ['user_types']} structs/unions, "
              f"{summ['enums']} enums, {summ['symbols']} symbols ({summ['symbols_source']}); banner {summ['banner']!r}")


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)
    from .symbols_cmds import profile_app

    profile_app.command("isf")(isf)
