"""Kernels packed with their image: what a ``.armvmi`` snapshot carries so that
each kernel in it reads again with nothing beside the file.

``snapshot pack`` stores, per kernel it could open, its symbol table (from a
System.map, a profile or its own kallsyms: the source of the session's
symbols) as System.map text with link-time addresses, and its raw BTF blob;
see ``kernels`` in armvmi-snapshot(5).  A session over the snapshot uses them
before profiles and before kallsyms recovery, which a sparse snapshot may not
even hold the pages for.
"""

from __future__ import annotations

from ..errors import ArmvmiError, SymbolError

MASK = 2**64 - 1


# -- packing ---------------------------------------------------------------------------
def kernel_btf(kernel) -> bytes | None:
    """The kernel's raw BTF blob, read through its page tables (or found by its header)."""
    from .btf_locate import locate_btf
    from .resolve import kernel_image_ranges

    try:
        start, stop = kernel.symbol("__start_BTF"), kernel.symbol("__stop_BTF")
        if 0 < stop - start < (256 << 20):
            return kernel.read(start, stop - start)
    except ArmvmiError:
        pass
    phys = kernel.vmem.lower
    try:
        found = locate_btf(phys, kernel_image_ranges(phys, kernel.vmcoreinfo))
        return phys.read(*found) if found else None
    except ArmvmiError:
        return None


def symbols_text(kernel) -> bytes:
    """The kernel's symbols as System.map lines, link-time addresses."""
    syms = kernel.symbols
    off = kernel.slide if getattr(syms, "runtime_addresses", False) else 0
    lines = [f"{(s.address - off) & MASK:016x} {s.type} {s.name}\n" for s in syms]
    for name, va in (getattr(syms, "extra", None) or {}).items():  # VMCOREINFO / structure-scan data symbols
        if va is not None and syms.ks.address(name) is None:
            lines.append(f"{(va - kernel.slide) & MASK:016x} D {name}\n")
    return "".join(lines).encode()


def kernel_record(vm) -> tuple[dict | None, str | None]:
    """(a ``kernels`` entry with its ``sections``, or None and why) for one session VM."""
    try:
        k = vm.kernel
    except ArmvmiError as e:
        return None, f"{vm.label}: kernel not readable, not embedded ({e})"
    info = k.info
    import re

    where = re.sub(r"(?:/[^\s()/]+)+/([^\s()/]+)", r"\1", info.symbols_source or "")  # no local paths in the file
    rec = {"vm": vm.name, "release": info.release, "build_id": info.build_id, "banner": info.banner,
           "kaslr_offset": f"{info.slide & MASK:#x}", "symbols_source": where,
           "types_source": info.types_source, "sections": {}}
    try:
        rec["sections"]["symbols"] = symbols_text(k)
    except ArmvmiError as e:
        return None, f"{vm.label}: symbols not embedded ({e})"
    btf = kernel_btf(k)
    if btf is not None:
        rec["sections"]["btf"] = bytes(btf)
    return rec, None


def pack_records(session) -> tuple[list[dict], list[str]]:
    """Every kernel of a session (each VM's, and the host's when there is one)."""
    out, problems, seen = [], [], set()
    vms = list(session.vms)
    if session.registry is not None or session.vms_from_memory():
        try:
            vms.append(session.host_vm())
        except ArmvmiError as e:
            problems.append(f"host kernel not embedded ({e})")
    for vm in vms:
        rec, why = kernel_record(vm)
        if rec is None:
            problems.append(why)
            continue
        key = (rec["build_id"], rec["kaslr_offset"])
        if key in seen:
            continue
        seen.add(key)
        out.append(rec)
    return out, problems


# -- reading -------------------------------------------------------------------------
def find_record(memory, vi):
    """The packed kernel VMCOREINFO ``vi`` describes: same build id (or, without
    one, same release), same KASLR offset."""
    kernels = getattr(memory, "kernels", None) or []
    slide = f"{(vi.kaslr_offset or 0) & MASK:#x}"
    for rec in kernels:
        if vi.build_id and rec.get("build_id"):
            if rec["build_id"] != vi.build_id:
                continue
        elif not vi.release or rec.get("release") != vi.release:
            continue
        if rec.get("kaslr_offset", slide) == slide:
            return rec
    return None


def embedded_symbols(memory, rec):
    from .system_map import SystemMap

    desc = (rec.get("sections") or {}).get("symbols")
    if not isinstance(desc, dict):
        return None
    sm = SystemMap.parse(memory.section(desc), path=f"{memory.path} (embedded)", source="System.map embedded in the snapshot")
    sm.banner, sm.release = rec.get("banner"), rec.get("release")
    return sm


def embedded_types(memory, rec):
    from .btf import parse_btf

    desc = (rec.get("sections") or {}).get("btf")
    if not isinstance(desc, dict):
        return None
    try:
        return parse_btf(memory.section(desc))
    except SymbolError as e:
        raise SymbolError(f"{memory.path}: embedded BTF unusable: {e}") from None
