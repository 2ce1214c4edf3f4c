"""The EL3 side on the command line: ``armvmi events``, ``armvmi events import``, ``armvmi vms``.

Exit codes: 0 clean; 1 when replay found anomalies of severity warning or worse
(sequence gaps, CRC failures, rejected or suspicious SMCs, a torn tail...); 2 bad input.
Library code (construct, rich) is imported inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core

from .options import Events, Json, SessionOptions, image_command, parse_int

Until = Annotated[Optional[int], typer.Option("--until", help="Replay only up to this sequence number (the registry as it was then).")]


class _EventsGroup(typer.core.TyperGroup):
    """`events LOG` and `events import IN OUT`: a subcommand name in first position wins over LOG."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.allow_interspersed_args = True  # `events LOG --json`: options may follow LOG

    def parse_args(self, ctx, args):
        if args and args[0] in self.commands:
            # Parse the group's own options with no arguments (LOG stays None), as click's
            # a plain command would (typer's vendored click: TyperGroup derives from Command).
            saved, self.no_args_is_help = self.no_args_is_help, False
            try:
                super(typer.core.TyperGroup, self).parse_args(ctx, [])
            finally:
                self.no_args_is_help = saved
            ctx._protected_args, ctx.args = args[:1], args[1:]
            return ctx.args
        return super().parse_args(ctx, args)


events_app = typer.Typer(
    cls=_EventsGroup,
    invoke_without_command=True,
    no_args_is_help=True,
    rich_markup_mode=None,
)


def resolve_log(target: Path, events: Optional[Path] = None):
    """(source, where) for a LOG or an IMAGE (its embedded or sibling log)."""
    from ..errors import UsageError
    from ..firmware.smclog import is_smclog

    from ..inputs import check_input

    if events is not None:
        check_input(events, "--events")
        return str(events), f"--events {events}"
    check_input(target, block_ok=True)
    if is_smclog(target):
        return str(target), str(target)
    from ..errors import ArmvmiError
    from ..memory.base import open_image
    from ..memory.events import find_event_log

    try:
        mem = open_image(target)
    except ArmvmiError:  # not an image we can open: its sibling log may still be there
        mem = None
    src, where = find_event_log(target, mem, None)
    if src is not None:
        return src, where
    raise UsageError(f"{target} is not an event log, and no event log goes with it (give --events, or put "
                     f"{target.name}.smclog next to it)")


