"""Turn replay results into plain rows (dicts) for the CLI: one row per record for
``armvmi events``, one row per VM for ``armvmi vms``. No printing here.

Rows hold ints; :func:`json_safe` turns the address/register fields into 0x-hex
strings (u64 values lose precision as JSON numbers in jq/JavaScript).
"""

from __future__ import annotations

from .decode import (decode_tcr, decode_ttbr, decode_vtcr, decode_vttbr, describe_tcr, describe_ttbr,
                     describe_vtcr, describe_vttbr)
from .registry import RUN_STATES, VmRecord
from .replay import ReplayResult, Step
from .smccc import oen_range_name, return_name
from .smclog import record_to_json
from .vmi_service import (DRIVER_INIT, INFO_NAMES, PSCI_VERSION, VM_CREATE, VM_DESTROY, VM_MIGRATION, VM_RUN_CHANGE,
                          VMI_EVENT_FAST, VMI_EVENT_YIELD, VMI_FUNCTIONS, VMI_GET_INFORMATION, event_name)

WORLDS = {0: "non-secure", 1: "secure"}

HEX_KEYS = frozenset({
    "struct_kvm_va", "vttbr", "vtcr", "stage2_base", "ram_base", "ram_size", "ttbr0", "ttbr1", "tcr", "baddr",
    "phys_offset", "page_offset", "kimage_voffset", "asid", "model_ret", "kvm_va",
})


def json_line(obj) -> str:
    """One JSON Lines line (compact, stable key order as built)."""
    import json

    from ..view import json_convention

    return json.dumps(json_convention(obj), separators=(",", ":")) + "\n"


