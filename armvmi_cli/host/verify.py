"""``verify``: the event log against what memory holds, VM by VM, and the
guest-side cross-views.

The threat model is a hostile host: its front-end's log may be forged,
replayed, truncated or absent.  Memory (KVM's ``vm_list`` in the host kernel,
each guest's own kernel) is the reference; every disagreement is a
:class:`Finding` with a severity and a stable ``kind``:

========================  ========  ====================================================
kind                      severity  meaning
========================  ========  ====================================================
vm-list-damaged           warning   vm_list could not be walked to its end (cut, cycle)
hidden-vm                 critical  on vm_list, never created (or destroyed) in the log
phantom-vm                error     live in the log, no struct kvm at its address
vm-destroyed              error     live in the log, its struct kvm is in memory but off
                                    vm_list (destroyed after the log ended: a stale or
                                    truncated log — or unlinked to hide it)
kvm-address-mismatch      error     paired by stage 2, struct kvm address differs
vttbr-mismatch            error     VMID or stage-2 base differs
vtcr-mismatch             error     stage-2 geometry differs
ram-mismatch              error     the log's guest RAM is not what the memslots hold
vcpu-mismatch             warning   a vCPU the log names is not in memory (or vice versa)
vcpu-registers-mismatch   warning   TTBR1/TCR differ (info: only TTBR0, a context switch)
host-mismatch             error     DRIVER_INIT disagrees with the host kernel in memory
log-after-capture         error     records stamped after the image was taken
sequence-gap              warning   records missing from the log
log-anomaly               (as log)  any other replay anomaly of warning or worse
hidden-process            critical  in the PID IDR, unlinked from the task list
unlisted-process          warning   in the task list, not in the PID IDR
syscall-hook              critical  a system call table entry that is not a syscall wrapper in
                                    kernel text (linux/syscalls.py)
========================  ========  ====================================================

Checks that cannot run (no log, no symbols for a guest, no readable clock)
are listed in ``VerifyReport.skipped``, never silently passed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import ArmvmiError

SEVERITIES = ("info", "warning", "error", "critical")
CLOCK_SLACK_NS = 2_000_000_000  # the timekeeper lags capture by up to a tick (longer if NO_HZ idle)
S2_BASE = 0x0000_FFFF_FFFF_FFFE
TTBR_BADDR = 0x0000_FFFF_FFFF_FFFE


@dataclass
class Finding:
    severity: str
    kind: str
    vm_id: object  # the log's vm_id, a memory label ("kvm-97"), "host", or None
    message: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON by the one convention: ``vm`` a string label, ``vm_id`` the registry's number or null."""
        d = asdict(self)
        v = d.pop("vm_id")
        num = v if isinstance(v, int) and not isinstance(v, bool) else None
        return {"severity": d["severity"], "kind": d["kind"], "vm": None if v is None else str(v), "vm_id": num,
                "message": d["message"], "details": d["details"]}


@dataclass
class VerifyReport:
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)  # what was compared and agreed
    skipped: list[str] = field(default_factory=list)  # what could not be checked, and why
    partial: bool = False  # the log-vs-memory comparison itself could not run

    @property
    def has_findings(self) -> bool:
        return any(f.severity != "info" for f in self.findings)

    def add(self, severity, kind, vm_id, message, **details) -> None:
        self.findings.append(Finding(severity, kind, vm_id, message, details))

    def to_dict(self) -> dict:
        return {"findings": [f.to_dict() for f in self.findings], "checked": self.checked, "skipped": self.skipped,
                "partial": self.partial}


def with_events(session, events):
    """A session over the same image with another event log (a path, bytes or
    an already replayed result): the host kernel and the guest kernels found
    in memory are shared, so checking several candidate logs against one
    image locates each kernel once."""
    from ..firmware.replay import ReplayResult, replay
    from ..session import Session

    result = events if isinstance(events, ReplayResult) else replay(events)
    other = Session(session.image_path, session.memory, result, "another event log", session.symopts)
    for attr in ("_armvmi_host", "host_system_map"):
        if hasattr(session, attr):
            setattr(other, attr, getattr(session, attr))
    return other


def verify(session, host_system_map=None, guests: bool = True) -> list[Finding]:
    return verify_report(session, host_system_map, guests).findings


