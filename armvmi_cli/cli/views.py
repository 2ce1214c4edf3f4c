"""Render any :class:`armvmi_cli.view.View` the one way every view is shown.

- a terminal: one rich table per VM; on a narrow terminal, columns are dropped
  by priority rather than cutting an address or a name;
- a pipe or file: plain aligned columns (same columns, same order, nothing
  cut), which cost nothing to lay out;
- ``--json``: ``{"image", "view", "vms": [{"vm", "vm_id", "label", "release",
  "complete", "problems", "<view>": [records]}], "findings", "warnings"}``;
- ``--jsonl``: one record per line, each with its ``vm`` and ``vm_id``.

Exit code: 1 when the view produced findings, else 5 when any part is
partial, else 0.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Annotated, List, Optional

import typer

Jsonl = Annotated[bool, typer.Option("--jsonl", help="One JSON record per line (each with its vm).")]
Pids = Annotated[Optional[List[int]], typer.Option("--pid", help="Only this process (repeatable).")]


@dataclass
class VmView:
    """One VM's part of a view's output."""

    vm: object  # session VM
    release: str | None = None
    result: object = None  # ViewResult
    error: str | None = None  # the kernel could not be read at all

    @property
    def name(self) -> str:
        return self.vm.name


@dataclass
class ViewOutput:
    view: object
    image: str
    parts: list[VmView] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    session_findings: list = field(default_factory=list)  # met while listing the VMs (a VM the log hides)

    @property
    def findings(self):
        return list(self.session_findings) + [f for p in self.parts if p.result is not None for f in p.result.findings]

    @property
    def complete(self) -> bool:
        return all(p.error is None and p.result.complete for p in self.parts)

    def exit_code(self) -> int:
        from ..errors import ExitCode

        if any(f.severity != "info" for f in self.findings):
            return int(ExitCode.FINDINGS)
        return int(ExitCode.OK if self.complete else ExitCode.PARTIAL)


def collect_view(session, view, vm_id=None, **params) -> ViewOutput:
    """Run ``view`` over the selected VMs.  A VM whose kernel cannot be read
    is an error when it was asked for by ``--vm``, else a partial mark."""
    from ..errors import ArmvmiError

    out = ViewOutput(view, str(session.image_path))
    targets = session.select(vm_id)
    for vm in targets:
        part = VmView(vm)
        try:
            k = vm.kernel
        except ArmvmiError as e:
            if vm_id is not None or len(targets) == 1:
                raise
            part.error = f"kernel not readable: {e}"
            out.parts.append(part)
            continue
        part.release = k.info.release
        part.result = view.collect(k, **params)
        for f in part.result.findings:
            if f.vm is None:
                f.vm = vm.name
        out.parts.append(part)
    damage = getattr(session.memory, "damage", None)
    if damage is not None:  # a damaged container (.armvmi chunk CRC): bad input, not a partial answer
        raise damage
    out.session_findings = list(session.findings)
    out.warnings = list(session.warnings)
    for p in session.unused_system_maps() if vm_id is None else ():
        out.warnings.append(f"--system-map {p} fits none of the kernels in this image")
    return out


def as_json(out: ViewOutput) -> dict:
    from ..view import to_json

    vms = []
    for p in out.parts:
        d = {"vm": p.name, "vm_id": p.vm.json_vm_id, "label": p.vm.label, "release": p.release,
             "complete": p.error is None and p.result.complete,
             "problems": ([p.error] if p.error else list(p.result.problems)),
             out.view.name: [] if p.result is None else [to_json(r) for r in p.result.records]}
        vms.append(d)
    return {"image": out.image, "view": out.view.name, "vms": vms,
            "findings": [f.to_dict() for f in out.findings], "warnings": out.warnings}


def jsonl_rows(out: ViewOutput):
    from ..view import to_json

    for p in out.parts:
        if p.result is None:
            continue
        for r in p.result.records:
            yield {"vm": p.name, "vm_id": p.vm.json_vm_id, **to_json(r)}


def render(out: ViewOutput, json: bool = False, jsonl: bool = False, title: str | None = None) -> int:
    """Print ``out`` in the form asked for; returns the exit code."""
    from . import render as r

    if json:
        r.print_json(as_json(out))
    elif jsonl:
        for row in jsonl_rows(out):
            r.print_jsonl(row)
    else:
        cols = out.view.columns
        for p in out.parts:
            head = f"{p.vm.label}: Linux {p.release or '?'}"
            if p.result is None:
                continue
            table(head if title is None else f"{head}: {title}", cols, p.result.records)
    for p in out.parts:
        for msg in ([p.error] if p.error else p.result.problems):
            r.warn(f"{p.vm.label}: {msg}")
        if p.result is not None and not p.result.complete:
            r.warn(f"{p.vm.label}: the {out.view.name} could not be read completely; the result is PARTIAL")
    if not (json or jsonl):
        for f in out.findings:
            r.warn(f"{f.severity} {f.kind} ({f.vm}): {f.message}")
    for w in out.warnings:
        r.warn(w)
    return out.exit_code()


def table(title: str, columns, records, stream=None) -> None:
    """Records as a table: rich on a terminal, plain columns otherwise."""
    from ..view import cell

    stream = stream or sys.stdout
    rows = [[cell(rec, c) for c in columns] for rec in records]
    if not stream.isatty():
        plain_table(title, columns, rows, stream)
        return
    rich_table(title, columns, rows)


def show_table(title: str, columns, rows, stream=None) -> None:
    """Rows already as text under declared :class:`Column` s: the one table
    printer for hand-built tables too (translate, verify, vms, events,
    profiles), so none cuts an address or a name on a narrow terminal."""
    stream = stream or sys.stdout
    rows = [[("" if v is None else str(v)) for v in row] for row in rows]
    if not stream.isatty():
        plain_table(title, columns, rows, stream)
        return
    rich_table(title, columns, rows)


def plain_table(title, columns, rows, stream) -> None:
    widths = [len(c.title) for c in columns]
    for row in rows:
        for i, v in enumerate(row):
            if len(v) > widths[i]:
                widths[i] = len(v)
    lines = [f"# {title}"]

    def fmt(vals):
        parts = [(v.rjust(w) if c.align == "right" else v.ljust(w)) for v, w, c in zip(vals, widths, columns)]
        return "  ".join(parts).rstrip()

    lines.append(fmt([c.title for c in columns]))
    lines.extend(fmt(row) for row in rows)
    stream.write("\n".join(lines) + "\n")


TEXT_MIN = 24


def fit_columns(columns, rows, width: int) -> list[int]:
    """Indices of the columns to show in ``width`` characters: drop the
    least important (highest priority number, rightmost first) until the
    rest fit; priority-0 columns always stay."""
    # Free text (kind "text": a message, a descriptor's meaning) wraps at words; it needs little width.
    need = [max([len(columns[i].title)] + [len(r[i]) for r in rows]) for i in range(len(columns))]
    need = [min(n, TEXT_MIN) if columns[i].kind == "text" else n for i, n in enumerate(need)]
    keep = list(range(len(columns)))

    def total():
        return sum(need[i] for i in keep) + 3 * len(keep) + 1

    while total() > width:
        droppable = [i for i in keep if columns[i].priority > 0]
        if not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    return keep


def rich_table(title, columns, rows) -> None:
    from rich.markup import escape
    from rich.table import Table

    from . import render as r

    con = r.console()
    keep = fit_columns(columns, rows, con.width)
    tab = Table(title=escape(title), title_justify="left")
    for i in keep:
        c = columns[i]
        # Addresses and names are never cut: the table folds whole columns instead.
        wrap = c.kind == "text"
        tab.add_column(c.title, justify=c.align, no_wrap=not wrap, overflow="fold",
                       min_width=None if wrap else max([len(c.title)] + [len(r[i]) for r in rows]))
    for row in rows:
        tab.add_row(*(escape(row[i]) for i in keep))
    con.print(tab)
    dropped = [columns[i].title for i in range(len(columns)) if i not in keep]
    if dropped:
        r.warn(f"terminal too narrow: columns {', '.join(dropped)} not shown (widen it, pipe the output, or use --json)")


def run_view(opts, image, view, json: bool = False, jsonl: bool = False, **params) -> None:
    """The whole of a view command: open, collect, render, exit."""
    from ..errors import UsageError

    if json and jsonl:
        raise UsageError("give at most one of --json and --jsonl")
    s = opts.open(image)
    out = collect_view(s, view, opts.vm, **params)
    raise typer.Exit(render(out, json=json, jsonl=jsonl))

