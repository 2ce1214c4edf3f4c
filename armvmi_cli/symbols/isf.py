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


class IsfSource(RecordSource):
    source = "isf"

    def __init__(self, doc: dict):
        super().__init__()
        self._doc = doc
        self._records: list = [("void",)]
        self._pending: dict[int, tuple[str, dict]] = {}  # tid -> (kind, ISF user_type) not yet converted
        base = doc.get("base_types") or {}
        for name, b in base.items():
            k = b.get("kind")
            if k == "void" or name == "void":
                self.bases[name] = 0
                continue
            tid = self._add(("float", name, b["size"]) if k == "float" else
                            ("int", name, b["size"], bool(b.get("signed")), k == "bool", k == "char"))
            self.bases[name] = tid
        for name, e in (doc.get("enums") or {}).items():
            signed = bool(base.get(e.get("base"), {}).get("signed"))
            self.enums[name] = self._add(("enum", name, e["size"], signed, sorted(e["constants"].items(), key=lambda kv: kv[1])))
        for name, u in (doc.get("user_types") or {}).items():
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
            kind = u.get("kind", "struct")
            members = []
            for fname, f in (u.get("fields") or {}).items():
                d = f["type"]
                bits, bsize = f["offset"] * 8, 0
                if d.get("kind") == "bitfield":
                    bits += d.get("bit_position", 0)
                    bsize = d["bit_length"]
                    d = d["type"]
                members.append((fname, self._desc(d, name), bits, bsize))
            members.sort(key=lambda m: m[2])
            r = ("union" if kind == "union" else "struct", name, u.get("size"), members)
            self._records[tid] = r
        return r

    def _desc(self, d: dict, owner: str):
        k = d.get("kind")
        if k == "base":
            tid = self.bases.get(d["name"])
            if tid is None:
                raise SymbolError(f"ISF type {owner!r} refers to unknown base type {d['name']!r}")
            return None if tid == 0 else tid
        if k in ("struct", "union", "class"):
            tid = self.structs.get(d["name"])
            return tid if tid is not None else self._fwd(d["name"], k == "union")
        if k == "enum":
            tid = self.enums.get(d["name"])
            return tid if tid is not None else self._fwd(d["name"], False)
        if k == "pointer":
            return self._add(("ptr", self._desc(d["subtype"], owner)))
        if k == "array":
            return self._add(("array", self._desc(d["subtype"], owner), d.get("count", 0)))
        if k == "function":
            return self._add(("proto", None, []))
        if k == "bitfield":
            return self._desc(d["type"], owner)
        raise SymbolError(f"ISF type {owner!r}: unknown type descriptor kind {k!r}")

    def _fwd(self, name: str, is_union: bool) -> int:
        return self._add(("fwd", name, is_union))


def read_isf(path: str | os.PathLike) -> dict:
    data = read_maybe_compressed(path, "ISF")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise SymbolError(f"{path}: not a JSON symbol file: {e}") from None
    if not isinstance(doc, dict) or "user_types" not in doc or "metadata" not in doc:
        raise SymbolError(f"{path}: not a Volatility ISF file (no metadata/user_types)")
    return doc


def isf_banner(doc: dict) -> str | None:
    """The kernel banner, when dwarf2json stored ``linux_banner``'s bytes."""
    sym = (doc.get("symbols") or {}).get("linux_banner") or {}
    data = sym.get("constant_data")
    if not data:
        return None
    try:
        return base64.b64decode(data).split(b"\0", 1)[0].decode("utf-8", "replace").rstrip("\n")
    except ValueError:
        return None


def isf_symbols(doc: dict, path=None) -> SystemMap:
    entries = []
    for name, s in (doc.get("symbols") or {}).items():
        addr = s.get("address")
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
    return TypeModel(IsfSource(doc)), isf_symbols(doc, path)
