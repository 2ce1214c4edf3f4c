"""``armvmi sweep``: one view over many images, on a Dask cluster (armvmi_cli.fleet)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .options import SessionOptions, image_command, parse_int


@image_command
def sweep(
    opts: SessionOptions,
    view: Annotated[str, typer.Argument(help="The view to run on every image (e.g. ps).", show_default=False)],
    images: Annotated[Optional[List[Path]], typer.Argument(help="Memory images (any format `ps` reads).", show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="The JSON Lines table to write (one row per record, with image and vm).")] = ...,
    manifest: Annotated[Optional[Path], typer.Option("--manifest", help="File of image paths, one a line (# comments; relative to the file).")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Address of a running Dask scheduler (tcp://HOST:PORT); default: a local cluster on this machine's cores.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Worker processes of the local cluster (default: one per core).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT: skip images already in it (the last one is redone).")] = False,
):
    """Run VIEW over many images, one Dask task per image, into one JSON Lines table.

    Each row is what `armvmi VIEW IMAGE --jsonl` prints for that image, with
    "image" added; an image that cannot be read is one row {"image", "error",
    "exit_code"} and the sweep goes on (exit 5 when any image failed)."""
    from .. import fleet
    from ..errors import UsageError

    if opts.events is not None:
        raise UsageError("--events names one image's log; a sweep reads each image's own (IMAGE.smclog or embedded)")
    paths = [str(p) for p in images or []]
    if manifest is not None:
        paths += fleet.read_manifest(manifest)
    options = {
        "system_map": [str(m) for m in opts.system_map or []],
        "profile": opts.profile,
        "isf": str(opts.isf) if opts.isf else None,
        "phys_base": parse_int(opts.phys_base, "--phys-base"),
        "until": opts.until,
        "use_cache": not opts.no_cache,
        "host_system_map": str(opts.host_system_map) if opts.host_system_map else None,
        "vm": opts.vm,
    }
    bar = _progress() if sys.stderr.isatty() else None
    try:
        summary = fleet.sweep(view, paths, output, options, scheduler=scheduler, resume=resume, workers=workers,
                              progress=bar.update if bar else None)
    finally:
        if bar:
            bar.stop()
    from .render import warn

    for img, err in summary.failed:
        warn(err if img in err else f"{img}: {err}")
    msg = (f"swept {summary.done} image(s) into {output}: {summary.rows} rows, {len(summary.failed)} failed"
           + (f", {summary.skipped} already done" if summary.skipped else ""))
    print(msg, file=sys.stderr)
    raise typer.Exit(summary.exit_code())


class _progress:
    """A rich progress bar on the terminal: images done/total, rows, failures."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rows]} rows"),
                          TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                          console=Console(stderr=True), transient=False)
        self.task = None
        self.p.start()

    def update(self, s) -> None:
        if self.task is None:
            self.task = self.p.add_task("sweep", total=s.images, rows=0, failed=0)
        self.p.update(self.task, completed=s.skipped + s.done, rows=s.rows, failed=len(s.failed))

    def stop(self) -> None:
        self.p.stop()


def register(app: typer.Typer) -> None:
    app.command()(sweep)
