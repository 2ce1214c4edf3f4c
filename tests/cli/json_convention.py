"""The one JSON convention (man/armvmi.1, JSON OUTPUT), checked mechanically."""

from __future__ import annotations

import re

# Keys that name an address, a register value, a table base or a descriptor.
ADDRESS_KEYS = re.compile(
    r"^(address|addr|start|end|base|va|pa|gva|gpa|hpa|phys|input|output|target|descriptor|vttbr|vtcr|ttbr[01]?|tcr"
    r"|struct_kvm|struct_kvm_pa|stage2_base|task_struct|task_struct_phys|swapper_pg_dir|swapper_pg_dir_gpa"
    r"|kimage_voffset|phys_offset|page_offset|kaslr_slide|slide|ram_base|base_gpa|userspace_addr|table_address"
    r"|table_hpa|descriptor_address|kvm_va|x\d+|sctlr|vbar|sp|pc|elr)$"
    r"|(_addr|_address|_va|_pa|_gpa|_hpa|_phys|_base|_voffset|_el[0-3])$",
    re.IGNORECASE)
HEX = re.compile(r"^0x[0-9a-f]+$")
MAX_SAFE = 2**53


def violations(doc, path="$") -> list[str]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            p = f"{path}.{k}"
            if isinstance(v, bool):
                pass
            elif isinstance(v, int) and ADDRESS_KEYS.search(str(k)):
                out.append(f"{p}: address as a number ({v})")
            elif isinstance(v, str) and ADDRESS_KEYS.search(str(k)) and v.startswith(("0x", "0X")) and not HEX.match(v):
                out.append(f"{p}: malformed address {v!r}")
            if k == "vm" and v is not None and not isinstance(v, str):
                out.append(f"{p}: vm must be a string label, not {v!r}")
            if k == "vm_id" and not (v is None or (isinstance(v, int) and not isinstance(v, bool))):
                out.append(f"{p}: vm_id must be the registry's number or null, not {v!r}")
            out.extend(violations(v, p))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(violations(v, f"{path}[{i}]"))
    elif isinstance(doc, int) and not isinstance(doc, bool) and abs(doc) > MAX_SAFE:
        out.append(f"{path}: integer {doc} does not survive a JSON number")
    return out
