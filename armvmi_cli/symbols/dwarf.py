"""DWARF types from a debug vmlinux (Debian's ``linux-image-*-dbg``), via pyelftools.

Only what a type model needs: base types, pointers, arrays, structs, unions,
enums, typedefs, qualifiers and function prototypes.  A first pass walks the
top-level DIEs of every compile unit (sibling links let pyelftools skip
function bodies) and indexes named types, first complete definition wins;
a type's members are decoded when the model asks for it.  Record ids are DIE
offsets in .debug_info (negative ids name the inner dimensions of a
multi-dimensional array).
"""

from __future__ import annotations

import os

from ..errors import SymbolError
from .types import RecordSource, TypeModel

_ATE_FLOAT = (0x3, 0x4)  # complex_float, float
_ATE_SIGNED = (0x5, 0x6, 0xD)  # signed, signed_char, signed_fixed
_ATE_BOOL = 0x2
_ATE_CHAR = (0x6, 0x8, 0x10)  # signed_char, unsigned_char, UTF
_QUAL = {"DW_TAG_const_type": "const", "DW_TAG_volatile_type": "volatile",
         "DW_TAG_restrict_type": "restrict", "DW_TAG_atomic_type": "type_tag"}
_INDEXED = ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type",
            "DW_TAG_enumeration_type", "DW_TAG_typedef", "DW_TAG_base_type")


def _name(die) -> str:
    a = die.attributes.get("DW_AT_name")
    if a is None:
        return ""
    v = a.value
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _int_attr(die, attr: str, default=None):
    a = die.attributes.get(attr)
    if a is None:
        return default
    v = a.value
    if isinstance(v, int):
        return v
    # DWARF 2 style location expression: [DW_OP_plus_uconst, uleb] or [DW_OP_constu, uleb]
    if isinstance(v, list) and v and v[0] in (0x23, 0x10):
        n, shift = 0, 0
        for b in v[1:]:
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return n
    return default


class DwarfSource(RecordSource):
    source = "dwarf"
    picklable = False  # holds pyelftools DIEs and an open file

    def __init__(self, dwarfinfo):
        super().__init__()
        self._dwarf = dwarfinfo
        self._dies: dict[int, object] = {}
        self._records: dict[int, tuple] = {}
        for cu in dwarfinfo.iter_CUs():
            top = cu.get_top_DIE()
            for die in top.iter_children():
                if die.tag not in _INDEXED or "DW_AT_declaration" in die.attributes:
                    continue
                name = _name(die)
                if not name:
                    continue
                index = self._index_for(die.tag)
                if name not in index:
                    index[name] = die.offset
                    self._dies[die.offset] = die

    def _index_for(self, tag: str) -> dict:
        return {"DW_TAG_typedef": self.typedefs, "DW_TAG_base_type": self.bases,
                "DW_TAG_enumeration_type": self.enums}.get(tag, self.structs)

    def _target(self, die, attr: str = "DW_AT_type"):
        if attr not in die.attributes:
            return None  # void
        t = die.get_DIE_from_attribute(attr)
        # Each compile unit carries its own copy of every type it uses; send a
        # reference to a named type to the one indexed copy (as BTF dedup does),
        # else a kernel's ~3000 CUs make millions of types reachable.  Only
        # top-level named types are redirected; anonymous ones stay local.
        if t.tag in _INDEXED:
            name = _name(t)
            if name:
                canon = self._index_for(t.tag).get(name)
                if canon is not None:
                    return canon
        self._dies.setdefault(t.offset, t)
        return t.offset

    def ids(self):
        """Every type reachable from the named ones (a worklist walk)."""
        seen: set[int] = set()
        todo = [t for idx in (self.structs, self.typedefs, self.bases, self.enums) for t in idx.values()]
        while todo:
            tid = todo.pop()
            if tid in seen:
                continue
            seen.add(tid)
            yield tid
            todo.extend(t for t in _refs(self.record(tid)) if t is not None and t not in seen)

    def record(self, tid: int) -> tuple:
        r = self._records.get(tid)
        if r is None:
            r = self._records[tid] = self._decode(tid)
        return r

    def _decode(self, tid: int) -> tuple:
        die = self._dies.get(tid)
        if die is None:
            raise SymbolError(f"DWARF type id {tid:#x} was never referenced (no DIE)")
        tag = die.tag
        if tag == "DW_TAG_base_type":
            enc, size = _int_attr(die, "DW_AT_encoding", 0), _int_attr(die, "DW_AT_byte_size", 0)
            if enc in _ATE_FLOAT:
                return ("float", _name(die), size)
            return ("int", _name(die), size, enc in _ATE_SIGNED, enc == _ATE_BOOL, enc in _ATE_CHAR)
        if tag in ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type"):
            return ("ptr", self._target(die))
        if tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_class_type"):
            if "DW_AT_declaration" in die.attributes:
                return ("fwd", _name(die), tag == "DW_TAG_union_type")
            members = [self._member(m) for m in die.iter_children() if m.tag == "DW_TAG_member"]
            kind = "union" if tag == "DW_TAG_union_type" else "struct"
            return (kind, _name(die), _int_attr(die, "DW_AT_byte_size"), members)
        if tag == "DW_TAG_enumeration_type":
            if "DW_AT_declaration" in die.attributes:
                return ("fwd", _name(die), False)
            vals = [(_name(e), e.attributes["DW_AT_const_value"].value)
                    for e in die.iter_children() if e.tag == "DW_TAG_enumerator"]
            signed = any(v < 0 for _, v in vals)
            base = self._target(die)
            if base is not None and self.record(base)[0] == "int":
                signed = signed or bool(self.record(base)[3])
            return ("enum", _name(die), _int_attr(die, "DW_AT_byte_size", 4), signed, vals)
        if tag == "DW_TAG_typedef":
            return ("typedef", _name(die), self._target(die))
        if tag in _QUAL:
            return (_QUAL[tag], self._target(die))
        if tag == "DW_TAG_array_type":
            return self._array(die)
        if tag == "DW_TAG_subroutine_type":
            params = [(_name(p), self._target(p)) for p in die.iter_children() if p.tag == "DW_TAG_formal_parameter"]
            return ("proto", self._target(die), params)
        if tag == "DW_TAG_unspecified_type":
            return ("void",)
        if tag == "DW_TAG_subprogram":
            return ("func", _name(die), None)
        raise SymbolError(f"DWARF DIE at {tid:#x}: {tag} is not a type")

    def _member(self, m) -> tuple:
        loc = _int_attr(m, "DW_AT_data_member_location", 0) or 0
        bit_size = _int_attr(m, "DW_AT_bit_size", 0)
        if "DW_AT_data_bit_offset" in m.attributes:  # DWARF 4+: bits from the struct start
            bits = _int_attr(m, "DW_AT_data_bit_offset")
        elif bit_size and "DW_AT_bit_offset" in m.attributes:
            # DWARF 2/3: counted from the most significant bit of a storage unit of
            # DW_AT_byte_size bytes at data_member_location (little-endian target)
            unit = _int_attr(m, "DW_AT_byte_size") or self._size_of(self._target(m)) or 0
            bits = loc * 8 + unit * 8 - _int_attr(m, "DW_AT_bit_offset") - bit_size
        else:
            bits = loc * 8
        return (_name(m), self._target(m), bits, bit_size)

    def _size_of(self, tid) -> int | None:
        for _ in range(32):
            if tid is None:
                return None
            r = self.record(tid)
            if r[0] in ("int", "float", "enum", "struct", "union"):
                return r[2]
            if r[0] in ("typedef",):
                tid = r[2]
            elif r[0] in ("const", "volatile", "restrict", "type_tag"):
                tid = r[1]
            else:
                return 8 if r[0] == "ptr" else None
        return None

    def _array(self, die) -> tuple:
        dims = []
        for sub in die.iter_children():
            if sub.tag != "DW_TAG_subrange_type":
                continue
            count = _int_attr(sub, "DW_AT_count")
            if count is None:
                ub = _int_attr(sub, "DW_AT_upper_bound")
                count = 0 if ub is None or ub >= 1 << 63 else ub + 1  # flexible array
            dims.append(count)
        elem = self._target(die)
        if not dims:
            return ("array", elem, 0)
        # int a[2][3] is an array of 2 arrays of 3: build the inner dimensions as synthetic ids
        for k in range(len(dims) - 1, 0, -1):
            sid = -(die.offset * 16 + k)
            self._records[sid] = ("array", elem, dims[k])
            elem = sid
        return ("array", elem, dims[0])


