"""``armvmi check``: every integrity check on every kernel of an image.

A check is a function registered here with one line::

    register("orphan-socket", "armvmi_cli.checks:orphan_sockets")  # fn(kernel) -> Outcome
    register("vector-hook", vector_hooks, scope="vm")      # fn(session, vm) -> Outcome
    register("log-vs-memory", verify_log, scope="session") # fn(session) -> Outcome

``kernel`` checks run on each VM's kernel and on the host kernel of a host
image; ``vm`` checks once per guest VM; ``session`` checks once per image.
An :class:`Outcome` holds the findings and the reasons a check could not run
(never a silent pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .errors import ArmvmiError
from .view import Finding


@dataclass
class Outcome:
    findings: list[Finding] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)  # why (part of) the check could not run
    checked: list[str] = field(default_factory=list)  # what was checked and agreed


@dataclass(frozen=True)
class Check:
    name: str
    fn: Callable[..., Outcome] | str  # or "module:function", imported when the check runs
    scope: str = "kernel"  # "kernel", "vm" or "session"


CHECKS: list[Check] = []


def register(name: str, fn, scope: str = "kernel") -> None:
    if scope not in ("kernel", "vm", "session"):
        raise ValueError(scope)
    CHECKS[:] = [c for c in CHECKS if c.name != name] + [Check(name, fn, scope)]


@dataclass
class NotRun:
    check: str
    vm: str | None
    reason: str

    def to_dict(self) -> dict:
        return {"check": self.check, "vm": self.vm, "reason": self.reason}


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    not_run: list[NotRun] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)

    def exit_code(self) -> int:
        from .errors import ExitCode

        if any(f.severity != "info" for f in self.findings):
            return int(ExitCode.FINDINGS)
        return int(ExitCode.PARTIAL if self.not_run else ExitCode.OK)

    def to_dict(self) -> dict:
        return {"findings": [f.to_dict() for f in self.findings], "not_run": [n.to_dict() for n in self.not_run],
                "checked": self.checked, "targets": self.targets}


def is_host_image(session) -> bool:
    return session.registry is not None or session.vms_from_memory()


def run_checks(session, vm_id=None, only=None) -> CheckReport:
    """Every registered check (or those named in ``only``) on the VMs
    ``vm_id`` selects (default: all, plus the host on a host image)."""
    rep = CheckReport()
    checks = [c for c in CHECKS if only is None or c.name in only]
    if vm_id is not None and str(vm_id) == "host":
        targets = [session.vm("host")]  # asked for: not being there is the user's error
    else:
        targets = list(session.select(vm_id))
        if vm_id is None and is_host_image(session):
            try:
                targets.append(session.vm("host"))
            except ArmvmiError as e:
                rep.not_run.append(NotRun("*", "host", f"host kernel not readable: {e}"))
    for vm in targets:
        rep.targets.append(vm.name)
        try:
            kernel = vm.kernel
        except ArmvmiError as e:
            rep.not_run.append(NotRun("*", vm.name, f"kernel not readable: {e}"))
            continue
        for c in checks:
            if c.scope == "session" or (c.scope == "vm" and vm.name == "host"):
                continue
            _run(rep, c, vm.name, (kernel,) if c.scope == "kernel" else (session, vm))
    for c in checks:
        if c.scope == "session" and vm_id is None:
            _run(rep, c, None, (session,))
    order = ("critical", "error", "warning", "info")
    rep.findings.sort(key=lambda f: order.index(f.severity) if f.severity in order else len(order))
    return rep


def _resolve(fn):
    if isinstance(fn, str):
        import importlib

        mod, _, name = fn.partition(":")
        fn = getattr(importlib.import_module(mod), name)
    return fn


def _run(rep: CheckReport, c: Check, vm_name, args) -> None:
    try:
        out = _resolve(c.fn)(*args)
    except ArmvmiError as e:
        rep.not_run.append(NotRun(c.name, vm_name, str(e)))
        return
    for f in out.findings:
        if f.vm is None:
            f.vm = vm_name
        rep.findings.append(f)
    rep.not_run += [NotRun(c.name, vm_name, r) for r in out.not_run]
    rep.checked += [f"{vm_name or 'image'}: {c.name}: {m}" for m in out.checked]


# -- the built-in checks -------------------------------------------------------------------------

def hidden_processes(kernel) -> Outcome:
    from .linux.ps import ps_view

    res = ps_view(kernel)
    out = Outcome(findings=list(res.findings))
    if not any("PID IDR" in p for p in res.problems) or res.findings:
        out.checked.append(f"task list and PID IDR compared ({len(res.records)} processes)")
    out.not_run += [p for p in res.problems if "cross-view unavailable" in p]
    if not res.complete:
        out.not_run.append("the task list could not be walked completely: " + "; ".join(res.problems[:3]))
    return out


def hidden_modules(kernel) -> Outcome:
    from .linux.module import lsmod_view

    res = lsmod_view(kernel)
    out = Outcome(findings=list(res.findings))
    seen = {v for m in res.records for v in m.seen_by}
    out.checked.append(f"{len(res.records)} modules; views: {', '.join(sorted(seen)) or 'none had modules'}")
    if not res.complete:
        out.not_run.append("the modules list could not be walked completely: " + "; ".join(res.problems[:3]))
    return out


def orphan_sockets(kernel) -> Outcome:
    """Sockets in the kernel's own tables that no visible process holds
    (``armvmi sockstat``'s cross-view of tables against fds)."""
    from .linux.net import sockets

    res = sockets(kernel)
    out = Outcome(findings=list(res.findings))
    out.checked.append(f"{len(res.records)} sockets, kernel tables against the fds of every process")
    if not res.complete:
        out.not_run.append("the socket tables could not be read completely: " + "; ".join(res.problems[:3]))
    return out


def syscall_hooks(kernel) -> Outcome:
    from .linux.module import lsmod
    from .linux.syscalls import check_syscalls

    try:
        modules = lsmod(kernel)[0]
    except ArmvmiError:
        modules = []
    res = check_syscalls(kernel, modules)
    out = Outcome(not_run=list(res.not_run))
    for ev in res.hooks:
        ev = dict(ev)
        out.findings.append(Finding("syscall-hook", "critical", None, ev.pop("message"), ev))
    if res.tables:
        out.checked.append(", ".join(f"{t.name} ({len(t.entries)} entries, found by {t.how})" for t in res.tables))
    return out


def vector_hooks(session, vm) -> Outcome:
    """Each vCPU's saved VBAR_EL1 (KVM's ``kvm_vcpu.arch.ctxt.sys_regs``)."""
    from .linux.vectors import classify_vbar, vector_targets

    kvm = getattr(vm, "kvm", None)
    if kvm is None and vm.stage2 is not None:
        kvm = _kvm_for(session, vm)
    if kvm is None:
        why = (f"a plain guest dump holds no vCPU system registers ({_notes(session)})"
               if vm.stage2 is None else "the VM's struct kvm was not found in host memory")
        return Outcome(not_run=[f"VBAR_EL1 not available: {why}"])
    from .host.kernel import host_kernel

    hk = host_kernel(session).kernel
    values = getattr(hk.type("vcpu_sysreg").resolve(), "values", {})
    if "VBAR_EL1" not in values:
        return Outcome(not_run=["the host's type model has no VBAR_EL1 in enum vcpu_sysreg"])
    off = hk.offsetof("kvm_vcpu", "arch.ctxt.sys_regs") + 8 * values["VBAR_EL1"]
    k = vm.kernel
    targets = vector_targets(k)
    out = Outcome()
    for v in kvm.vcpus:
        try:
            vbar = hk.read_u64(v.address + off)
        except ArmvmiError as e:
            out.not_run.append(f"vCPU {v.idx}: VBAR_EL1 unreadable ({e})")
            continue
        what = classify_vbar(k, vbar, targets)
        if what is None:
            hit = k.lookup(vbar)
            out.findings.append(Finding("vector-hook", "critical", None,
                                        f"vCPU {v.idx}: VBAR_EL1 = {vbar:#x} is not the kernel's exception vectors",
                                        {"vcpu": v.idx, "vbar_el1": f"{vbar:#x}", "struct_kvm_vcpu": f"{v.address:#x}",
                                         "symbol": f"{hit[0]}+{hit[1]:#x}" if hit else None}))
        else:
            out.checked.append(f"vCPU {v.idx}: VBAR_EL1 {vbar:#x} is {what}")
    return out


def _notes(session) -> str:
    """What CPU state the image itself carries, for the could-not-run reason."""
    notes = getattr(session.memory, "notes", None)
    if notes is None:
        return "the image format carries no CPU registers"
    kinds = sorted({"NT_PRSTATUS" if (n, t) == ("CORE", 1) else "NT_PRFPREG" if (n, t) == ("CORE", 2) else f"{n}/{t:#x}"
                    for n, t, _ in notes})
    return f"its ELF notes: {', '.join(kinds) or 'none'}; none holds VBAR_EL1"


def _kvm_for(session, vm):
    from .host.kernel import host_kernel
    from .host.kvm import vm_list

    try:
        base = vm.stage2.base
        for m in vm_list(host_kernel(session)).vms:
            if m.pgd_phys == base:
                return m
    except ArmvmiError:
        return None
    return None


MEMORY_SIDE = ("hidden-process", "unlisted-process", "syscall-hook")  # verify's cross-views: run above per kernel


def log_vs_memory(session) -> Outcome:
    """On host images: ``verify``'s event-log-vs-memory findings."""
    from .host.verify import verify_report

    if not is_host_image(session):
        return Outcome()
    rep = verify_report(session, session.host_system_map, guests=False, memory_side=False)
    out = Outcome(checked=list(rep.checked))
    if session.registry is None:
        out.checked.append("no event log given (--events): no log to compare with memory")
    for f in rep.findings:
        if f.kind in MEMORY_SIDE:
            continue
        out.findings.append(Finding(f.kind, f.severity, None if f.vm_id is None else str(f.vm_id), f.message,
                                    {k: (f"{v:#x}" if isinstance(v, int) and not isinstance(v, bool) and v > 0xFFFF else v)
                                     for k, v in f.details.items()}))
    out.not_run += [s for s in rep.skipped if not s.startswith("no event log")]
    return out


# The registry: one line per check.  A string "module:function" is imported on use.
register("hidden-process", "armvmi_cli.checks:hidden_processes")
register("hidden-module", "armvmi_cli.checks:hidden_modules")
register("syscall-hook", "armvmi_cli.checks:syscall_hooks")
register("orphan-socket", "armvmi_cli.checks:orphan_sockets")
register("vector-hook", "armvmi_cli.checks:vector_hooks", scope="vm")
register("log-vs-memory", "armvmi_cli.checks:log_vs_memory", scope="session")
