"""Commands that read guest memory: ps, pstree, translate, struct, read, info, symbols.

Thin: each command opens a Session, calls library code, and renders.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import Force, Image, Json, SessionOptions, image_command, parse_int
from .views import Jsonl, Pids

@image_command
def ps(
    opts: SessionOptions,
    image: Image,
    threads: Annotated[bool, typer.Option("--threads", "-t", help="Also list every thread of each process.")] = False,
    no_cross_view: Annotated[bool, typer.Option("--no-cross-view", help="Skip the PID IDR cross-check.")] = False,
    pid: Pids = None,
    record_pages: Annotated[Optional[Path], typer.Option("--record-pages", help="Write the physical pages this run reads to FILE (for `snapshot pack --pages-from`).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Let --record-pages replace an existing FILE (never an input).")] = False,
    json: Json = False,
    jsonl: Jsonl = False,
):
    """List the processes of each VM (task list, cross-checked with the PID IDR)."""
    from ..errors import UsageError
    from ..linux.ps import PS
    from .views import collect_view, render

    if json and jsonl:
        raise UsageError("give at most one of --json and --jsonl")
    if record_pages is not None:
        from ..output import check_output, options_inputs

        inputs = options_inputs(image, opts)
        check_output(record_pages, inputs, force, "--record-pages")
    s = opts.open(image, record_pages=record_pages)
    if record_pages is not None:
        s.memory.record_inputs, s.memory.record_force = inputs, force
    out = collect_view(s, PS, opts.vm, threads=threads, cross_view=not no_cross_view, pids=pid)
    s.save_recorded_pages()
    raise typer.Exit(render(out, json=json, jsonl=jsonl))


@image_command
def pstree(
    opts: SessionOptions,
    image: Image,
    json: Json = False,
):
    """Show the processes of each VM as a tree (parent -> children)."""
    from ..linux.ps import process_tree, ps as run_ps
    from . import render

    s = opts.open(image)
    out = []
    for v in s.select(opts.vm):
        r = run_ps(v.kernel, cross_view=False)
        out.append((v, r, process_tree(r.tasks)))
    if json:
        render.print_json({"image": str(image), "view": "tree",
                           "vms": [{"vm": v.name, "vm_id": v.json_vm_id, "label": v.label, "tree": tree} for v, _, tree in out],
                           "findings": [f.to_dict() for f in s.findings], "warnings": s.warnings})
        raise typer.Exit(1 if s.findings else 0)
    from rich.markup import escape
    from rich.tree import Tree

    def add(parent, nodes):
        for n in nodes:
            uid = f", uid {n['uid']}" if n["uid"] else ""
            add(parent.add(f"{escape(n['comm'])} [dim]({n['pid']}{uid}, {n['state']})[/dim]"), n["children"])

    con = render.console()
    for v, r, tree in out:
        root = Tree(escape(v.label))
        add(root, tree)
        con.print(root)
        for p in r.problems:
            render.warn(f"{v.label}: {p}")
    _warn_findings(s)
    raise typer.Exit(1 if s.findings else 0)


def _warn_findings(s) -> None:
    """The findings met while listing the VMs (a VM the log does not know)."""
    from . import render

    for f in s.findings:
        render.warn(f"{f.severity} {f.kind} ({f.vm}): {f.message}")


@image_command
def translate(
    opts: SessionOptions,
    image: Image,
    gva: Annotated[Optional[str], typer.Option("--gva", help="Guest virtual address or symbol[+off]; '-' reads many from stdin.")] = None,
    gpa: Annotated[Optional[str], typer.Option("--gpa", help="Guest physical address; '-' reads many from stdin.")] = None,
    pid: Annotated[Optional[int], typer.Option("--pid", help="Walk this process's user page tables (mm->pgd).")] = None,
    json: Json = False,
):
    """Translate GVA -> GPA -> HPA (or GPA -> HPA), showing every level of both walks."""
    from ..errors import ArmvmiError, ExitCode, UsageError
    from ..translate import translate_address
    from . import render

    if (gva is None) == (gpa is None):
        raise UsageError("give exactly one of --gva or --gpa")
    s = opts.open(image)
    v = s.vm(opts.vm)
    text = gva if gva is not None else gpa
    kind = "gva" if gva is not None else "gpa"
    if text != "-":
        r = translate_address(v, text, kind, pid)
        render.print_json(r) if json else _print_translations([r])
        raise typer.Exit(int(ExitCode.NOT_FOUND if r["fault"] else ExitCode.OK))
    # Batch: one result or one error record per line, in order; a bad line never stops the rest.
    failed = False
    for line in sys.stdin:
        a = line.strip()
        if not a:
            continue
        try:
            r = translate_address(v, a, kind, pid)
        except ArmvmiError as e:
            r = {"input": a, "kind": kind, "vm": v.name, "vm_id": v.json_vm_id, "error": str(e)}
        failed = failed or bool(r.get("error") or r.get("fault"))
        if json:
            render.print_jsonl(r)
        elif r.get("error"):
            render.warn(f"{a}: {r['error']}")
        else:
            _print_translations([r])
        sys.stdout.flush()
    raise typer.Exit(int(ExitCode.PARTIAL if failed else ExitCode.OK))


def _walk_columns():
    from ..view import Column

    return (Column("level", "level", "right"), Column("table", "table"), Column("layer", "in layer", priority=3),
            Column("index", "index", "right", priority=2), Column("descriptor", "descriptor", priority=1),
            Column("meaning", "meaning", kind="text"))


def _print_translations(results):
    from rich.markup import escape

    from . import render
    from .views import show_table

    con = render.console()
    for r in results:
        con.print(f"[bold]{escape(r['input'])}[/bold] ({r['kind']}{', ' + escape(r['symbol']) if r.get('symbol') else ''})")
        for walk in r["walks"]:
            rows = [[st.get("level"), st.get("table_address"), st.get("table_layer"), st.get("index"),
                     st.get("descriptor"), st.get("meaning")] for st in walk["steps"]]
            show_table(f"{walk['layer']}: {walk['input']}", _walk_columns(), rows)
            if walk.get("fault"):
                con.print(f"  [red]fault:[/red] {walk['fault']}")
            else:
                con.print(f"  -> {walk['output']}")
        if r["fault"]:
            con.print(f"[red]{r['input']} does not map: {r['fault']}[/red]")
        else:
            con.print("  " + "  ->  ".join(f"{name} {addr}" for name, addr in r["chain"]))


@image_command
def struct(
    opts: SessionOptions,
    type_name: Annotated[str, typer.Argument(help="Type, e.g. task_struct.")],
    address: Annotated[str, typer.Argument(help="GVA or symbol[+off] of the object.")],
    image: Image,
    depth: Annotated[int, typer.Option("--depth", "-d", help="Expand nested structs this deep.")] = 1,
    json: Json = False,
):
    """Show a kernel structure's fields and values at an address or symbol."""
    from ..linux.format import format_object
    from . import render

    s = opts.open(image)
    k = s.vm(opts.vm).kernel
    addr = k.eval_address(address)
    obj = k.object(type_name, addr)
    tree = format_object(k, obj, depth)
    if json:
        render.print_json(tree)
        return
    from rich.tree import Tree

    def build(node, d):
        for f in d.get("fields", []):
            label = f"[cyan]{f['name']}[/cyan] ({f['type']}, +{f['offset']:#x}) = {f.get('display', '')}"
            child = node.add(label)
            if "fields" in f:
                build(child, f)

    root = Tree(f"{tree['type']} at {tree['address']}" + (f" <{tree['symbol']}>" if tree.get("symbol") else ""))
    build(root, tree)
    render.console().print(root)


