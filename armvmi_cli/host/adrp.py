"""Data addresses a function's code refers to: A64 ``ADRP`` + ``ADD``/``LDR``.

Kernels without CONFIG_KALLSYMS_ALL keep only functions in kallsyms, so a
data symbol such as ``vm_list`` has no name in the image.  Its address is
still in the code that uses it: arm64 builds every global's address with
``adrp xN, sym`` (4 KiB page, PC-relative) then ``add xM, xN, #:lo12:sym`` or
``ldr xM, [xN, #:lo12:sym]``.  Decoding those pairs in a few functions yields
a short candidate list, which the caller validates by structure.
"""

from __future__ import annotations

from ..errors import ArmvmiError

MAX_FUNCTION = 4096  # bytes decoded per function when its end is unknown


def _sign_extend(v: int, bits: int) -> int:
    return v - (1 << bits) if v >> (bits - 1) else v


def decode_references(code: bytes, pc: int, chained: bool = False) -> list[int]:
    """Every ``adrp`` page + ``add``/``ldr`` (64-bit, unsigned offset) target in ``code``, in order.

    ``chained``: also follow one ``add`` deeper -- compilers address several
    globals from one section anchor (``adrp x1, anchor; add x1, x1, :lo12:anchor;
    ldr x0, [x1, #0x50]``), so the variable is the anchor plus the second offset."""
    pages: dict[int, int] = {}  # register -> page address from the last adrp into it
    bases: dict[int, int] = {}  # register -> address an adrp+add built (chained only)
    out: list[int] = []
    for i in range(0, len(code) - 3, 4):
        insn = int.from_bytes(code[i : i + 4], "little")
        if insn & 0x9F00_0000 == 0x9000_0000:  # ADRP
            imm = _sign_extend((((insn >> 5) & 0x7FFFF) << 2) | ((insn >> 29) & 3), 21) << 12
            pages[insn & 0x1F] = ((pc + i) & ~0xFFF) + imm & 0xFFFF_FFFF_FFFF_FFFF
            bases.pop(insn & 0x1F, None)
            continue
        rn = (insn >> 5) & 0x1F
        if rn not in pages:
            if chained and rn in bases:
                if insn & 0xFF80_0000 == 0x9100_0000:
                    out.append(bases[rn] + (((insn >> 10) & 0xFFF) << (12 if (insn >> 22) & 1 else 0)))
                elif insn & 0xFFC0_0000 == 0xF940_0000:
                    out.append(bases[rn] + ((insn >> 10) & 0xFFF) * 8)
            continue
        if insn & 0xFF80_0000 == 0x9100_0000:  # ADD (immediate), 64-bit
            imm = ((insn >> 10) & 0xFFF) << (12 if (insn >> 22) & 1 else 0)
            out.append(pages[rn] + imm)
            if chained:  # the destination now holds page + offset, no longer the page
                bases[insn & 0x1F] = pages[rn] + imm
                if insn & 0x1F != 31:
                    pages.pop(insn & 0x1F, None)
        elif insn & 0xFFC0_0000 == 0xF940_0000:  # LDR Xt, [Xn, #imm] (unsigned offset)
            out.append(pages[rn] + ((insn >> 10) & 0xFFF) * 8)
        elif insn & 0xFFC0_0000 == 0xB940_0000:  # LDR Wt, [Xn, #imm]
            out.append(pages[rn] + ((insn >> 10) & 0xFFF) * 4)
    return out


def symbol_extent(kernel, start: int, step: int, limit: int) -> int:
    """Bytes from ``start`` to the next symbol (probing every ``step``), at most ``limit``."""
    here = kernel.lookup(start)
    for n in range(step, limit, step):
        hit = kernel.lookup(start + n)
        if hit is not None and hit[1] == 0 and (here is None or hit[0] != here[0]):
            return n
    return limit


def function_references(kernel, name: str, limit: int = MAX_FUNCTION, chained: bool = False) -> list[int]:
    """Data addresses referenced by the function ``name`` (empty when unknown or unreadable)."""
    if not kernel.has_symbol(name):
        return []
    start = kernel.symbol(name)
    size = symbol_extent(kernel, start, 4, limit)
    try:
        return decode_references(kernel.read(start, size), start, chained)
    except ArmvmiError:
        return []


def find_data(kernel, name: str, functions, valid, chained: bool = True):
    """The address of the global ``name``: its symbol when the table has data
    symbols, else the first address that one of ``functions`` refers to and
    that ``valid(address)`` accepts (a structural check), else None."""
    if kernel.has_symbol(name):
        return kernel.symbol(name)
    seen = set()
    for fn in functions:
        for a in function_references(kernel, fn, chained=chained):
            if a in seen:
                continue
            seen.add(a)
            try:
                if valid(a):
                    return a
            except (ArmvmiError, AttributeError, IndexError, ValueError):  # garbage read as a structure
                continue
    return None
