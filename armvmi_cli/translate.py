"""The two translations of the design, explained: GVA -> GPA through the
guest's stage-1 tables, then GPA -> HPA through KVM's stage-2 tables, each
level shown (``armvmi translate``)."""

from __future__ import annotations

from .errors import ArmvmiError, UsageError

_TG0 = {4096: 0b00, 65536: 0b01, 16384: 0b10}
_TG1 = {16384: 0b01, 4096: 0b10, 65536: 0b11}


def synth_tcr(va_bits: int, page_size: int, ips: int = 0b101) -> int:
    """A TCR_EL1 value describing a kernel's VA geometry (VMCOREINFO gives
    VA_BITS and PAGESIZE but not the register)."""
    txsz = 64 - va_bits
    return txsz | (_TG0[page_size] << 14) | (txsz << 16) | (_TG1[page_size] << 30) | (ips << 32)


def user_stage1(kernel, pid: int):
    """Stage 1 for a process: TTBR0 = its mm->pgd, TTBR1 = the kernel's."""
    from .linux.tasks import for_each_task, for_each_thread
    from .mmu import Stage1

    for task in for_each_task(kernel):
        for t in (task,) if task.pid == pid else for_each_thread(kernel, task):
            if t.pid != pid:
                continue
            mm = t.mm
            if int(mm) == 0:
                raise UsageError(f"pid {pid} ({t.comm}) is a kernel thread: it has no user page tables")
            pgd_pa = kernel.vmem.translate(int(mm.pgd))
            tcr = synth_tcr(kernel.info.va_bits, kernel.info.page_size)
            return Stage1(kernel.vmem.lower, pgd_pa, kernel.info.swapper_pg_dir_pa, tcr, name=f"stage1 pid {pid}")
    raise UsageError(f"no process with pid {pid} in this VM")


def _hx(v):
    return None if v is None else f"{v:#x}"


def _walk_dict(trace, lower_stage2=None) -> dict:
    d = trace.to_dict()
    steps = []
    for st in d["steps"]:
        desc = st.get("descriptor")
        attrs = st.get("attrs") or {}
        meaning = st["kind"]
        if st.get("output") is not None:
            meaning += f" -> {st['output']:#x}"
        flags = " ".join(f"{k}={v}" for k, v in attrs.items() if v not in (None, ""))
        row = {
            "level": st["level"],
            "table_address": _hx(st["table_address"]),
            "table_layer": st["table_layer"],
            "index": st["index"],
            "descriptor_address": _hx(st.get("descriptor_address")),
            "descriptor": None if desc is None else f"{desc:#018x}",
            "kind": st["kind"],
            "output": _hx(st.get("output")),
            "attrs": attrs,
            "meaning": (meaning + (f" [{flags}]" if flags else "")),
        }
        if lower_stage2 is not None:
            try:
                row["table_hpa"] = _hx(lower_stage2.translate(st["table_address"]))
            except ArmvmiError:
                row["table_hpa"] = None
        steps.append(row)
    f = d.get("fault")
    return {
        "layer": d["layer"],
        "input": _hx(d["address"]),
        "base_register": d.get("base_register"),
        "geometry": d.get("geometry"),
        "steps": steps,
        "output": _hx(d.get("result")),
        "size": d.get("size"),
        "fault": None if f is None else f["message"],
    }


def translate_address(vm, text: str, kind: str = "gva", pid: int | None = None) -> dict:
    """Both walks for one address; a dict with stable field names."""
    out = {"input": text, "kind": kind, "vm": vm.name, "vm_id": vm.json_vm_id, "symbol": None, "walks": [], "chain": [], "fault": None}
    gpa = None
    if kind == "gva":
        k = vm.kernel
        va = k.eval_address(text)
        out["input"] = _hx(va)
        hit = k.lookup(va)
        if hit:
            out["symbol"] = f"{hit[0]}+{hit[1]:#x}"
        layer = user_stage1(k, pid) if pid is not None else k.vmem
        tr = layer.walk(va)
        out["walks"].append(_walk_dict(tr, vm.stage2))
        out["chain"].append(("gva", _hx(va)))
        if tr.fault is not None:
            out["fault"] = str(tr.fault)
            if pid is None and va >> 63 == 0:
                out["fault"] += " (a user-space address: give --pid to walk that process's page tables)"
            return out
        gpa = tr.result
    else:
        try:
            gpa = int(text, 0)
        except ValueError:
            raise UsageError(f"--gpa {text!r} is not a number") from None
        out["input"] = _hx(gpa)
    out["chain"].append(("gpa", _hx(gpa)))
    if vm.stage2 is None:
        # A plain guest dump: guest physical is the image; there is no host physical.
        if not vm.session.memory.is_mapped(gpa):
            out["fault"] = f"{gpa:#x} is not in the image"
        return out
    tr2 = vm.stage2.walk(gpa)
    out["walks"].append(_walk_dict(tr2))
    if tr2.fault is not None:
        out["fault"] = str(tr2.fault)
        return out
    out["chain"].append(("hpa", _hx(tr2.result)))
    return out