@image_command
def read(
    opts: SessionOptions,
    image: Image,
    address: Annotated[str, typer.Argument(help="Address (or symbol[+off] with --gva).")],
    length: Annotated[str, typer.Argument(help="Number of bytes.")],
    gva: Annotated[bool, typer.Option("--gva", help="ADDRESS is guest virtual (default).")] = False,
    gpa: Annotated[bool, typer.Option("--gpa", help="ADDRESS is guest physical.")] = False,
    hpa: Annotated[bool, typer.Option("--hpa", help="ADDRESS is host physical.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the raw bytes to this file.")] = None,
    pid: Annotated[Optional[int], typer.Option("--pid", help="ADDRESS is a user address of this process.")] = None,
    force: Force = False,
    json: Json = False,
):
    """Read memory at a guest virtual, guest physical or host physical address, or a process's user address (--pid)."""
    from ..errors import UsageError
    from . import render

    if gva + gpa + hpa + (pid is not None) > 1:
        raise UsageError("give at most one of --gva, --gpa, --hpa, --pid")
    n = parse_int(length, "LEN")
    if n > (1 << 30):
        raise UsageError(f"LEN {length!r} must be between 0 and 1 GiB")
    inputs = None
    if output is not None:
        from ..output import check_output, options_inputs

        inputs = options_inputs(image, opts)
        check_output(output, inputs, force)
    s = opts.open(image)
    if hpa:
        layer, addr = s.memory, parse_int(address, "ADDRESS", bits=64)
    elif gpa:
        layer, addr = s.vm(opts.vm).gphys, parse_int(address, "ADDRESS", bits=64)
    elif pid is not None:
        from ..linux.proc import user_reader

        layer, addr = user_reader(s.vm(opts.vm), pid), parse_int(address, "ADDRESS", bits=64)
    else:
        k = s.vm(opts.vm).kernel
        layer, addr = k.vmem, k.eval_address(address)
    if addr + n > 1 << 64:
        raise UsageError(f"{address} + {n:#x} bytes runs past the end of the 64-bit address space")
    step = 1 << 20  # stream: constant memory for any LEN

    def chunks():
        for off in range(0, n, step):
            yield addr + off, layer.read(addr + off, min(step, n - off))

    if json:
        from ..mmu.walk import layer_name

        data = b"".join(d for _, d in chunks())
        render.print_json({"address": f"{addr:#x}", "layer": "hpa" if hpa else "gpa" if gpa else "user" if pid is not None else "gva",
                           "layer_name": layer_name(layer), "length": len(data), "data_hex": data.hex()})
        if output is None:
            return
    if output is not None:
        from ..output import Output

        with Output(output, inputs, force) as o:
            f = o.file()
            for _, data in chunks():
                f.write(data)
        render.console(stderr=True).print(f"wrote {n} bytes to {output}")
    else:
        write = sys.stdout.write
        try:
            for va, data in chunks():
                write(render.hexdump(data, va))
                write("\n")
            sys.stdout.flush()
        except BrokenPipeError:  # click would turn it into exit 1
            render.stdout_closed()


