"""Volatility 3 ISF (Intermediate Symbol Format) JSON, as dwarf2json writes it.

Top-level keys: ``metadata``, ``base_types``, ``user_types`` (structs/unions,
fields with byte ``offset`` and a type descriptor), ``enums`` (``size``,
``base``, ``constants``) and ``symbols`` (name -> ``address`` and optionally a
type and ``constant_data``).  Type descriptors are inline trees with a
``kind`` of base, struct, union, class, enum, pointer, array, bitfield or
function.  ISF has no typedefs: dwarf2json resolves them (and names anonymous
typedef'd structs after the typedef, e.g. ``spinlock_t``).

The named types get record ids up front; a struct's member descriptors are
converted (allocating ids for inline pointers/arrays) when it is first asked for.
"""

from __future__ import annotations

import base64
import json
import os
import re

from ..errors import SymbolError
from .system_map import SystemMap, read_maybe_compressed
from .types import RecordSource, TypeModel

_BANNER_RELEASE = re.compile(r"Linux version (\S+)")


# A type descriptor nests once per pointer/array level; real ones are a few deep.
MAX_DESCRIPTOR_DEPTH = 64


def _int(v, what: str, where: str) -> int:
    # bool is an int to Python, and "12" * 8 is a string: neither is an offset
    if type(v) is not int:
        raise SymbolError(f"{where}: {what} must be an integer, not {type(v).__name__} {v!r:.40}")
    return v


def _obj(v, what: str, where: str) -> dict:
    if not isinstance(v, dict):
        raise SymbolError(f"{where}: {what} must be a JSON object, not {type(v).__name__}")
    return v


class IsfSource(RecordSource):
    source = "isf"

    def __init__(self, doc: dict, where: str = "ISF"):
        super().__init__()
        self.where = where
        self._doc = doc
        self._records: list = [("void",)]
        self._pending: dict[int, tuple[str, dict]] = {}  # tid -> (kind, ISF user_type) not yet converted
        w = where
        base = _obj(doc.get("base_types") or {}, "base_types", w)
        for name, b in base.items():
            _obj(b, f"base type {name!r}", w)
            k = b.get("kind")
            if k == "void" or name == "void":
                self.bases[name] = 0
                continue
            size = _int(b.get("size"), f"base type {name!r} size", w)
            tid = self._add(("float", name, size) if k == "float" else
                            ("int", name, size, bool(b.get("signed")), k == "bool", k == "char"))
            self.bases[name] = tid
        for name, e in _obj(doc.get("enums") or {}, "enums", w).items():
            _obj(e, f"enum {name!r}", w)
            signed = bool(base.get(e.get("base"), {}).get("signed")) if isinstance(e.get("base"), str) else False
            consts = _obj(e.get("constants"), f"enum {name!r} constants", w)
            for c, v in consts.items():
                _int(v, f"enum {name!r} constant {c!r}", w)
            self.enums[name] = self._add(("enum", name, _int(e.get("size"), f"enum {name!r} size", w), signed,
                                          sorted(consts.items(), key=lambda kv: kv[1])))
        for name, u in _obj(doc.get("user_types") or {}, "user_types", w).items():
            _obj(u, f"type {name!r}", w)
            kind = u.get("kind", "struct")
            tid = self._add(None)
            self._pending[tid] = (name, u)
            if kind in ("struct", "union", "class"):
                self.structs[name] = tid

    def _add(self, rec) -> int:
        self._records.append(rec)
        return len(self._records) - 1

    def ids(self):
        i = 0
        while i < len(self._records):  # conversion may append inline types while iterating
            yield i
            i += 1

    def record(self, tid: int) -> tuple:
        try:
            r = self._records[tid]
        except IndexError:
            raise SymbolError(f"ISF type id {tid} does not exist") from None
        if r is None:
            name, u = self._pending.pop(tid)
            w = f"{self.where}: type {name!r}"
            kind = u.get("kind", "struct")
            members = []
            for fname, f in _obj(u.get("fields") or {}, "fields", w).items():
                wf = f"{w} field {fname!r}"
                _obj(f, "a field", wf)
                d = _obj(f.get("type"), "its type", wf)
                bits, bsize = _int(f.get("offset"), "its offset", wf) * 8, 0
                if d.get("kind") == "bitfield":
                    bits += _int(d.get("bit_position", 0), "bit_position", wf)
                    bsize = _int(d.get("bit_length"), "bit_length", wf)
                    d = _obj(d.get("type"), "the bitfield's type", wf)
                members.append((fname, self._desc(d, wf), bits, bsize))
            members.sort(key=lambda m: m[2])
            size = u.get("size")
            r = ("union" if kind == "union" else "struct", name, None if size is None else _int(size, "size", w), members)
            self._records[tid] = r
        return r

    def _desc(self, d: dict, owner: str, depth: int = 0):
        if depth > MAX_DESCRIPTOR_DEPTH:
            raise SymbolError(f"{owner}: type descriptor nested more than {MAX_DESCRIPTOR_DEPTH} deep")
        _obj(d, "a type descriptor", owner)
        k = d.get("kind")
        if k in ("base", "struct", "union", "class", "enum") and not isinstance(d.get("name"), str):
            raise SymbolError(f"{owner}: a {k} type descriptor without a name")
        if k == "base":
            tid = self.bases.get(d["name"])
            if tid is None:
                raise SymbolError(f"{owner} refers to unknown base type {d['name']!r}")
            return None if tid == 0 else tid
        if k in ("struct", "union", "class"):
            tid = self.structs.get(d["name"])
            return tid if tid is not None else self._fwd(d["name"], k == "union")
        if k == "enum":
            tid = self.enums.get(d["name"])
            return tid if tid is not None else self._fwd(d["name"], False)
        if k == "pointer":
            return self._add(("ptr", self._desc(d.get("subtype"), owner, depth + 1)))
        if k == "array":
            count = _int(d.get("count", 0), "array count", owner)
            return self._add(("array", self._desc(d.get("subtype"), owner, depth + 1), count))
        if k == "function":
            return self._add(("proto", None, []))
        if k == "bitfield":
            return self._desc(d.get("type"), owner, depth + 1)
        raise SymbolError(f"{owner}: unknown type descriptor kind {k!r}")

    def _fwd(self, name: str, is_union: bool) -> int:
        return self._add(("fwd", name, is_union))


