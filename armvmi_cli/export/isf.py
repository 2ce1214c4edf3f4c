"""A Volatility 3 symbol file (ISF) for a kernel, from what is in its memory.

dwarf2json makes these from a debug vmlinux; the same facts are in memory:
the layouts in the kernel's BTF, the addresses in its kallsyms (or a
System.map given beside), the banner in its ``.rodata``.  The output follows
dwarf2json's conventions so that Volatility (and armvmi's ISF reader) treat it
the same:

- ``user_types``: every struct and union by tag; a typedef of a struct gets
  an entry of its own under the typedef's name (``spinlock_t``), and member
  types refer to it by that name; anonymous types are ``unnamed_<hash>`` and
  anonymous members ``unnamed_field_<n>`` with ``"anonymous": true``;
- bitfields: ``offset`` is the byte holding the first bit, ``bit_position``
  the bit within it (``offset * 8 + bit_position`` = the bit offset);
- ``symbols``: link-time addresses, as System.map has them (kallsyms holds
  runtime addresses: the KASLR slide is taken off), and ``linux_banner`` with
  its bytes in ``constant_data``: Volatility matches an ISF to an image by
  that banner;
- ``metadata.linux``: where symbols and types came from, each with a sha256.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from ..errors import ArmvmiError, SymbolError

ISF_FORMAT = "6.2.0"
MASK = 2**64 - 1
BANNER = b"Linux version "
# enum storage, by (size, signed), named as GCC's DWARF names the base types
_ENUM_BASE = {(1, False): "unsigned char", (1, True): "signed char", (2, False): "short unsigned int",
              (2, True): "short int", (4, False): "unsigned int", (4, True): "int",
              (8, False): "long long unsigned int", (8, True): "long int"}


from ..symbols.resolve import _NOT_IN_THE_TABLE as _NOT_SYMBOLS  # VMCOREINFO SYMBOL()s that are no symbol's address


class IsfBuilder:
    """Turns a type model's records (:mod:`armvmi_cli.symbols.types`) into ISF."""

    def __init__(self, src):
        self.src = src
        self.base_types: dict = {"void": {"size": 0, "signed": False, "kind": "void", "endian": "little"},
                                 "pointer": {"size": 8, "signed": False, "kind": "int", "endian": "little"}}
        self.user_types: dict = {}
        self.enums: dict = {}
        self._names: dict[int, str] = {}  # tid of a struct/union/enum -> its ISF name
        self._records: dict[int, tuple] = {}
        self._emitted: set[int] = set()
        self._aliases: dict[str, int] = {}  # typedef name -> struct/union/enum tid, emitted last

    def rec(self, tid):
        if tid is None or tid == 0:
            return ("void",)
        r = self._records.get(tid)
        if r is None:
            r = self._records[tid] = self.src.record(tid)
        return r

    # -- names ---------------------------------------------------------------
    def name_of(self, tid: int) -> str:
        n = self._names.get(tid)
        if n is None:
            r = self.rec(tid)
            n = r[1] or f"unnamed_{self._hash(r)}"
            self._names[tid] = n
        return n

    def _hash(self, r) -> str:
        """A stable name for an anonymous type: from its shape, as dwarf2json hashes its DIE."""
        if r[0] in ("struct", "union"):
            shape = [r[0], r[2], [(m[0], m[2], m[3], self._kind(m[1])) for m in r[3]]]
        else:
            shape = [r[0], r[2], r[4]]
        return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]

    def _kind(self, tid):
        r = self._strip(tid)
        return r[0] if r[1] is None else f"{r[0]} {self.rec(r[1])[1] if r[0] not in ('ptr', 'array') else ''}"

    def _strip(self, tid):
        """(kind, tid) after qualifiers; typedefs kept (their name matters)."""
        seen = 0
        while True:
            r = self.rec(tid)
            if r[0] in ("const", "volatile", "restrict", "type_tag") and seen < 64:
                tid, seen = r[1], seen + 1
                continue
            return r[0], tid if r[0] not in ("void",) else None

    # -- descriptors ---------------------------------------------------------------
    def desc(self, tid, depth: int = 0) -> dict:
        if depth > 64:
            raise SymbolError("type chain too deep (a loop in the type records?)")
        r = self.rec(tid)
        k = r[0]
        if k == "void":
            return {"kind": "base", "name": "void"}
        if k in ("int", "float"):
            self._base(r)
            return {"kind": "base", "name": r[1]}
        if k == "ptr":
            t = self.rec(r[1]) if r[1] else ("void",)
            inner = self._resolve_quals(r[1])
            if inner is not None and self.rec(inner)[0] in ("proto", "func"):
                return {"kind": "pointer", "subtype": {"kind": "function"}}
            return {"kind": "pointer", "subtype": self.desc(r[1], depth + 1) if t[0] != "void" else {"kind": "base", "name": "void"}}
        if k == "array":
            return {"count": r[2], "kind": "array", "subtype": self.desc(r[1], depth + 1)}
        if k in ("struct", "union"):  # emitted by build_all: no recursion through the type graph
            return {"kind": k, "name": self.name_of(tid)}
        if k == "enum":
            return {"kind": "enum", "name": self.name_of(tid)}
        if k == "fwd":
            kind = "union" if r[2] else "struct"
            self.user_types.setdefault(r[1], {"size": 0, "fields": {}, "kind": kind})
            return {"kind": kind, "name": r[1]}
        if k == "typedef":
            target = self._resolve_quals(r[2])
            tr = self.rec(target) if target else ("void",)
            if tr[0] in ("struct", "union"):
                # dwarf2json: a typedef'd struct is its own entry, referred to by the typedef name
                self._aliases.setdefault(r[1], target)
                return {"kind": tr[0], "name": r[1]}
            return self.desc(r[2], depth + 1)
        if k in ("const", "volatile", "restrict", "type_tag"):
            return self.desc(r[1], depth + 1)
        if k in ("func", "proto"):
            return {"kind": "function"}
        raise SymbolError(f"type record {tid} of kind {k!r} has no ISF form")

    def _resolve_quals(self, tid):
        for _ in range(64):
            if not tid:
                return None
            r = self.rec(tid)
            if r[0] in ("const", "volatile", "restrict", "type_tag"):
                tid = r[1]
            elif r[0] == "typedef" and self.rec(r[2])[0] in ("proto", "func", "const", "volatile", "typedef"):
                tid = r[2]
            else:
                return tid
        return tid

    def _base(self, r):
        if r[1] in self.base_types:
            return
        if r[0] == "float":
            self.base_types[r[1]] = {"size": r[2], "signed": True, "kind": "float", "endian": "little"}
        else:
            kind = "bool" if r[4] else "char" if r[5] or r[1].endswith("char") else "int"
            # dwarf2json marks _Bool signed (DW_ATE_boolean); keep its convention
            self.base_types[r[1]] = {"size": r[2], "signed": bool(r[3]) or kind == "bool", "kind": kind, "endian": "little"}

    # -- entries ---------------------------------------------------------------
    def emit_struct(self, tid) -> None:
        if tid in self._emitted:
            return
        self._emitted.add(tid)
        name = self.name_of(tid)
        if name in self.user_types and self.user_types[name].get("fields"):
            return  # a same-named struct already emitted: first definition wins (as the type model does)
        entry = {"size": 0, "fields": {}, "kind": "struct"}
        self.user_types[name] = entry
        entry.update(self._struct_body(tid))

    def _struct_body(self, tid) -> dict:
        r = self.rec(tid)
        fields = {}
        anon = 0
        for mname, mtid, bit_off, bit_size in r[3]:
            d = self.desc(mtid)
            f = {"type": d, "offset": bit_off // 8}
            if bit_size:
                f["type"] = {"bit_length": bit_size, "bit_position": bit_off % 8, "kind": "bitfield", "type": d}
            if not mname:
                mname = f"unnamed_field_{anon:x}"  # dwarf2json numbers them in hex
                anon += 1
                f["anonymous"] = True
            fields[mname] = f
        return {"size": r[2] or 0, "fields": fields, "kind": r[0]}

    def emit_alias(self, name: str, target: int) -> None:
        """A typedef of a struct/union, as its own entry (dwarf2json's ``spinlock_t``)."""
        if name in self.user_types and self.user_types[name].get("fields"):
            return
        self.user_types[name] = self._struct_body(target)

    def emit_enum(self, tid) -> None:
        if tid in self._emitted:
            return
        self._emitted.add(tid)
        name = self.name_of(tid)
        self.enums.setdefault(name, self._enum_body(self.rec(tid)))

    def _enum_body(self, r) -> dict:
        base = _ENUM_BASE.get((r[2], bool(r[3])), "unsigned int")
        if base not in self.base_types:
            size, signed = next(k for k, v in _ENUM_BASE.items() if v == base)
            kind = "char" if base.endswith("char") else "int"
            self.base_types[base] = {"size": size, "signed": signed, "kind": kind, "endian": "little"}
        return {"size": r[2], "base": base, "constants": {n: v for n, v in r[4]}}

    def build_all(self) -> None:
        for tid in list(self.src.ids()):
            r = self.rec(tid)
            k = r[0]
            if k in ("struct", "union"):
                self.emit_struct(tid)
            elif k == "enum":
                self.emit_enum(tid)
            elif k == "typedef":
                self.desc(tid)
            elif k in ("int", "float"):
                self._base(r)
        done: set[str] = set()
        while len(done) < len(self._aliases):
            for name, target in list(self._aliases.items()):
                if name not in done:
                    done.add(name)
                    self.emit_alias(name, target)


# -- symbols and banner ---------------------------------------------------------------
def find_banner(kernel) -> tuple[int, bytes] | None:
    """(runtime VA, bytes with the trailing NUL) of ``linux_banner``: its symbol,
    else the ``Linux version <release> `` string in the kernel image that ends
    in the kernel's version string and a newline (the printk buffer's copy has
    no newline; other near-copies differ in the version)."""
    from ..memory.scan import read_cstring, scan
    from ..symbols.resolve import kernel_image_ranges

    if kernel.has_symbol("linux_banner"):
        try:
            va = kernel.symbol("linux_banner")
            return va, read_cstring(kernel.vmem, va, 1024) + b"\0"
        except ArmvmiError:
            pass
    vi, info = kernel.vmcoreinfo, kernel.info
    if vi is None or info.kimage_voffset is None or not info.release:
        return None
    from ..symbols.resolve import utsname

    uts = utsname(kernel, vi)  # linux_banner ends with init_uts_ns's version ("#1 SMP ...")
    tail = (uts[1].encode() if uts else b"") + b"\n"
    phys = kernel.vmem.lower
    needle = BANNER + info.release.encode() + b" "
    for pa in scan(phys, needle, kernel_image_ranges(phys, vi)):
        text = read_cstring(phys, pa, 1024)
        if text.endswith(tail):
            return (pa + info.kimage_voffset) & MASK, text + b"\0"
    return None


def symbol_table(kernel) -> tuple[dict[str, int], str]:
    """name -> link-time address, and where they came from."""
    syms = kernel.symbols
    if syms is None:
        raise SymbolError(f"{kernel.name}: no symbols (no kallsyms found in memory; give -m System.map)")
    # kallsyms holds runtime addresses, a System.map link-time ones
    off = kernel.slide if getattr(syms, "runtime_addresses", False) else 0
    out: dict[str, int] = {}
    for s in syms:
        if s.name and not s.name.startswith("$"):
            out.setdefault(s.name, (s.address - off) & MASK)
    from ..symbols.resolve import KERNEL_IMAGE_MAX

    extra = getattr(syms, "extra", None) or {}  # data symbols kallsyms lacks (VMCOREINFO, structure scans)
    lo = min(out.values(), default=0)
    for name, va in extra.items():
        if va is None or name in _NOT_SYMBOLS:
            continue
        a = (va - kernel.slide) & MASK
        if lo <= a < lo + KERNEL_IMAGE_MAX:  # a variable of the image, not a value VMCOREINFO recorded
            out.setdefault(name, a)
    return out, kernel.info.symbols_source


def build_isf(kernel) -> tuple[dict, dict]:
    """(ISF document, summary) for ``kernel``."""
    from .. import __version__

    tm = kernel.types
    if tm is None:
        raise SymbolError(f"{kernel.name}: no type information (no BTF in the image)")
    b = IsfBuilder(tm._src)
    b.build_all()
    addrs, sym_source = symbol_table(kernel)
    symbols = {n: {"address": a} for n, a in addrs.items()}
    # per-CPU and other variables BTF describes: give them their type
    for tid in tm._src.ids():
        r = b.rec(tid)
        if r[0] == "var" and r[1] in symbols:
            try:
                symbols[r[1]]["type"] = b.desc(r[2])
            except SymbolError:
                pass
    banner = find_banner(kernel)
    if banner is not None:
        va, data = banner
        symbols["linux_banner"] = {"type": {"count": len(data), "kind": "array", "subtype": {"kind": "base", "name": "char"}},
                                   "address": (va - kernel.slide) & MASK,
                                   "constant_data": base64.b64encode(data).decode()}
        b.base_types.setdefault("char", {"size": 1, "signed": False, "kind": "char", "endian": "little"})
    rel = kernel.info.release or "unknown"
    sym_hash = hashlib.sha256("".join(f"{a:016x} {n}\n" for n, a in sorted(addrs.items())).encode()).hexdigest()
    btf = getattr(tm._src, "_data", None)
    type_hash = hashlib.sha256(bytes(btf) if btf is not None else json.dumps(sorted(b.user_types)).encode()).hexdigest()
    from_map = sym_source.startswith("System.map") or sym_source.startswith("profile")
    meta = {
        "linux": {
            "symbols": [{"kind": "system-map" if from_map else "symtab",
                         "name": (f"System.map-{rel}" if from_map else f"kallsyms-{rel}"),
                         "hash_type": "sha256", "hash_value": sym_hash}],
            # the schema knows only dwarf/symtab/system-map: BTF is the kernel's own compact DWARF subset
            "types": [{"kind": "dwarf", "name": f"btf-{rel}", "hash_type": "sha256", "hash_value": type_hash}],
        },
        "producer": {"name": "armvmi", "version": __version__},
        "format": ISF_FORMAT,
    }
    doc = {"metadata": meta, "base_types": b.base_types, "user_types": b.user_types, "enums": b.enums, "symbols": symbols}
    summary = {"base_types": len(b.base_types), "user_types": len(b.user_types), "enums": len(b.enums),
               "symbols": len(symbols), "symbols_source": sym_source, "types_source": kernel.info.types_source,
               "banner": banner[1].rstrip(b"\n\0").decode("latin-1") if banner else None, "release": rel}
    return doc, summary


def write_isf(kernel, out, inputs=(), force: bool = False) -> dict:
    """Write the ISF (``.json``, or xz-compressed for ``.xz``) atomically."""
    from ..output import Output, check_output

    check_output(out, inputs, force)
    doc, summary = build_isf(kernel)
    data = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    if os.fspath(out).endswith(".xz"):
        import lzma

        data = lzma.compress(data, preset=1)
    with Output(out, inputs, force) as o:
        o.file().write(data)
    summary["path"] = os.fspath(out)
    summary["bytes"] = len(data)
    return summary