@image_command
def info(
    opts: SessionOptions,
    image: Image,
    json: Json = False,
):
    """Image format and ranges, host record, VMs, and each guest kernel's release, slide and geometry."""
    from ..report import session_info
    from . import render

    s = opts.open(image)
    data = session_info(s, opts.vm)
    if json:
        render.print_json(data)
        raise typer.Exit(1 if data["findings"] else 0)
    con = render.console()
    img = data["image"]
    con.print(f"[bold]image[/bold] {img['path']}: {img['format']}, {img['size']:,} bytes of physical memory in {len(img['ranges'])} range(s)")
    for r in img["ranges"][:8]:
        con.print(f"  {r['start']} - {r['end']}")
    if len(img["ranges"]) > 8:
        con.print(f"  ... {len(img['ranges']) - 8} more (--json for all)")
    con.print(f"[bold]event log[/bold]: {data['events']['source'] or 'none'}")
    if data.get("host"):
        con.print("[bold]host[/bold] (DRIVER_INIT): " + ", ".join(f"{k}={v}" for k, v in data["host"].items()))
    for v in data["vms"]:
        con.print(f"[bold]{v['label']}[/bold]")
        _print_tree(con, {k: val for k, val in v.items() if k != "label"}, 1)
    for p in data.get("unused_system_maps") or ():
        render.warn(f"--system-map {p} fits none of the kernels in this image")
    for w in data["warnings"]:
        render.warn(w)
    _warn_findings(s)
    raise typer.Exit(1 if data["findings"] else 0)


def _print_tree(con, value, depth: int) -> None:
    """Nested dicts and lists as an indented outline."""
    pad = "  " * depth
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, val in items:
        label = f"{pad}{key}:" if isinstance(value, dict) else f"{pad}-"
        if isinstance(val, (dict, list)) and val:
            con.print(label, markup=False)
            _print_tree(con, val, depth + 1)
        else:
            con.print(f"{label} {val}", markup=False)


@image_command
def symbols(
    opts: SessionOptions,
    image: Image,
    grep: Annotated[Optional[str], typer.Option("--grep", "-g", help="Regular expression on symbol names.")] = None,
    address: Annotated[Optional[str], typer.Option("--address", "-a", help="Which symbol contains this GVA?")] = None,
    json: Json = False,
):
    """List a guest kernel's symbols at their runtime (KASLR-slid) addresses."""
    from ..errors import ExitCode
    from . import render

    s = opts.open(image)
    k = s.vm(opts.vm).kernel
    if address is not None:
        va = parse_int(address, "--address")
        hit = k.lookup(va)
        row = {"address": f"{va:#x}", "symbol": hit[0] if hit else None, "offset": hit[1] if hit else None}
        if json:
            render.print_json(row)
        else:
            print(f"{va:#x} = {hit[0]}+{hit[1]:#x}" if hit else f"{va:#x}: no symbol")
        raise typer.Exit(0 if hit else int(ExitCode.NOT_FOUND))
    from ..symbols.system_map import symbol_rows

    rows = symbol_rows(k.symbols, grep, k.symbol_slide)
    if json:
        for r in rows:
            render.print_jsonl({"address": f"{r[0]:#018x}", "type": r[1], "name": r[2]})
    else:
        sys.stdout.writelines(f"{r[0]:016x} {r[1]} {r[2]}\n" for r in rows)
    if grep and not rows:
        raise typer.Exit(int(ExitCode.NOT_FOUND))


def register(app: typer.Typer) -> None:
    for fn in (ps, pstree, translate, struct, read, info, symbols):
        app.command(fn.__name__)(fn)