def verify_report(session, host_system_map=None, guests: bool = True, memory_side: bool = True) -> VerifyReport:
    """``memory_side=False``: only the log-vs-memory comparison (``armvmi check``
    runs the cross-views itself, on every kernel)."""
    from .kernel import host_kernel
    from .kvm import vm_list
    from .vms import memory_vms, pair

    rep = VerifyReport()
    hk = host_kernel(session, host_system_map)
    reg = session.registry
    try:
        scan = vm_list(hk)
    except ArmvmiError as e:
        scan = None
        rep.partial = True
        if reg is None:
            # No log and no VM: most likely a plain guest dump, whose own kernel is what was found.
            rep.skipped.append(f"no VM found in memory: this kernel's symbols ({hk.kernel.info.symbols_source}) do "
                               "not name vm_list and KVM's code points at no list of struct kvm (a plain guest "
                               "dump, or a host whose kallsyms lacks KVM: then give its System.map)")
        else:
            rep.skipped.append(f"KVM's vm_list not readable, so the log's VMs are not compared with memory: {e}")
    # Without a log or a VM in memory the one kernel found is the dump's own: a guest, not a host.
    who = "host" if reg is not None or (scan is not None and scan.vms) else "guest"
    for p in scan.problems if scan else ():
        rep.add("warning", "vm-list-damaged", who, p)
    if reg is None:
        rep.skipped.append("no event log: only memory-side checks (cross-views, sys_call_table)")
    if reg is not None:
        _log_anomalies(rep, session.events)
        _log_times(rep, hk, session.events)
    if reg is not None and scan is not None:
        _host_record(rep, hk, scan, reg)
        pairing = pair(reg, scan.vms)
        for rec, m, how in pairing.pairs:
            _compare(rep, hk, rec, m, how, scan.vhe)
        for m in pairing.memory_only:
            _hidden_vm(rep, reg, m)
        for rec in pairing.log_only:
            _missing_vm(rep, hk, rec)
    if memory_side:
        _syscalls(rep, hk.kernel, who)
        _cross_view(rep, hk.kernel, who)
    if guests and memory_side and scan is not None:
        for vm in memory_vms(session, host_system_map):
            try:
                k = vm.kernel
            except ArmvmiError as e:
                rep.skipped.append(f"{vm.label}: guest kernel not readable, guest cross-views skipped ({e})")
                continue
            _syscalls(rep, k, vm.vm_id)
            _cross_view(rep, k, vm.vm_id)
    rep.findings.sort(key=lambda f: -SEVERITIES.index(f.severity))
    return rep


# -- log vs memory -------------------------------------------------------------------------------------
def _host_record(rep, hk, scan, reg) -> None:
    from .kvm import infer_vhe

    host = reg.host
    if host is None:
        rep.skipped.append("the log has no DRIVER_INIT: host facts not compared")
        return
    mismatches = hk.log_mismatches(host)
    for what, logged, actual in mismatches:
        rep.add("error", "host-mismatch", "host", f"DRIVER_INIT says host {what} is {logged:#x}, memory says {actual:#x}"
                " (a log from another boot, or forged)", field=what, log=logged, memory=actual)
    vhe, why = infer_vhe(hk, scan.vms)
    if vhe is not None and vhe != host.vhe:
        rep.add("error", "host-mismatch", "host", f"DRIVER_INIT says {'VHE' if host.vhe else 'nVHE'}, memory says "
                f"{'VHE' if vhe else 'nVHE'} ({why})", field="vhe", log=host.vhe, memory=vhe)
    if not mismatches:
        rep.checked.append("DRIVER_INIT kimage_voffset, memstart_addr, PAGE_OFFSET, TTBR1 base match the host kernel")


def _compare(rep, hk, rec, m, how, vhe) -> None:
    vid = rec.vm_id
    if rec.kvm_va is not None and rec.kvm_va != m.address:
        rep.add("error", "kvm-address-mismatch", vid, f"VM_CREATE says struct kvm is at {rec.kvm_va:#x}; the VM with "
                f"that stage 2 has its struct kvm at {m.address:#x}", log=rec.kvm_va, memory=m.address)
    if (rec.vttbr & ~1) != m.vttbr:
        rep.add("error", "vttbr-mismatch", vid, f"log VTTBR_EL2 {rec.vttbr:#x} (VMID {rec.vttbr >> 48}, base "
                f"{rec.vttbr & S2_BASE:#x}); KVM holds VMID {m.vmid}, pgd_phys {m.pgd_phys:#x}",
                log=rec.vttbr, memory=m.vttbr, paired_by=how)
    if rec.vtcr != m.vtcr:
        rep.add("error", "vtcr-mismatch", vid, f"log VTCR_EL2 {rec.vtcr:#x}, kvm.arch.vtcr {m.vtcr:#x}",
                log=rec.vtcr, memory=m.vtcr)
    if not _ram_matches(rec.ram_base, rec.ram_size, m.memslots):
        slots = ", ".join(f"{s.base_gpa:#x}+{s.size:#x}" for s in sorted(m.memslots, key=lambda s: s.base_gfn))
        rep.add("error", "ram-mismatch", vid, f"log guest RAM {rec.ram_base:#x}+{rec.ram_size:#x} is not what the "
                f"memslots hold ({slots or 'none'})", log=[rec.ram_base, rec.ram_size],
                memory=[[s.base_gpa, s.size] for s in m.memslots])
    _compare_vcpus(rep, rec, m, vhe)
    rep.checked.append(f"vm {vid}: paired with struct kvm {m.address:#x} by {how}")