def _fmt_time(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def _print_step_text(step, write) -> None:
    from ..firmware.report import context_text, function_name, step_event, step_verdict

    if step.record is None:
        for a in step.anomalies:
            write(f"{'-':>8} {'':>20} {'':>3} {'':<10} {'':<24} {'':<16} {'!' + a.severity:<9} {a.kind}: {a.reason}\n")
        return
    rec = step.record
    world = {0: "non-secure", 1: "secure"}.get(rec.caller, f"caller={rec.caller}")
    fn = function_name(rec.x0)
    write(f"{rec.seq:>8} {_fmt_time(rec.timestamp_ns):>20} {rec.cpu:>3} {world:<10} {fn:<24} {step_event(step):<16} "
          f"{step_verdict(step):<9} {context_text(rec)}\n")
    for a in step.anomalies:
        write(f"{'':>8} ! {a.severity}: {a.kind}: {a.reason}\n")


@events_app.callback()
def events(
    ctx: typer.Context,
    log: Annotated[Optional[Path], typer.Argument(help="Event log (.smclog), or a memory image whose log to use.", show_default=False)] = None,
    json_out: Json = False,
    vm: Annotated[Optional[str], typer.Option("--vm", help="Only records about this vm_id.")] = None,
    event: Annotated[Optional[str], typer.Option("--event", help="Only this event (VM_CREATE, VM_RUN_CHANGE, DRIVER_INIT, ...).")] = None,
    anomalies: Annotated[bool, typer.Option("--anomalies", help="Only records and file problems with anomalies.")] = False,
    until: Until = None,
    events_opt: Events = None,
):
    """Replay LOG (or IMAGE's log): seq, time, cpu, caller world, function id, event, verdict, decoded context.

    --json prints JSON Lines: one object per record ("type": "record", raw fields seq, timestamp_ns, cpu,
    caller, rflags, crc32, x0..x7, ret, then decoded fields), "type": "anomaly" lines for file problems and a
    final "type": "summary" line; `armvmi events import` reads it back. Exit code 1 when anomalies were found.
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..errors import UsageError

    if log is None:
        raise UsageError("events: give an event log or an image")
    from ..firmware import report
    from ..firmware.replay import Replay

    vm_id = parse_int(vm, "--vm")
    want_event = event.upper().replace("-", "_") if event else None
    if want_event is not None:
        import re

        from ..firmware.vmi_service import EVENT_NAMES

        names = sorted(EVENT_NAMES.values()) + ["GET_INFORMATION", "PSCI_VERSION"]
        if want_event not in names and not re.fullmatch(r"EVENT_0X[0-9A-F]+", want_event):
            raise UsageError(f"--event {event!r}: no such event (valid: {', '.join(names)})")
    source, where = resolve_log(log, events_opt)
    rp = Replay(source, until)
    out = sys.stdout
    write = out.write
    if not json_out:
        write(f"# {where}: boot {rp.reader.header.boot_id}, {rp.reader.header.record_size}-byte records\n")
        write(f"{'SEQ':>8} {'TIME(s)':>20} {'CPU':>3} {'WORLD':<10} {'FUNCTION':<24} {'EVENT':<16} {'VERDICT':<9} CONTEXT\n")
    else:
        write(report.json_line(rp.reader.header.as_dict()))
    for step in rp:
        if anomalies and not step.anomalies:
            continue
        if step.record is None:
            if vm_id is not None or want_event:
                continue
        else:
            if vm_id is not None and report.step_vm_id(step) != vm_id:
                continue
            if want_event and report.step_event(step).upper().replace("-", "_") != want_event:
                continue
        if json_out:
            write(report.json_line(report.step_row(step)))
        else:
            _print_step_text(step, write)
    res = rp.result
    summary = report.anomaly_summary(res)
    if json_out:
        write(report.json_line({"type": "summary", **summary}))
    else:
        write(f"# {summary['records_seen']} records: {summary['records_ok']} ok, {summary['records_rejected']} rejected,"
              f" {summary['records_corrupt']} corrupt; {summary['anomalies']} anomalies"
              + (f" ({', '.join(f'{k} {v}' for k, v in summary['by_kind'].items())})" if summary["by_kind"] else "")
              + (f"; stopped after seq {until}" if res.stopped_early else "") + "\n")
    out.flush()
    if res.has_findings:
        raise typer.Exit(1)


@events_app.command("import")
def events_import(
    jsonl: Annotated[Path, typer.Argument(help="JSON Lines (as `armvmi events LOG --json` prints; '-' for stdin).", show_default=False)],
    out: Annotated[Path, typer.Argument(help="The .smclog to write.", show_default=False)],
    keep_crc: Annotated[bool, typer.Option("--keep-crc", help="Write each record's crc32 as given (default: recompute).")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite OUT if it exists.")] = False,
):
    """Build a .smclog from JSON Lines, so analysts can script and hand-craft logs."""
    from ..errors import UsageError
    from ..firmware.smclog import import_jsonl
    from ..inputs import check_input
    from ..output import Output

    stdin = str(jsonl) == "-"
    if not stdin:
        check_input(jsonl, "JSONL")
    with Output(out, [] if stdin else [jsonl], force) as o:
        if stdin:
            n = import_jsonl(sys.stdin, o.file(), keep_crc)
        else:
            with open(jsonl, encoding="utf-8", errors="replace") as f:
                n = import_jsonl(_lines(f, jsonl), o.file(), keep_crc)
    print(f"wrote {n} records to {out}")


def _lines(f, name):
    """The input's lines; a read error names the input, not the output."""
    from ..errors import UsageError
    from ..inputs import os_reason

    try:
        yield from f
    except OSError as e:
        raise UsageError(f"{name}: cannot read: {os_reason(e)}") from None


@image_command
def vms(
    opts: SessionOptions,
    target: Annotated[Path, typer.Argument(help="Memory image or event log (.smclog).", show_default=False)],
    no_history: Annotated[bool, typer.Option("--no-history", help="Live VMs only.")] = False,
    no_memory: Annotated[bool, typer.Option("--no-memory", help="Only the replayed registry: do not look for VMs in host memory.")] = False,
    json_out: Json = False,
):
    """The VMs: the EL3 registry replayed from the event log (host record, live VMs with vm_id, slot, state,
    struct kvm VA, VMID, stage-2 base and geometry, guest RAM, vCPUs with their TTBRs, history, anomaly
    summary) and, for an image, the VMs KVM holds in host memory (vm_list), with or without a log.
    Exit code 1 when the log has anomalies or memory holds a VM the log does not."""
    from ..errors import UsageError
    from ..firmware import report
    from ..firmware.replay import replay
    from ..firmware.smclog import is_smclog

    is_log = target.is_file() and is_smclog(target)
    res = where = None
    try:
        source, where = resolve_log(target, opts.events)
        res = replay(source, opts.until)
    except UsageError:
        if is_log or opts.events is not None:
            raise
    rows = report.registry_rows(res, history=not no_history) if res is not None else []
    mem_rows, mem_why = [], None
    if not is_log and not no_memory:
        from ..host.vms import try_host_vm_rows

        session = opts.open(target)
        mem_rows, mem_why = try_host_vm_rows(session, opts.host_system_map)
    if res is None:
        for r in mem_rows:
            r["in_log"] = None  # no log to be in
    if res is None and not mem_rows:
        raise UsageError(f"{target}: no event log goes with it and no VM was found in its memory"
                         + (f" ({mem_why})" if mem_why else ""))
    hidden = [r for r in mem_rows if res is not None and not r["in_log"]]
    if json_out:
        from .render import print_json

        doc = {"log": where, "vms": rows, "memory_vms": mem_rows, "memory_error": mem_why}
        if res is not None:
            doc.update(boot_id=str(res.header.boot_id), host=report.host_row(res), summary=report.anomaly_summary(res),
                       anomalies=[a.as_dict() for a in res.anomalies])
        print_json(report.json_safe(doc))
    else:
        from .render import console
        from .verify_cmds import render_memory_vms

        if res is not None:
            render_registry(res, rows, where)
        else:
            console().print("event log: none (VMs from host memory only)")
        if mem_rows:
            render_memory_vms(console(), mem_rows)
        elif mem_why and not is_log and not no_memory:
            console(stderr=True).print(f"VMs in host memory not listed: {mem_why}", markup=False)
    if (res is not None and res.has_findings) or hidden:
        raise typer.Exit(1)


def render_registry(res, rows, where: str) -> None:
    """Text rendering of `vms` (rich tables); the lead may reuse it with extra rows."""

    from ..firmware import report
    from .render import console

    con = console()
    con.print(f"event log: {where} (boot {res.header.boot_id})" + (f", replayed up to seq {res.until}" if res.until is not None else ""))
    host = report.host_row(res)
    if host:
        t = host["tcr_decoded"]
        con.print(f"host (epoch {host['epoch']}, DRIVER_INIT seq {host['seq']}): PHYS_OFFSET {host['phys_offset']:#x}"
                  f"  PAGE_OFFSET {host['page_offset']:#x}  kimage_voffset {host['kimage_voffset']:#x}"
                  f"  TTBR1 {host['ttbr1']:#x}  TCR {host['tcr']:#x} (VA {t['va_bits_ttbr1']}b {t['granule_ttbr1_name']})"
                  f"  {'VHE' if host['vhe'] else 'nVHE'}")
    else:
        con.print("host: no DRIVER_INIT in the log")
    for live in (True, False):
        sel = [r for r in rows if r["live"] == live]
        if not sel:
            continue
        from ..view import Column
        from .views import show_table

        cols = (Column("vm_id", "vm_id"), Column("slot", "slot", priority=8), Column("state", "state", priority=4),
                Column("kvm", "struct kvm", priority=2), Column("vmid", "VMID", priority=6),
                Column("s2", "stage-2 base", priority=1), Column("geo", "IPA/granule/start", priority=7),
                Column("ram", "guest RAM", priority=3), Column("vcpu", "vCPU", priority=9), Column("run", "run", priority=10),
                Column("ttbr0", "TTBR0_EL1", priority=5), Column("ttbr1", "TTBR1_EL1", priority=5), Column("seq", "seq", priority=11))
        table = []
        for r in sel:
            geo = f"{r['ipa_bits']}b {r['granule']} L{r['start_level']}" + (
                f"x{r['concatenated_tables']}" if (r["concatenated_tables"] or 1) > 1 else "")
            seqs = f"{r['created_seq']}..{r['ended_seq'] if r['ended_seq'] is not None else r['last_seq']}"
            first = [str(r["vm_id"]), "-" if r["slot"] is None else str(r["slot"]), r["state"],
                     "?" if r["struct_kvm_va"] is None else f"{r['struct_kvm_va']:#x}", str(r["vmid"]),
                     f"{r['stage2_base']:#x}", geo, f"{r['ram_base']:#x}+{r['ram_size']:#x}"]
            vcpus = r["vcpus"] or [None]
            for i, c in enumerate(vcpus):
                lead = first if i == 0 else [""] * len(first)
                cells = ["-", "", "", ""] if c is None else [str(c["index"]), c["run_state"], f"{c['ttbr0']:#x}", f"{c['ttbr1']:#x}"]
                table.append([*lead, *cells, seqs if i == 0 else ""])
        show_table("live VMs" if live else "history (migrated away / destroyed)", cols, table)
    if not rows:
        con.print("no VMs in the registry")
    s = report.anomaly_summary(res)
    con.print(f"{s['records_seen']} records: {s['records_ok']} ok, {s['records_rejected']} rejected, "
              f"{s['records_corrupt']} corrupt; {s['anomalies']} anomalies")
    shown = [a for a in res.anomalies if a.severity != "info"][:20]
    for a in shown:
        where_ = f"seq {a.seq}" if a.seq is not None else "file"
        con.print(f"  [{a.severity}] {where_}: {a.kind}: {a.reason}", markup=False)
    if s["anomalies"] > len(shown):
        con.print(f"  ... see `armvmi events LOG --anomalies` for all {s['anomalies']}")


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")
    app.command("vms")(vms)