def read_isf(path: str | os.PathLike) -> dict:
    data = read_maybe_compressed(path, "ISF")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise SymbolError(f"{path}: not a JSON symbol file: {e}") from None
    except RecursionError:
        raise SymbolError(f"{path}: not an ISF file: JSON nested too deep") from None
    if not isinstance(doc, dict) or "user_types" not in doc or "metadata" not in doc:
        raise SymbolError(f"{path}: not a Volatility ISF file (no metadata/user_types)")
    return doc


def isf_banner(doc: dict) -> str | None:
    """The kernel banner, when dwarf2json stored ``linux_banner``'s bytes."""
    syms = doc.get("symbols")
    sym = (syms.get("linux_banner") if isinstance(syms, dict) else None) or {}
    data = sym.get("constant_data") if isinstance(sym, dict) else None
    if not data or not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data).split(b"\0", 1)[0].decode("utf-8", "replace").rstrip("\n")
    except ValueError:
        return None


def isf_symbols(doc: dict, path=None) -> SystemMap:
    entries = []
    for name, s in _obj(doc.get("symbols") or {}, "symbols", str(path or "ISF")).items():
        if not isinstance(s, dict):
            raise SymbolError(f"{path or 'ISF'}: symbol {name!r} must be a JSON object")
        addr = s.get("address")
        if addr is not None:
            _int(addr, f"symbol {name!r} address", str(path or "ISF"))
            if not 0 <= addr < 1 << 64:
                raise SymbolError(f"{path or 'ISF'}: symbol {name!r} address {addr:#x} is not a 64-bit address")
        if name and addr is not None and not name.startswith("$"):
            entries.append((addr, "?", name))
    entries.sort()
    sm = SystemMap(entries, source="ISF symbols", path=path)
    sm.banner = isf_banner(doc)
    m = _BANNER_RELEASE.search(sm.banner or "")
    sm.release = m.group(1) if m else None
    return sm


def load_isf(path: str | os.PathLike) -> tuple[TypeModel, SystemMap]:
    """(type model, symbols) from a ``.json`` or ``.json.xz`` ISF file.
    The symbols object also carries ``.banner`` and ``.release`` when known."""
    doc = read_isf(path)
    return TypeModel(IsfSource(doc, str(path))), isf_symbols(doc, path)