def _ram_matches(base: int, size: int, memslots) -> bool:
    """The log's RAM range (of the size the log gives) is covered by memslots
    that hold RAM, and starts and ends on their boundaries.  Flash and ROM
    slots (read-only) do not count: a log placing RAM over them lies."""
    from .vms import is_ram_slot

    if size == 0:
        return False
    runs = sorted((s.base_gpa, s.base_gpa + s.size) for s in memslots if is_ram_slot(s))
    starts = {a for a, _ in runs}
    ends = {b for _, b in runs}
    if base not in starts or base + size not in ends:
        return False
    pos = base
    for a, b in runs:
        if a <= pos < b:
            pos = b
        if pos >= base + size:
            return True
    return False


def _compare_vcpus(rep, rec, m, vhe) -> None:
    mem = {v.idx: v for v in m.vcpus}
    vid = rec.vm_id
    for idx, lv in sorted(rec.vcpus.items()):
        mv = mem.get(idx)
        if mv is None:
            rep.add("warning", "vcpu-mismatch", vid, f"the log has vCPU {idx}; KVM holds no such vCPU",
                    vcpu=idx, memory_vcpus=sorted(mem))
            continue
        diff = {r: (getattr(lv, r.split("_")[0].lower()), mv.regs.get(r)) for r in ("TTBR0_EL1", "TTBR1_EL1", "TCR_EL1")}
        diff = {r: {"log": a, "memory": b} for r, (a, b) in diff.items() if b is not None and a != b}
        if diff:
            sev = "warning" if set(diff) - {"TTBR0_EL1"} else "info"
            stale = " (VHE host: a loaded vCPU's saved registers may be stale)" if vhe and mv.cpu >= 0 else ""
            rep.add(sev, "vcpu-registers-mismatch", vid, f"vCPU {idx}: {', '.join(diff)} differ between the log's "
                    f"last VM_RUN_CHANGE (seq {lv.seq}) and kvm_vcpu.arch.ctxt{stale}", vcpu=idx, registers=diff)
    extra = sorted(set(mem) - set(rec.vcpus))
    if extra and rec.vcpus:
        rep.add("info", "vcpu-mismatch", vid, f"KVM has vCPU(s) {extra} that the log never reported running",
                memory_only=extra)


def _hidden_vm(rep, reg, m) -> None:
    gone = [h for h in reg.history if h.kvm_va == m.address or (h.vttbr & S2_BASE) == m.pgd_phys]
    why = (f"the log destroyed it (vm {gone[-1].vm_id}, seq {gone[-1].ended_seq}) but it is still on vm_list"
           if gone else "the log never created it")
    rep.add("critical", "hidden-vm", m.label, f"struct kvm {m.address:#x} (VMM pid {m.vmm_pid} {m.vmm_comm or '?'}, "
            f"VTTBR {m.vttbr:#x}) is on KVM's vm_list but {why}", struct_kvm=m.address, vttbr=m.vttbr,
            vmm_pid=m.vmm_pid)


def _missing_vm(rep, hk, rec) -> None:
    """A live log VM with no struct kvm on vm_list: a stale log or a forgery.
    If its struct kvm is still readable and still names the log's stage 2,
    the VM existed (destroyed since, or unlinked); otherwise it never did."""
    from .kvm import read_kvm

    base = rec.vttbr & S2_BASE
    old = None
    if rec.kvm_va is not None:
        try:
            old = read_kvm(hk, hk.kernel.object("kvm", rec.kvm_va))
        except ArmvmiError:
            old = None
    if old is not None and old.pgd_phys == base and old.vtcr == rec.vtcr:
        rep.add("error", "vm-destroyed", rec.vm_id, f"the log's vm {rec.vm_id} is not on vm_list, but a struct kvm "
                f"naming its stage 2 ({base:#x}) is still at {rec.kvm_va:#x}: destroyed after the log ends (a stale or "
                "truncated log), or unlinked from vm_list to hide it", struct_kvm=rec.kvm_va, vttbr=rec.vttbr)
    else:
        where = "no struct kvm address (migrated in)" if rec.kvm_va is None else f"nothing like a struct kvm at {rec.kvm_va:#x}"
        rep.add("error", "phantom-vm", rec.vm_id, f"the log's vm {rec.vm_id} (VTTBR {rec.vttbr:#x}) is not in memory: "
                f"{where} names its stage 2", struct_kvm=rec.kvm_va, vttbr=rec.vttbr)


