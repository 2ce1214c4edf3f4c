"""Exception vectors: is each vCPU's VBAR_EL1 the kernel's own?

The guest kernel installs ``vectors`` (or, with Spectre-BHB mitigations, one
2 KiB slot of ``__bp_harden_el1_vectors``), and with KPTI, while at EL0, the
trampoline vectors ``tramp_vectors`` through their fixmap alias
(``TRAMP_VALIAS``).  A hook points VBAR_EL1 anywhere else.  The alias is
compared by physical address: it must map to the kernel image's own
trampoline page (by symbol, or -- without ``tramp_vectors`` in kallsyms --
to a 2 KiB-aligned slot of the kernel image's text).
"""

from __future__ import annotations

from ..errors import ArmvmiError

SLOT = 0x800  # one vector table
MAX_SLOTS = 8
IMAGE_TAIL = 32 << 20  # .entry.tramp.text lies after _etext; without _end, this much of the image


def _pa(kernel, va: int):
    try:
        return kernel.vmem.translate(va)
    except ArmvmiError:
        return None


def vector_targets(kernel) -> dict[int, str]:
    """Physical address -> name of every table the kernel itself installs."""
    out = {}
    for name, slots in (("vectors", 1), ("__bp_harden_el1_vectors", MAX_SLOTS), ("tramp_vectors", MAX_SLOTS)):
        if not kernel.has_symbol(name):
            continue
        base = kernel.symbol(name)
        for i in range(slots):
            pa = _pa(kernel, base + i * SLOT)
            if pa is not None:
                out[pa] = name if i == 0 else f"{name}+{i * SLOT:#x}"
    return out


def classify_vbar(kernel, vbar: int, targets=None) -> str | None:
    """The kernel table ``vbar`` is (a name), or None when it is foreign."""
    targets = targets if targets is not None else vector_targets(kernel)
    if vbar & (SLOT - 1):
        return None
    pa = _pa(kernel, vbar)
    if pa is None:
        return None
    if pa in targets:
        return targets[pa]
    if kernel.has_symbol("tramp_vectors"):
        return None
    # No tramp_vectors symbol (kallsyms without it): accept the trampoline alias
    # only if it maps into the kernel image's text and is not the image's own VA.
    kv = kernel.info.kimage_voffset
    try:
        lo, hi = kernel.symbol("_stext"), kernel.symbol("_etext")
    except ArmvmiError:
        return None
    if kv is None:
        return None
    img = pa + kv
    end = kernel.symbol("_end") if kernel.has_symbol("_end") else hi + IMAGE_TAIL
    if lo <= img < end and not lo <= vbar < end:
        return f"KPTI trampoline alias of kernel image {img:#x}"
    return None