def _refs(r: tuple):
    k = r[0]
    if k in ("ptr", "const", "volatile", "restrict", "type_tag"):
        return (r[1],)
    if k in ("array",):
        return (r[1],)
    if k in ("typedef", "func", "var"):
        return (r[2],)
    if k in ("struct", "union"):
        return tuple(m[1] for m in r[3])
    if k == "proto":
        return (r[1],) + tuple(p[1] for p in r[2])
    return ()


def _open_elf(path):
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        f = open(path, "rb")
    except OSError as e:
        raise SymbolError(f"{path}: cannot open: {e.strerror}") from None
    try:
        return f, ELFFile(f)
    except ELFError as e:
        f.close()
        raise SymbolError(f"{path}: not an ELF file ({e})") from None


def load_dwarf(vmlinux_path: str | os.PathLike) -> TypeModel:
    """Type model from the DWARF of an ELF file (a debug vmlinux or any object)."""
    f, elf = _open_elf(vmlinux_path)
    if not elf.has_dwarf_info() or elf.get_section_by_name(".debug_info") is None:
        f.close()
        raise SymbolError(f"{vmlinux_path}: no DWARF debug info (use the vmlinux from the -dbg package)")
    try:
        src = DwarfSource(elf.get_dwarf_info())
    except SymbolError:
        raise
    except Exception as e:  # pyelftools on a corrupt file
        raise SymbolError(f"{vmlinux_path}: cannot read DWARF: {type(e).__name__}: {e}") from None
    model = TypeModel(src)
    model._file = f  # keep the file open: members are decoded lazily
    return model


def vmlinux_banner(vmlinux_path: str | os.PathLike) -> str | None:
    """The ``linux_banner`` string of a vmlinux, read through its symbol table."""
    f, elf = _open_elf(vmlinux_path)
    try:
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            return None
        syms = symtab.get_symbol_by_name("linux_banner")
        if not syms:
            return None
        sym = syms[0]
        sec = elf.get_section(sym["st_shndx"])
        off = sym["st_value"] - sec["sh_addr"]
        data = sec.data()[off : off + max(sym["st_size"], 512)]
        return data.split(b"\0", 1)[0].decode("utf-8", "replace").rstrip("\n") or None
    except Exception:
        return None
    finally:
        f.close()
