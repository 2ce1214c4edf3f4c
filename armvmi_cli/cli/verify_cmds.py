"""``armvmi verify``: the event log against host memory, and the cross-views.

Exit codes: 0 nothing found; 1 findings (severity warning or worse); 2 bad
input; 5 no findings but KVM's vm_list could not be read (nothing compared).  Library code is imported inside
the command (start-up stays light).
"""

from __future__ import annotations

from typing import Annotated

import typer

from .options import Image, Json, SessionOptions, image_command

SEVERITY_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "dim"}


@image_command
def verify(
    opts: SessionOptions,
    image: Image,
    no_guests: Annotated[bool, typer.Option("--no-guests", help="Skip the guest-side checks (guest kernels' cross-views).")] = False,
    json: Json = False,
):
    """Compare the event log's VMs with KVM's vm_list in host memory, VM by VM (hidden or phantom VMs,
    VTTBR/VTCR/struct kvm/RAM/vCPU disagreements, records after the capture, sequence gaps), and run the
    cross-views (task list vs PID IDR, sys_call_table) on the host and every guest.  Exit 1 on findings."""
    from ..host.verify import verify_report
    from .render import console, print_json

    s = opts.open(image)
    rep = verify_report(s, opts.host_system_map, guests=not no_guests)
    if json:
        print_json({"image": str(image), "events": s.events_source or None, **rep.to_dict()})
    else:
        render_report(console(), rep, s)
    if rep.has_findings:
        raise typer.Exit(1)
    if rep.partial:
        raise typer.Exit(5)


def render_report(con, rep, session) -> None:
    from rich.markup import escape
    from rich.table import Table

    con.print(f"event log: {session.events_source or 'none (memory-side checks only)'}", markup=False)
    if rep.findings:
        t = Table(title=f"{len(rep.findings)} finding(s)", title_justify="left")
        for col in ("severity", "kind", "vm", "finding"):
            t.add_column(col, no_wrap=col != "finding", overflow="fold")
        for f in rep.findings:
            style = SEVERITY_STYLE.get(f.severity, "")
            t.add_row(f"[{style}]{f.severity}[/]" if style else f.severity, f.kind,
                      "-" if f.vm_id is None else escape(str(f.vm_id)), escape(f.message))
        con.print(t)
    else:
        partial = ("no findings, but the log could not be compared with memory" if session.events is not None else
                   "no findings, but no VM list could be read from memory")
        con.print(f"[yellow]{partial}[/]" if rep.partial else
                  "[green]no findings[/]" + (f" ({len(rep.skipped)} check(s) skipped, see below)" if rep.skipped else
                                             ": the event log and memory agree"))
    for line in rep.checked:
        con.print(f"  ok: {line}", markup=False)
    for line in rep.skipped:
        con.print(f"  skipped: {line}", markup=False)


def render_memory_vms(con, rows: list[dict]) -> None:
    """The VMs found in host memory (``host.vms.host_vm_rows``) as a table, for ``armvmi vms``."""
    from rich.table import Table

    t = Table(title="VMs in host memory (KVM vm_list)", title_justify="left")
    for col in ("vm_id", "struct kvm", "VMID", "VTTBR", "VTCR", "IPA/start", "guest RAM", "VMM", "vCPUs", "in log"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        ram = "-" if r["ram_base"] is None else f"{r['ram_base']:#x}+{r['ram_size']:#x}"
        t.add_row(r["label"] if r["vm_id"] is None else str(r["vm_id"]), f"{r['struct_kvm']:#x}", str(r["vmid"]),
                  f"{r['vttbr']:#x}", f"{r['vtcr']:#x}", f"{r['ipa_bits']}b L{r['start_level']}", ram,
                  f"{r['vmm_pid']} {r['vmm_comm'] or '?'}", str(len(r["vcpus"])), "yes" if r["in_log"] else "-" if r["in_log"] is None else "NO")
    con.print(t)
    if rows:
        con.print(f"host: {'VHE' if rows[0]['vhe'] else 'nVHE' if rows[0]['vhe'] is False else 'VHE?'} "
                  f"({rows[0]['vhe_source']})", markup=False)
    for r in rows:
        for p in r["problems"]:
            con.print(f"  {r['label']}: {p}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
