"""``armvmi snapshot``: pack any image into an ``.armvmi`` snapshot, describe images.

Thin: the container lives in :mod:`armvmi_cli.memory.armvmi_snapshot`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .options import Events, Force, Image, Json, PhysBase, SystemMap, parse_int

snapshot_app = typer.Typer(
    name="snapshot",
    help="Pack memory images into compressed .armvmi snapshots and describe images.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _open(image: Path, phys_base: str | None):
    from ..memory import open_image

    return open_image(image, parse_int(phys_base, "--phys-base", bits=64))


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


@snapshot_app.command("pack")
def pack(
    image: Image,
    out: Annotated[Path, typer.Argument(help="The .armvmi snapshot to write.", show_default=False)],
    events: Events = None,
    no_events: Annotated[bool, typer.Option("--no-events", help="Do not embed an event log, even if one is found.")] = False,
    phys_base: PhysBase = None,
    pages_from: Annotated[
        Optional[Path], typer.Option("--pages-from", help="Pack only these pages (file: one hex page address per line): a sparse snapshot.")
    ] = None,
    host_name: Annotated[Optional[str], typer.Option("--host-name", help="Name of the host the image was taken from.")] = None,
    capture_time: Annotated[Optional[str], typer.Option("--capture-time", help="When the image was taken (ISO 8601).")] = None,
    boot_id: Annotated[Optional[str], typer.Option("--boot-id", help="The host's /proc/sys/kernel/random/boot_id at capture.")] = None,
    note: Annotated[Optional[List[str]], typer.Option("--note", help="Free-form note to store (repeatable).")] = None,
    chunk_size: Annotated[int, typer.Option("--chunk-size", help="Bytes per compressed chunk (power of two, >= 4096).")] = 4096,
    system_map: SystemMap = None,
    no_kernels: Annotated[bool, typer.Option("--no-kernels", help="Do not embed the kernels' symbols and BTF.")] = False,
    force: Force = False,
):
    """Convert any readable image into an .armvmi snapshot (lz4 chunks, embedded event log, each kernel's symbols and BTF)."""
    import os
    import time

    from ..errors import UsageError
    from ..memory.armvmi_snapshot import pack as do_pack
    from ..memory.events import find_event_log
    from ..memory.recording import read_page_list
    from ..output import Output, check_output, session_inputs
    from . import render

    inputs = session_inputs(image, events, pages_from=pages_from)
    check_output(out, inputs, force)  # before any work: never after minutes of packing
    src = _open(image, phys_base)
    try:
        log, where = (None, "not embedded (--no-events)") if no_events else find_event_log(image, src, events)
        if isinstance(log, str):
            from ..inputs import check_input

            check_input(log, "--events")
            with open(log, "rb") as f:
                log = f.read()
        pages = read_page_list(pages_from) if pages_from else None
        if pages is not None:
            from ..memory.armvmi_snapshot import page_ranges

            if not page_ranges(src, pages)[0]:
                raise UsageError(f"--pages-from {pages_from}: none of its {len(pages)} page(s) is in {image}; nothing to pack")
        kernels, kproblems = ([], []) if no_kernels else _kernels(image, events, system_map, phys_base)
        meta = {k: v for k, v in (("host_name", host_name), ("capture_time", capture_time), ("boot_id", boot_id)) if v}
        if note:
            meta["notes"] = list(note)
        con = render.console(stderr=True)
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        t0 = time.perf_counter()
        with Progress(
            TextColumn("packing"), BarColumn(), DownloadColumn(binary_units=True), TransferSpeedColumn(), TimeRemainingColumn(),
            console=con, transient=True, disable=not con.is_terminal,
        ) as bar:
            task = bar.add_task("pack", total=None)

            def progress(done, total):
                bar.update(task, completed=done, total=total)

            with Output(out, inputs, force) as o:
                info = do_pack(src, o.tmp, events=log, metadata=meta, pages=pages, progress=progress, chunk_size=chunk_size,
                               kernels=kernels)
        dt = max(time.perf_counter() - t0, 1e-9)
    finally:
        src.close()
    ratio = info["file_size"] / info["bytes"] if info["bytes"] else 0
    print(
        f"{out}: {_human(info['bytes'])} in {info['ranges']} range(s) -> {_human(info['file_size'])} "
        f"(ratio {ratio:.3f}, {info['bytes'] / dt / 1e6:.0f} MB/s); event log: {where}"
    )
    for k in kernels:
        print(f"embedded kernel {k['release']} ({k['vm']}): symbols from {k['symbols_source']}"
              + (", BTF" if "btf" in k["sections"] else ", no BTF"))
    for p in kproblems:
        render.warn(p)
    if pages is not None and info["pages_absent_from_source"]:
        render.warn(f"{info['pages_absent_from_source']} listed page(s) are not in {image} and were skipped")


def _kernels(image, events, system_map, phys_base):
    """Each kernel's symbols and BTF, to pack with the image; problems are warnings."""
    from .. import session
    from ..errors import ArmvmiError
    from ..symbols.embedded import pack_records

    try:
        with session.Session.open(image, events=events, system_map=list(system_map or []),
                                  phys_base=parse_int(phys_base, "--phys-base")) as s:
            return pack_records(s)
    except ArmvmiError as e:
        return [], [f"no kernel embedded: {e}"]


@snapshot_app.command("info")
def info(
    image: Image,
    json: Json = False,
    check: Annotated[bool, typer.Option("--check", help="Decode every chunk of an .armvmi and verify its CRC.")] = False,
    events: Events = None,
    phys_base: PhysBase = None,
):
    """Describe an image: format, ranges, sizes, compression, VMCOREINFO, metadata, event log."""
    import os

    from ..memory.events import find_event_log
    from . import render

    m = _open(image, phys_base)
    try:
        d = m.describe()
        d["path"] = str(image)
        d["file_size"] = os.path.getsize(image)
        log, where = find_event_log(image, m, events)
        d["event_log"] = {
            "source": where,
            "size": len(log) if isinstance(log, bytes) else (os.path.getsize(log) if log else 0),
        }
        if check:
            if hasattr(m, "check"):
                d["checked_chunks"] = m.check()
            else:
                d["checked_chunks"] = None
    finally:
        m.close()
    if json:
        render.print_json(d)
        return
    _print_info(d)


def _print_info(d: dict) -> None:
    rows = [("format", d["format"]), ("file", f"{d['path']} ({_human(d['file_size'])})"), ("memory", f"{_human(d['size'])} in {len(d['ranges'])} range(s)")]
    if d["size"]:
        rows.append(("file/memory", f"{d['file_size'] / d['size']:.3f}"))
    if "chunk_size" in d:
        rows.append(("chunks", f"{d['chunk_size']} bytes each; " + ", ".join(f"{k} {v}" for k, v in d["chunks"].items())))
        rows.append(("checksums", "yes" if d["checksums"] else "no"))
    if d.get("checked_chunks") is not None:
        rows.append(("check", f"{d['checked_chunks']} chunks decoded, CRCs match"))
    if d.get("notes"):
        rows.append(("ELF notes", ", ".join(f"{n['name']}/{n['type']} ({n['size']} B)" for n in d["notes"])))
    if d.get("cpus"):
        rows.append(("cpus (PRSTATUS)", str(d["cpus"])))
    ev = d["event_log"]
    rows.append(("event log", f"{ev['source']}" + (f" ({_human(ev['size'])})" if ev["size"] else "")))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print("ranges:")
    rs = d["ranges"]
    shown = rs if len(rs) <= 20 else rs[:16]
    for r in shown:
        print(f"  {r['start']:#014x}-{r['end']:#014x}  {_human(r['size'])}")
    if len(shown) < len(rs):
        print(f"  ... {len(rs) - len(shown)} more ranges (use --json for all)")
    vmci = d.get("vmcoreinfo")
    if vmci:
        print(f"vmcoreinfo ({len(vmci)} keys):")
        for k in ("OSRELEASE", "PAGESIZE", "KERNELOFFSET", "NUMBER(kimage_voffset)", "NUMBER(PHYS_OFFSET)", "NUMBER(VA_BITS)", "SYMBOL(swapper_pg_dir)"):
            if k in vmci:
                print(f"  {k}={vmci[k]}")
    meta = {k: v for k, v in (d.get("metadata") or {}).items() if k not in ("source_vmcoreinfo", "source_prstatus")}
    if meta:
        print("metadata:")
        for k in sorted(meta):
            print(f"  {k}: {meta[k]}")


@snapshot_app.command("export")
def export(
    image: Image,
    out: Annotated[Path, typer.Argument(help="File to write.", show_default=False)],
    format: Annotated[str, typer.Option("--format", "-f", help="lime or avml.")] = "lime",
    phys_base: PhysBase = None,
    force: Force = False,
):
    """Write an image (an .armvmi snapshot, say) as LiME or AVML for other tools."""
    from ..errors import UsageError
    from ..output import Output, check_output, session_inputs

    if format not in ("lime", "avml"):
        raise UsageError(f"--format {format!r}: choose lime or avml")
    inputs = session_inputs(image)
    check_output(out, inputs, force)
    m = _open(image, phys_base)
    try:
        if format == "lime":
            from ..memory.lime import write_lime as write
        else:
            from ..memory.avml import write_avml as write
        with Output(out, inputs, force) as o:
            n = write(m, o.tmp)
    finally:
        m.close()
    print(f"{out}: {format}, {_human(n)}")


def register(app: typer.Typer) -> None:
    app.add_typer(snapshot_app)