def _log_anomalies(rep, events) -> None:
    for a in events.anomalies:
        if a.severity == "info":
            continue
        kind = "sequence-gap" if a.kind == "seq-gap" else "log-anomaly"
        rep.add(a.severity, kind, None, f"event log: {a.kind}: {a.reason}", anomaly=a.as_dict())
    if events.anomalies_dropped:
        rep.add("warning", "log-anomaly", None, f"{events.anomalies_dropped} more log anomalies not kept")


def _log_times(rep, hk, events) -> None:
    from .clock import NSEC_PER_SEC, capture_clock

    clk = capture_clock(hk)
    if clk is None:
        rep.skipped.append("host clock not readable from memory: log records not checked against the capture time")
        return
    limit = clk.monotonic_ns + CLOCK_SLACK_NS
    reg = events.registry
    stamps = []
    if reg.host is not None:
        stamps.append((reg.host.time_ns, reg.host.seq, "DRIVER_INIT"))
    for vm in list(reg.live()) + list(reg.history):
        stamps.append((vm.created_ns, vm.created_seq, f"vm {vm.vm_id} created"))
        stamps.append((vm.last_ns, vm.last_seq, f"vm {vm.vm_id} last event"))
        if vm.ended_ns is not None:
            stamps.append((vm.ended_ns, vm.ended_seq, f"vm {vm.vm_id} ended"))
    late = sorted({s for s in stamps if s[0] > limit})
    for ns, seq, what in late:
        rep.add("error", "log-after-capture", None, f"record seq {seq} ({what}) is stamped {ns / NSEC_PER_SEC:.3f} s; "
                f"the host clock in memory says the image was taken at {clk.monotonic_ns / NSEC_PER_SEC:.3f} s",
                seq=seq, timestamp_ns=ns, capture_monotonic_ns=clk.monotonic_ns)
    created = events.header.created_ns
    if created and created > clk.wall_ns + CLOCK_SLACK_NS:
        rep.add("error", "log-after-capture", None, f"the log file was opened at wall time {created / NSEC_PER_SEC:.0f}, "
                f"after the image was taken ({clk.wall_ns / NSEC_PER_SEC:.0f})", created_ns=created,
                capture_wall_ns=clk.wall_ns)
    if not late:
        rep.checked.append(f"no log record after the capture time ({clk.source}: {clk.monotonic_ns / NSEC_PER_SEC:.3f} s)")


# -- memory cross-views --------------------------------------------------------------------------------
def _cross_view(rep, kernel, vm_id) -> None:
    from ..linux.ps import ps

    try:
        res = ps(kernel)
    except ArmvmiError as e:
        rep.skipped.append(f"{vm_id}: task list vs PID IDR not checked ({e})")
        return
    if not res.cross_view:
        rep.skipped.append(f"{vm_id}: PID IDR not readable: {'; '.join(res.problems) or 'unknown'}")
        return
    for t in res.hidden:
        rep.add("critical", "hidden-process", vm_id, f"pid {t.pid} ({t.comm}) is in the PID IDR but not on the task "
                f"list (unlinked to hide it)", pid=t.pid, comm=t.comm, task_struct=t.task_struct)
    for t in res.unlisted_in_idr:
        rep.add("warning", "unlisted-process", vm_id, f"pid {t.pid} ({t.comm}) is on the task list but has no PID "
                f"IDR entry (a forged task-list entry?)", pid=t.pid, comm=t.comm, task_struct=t.task_struct)
    if not res.hidden and not res.unlisted_in_idr:
        rep.checked.append(f"{vm_id}: task list and PID IDR agree ({len(res.tasks)} processes)")


def _syscalls(rep, kernel, vm_id) -> None:
    from ..linux.module import lsmod
    from ..linux.syscalls import check_syscalls

    try:
        modules = lsmod(kernel)[0]
    except ArmvmiError:
        modules = []
    res = check_syscalls(kernel, modules)
    for why in res.not_run:
        rep.skipped.append(f"{vm_id}: system call tables not checked ({why})")
    for ev in res.hooks:
        ev = dict(ev)
        rep.add("critical", "syscall-hook", vm_id, ev.pop("message"), **ev)
    if res.tables and not res.hooks:
        rep.checked.append(f"{vm_id}: every entry of " + ", ".join(f"{t.name} ({len(t.entries)})" for t in res.tables)
                           + " is a syscall wrapper in kernel text")
