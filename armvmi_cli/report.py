"""What ``armvmi info`` reports about a session, as a JSON-able dict."""

from __future__ import annotations

from .errors import ArmvmiError


def _hx(v):
    return None if v is None else f"{v:#x}"


_REGISTER_KEYS = ("TTBR", "TCR", "VTCR", "table_base")


def _hexify(d):
    """Registers and table addresses read as hex, counts and sizes as numbers."""
    if isinstance(d, dict):
        return {k: (_hx(v) if isinstance(v, int) and not isinstance(v, bool) and any(r in k for r in _REGISTER_KEYS) else _hexify(v))
                for k, v in d.items()}
    return d


def _geometry(layer) -> dict | None:
    g = getattr(layer, "describe", None)
    if callable(g):
        try:
            return _hexify(g())
        except Exception:  # describing is best effort
            return None
    return None


def _vcpu_note(k, idx, vc) -> dict:
    """A vCPU's recorded registers, and what its TTBR1 points at: with KPTI a
    guest caught in user space has TTBR1 on the trampoline tables, which map
    almost nothing (armvmi walks swapper_pg_dir instead)."""
    base = vc.ttbr1 & 0x0000_FFFF_FFFF_FFFE
    what = "unknown tables"
    if base == k.info.swapper_pg_dir_pa:
        what = "swapper_pg_dir"
    elif k.has_symbol("tramp_pg_dir") and k.info.kimage_voffset is not None:
        if base == (k.symbol("tramp_pg_dir") - k.info.kimage_voffset) & 0xFFFF_FFFF_FFFF_FFFF:
            what = "tramp_pg_dir (KPTI trampoline: the vCPU was in user space)"
    return {"vcpu": idx, "ttbr0": _hx(vc.ttbr0), "ttbr1": _hx(vc.ttbr1), "tcr": _hx(vc.tcr), "ttbr1_points_at": what}


def session_info(s, vm_id=None) -> dict:
    mem = s.memory
    out = {
        "image": {
            "path": str(s.image_path),
            "format": mem.format,
            "size": mem.size,
            "ranges": [{"start": _hx(r.start), "end": _hx(r.end)} for r in mem.ranges()],
            "vmcoreinfo_note": bool(mem.vmcoreinfo),
            "metadata": mem.metadata,
        },
        "events": {"source": s.events_source or None},
        "host": None,
        "vms": [],
    }
    if s.events is not None:
        out["events"]["anomalies"] = len(s.events.anomalies)
        h = s.host
        if h is not None:
            import dataclasses

            fields = dataclasses.asdict(h) if dataclasses.is_dataclass(h) else vars(h)
            addr = ("phys_offset", "page_offset", "kimage_voffset", "ttbr1", "tcr", "x7")
            out["host"] = {k: (_hx(v) if k in addr else v) for k, v in fields.items()}
    for vm in s.select(vm_id):
        d = {"vm": vm.name, "vm_id": vm.json_vm_id, "label": vm.label}
        if vm.stage2 is not None:
            d["stage2"] = _geometry(vm.stage2) or {}
            if vm.ram:
                d["guest_ram"] = {"base": _hx(vm.ram[0]), "size": _hx(vm.ram[1])}
        try:
            k = vm.kernel
            i = k.info
            d["kernel"] = {
                "release": i.release,
                "banner": i.banner,
                "build_id": i.build_id,
                "kaslr_slide": _hx(i.slide),
                "slide_found_by": i.slide_source,
                "kimage_voffset": _hx(i.kimage_voffset),
                "phys_offset": _hx(i.phys_offset),
                "page_size": i.page_size,
                "va_bits": i.va_bits,
                "swapper_pg_dir": _hx(i.swapper_pg_dir),
                "swapper_pg_dir_gpa": _hx(i.swapper_pg_dir_pa),
                "stage1_root": i.ttbr1_source,
                "symbols": i.symbols_source,
                "types": i.types_source,
            }
            if i.notes:
                d["notes"] = list(i.notes)
            d["stage1"] = _geometry(k.vmem) or {}
            if vm.record is not None:
                d["vcpus"] = [_vcpu_note(k, idx, vc) for idx, vc in sorted(vm.record.vcpus.items())]
        except ArmvmiError as e:
            d["kernel_error"] = str(e)
        out["vms"].append(d)
    if vm_id is None:
        out["unused_system_maps"] = s.unused_system_maps()
    out["findings"] = [f.to_dict() for f in s.findings]
    out["warnings"] = list(s.warnings)
    return out
