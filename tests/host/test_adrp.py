"""A64 ADRP + ADD/LDR decoding (how vm_list is found without data symbols)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from armvmi_cli.host.adrp import decode_references

MASK = 0xFFFF_FFFF_FFFF_FFFF


def adrp(rd: int, pc: int, target: int) -> int:
    imm = ((target & ~0xFFF) - (pc & ~0xFFF)) >> 12
    imm &= (1 << 21) - 1
    return 0x9000_0000 | ((imm & 3) << 29) | ((imm >> 2) << 5) | rd


def add(rd: int, rn: int, imm12: int) -> int:
    return 0x9100_0000 | (imm12 << 10) | (rn << 5) | rd


def ldr(rt: int, rn: int, off: int) -> int:
    return 0xF940_0000 | ((off // 8) << 10) | (rn << 5) | rt


def code(*insns: int) -> bytes:
    return b"".join(i.to_bytes(4, "little") for i in insns)


@settings(max_examples=150, deadline=None)
@given(pc=st.integers(0xFFFF_8000_0800_0000, 0xFFFF_8000_0FFF_FFFF).map(lambda x: x & ~3),
       delta=st.integers(-(1 << 31), (1 << 31) - 1), reg=st.integers(0, 30))
def test_adrp_add_and_ldr_targets(pc, delta, reg):
    target = (pc + delta) & MASK
    lo = target & 0xFFF
    got = decode_references(code(adrp(reg, pc, target), add(reg, reg, lo), ldr(0, reg, lo & ~7)), pc)
    assert got == [target, target & ~7]


def test_other_registers_and_instructions_are_ignored():
    pc = 0xFFFF_8000_0801_0000
    target = 0xFFFF_8000_09CC_E6A0
    nop = 0xD503201F
    # add through a register no adrp wrote, then a nop: nothing; then the real pair
    blob = code(add(1, 2, 0x10), nop, adrp(3, pc + 8, target), nop, add(4, 3, target & 0xFFF))
    assert decode_references(blob, pc) == [target]