def json_safe(obj):
    """Recursively hex-format HEX_KEYS values (ints) for JSON output."""
    if isinstance(obj, dict):
        return {k: (f"{v:#x}" if k in HEX_KEYS and isinstance(v, int) and not isinstance(v, bool) else json_safe(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


# ---- events -----------------------------------------------------------------------------------------

def function_name(x0: int) -> str:
    w0 = x0 & 0xFFFFFFFF & ~(1 << 16)
    if w0 in VMI_FUNCTIONS:
        return VMI_FUNCTIONS[w0] + (" (fast)" if w0 == VMI_EVENT_FAST else " (yield)" if w0 == VMI_EVENT_YIELD else "")
    if w0 == PSCI_VERSION:
        return "PSCI_VERSION"
    return f"{oen_range_name(w0 >> 24 & 0x3F)} fn {w0 & 0xFFFF:#x}"


def event_context(rec) -> dict:
    """The event's execution context x2..x7, decoded (only for VMI_EVENT / VMI_GET_INFORMATION)."""
    w0 = rec.x0 & 0xFFFFFFFF & ~(1 << 16)
    if w0 == VMI_GET_INFORMATION:
        d = {"request": INFO_NAMES.get(rec.x1, rec.x1)}
        if rec.x1 == 1:
            d["vm_id"] = rec.x2
        return d
    if w0 not in (VMI_EVENT_FAST, VMI_EVENT_YIELD):
        return {}
    ev = rec.x1
    if ev == DRIVER_INIT:
        return {"phys_offset": rec.x2, "page_offset": rec.x3, "kimage_voffset": rec.x4, "ttbr1": rec.x5,
                "ttbr1_decoded": decode_ttbr(rec.x5), "tcr": rec.x6, "tcr_decoded": _tcr_brief(rec.x6),
                "vhe": bool(rec.x7 & 1)}
    if ev == VM_CREATE:
        return {"vm_id": rec.x2, "kvm_va": rec.x3, "vttbr": rec.x4, "vttbr_decoded": decode_vttbr(rec.x4),
                "vtcr": rec.x5, "vtcr_decoded": _vtcr_brief(rec.x5), "ram_base": rec.x6, "ram_size": rec.x7}
    if ev == VM_RUN_CHANGE:
        return {"vm_id": rec.x2, "vcpu": rec.x3, "ttbr0": rec.x4, "ttbr1": rec.x5, "tcr": rec.x6,
                "tcr_decoded": _tcr_brief(rec.x6), "run_state": RUN_STATES.get(rec.x7, rec.x7)}
    if ev == VM_MIGRATION:
        d = {"vm_id": rec.x2, "phase": {1: "migrate-out begins", 2: "migrate-out done", 3: "migrate-in"}.get(rec.x3, rec.x3)}
        if rec.x3 == 3:
            d.update({"vttbr": rec.x4, "vttbr_decoded": decode_vttbr(rec.x4), "vtcr": rec.x5,
                      "vtcr_decoded": _vtcr_brief(rec.x5), "ram_base": rec.x6, "ram_size": rec.x7})
        return d
    if ev == VM_DESTROY:
        return {"vm_id": rec.x2}
    return {"x2": rec.x2, "x3": rec.x3, "x4": rec.x4, "x5": rec.x5, "x6": rec.x6, "x7": rec.x7}


def _vtcr_brief(v: int) -> dict:
    d = decode_vtcr(v)
    keep = ("ipa_bits", "granule_name", "start_level", "concatenated_tables", "pa_bits", "vmid_bits", "problems")
    return {k: d[k] for k in keep if k in d}


def _tcr_brief(v: int) -> dict:
    d = decode_tcr(v)
    keep = ("va_bits_ttbr0", "va_bits_ttbr1", "granule_ttbr0_name", "granule_ttbr1_name", "ipa_bits", "epd0", "epd1", "problems")
    return {k: d[k] for k in keep if k in d}


def context_text(rec) -> str:
    """A one-line decoded context for the events table."""
    w0 = rec.x0 & 0xFFFFFFFF & ~(1 << 16)
    if w0 == VMI_GET_INFORMATION:
        return f"request {INFO_NAMES.get(rec.x1, rec.x1)}" + (f" vm {rec.x2}" if rec.x1 == 1 else "")
    if w0 not in (VMI_EVENT_FAST, VMI_EVENT_YIELD):
        return f"x1={rec.x1:#x} x2={rec.x2:#x}"
    ev = rec.x1
    if ev == DRIVER_INIT:
        return (f"PHYS_OFFSET={rec.x2:#x} PAGE_OFFSET={rec.x3:#x} kimage_voffset={rec.x4:#x} "
                f"TTBR1[{describe_ttbr(rec.x5)}] TCR[{describe_tcr(rec.x6)}]" + (" VHE" if rec.x7 & 1 else " nVHE"))
    if ev == VM_CREATE:
        return (f"vm {rec.x2} kvm={rec.x3:#x} VTTBR[{describe_vttbr(rec.x4)}] VTCR[{describe_vtcr(rec.x5)}] "
                f"RAM {rec.x6:#x}+{rec.x7:#x}")
    if ev == VM_RUN_CHANGE:
        return (f"vm {rec.x2} vcpu {rec.x3} {RUN_STATES.get(rec.x7, rec.x7)} TTBR0[{describe_ttbr(rec.x4)}] "
                f"TTBR1[{describe_ttbr(rec.x5)}] TCR[{describe_tcr(rec.x6)}]")
    if ev == VM_MIGRATION:
        phase = {1: "out-begin", 2: "out-done", 3: "in"}.get(rec.x3, f"phase {rec.x3}")
        s = f"vm {rec.x2} {phase}"
        if rec.x3 == 3:
            s += f" VTTBR[{describe_vttbr(rec.x4)}] VTCR[{describe_vtcr(rec.x5)}] RAM {rec.x6:#x}+{rec.x7:#x}"
        return s
    if ev == VM_DESTROY:
        return f"vm {rec.x2}"
    return f"x1={ev:#x}"


def step_verdict(step: Step) -> str:
    if step.verdict is None:
        return "corrupt"
    for a in step.anomalies:
        if a.scope == "record":
            return "malformed" if a.kind == "malformed" else "rejected"
    return "ok"


def step_vm_id(step: Step) -> int | None:
    rec = step.record
    w0 = rec.x0 & 0xFFFFFFFF & ~(1 << 16)
    if w0 in (VMI_EVENT_FAST, VMI_EVENT_YIELD) and rec.x1 != DRIVER_INIT:
        return rec.x2
    if w0 == VMI_GET_INFORMATION and rec.x1 == 1:
        return rec.x2
    return None


def step_event(step: Step) -> str:
    """Event name for filtering and display (VMI events by name, other calls by function)."""
    rec = step.record
    w0 = rec.x0 & 0xFFFFFFFF & ~(1 << 16)
    if w0 in (VMI_EVENT_FAST, VMI_EVENT_YIELD):
        return event_name(rec.x1)
    if w0 == VMI_GET_INFORMATION:
        return "GET_INFORMATION"
    return function_name(rec.x0)


def step_row(step: Step) -> dict:
    """The stable JSON object for one record (raw fields first: `armvmi events import` reads them back)."""
    if step.record is None:
        return {"type": "anomaly", **step.anomalies[0].as_dict()}
    rec = step.record
    d = record_to_json(rec)
    d["caller_world"] = WORLDS.get(rec.caller, f"invalid({rec.caller})")
    d["ret_valid"] = bool(rec.rflags & 1)
    d["function"] = function_name(rec.x0)
    d["fid"] = step.fid.as_dict() if step.fid else None
    d["event"] = step_event(step)
    d["context"] = json_safe(event_context(rec))
    v = step.verdict
    d["handler"] = v.route if v else None
    d["verdict"] = step_verdict(step)
    d["model_ret"] = f"{v.ret:#x}" if v else None
    d["model_ret_name"] = return_name(v.ret) if v else None
    d["detail"] = v.detail if v else None
    if v is not None and v.answer is not None:
        d["answer"] = v.answer
    d["anomalies"] = [a.as_dict() for a in step.anomalies]
    return d


# ---- vms --------------------------------------------------------------------------------------------

def vm_row(vm: VmRecord, live: bool) -> dict:
    vtcr = decode_vtcr(vm.vtcr)
    vtt = decode_vttbr(vm.vttbr, vtcr["vmid_bits"])
    return {
        "source": "smclog",
        "live": live,
        "vm_id": vm.vm_id,
        "slot": vm.slot if live else None,
        "state": vm.state,
        "origin": vm.origin,
        "struct_kvm_va": vm.kvm_va,
        "vmid": vtt["vmid"],
        "vttbr": vm.vttbr,
        "stage2_base": vtt["baddr"],
        "cnp": vtt["cnp"],
        "vtcr": vm.vtcr,
        "ipa_bits": vtcr["ipa_bits"],
        "granule": vtcr["granule_name"],
        "start_level": vtcr["start_level"],
        "concatenated_tables": vtcr.get("concatenated_tables"),
        "pa_bits": vtcr["pa_bits"],
        "vtcr_problems": vtcr.get("problems", []),
        "ram_base": vm.ram_base,
        "ram_size": vm.ram_size,
        "host_epoch": vm.epoch,
        "created_seq": vm.created_seq,
        "created_ns": vm.created_ns,
        "last_seq": vm.last_seq,
        "ended_seq": vm.ended_seq,
        "ended_ns": vm.ended_ns,
        "vcpus": [
            {"index": c.index, "run_state": c.run_state_name, "ttbr0": c.ttbr0, "ttbr1": c.ttbr1, "tcr": c.tcr,
             "asid": decode_ttbr(c.ttbr1 if decode_tcr(c.tcr)["a1"] else c.ttbr0)["asid"],
             "va_bits": [64 - (c.tcr & 0x3F), 64 - (c.tcr >> 16 & 0x3F)], "seq": c.seq, "time_ns": c.time,
             "cpu": c.cpu, "changes": c.changes}
            for c in sorted(vm.vcpus.values(), key=lambda c: c.index)
        ],
    }


def registry_rows(result: ReplayResult, history: bool = True) -> list[dict]:
    """Live VMs (by slot), then history (migrated away / destroyed, oldest first)."""
    reg = result.registry
    rows = [vm_row(vm, True) for vm in reg.live()]
    if history:
        rows += [vm_row(vm, False) for vm in reg.history]
    return rows


def host_row(result: ReplayResult) -> dict | None:
    h = result.registry.host
    if h is None:
        return None
    return {"epoch": h.epoch, "phys_offset": h.phys_offset, "page_offset": h.page_offset,
            "kimage_voffset": h.kimage_voffset, "ttbr1": h.ttbr1, "tcr": h.tcr, "vhe": h.vhe, "seq": h.seq,
            "time_ns": h.time_ns, "tcr_decoded": _tcr_brief(h.tcr), "ttbr1_decoded": decode_ttbr(h.ttbr1),
            "previous_epochs": result.registry.host_history_total}


def anomaly_summary(result: ReplayResult) -> dict:
    return {
        "records_seen": result.records_seen,
        "records_ok": result.records_ok,
        "records_rejected": result.records_rejected,
        "records_corrupt": result.records_corrupt,
        "anomalies": result.anomaly_total,
        "by_kind": dict(sorted(result.anomaly_counts.items())),
        "by_severity": _by_severity(result),
        "history_dropped": max(0, result.registry.history_total - len(result.registry.history)),
        "anomalies_not_kept": result.anomalies_dropped,
        "last_seq": result.last_seq,
        "until": result.until,
    }


def _by_severity(result: ReplayResult) -> dict:
    out: dict[str, int] = {}
    for a in result.anomalies:
        out[a.severity] = out.get(a.severity, 0) + 1
    return out
