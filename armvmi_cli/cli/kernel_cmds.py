"""Is the kernel itself compromised: ``lsmod``, ``dmesg``, ``ebpf``, ``check``.

Views render as every view does (``cli/views.py``); ``check`` prints the
findings of every registered check (``armvmi_cli.checks``) on every VM and
the host.  Exit: 1 findings, 5 no findings but a check could not run, 0 clean.
"""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from .options import Image, Json, SessionOptions, image_command
from .views import Jsonl


@image_command
def lsmod(opts: SessionOptions, image: Image, json: Json = False, jsonl: Jsonl = False,
          no_scan: Annotated[bool, typer.Option("--no-scan", help="Skip the memory scan for struct module.")] = False):
    """Loaded kernel modules (the modules list), cross-checked with /sys/module (module_kset), the module
    address tree (mod_tree) and a scan of module memory; a module only those see is HIDDEN (exit 1)."""
    from ..linux.module import LSMOD
    from .views import run_view

    run_view(opts, image, LSMOD, json=json, jsonl=jsonl, scan=not no_scan)


@image_command
def dmesg(opts: SessionOptions, image: Image, json: Json = False, jsonl: Jsonl = False,
          raw: Annotated[bool, typer.Option("--raw", "-r", help="Print lines as dmesg -r: <prio>[time] text.")] = False):
    """The kernel log from the printk ring buffer: seq, time, level, caller, text."""
    from ..linux.printk import DMESG
    from .views import collect_view

    if raw and not (json or jsonl):
        import sys

        s = opts.open(image)
        out = collect_view(s, DMESG, opts.vm)
        for p in out.parts:
            for r in (p.result.records if p.result is not None else ()):
                sys.stdout.write(r.raw + "\n")
        raise typer.Exit(_quiet_exit(out))
    from .views import run_view

    run_view(opts, image, DMESG, json=json, jsonl=jsonl)


def _quiet_exit(out) -> int:
    from . import render as r

    for p in out.parts:
        for msg in ([p.error] if p.error else p.result.problems):
            r.warn(f"{p.vm.label}: {msg}")
    return out.exit_code()


@image_command
def ebpf(opts: SessionOptions, image: Image, json: Json = False, jsonl: Jsonl = False):
    """Loaded eBPF programs (prog_idr: id, type, name, tag, attach point) and maps (map_idr: id, type,
    name, key/value size, max entries)."""
    from ..linux.bpf import EBPF
    from .views import run_view

    run_view(opts, image, EBPF, json=json, jsonl=jsonl)


@image_command
def check(opts: SessionOptions, image: Image, json: Json = False, jsonl: Jsonl = False,
          only: Annotated[Optional[List[str]], typer.Option("--check", help="Run only this check (repeatable).")] = None):
    """Run every integrity check on every VM and the host: hidden-process, hidden-module, syscall-hook,
    vector-hook and, on host images, verify's log-vs-memory findings.  Exit 1 on findings, 5 when there
    are none but a check could not run, 0 when clean."""
    from ..checks import CHECKS, run_checks
    from ..errors import UsageError
    from . import render as r

    if json and jsonl:
        raise UsageError("give at most one of --json and --jsonl")
    if only:
        unknown = sorted(set(only) - {c.name for c in CHECKS})
        if unknown:
            raise UsageError(f"no check {', '.join(unknown)} (checks: {', '.join(c.name for c in CHECKS)})")
    s = opts.open(image)
    rep = run_checks(s, opts.vm, only=set(only) if only else None)
    warnings = list(s.warnings)
    if json:
        r.print_json({"image": str(image), "checks": [c.name for c in CHECKS if not only or c.name in only],
                      **rep.to_dict(), "warnings": warnings})
    elif jsonl:
        for f in rep.findings:
            r.print_jsonl(f.to_dict())
    else:
        from .views import table
        from ..view import Column

        cols = (Column("severity"), Column("kind"), Column("vm"), Column("message"))
        if rep.findings:
            table(f"{len(rep.findings)} finding(s) in {', '.join(rep.targets)}", cols, rep.findings)
        else:
            print(f"no findings ({', '.join(rep.targets)})")
    for n in rep.not_run:
        r.warn(f"could not run {n.check}" + (f" on {n.vm}" if n.vm else "") + f": {n.reason}")
    for w in warnings:
        r.warn(w)
    raise typer.Exit(rep.exit_code())


def register(app: typer.Typer) -> None:
    app.command("lsmod")(lsmod)
    app.command("dmesg")(dmesg)
    app.command("ebpf")(ebpf)
    app.command("check")(check)
