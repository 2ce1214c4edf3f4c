"""A guest (or host) Linux kernel as seen through its own page tables.

The equivalent of drgn's ``Program``: it knows the kernel virtual address
space (a stage-1 layer, stacked on guest physical memory), the symbols (a
System.map or recovered kallsyms, plus the KASLR slide) and the type model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import SymbolError
from .object import Object


@dataclass
class KernelInfo:
    """How this kernel was found: shown by ``armvmi info``."""

    release: str | None = None
    banner: str | None = None
    build_id: str | None = None
    slide: int = 0
    slide_source: str = ""
    kimage_voffset: int | None = None
    phys_offset: int | None = None
    page_size: int = 4096
    va_bits: int = 48
    swapper_pg_dir: int | None = None  # VA
    swapper_pg_dir_pa: int | None = None  # in the layer below stage 1
    ttbr1_source: str = ""
    symbols_source: str = ""
    types_source: str = ""
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_candidate(cls, cand, slide_source: str, ttbr1_source: str) -> "KernelInfo":
        """What a confirmed ``symbols.kaslr.KernelCandidate`` (VMCOREINFO + walk) tells."""
        vi = cand.vmcoreinfo
        info = cls(release=vi.release, build_id=vi.build_id, slide=cand.slide, slide_source=slide_source,
                   kimage_voffset=vi.kimage_voffset, phys_offset=vi.phys_offset,
                   page_size=getattr(cand, "page_size", None) or vi.page_size or 4096,
                   va_bits=getattr(cand, "va_bits", None) or vi.va_bits or 48, swapper_pg_dir=vi.symbol("swapper_pg_dir"),
                   swapper_pg_dir_pa=cand.swapper_pa, ttbr1_source=ttbr1_source)
        if getattr(cand, "geometry_note", ""):
            info.notes.append(cand.geometry_note)
        return info


class Kernel:
    def __init__(self, vmem, types, symbols, info: KernelInfo, name: str = "kernel"):
        self.vmem = vmem  # stage-1 layer: kernel VA -> (guest) physical
        self.types = types
        self.symbols = symbols
        self.info = info
        self.name = name

    # -- memory ---------------------------------------------------------
    def read(self, va: int, n: int) -> bytes:
        return self.vmem.read(va, n)

    def read_u64(self, va: int) -> int:
        return int.from_bytes(self.vmem.read(va, 8), "little")

    def read_u32(self, va: int) -> int:
        return int.from_bytes(self.vmem.read(va, 4), "little")

    # -- symbols ----------------------------------------------------------
    @property
    def slide(self) -> int:
        return self.info.slide

    def has_symbol(self, name: str) -> bool:
        return self.symbols is not None and self.symbols.address(name) is not None

    def symbol(self, name: str) -> int:
        """The runtime (slid) address of a symbol."""
        if self.symbols is None:
            raise SymbolError(f"no symbols loaded; cannot resolve {name!r}")
        a = self.symbols.address(name)
        if a is None:
            raise SymbolError(f"symbol {name!r} not found in {self.info.symbols_source or 'the symbol table'}")
        return a + self.symbol_slide

    @property
    def symbol_slide(self) -> int:
        """Slide to add to the symbol table's addresses (0 for kallsyms, which
        already holds runtime addresses)."""
        return 0 if getattr(self.symbols, "runtime_addresses", False) else self.info.slide

    def lookup(self, va: int):
        """(name, offset) of the symbol containing ``va``, or None."""
        if self.symbols is None:
            return None
        r = self.symbols.lookup(va - self.symbol_slide)
        return r

    def eval_address(self, text: str) -> int:
        """``0xffff...``, ``init_task`` or ``init_task+0x10`` (ASCII only; a
        result outside 0..2**64-1 is an error, never wrapped)."""
        if not isinstance(text, str):
            raise SymbolError(f"{text!r} is neither an address nor a symbol[+offset]")
        m = re.fullmatch(r"([A-Za-z_.$][\w.$]*)\s*(?:([+-])\s*(0x[0-9a-fA-F]+|[0-9]+))?", text, re.ASCII)
        if m and not re.fullmatch(r"0x[0-9a-fA-F]+|[0-9]+", text, re.ASCII):
            base = self.symbol(m.group(1))
            if m.group(2):
                g = m.group(3)
                off = int(g, 16) if g.startswith("0x") else int(g, 10)
                base = base + off if m.group(2) == "+" else base - off
        elif re.fullmatch(r"0[xX][0-9a-fA-F]+|[0-9]+", text, re.ASCII):
            base = int(text, 16 if text[:2] in ("0x", "0X") else 10)
        else:
            raise SymbolError(f"{text!r} is neither an address nor a symbol[+offset]")
        if not 0 <= base < 1 << 64:
            raise SymbolError(f"{text}: address out of range (0 to 0xffffffffffffffff)")
        return base

    # -- types -------------------------------------------------------------
    def type(self, name: str):
        name = name.removeprefix("struct ").removeprefix("union ").strip()
        if self.types is None:
            raise SymbolError("no type information (no BTF in the image, no --profile/--isf)")
        t = self.types.get(name)
        if t is None:
            raise SymbolError(f"type {name!r} not found in {self.info.types_source or 'the type model'}")
        return t

    def object(self, type_name: str, address: int) -> Object:
        return Object(self, self.type(type_name), address)

    def variable(self, name: str, type_name: str | None = None) -> Object:
        return self.object(type_name or name, self.symbol(name))

    def offsetof(self, type_name: str, member: str) -> int:
        return Object(self, self.type(type_name), 0).offsetof_(member)

    def container_of(self, address: int, type_name: str, member: str) -> Object:
        return self.object(type_name, address - self.offsetof(type_name, member))

    def has_member(self, type_name: str, member: str) -> bool:
        try:
            return Object(self, self.type(type_name), 0).has_member_(member)
        except SymbolError:
            return False
