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
    con.print(f"event log: {session.events_source or 'none (memory-side checks only)'}", markup=False)
    if rep.findings:
        from ..view import Column
        from .views import show_table

        cols = (Column("severity", "severity"), Column("kind", "kind"), Column("vm", "vm", priority=1),
                Column("finding", "finding", kind="text"))
        show_table(f"{len(rep.findings)} finding(s)", cols,
                   [[f.severity, f.kind, "-" if f.vm_id is None else str(f.vm_id), f.message] for f in rep.findings])
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
    from ..view import Column
    from .views import show_table

    cols = (Column("vm_id", "vm_id"), Column("struct_kvm", "struct kvm"), Column("vmid", "VMID", "right", priority=3),
            Column("vttbr", "VTTBR", priority=1), Column("vtcr", "VTCR", priority=4), Column("ipa", "IPA/start", priority=5),
            Column("ram", "guest RAM", priority=2), Column("vmm", "VMM", priority=6), Column("vcpus", "vCPUs", "right", priority=7),
            Column("in_log", "in log"))
    show_table("VMs in host memory (KVM vm_list)", cols, [
        [r["label"] if r["vm_id"] is None else str(r["vm_id"]), f"{r['struct_kvm']:#x}", r["vmid"], f"{r['vttbr']:#x}",
         f"{r['vtcr']:#x}", f"{r['ipa_bits']}b L{r['start_level']}",
         "-" if r["ram_base"] is None else f"{r['ram_base']:#x}+{r['ram_size']:#x}", f"{r['vmm_pid']} {r['vmm_comm'] or '?'}",
         len(r["vcpus"]), "yes" if r["in_log"] else "-" if r["in_log"] is None else "NO"] for r in rows])
    if rows:
        con.print(f"host: {'VHE' if rows[0]['vhe'] else 'nVHE' if rows[0]['vhe'] is False else 'VHE?'} "
                  f"({rows[0]['vhe_source']})", markup=False)
    for r in rows:
        for p in r["problems"]:
            con.print(f"  {r['label']}: {p}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
