"""What each process was doing: psaux, envars, maps, malfind, procdump.

Thin: the views live in ``armvmi_cli.linux.proc``, the dump in
``armvmi_cli.linux.coredump``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import Image, Json, SessionOptions, image_command
from .views import Jsonl, Pids


def _run(opts: SessionOptions, image, view_name: str, json: bool, jsonl: bool, pids) -> None:
    """run_view, plus: a --pid that no selected VM has is exit 4, one line."""
    from ..errors import UsageError
    from ..linux import proc
    from .views import collect_view, render

    if json and jsonl:
        raise UsageError("give at most one of --json and --jsonl")
    s = opts.open(image)
    out = collect_view(s, getattr(proc, view_name), opts.vm, pids=pids)
    if pids:
        found = set()
        for p in out.parts:
            found |= getattr(p.result, "pids_found", None) or set()
        missing = sorted(set(pids) - found)
        if missing:
            where = ", ".join(p.vm.label for p in out.parts) or "this image"
            raise proc.NoSuchProcess(f"no process with pid {', '.join(map(str, missing))} in {where}")
    raise typer.Exit(render(out, json=json, jsonl=jsonl))


@image_command
def psaux(opts: SessionOptions, image: Image, pid: Pids = None, json: Json = False, jsonl: Jsonl = False):
    """Each process with its command line (argv) and executable, as /proc shows them."""
    _run(opts, image, "PSAUX", json, jsonl, pid)


@image_command
def envars(opts: SessionOptions, image: Image, pid: Pids = None, json: Json = False, jsonl: Jsonl = False):
    """The environment of each process (/proc/PID/environ)."""
    _run(opts, image, "ENVARS", json, jsonl, pid)


@image_command
def maps(opts: SessionOptions, image: Image, pid: Pids = None, json: Json = False, jsonl: Jsonl = False):
    """One row per VMA of each process, as /proc/PID/maps shows them."""
    _run(opts, image, "MAPS", json, jsonl, pid)


@image_command
def malfind(opts: SessionOptions, image: Image, pid: Pids = None, json: Json = False, jsonl: Jsonl = False):
    """Mappings that look like injected code (anonymous or writable executable memory,
    executable deleted files and memfds); findings exit 1."""
    _run(opts, image, "MALFIND", json, jsonl, pid)


@image_command
def procdump(
    opts: SessionOptions,
    image: Image,
    pid: Annotated[int, typer.Option("--pid", help="The process to dump.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New (or empty) directory for the dump.")],
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty directory (its other files are left alone).")] = False,
    json: Json = False,
):
    """Dump a process's memory: one file per resident run of each VMA, index.json (holes
    with their reason, never zero-filled) and an ELF core (core.PID) for gdb/readelf."""
    import time

    from ..linux.coredump import procdump as dump
    from ..linux.proc import NoSuchProcess, processes
    from . import render

    s = opts.open(image)
    vm = s.vm(opts.vm)
    k = vm.kernel
    ps = processes(k, [pid])
    if not ps.tasks:
        raise NoSuchProcess(f"no process with pid {pid} in {vm.label}")
    inputs = [image] + list(opts.system_map or []) + ([opts.events] if opts.events else [])
    t0 = time.perf_counter()
    res = dump(k, ps.tasks[0], output, force=force, inputs=inputs)
    dt = time.perf_counter() - t0
    summary = {"image": str(image), "vm": vm.name, "pid": pid, "output": str(output), "core": res.index.get("core"),
               "bytes": res.bytes_written, "holes": res.holes, "seconds": round(dt, 3),
               "complete": res.complete, "problems": res.problems, "warnings": s.warnings}
    if json:
        render.print_json(summary)
    else:
        print(f"pid {pid}: {res.bytes_written} bytes in {len(res.index.get('vmas', []))} VMAs, {res.holes} holes "
              f"-> {output}/ (index.json, {res.index.get('core')})")
        for p in res.problems:
            render.warn(p)
    raise typer.Exit(0 if res.complete else 5)


def register(app: typer.Typer) -> None:
    for fn in (psaux, envars, maps, malfind, procdump):
        app.command(fn.__name__)(fn)
