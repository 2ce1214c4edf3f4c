"""Commands that read guest memory: ps, pstree, translate, struct, read, info, symbols.

Thin: each command opens a Session, calls library code, and renders.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import Image, Json, SessionOptions, image_command, parse_int

def _hpa(vm, gva):
    from ..errors import ArmvmiError

    try:
        return vm.to_host(gva)[-1][1]
    except ArmvmiError:
        return None


@image_command
def ps(
    opts: SessionOptions,
    image: Image,
    threads: Annotated[bool, typer.Option("--threads", "-t", help="Also list every thread of each process.")] = False,
    no_cross_view: Annotated[bool, typer.Option("--no-cross-view", help="Skip the PID IDR cross-check.")] = False,
    record_pages: Annotated[Optional[Path], typer.Option("--record-pages", help="Write the physical pages this run reads to FILE (for `snapshot pack --pages-from`).")] = None,
    json: Json = False,
):
    """List the processes of each VM (task list, cross-checked with the PID IDR)."""
    from ..errors import ExitCode
    from ..linux.ps import ps as run_ps
    from . import render

    s = opts.open(image, record_pages=record_pages)
    results = []
    for v in s.select(opts.vm):
        k = v.kernel
        res = run_ps(k, threads=threads, cross_view=not no_cross_view)
        for t in res.tasks + res.hidden:
            t.task_struct_hpa = _hpa(v, t.task_struct)
        results.append((v, k, res))
    s.save_recorded_pages()
    unused = s.unused_system_maps() if opts.vm is None else []
    code = ExitCode.OK
    if any(r.hidden or r.unlisted_in_idr for _, _, r in results):
        code = ExitCode.FINDINGS
    if any(not r.complete for _, _, r in results):
        code = ExitCode.PARTIAL
    if json:
        render.print_json(
            {
                "image": str(image),
                "vms": [
                    {
                        "vm": v.vm_id,
                        "release": k.info.release,
                        "complete": r.complete,
                        "problems": r.problems,
                        "cross_view": r.cross_view,
                        "tasks": [t.to_dict() for t in r.tasks],
                        "hidden": [t.to_dict() for t in r.hidden],
                        "not_in_pid_idr": [t.to_dict() for t in r.unlisted_in_idr],
                    }
                    for v, k, r in results
                ],
                "unused_system_maps": unused,
                "warnings": s.warnings,
            }
        )
        raise typer.Exit(int(code))
    from rich.table import Table

    con = render.console()
    for v, k, r in results:
        title = f"{v.label}: Linux {k.info.release or '?'}"
        tab = Table(title=title, title_justify="left", show_lines=False)
        for col, just in (("PID", "right"), ("PPID", "right"), ("TGID", "right"), ("UID", "right"), ("S", "left"), ("K", "left"), ("COMM", "left"), ("START(s)", "right"), ("TASK (GVA)", "left"), ("TASK (HPA)", "left")):
            tab.add_column(col, justify=just, no_wrap=True)
        hidden_addrs = {t.task_struct for t in r.hidden}
        rows = r.tasks + r.hidden
        for t in rows:
            mark = " [red](hidden)[/red]" if t.task_struct in hidden_addrs else ""
            comm = t.comm.replace("[", "\\[")
            tab.add_row(
                str(t.pid),
                str(t.ppid),
                str(t.tgid),
                "" if t.uid is None else str(t.uid),
                t.state,
                "k" if t.kernel_thread else "",
                comm + mark,
                "" if t.start_time is None else f"{t.start_time / 1e9:.2f}",
                f"{t.task_struct:#x}",
                render.hexaddr(t.task_struct_hpa) or "-",
            )
        con.print(tab)
        for p in r.problems:
            render.warn(f"{v.label}: {p}")
        if not r.complete:
            render.warn(f"{v.label}: the task list could not be walked completely; the list above is PARTIAL")
        for t in r.hidden:
            render.warn(f"{v.label}: pid {t.pid} ({t.comm}) is in the PID IDR but not in the task list: hidden process?")
        for t in r.unlisted_in_idr:
            render.warn(f"{v.label}: pid {t.pid} ({t.comm}) is in the task list but not in the PID IDR")
    for p in unused:
        render.warn(f"--system-map {p} fits none of the kernels in this image")
    for w in s.warnings:
        render.warn(w)
    raise typer.Exit(int(code))


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
        render.print_json({"vms": [{"vm": v.vm_id, "tree": tree} for v, _, tree in out]})
        return
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
    from ..errors import ExitCode, UsageError
    from ..translate import translate_address
    from . import render

    if (gva is None) == (gpa is None):
        raise UsageError("give exactly one of --gva or --gpa")
    s = opts.open(image)
    v = s.vm(opts.vm)
    text = gva if gva is not None else gpa
    addrs = [line.strip() for line in sys.stdin if line.strip()] if text == "-" else [text]
    kind = "gva" if gva is not None else "gpa"
    results = [translate_address(v, a, kind, pid) for a in addrs]
    failed = any(r["fault"] for r in results)
    if json:
        if len(results) == 1 and text != "-":
            render.print_json(results[0])
        else:
            for r in results:
                render.print_jsonl(r)
    else:
        _print_translations(results)
    raise typer.Exit(int(ExitCode.NOT_FOUND if failed else ExitCode.OK))


def _print_translations(results):
    from rich.table import Table

    from . import render

    con = render.console()
    for r in results:
        con.print(f"[bold]{r['input']}[/bold] ({r['kind']}{', ' + r['symbol'] if r.get('symbol') else ''})")
        for walk in r["walks"]:
            tab = Table(title=f"{walk['layer']}: {walk['input']}", title_justify="left")
            for c in ("level", "table", "in layer", "index", "descriptor", "meaning"):
                tab.add_column(c, no_wrap=True)
            for st in walk["steps"]:
                tab.add_row(str(st.get("level")), st.get("table_address", ""), st.get("table_layer", ""), str(st.get("index", "")), st.get("descriptor", ""), st.get("meaning", ""))
            con.print(tab)
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
):
    """Read memory at a guest virtual, guest physical or host physical address."""
    from ..errors import UsageError
    from . import render

    if gva + gpa + hpa > 1:
        raise UsageError("give at most one of --gva, --gpa, --hpa")
    n = parse_int(length, "LEN")
    if n is None or n < 0 or n > (1 << 30):
        raise UsageError(f"LEN {length!r} must be between 0 and 1 GiB")
    s = opts.open(image)
    if hpa:
        layer, addr = s.memory, parse_int(address, "ADDRESS")
    elif gpa:
        layer, addr = s.vm(opts.vm).gphys, parse_int(address, "ADDRESS")
    else:
        k = s.vm(opts.vm).kernel
        layer, addr = k.vmem, k.eval_address(address)
    data = layer.read(addr, n)
    if output is not None:
        output.write_bytes(data)
        render.console(stderr=True).print(f"wrote {len(data)} bytes to {output}")
    else:
        print(render.hexdump(data, addr))


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
        return
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
