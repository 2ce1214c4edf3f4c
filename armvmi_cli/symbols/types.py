"""One kernel type model, whatever the source (BTF, DWARF, Volatility ISF).

Every source is turned into the same *record table*: type id -> a small tuple
(see ``RECORD KINDS`` below), plus name indexes for struct/union tags,
typedefs, base types and enums.  :class:`TypeModel` materializes records into
:class:`Type` objects on demand and caches them, so a 100k-type BTF costs
nothing until a struct is asked for, and pointer cycles (``list_head.next``)
are no problem because targets resolve lazily.

Record kinds (tuple layouts; ``tid`` = another type id):
    ("void",)
    ("int", name, size, signed, is_bool, is_char)
    ("float", name, size)
    ("ptr", tid)
    ("array", elem_tid, count)
    ("struct" | "union", name, size, [(member_name, tid, bit_offset, bit_size), ...])
        bit_size is 0 for ordinary members; bit_offset is from the struct start
    ("enum", name, size, signed, [(enumerator, value), ...])
    ("fwd", name, is_union)
    ("typedef", name, tid)
    ("const" | "volatile" | "restrict" | "type_tag", tid)
    ("func", name, proto_tid)
    ("proto", ret_tid, [(param_name, tid), ...])     # ret_tid None = void
    ("var", name, tid) / ("datasec", name, size)     # BTF only; not C types
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..errors import SymbolError

POINTER_SIZE = 8  # aarch64 only

_ANON_PREFIXES = ("unnamed_field",)  # dwarf2json names anonymous members like this


class Type:
    """Base of every type.  ``kind`` is one of: void int float pointer array
    struct union enum fwd typedef qualified func proto var datasec."""

    kind = "?"
    name: str | None = None

    @property
    def size(self) -> int | None:
        return None

    def resolve(self) -> "Type":
        """Strip typedefs and qualifiers (const, volatile, restrict, type tags)."""
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.c_name()}>"

    def c_name(self) -> str:
        return self.name or f"<anon {self.kind}>"


class VoidType(Type):
    kind = "void"
    name = "void"


class IntType(Type):
    kind = "int"

    def __init__(self, name: str, size: int, signed: bool = False, is_bool: bool = False, is_char: bool = False):
        self.name, self._size, self.signed, self.is_bool, self.is_char = name, size, signed, is_bool, is_char

    @property
    def size(self) -> int:
        return self._size


class FloatType(Type):
    kind = "float"

    def __init__(self, name: str, size: int):
        self.name, self._size = name, size

    @property
    def size(self) -> int:
        return self._size


class _Ref:
    """A lazily resolved type reference (a thunk called once)."""

    __slots__ = ("_get", "_value")

    def __init__(self, get: Callable[[], Type]):
        self._get, self._value = get, None

    def __call__(self) -> Type:
        if self._value is None:
            self._value = self._get()
        return self._value


def _deref(ref) -> Type:
    return ref() if isinstance(ref, _Ref) else ref


class PointerType(Type):
    kind = "pointer"

    def __init__(self, target):
        self._target = target

    @property
    def target(self) -> Type:
        return _deref(self._target)

    @property
    def size(self) -> int:
        return POINTER_SIZE

    def c_name(self) -> str:
        return f"{self.target.c_name()} *"


class ArrayType(Type):
    kind = "array"

    def __init__(self, element, count: int):
        self._element, self.count = element, count

    @property
    def element(self) -> Type:
        return _deref(self._element)

    @property
    def size(self) -> int | None:
        es = self.element.size
        return None if es is None else es * self.count

    def c_name(self) -> str:
        return f"{self.element.c_name()}[{self.count}]"


@dataclass(frozen=True)
class Field:
    """One member.  ``offset`` is in bytes from the start of the enclosing
    struct (for a flattened anonymous-member field: of the outer struct);
    ``bit_offset`` is the absolute bit offset from the same start, and
    ``bit_size`` is None unless the member is a bitfield (then read the
    storage from ``offset`` and shift right by ``bit_offset % 8``)."""

    name: str
    offset: int
    type_ref: Any
    bit_offset: int
    bit_size: int | None = None

    @property
    def type(self) -> Type:
        return _deref(self.type_ref)

    @property
    def is_bitfield(self) -> bool:
        return self.bit_size is not None


_PATH_TOKEN = re.compile(r"\s*(?:\.?\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*(-?\d+|0x[0-9a-fA-F]+)\s*\])")


class StructType(Type):
    """A struct or union.  ``members`` is the raw member list; ``fields``
    maps names to :class:`Field` with the members of anonymous struct/union
    members flattened in (offsets adjusted), which is how C code names them
    (task_struct in 6.1 wraps most members in an anonymous struct)."""

    def __init__(self, name: str | None, size: int | None, is_union: bool, members):
        self.name, self._size, self.is_union = name or None, size, is_union
        self._members = members  # list[Field] or a callable producing it
        self._fields: dict[str, Field] | None = None

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "union" if self.is_union else "struct"

    @property
    def size(self) -> int | None:
        return self._size

    @property
    def members(self) -> list[Field]:
        if callable(self._members):
            self._members = self._members()
        return self._members

    @property
    def fields(self) -> dict[str, Field]:
        if self._fields is None:
            out: dict[str, Field] = {}
            self._flatten(self, 0, out, 0)
            self._fields = out
        return self._fields

    @staticmethod
    def _flatten(st: "StructType", base_bits: int, out: dict, depth: int) -> None:
        if depth > 32:
            raise SymbolError(f"anonymous members of {st.c_name()} nest too deeply (type loop?)")
        for m in st.members:
            anon = not m.name or (m.name.startswith(_ANON_PREFIXES) and not m.bit_size)
            inner = m.type.resolve() if anon else None
            if anon and isinstance(inner, StructType):
                StructType._flatten(inner, base_bits + m.bit_offset, out, depth + 1)
                continue
            if not m.name or m.name in out:
                continue
            bo = base_bits + m.bit_offset
            out[m.name] = m if base_bits == 0 else Field(m.name, bo // 8, m.type_ref, bo, m.bit_size)

    def c_name(self) -> str:
        return f"{self.kind} {self.name}" if self.name else f"<anon {self.kind}>"

    def field(self, path: str) -> tuple[int, Type]:
        """Resolve ``"se.sum_exec_runtime"`` or ``"numbers[0].nr"`` through
        value members (not through pointers) to (byte offset, type)."""
        offset, cur = 0, self
        pos, text = 0, path.strip()
        if not text:
            raise SymbolError(f"empty field path for {self.c_name()}")
        while pos < len(text):
            m = _PATH_TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise SymbolError(f"bad field path {path!r} at {text[pos:]!r}")
            pos = m.end()
            base = cur.resolve()
            if m.group(1) is not None:
                if not isinstance(base, StructType):
                    raise SymbolError(f"{path!r}: {cur.c_name()} is not a struct/union (no member {m.group(1)!r})")
                f = base.fields.get(m.group(1))
                if f is None:
                    raise SymbolError(f"{base.c_name()} has no member {m.group(1)!r}")
                offset += f.offset
                cur = f.type
            else:
                if not isinstance(base, ArrayType):
                    raise SymbolError(f"{path!r}: {cur.c_name()} is not an array")
                idx = int(m.group(2), 0)
                es = base.element.size
                if es is None:
                    raise SymbolError(f"{path!r}: element size of {base.c_name()} unknown")
                offset += idx * es
                cur = base.element
        return offset, cur

    def offsetof(self, path: str) -> int:
        return self.field(path)[0]


UnionType = StructType  # one class; ``is_union`` tells them apart


class EnumType(Type):
    kind = "enum"

    def __init__(self, name: str | None, size: int, values: dict[str, int], signed: bool = False):
        self.name, self._size, self.values, self.signed = name or None, size, values, signed

    @property
    def size(self) -> int:
        return self._size

    def name_of(self, value: int) -> str | None:
        for k, v in self.values.items():
            if v == value:
                return k
        return None


class _Alias(Type):
    """A type that stands for another one (typedef, qualifier)."""

    _target = None

    @property
    def target(self) -> Type:
        return _deref(self._target)

    @property
    def size(self) -> int | None:
        return self.target.size

    def resolve(self) -> Type:
        t: Type = self
        for _ in range(64):
            if not isinstance(t, _Alias):
                return t
            t = t.target
        raise SymbolError(f"typedef loop at {self.name}")


class TypedefType(_Alias):
    kind = "typedef"

    def __init__(self, name: str, target):
        self.name, self._target = name, target


class QualifiedType(_Alias):
    kind = "qualified"

    def __init__(self, qualifier: str, target):
        self.qualifier, self._target = qualifier, target

    @property
    def name(self) -> str | None:  # type: ignore[override]
        return self.target.name

    def c_name(self) -> str:
        return f"{self.qualifier} {self.target.c_name()}"


class FuncProto(Type):
    kind = "proto"

    def __init__(self, ret, params: list[tuple[str, Any]]):
        self._ret, self.params = ret, params

    @property
    def ret(self) -> Type:
        return _deref(self._ret)


class FuncType(Type):
    kind = "func"

    def __init__(self, name: str, proto):
        self.name, self._proto = name, proto

    @property
    def proto(self) -> Type:
        return _deref(self._proto)


class FwdType(Type):
    """A declaration without a definition (``struct foo;``)."""

    kind = "fwd"

    def __init__(self, name: str, is_union: bool = False):
        self.name, self.is_union = name, is_union


class OtherType(Type):
    """BTF VAR/DATASEC and anything else that is not a C object type."""

    def __init__(self, kind: str, name: str | None, size: int | None = None):
        self.kind, self.name, self._size = kind, name, size

    @property
    def size(self) -> int | None:
        return self._size




_INDEXES = ("structs", "typedefs", "bases", "enums")


class RecordSource:
    """What a type source gives the model: records by id and name indexes.

    Subclasses fill ``structs`` (tag -> tid), ``typedefs``, ``bases``,
    ``enums`` (name -> tid), and implement :meth:`record` and :meth:`ids`."""

    source = "?"

    def __init__(self):
        self.structs: dict[str, int] = {}
        self.typedefs: dict[str, int] = {}
        self.bases: dict[str, int] = {}
        self.enums: dict[str, int] = {}

    def record(self, tid: int) -> tuple:
        raise NotImplementedError

    def ids(self) -> Iterator[int]:
        raise NotImplementedError

    def enumerator_index(self) -> dict[str, tuple[int, int]]:
        """enumerator name -> (enum tid, value); built on first use."""
        idx: dict[str, tuple[int, int]] = {}
        for tid in self.ids():
            r = self.record(tid)
            if r[0] == "enum":
                for n, v in r[4]:
                    idx.setdefault(n, (tid, v))
        return idx


class ListSource(RecordSource):
    """Records held in a dict/list (JSON export, DWARF/ISF conversion)."""

    def __init__(self, records, source: str = "json"):
        super().__init__()
        self.records = records
        self.source = source

    def record(self, tid: int) -> tuple:
        try:
            return self.records[tid]
        except (KeyError, IndexError):
            raise SymbolError(f"{self.source} type id {tid} does not exist") from None

    def ids(self) -> Iterator[int]:
        return iter(self.records.keys() if isinstance(self.records, dict) else range(len(self.records)))

    def index_names(self) -> "ListSource":
        """Build name indexes from the records (first complete definition wins)."""
        for tid in self.ids():
            _index_record(self, tid, self.record(tid))
        return self


def _index_record(src: RecordSource, tid: int, r: tuple) -> None:
    k = r[0]
    if k in ("struct", "union") and r[1]:
        src.structs.setdefault(r[1], tid)
    elif k == "fwd" and r[1]:
        pass  # a definition elsewhere wins; fwd-only names resolve via get() fallback
    elif k == "typedef":
        src.typedefs.setdefault(r[1], tid)
    elif k in ("int", "float"):
        src.bases.setdefault(r[1], tid)
    elif k == "enum" and r[1]:
        src.enums.setdefault(r[1], tid)


class _TypesView:
    """``tm.types["task_struct"]``: a read-only mapping over the model."""

    def __init__(self, model: "TypeModel"):
        self._m = model

    def __getitem__(self, name: str) -> Type:
        t = self._m.get(name)
        if t is None:
            raise KeyError(name)
        return t

    def __contains__(self, name) -> bool:
        return self._m.get(name) is not None

    def get(self, name, default=None):
        t = self._m.get(name)
        return default if t is None else t

    def __iter__(self):
        return iter(self._m._src.structs)

    def __len__(self) -> int:
        return len(self._m._src.structs)


_C_PREFIX = re.compile(r"^\s*(struct|union|enum)\s+")


class TypeModel:
    """The kernel's types, queried by name.  See module docstring."""

    def __init__(self, src: RecordSource):
        self._src = src
        self._cache: dict[int, Type] = {}
        self._enumerators: dict[str, tuple[int, int]] | None = None
        self.types = _TypesView(self)

    @property
    def source(self) -> str:
        return self._src.source

    # Pickle the records, not the materialized objects (their lazy references
    # are closures).  Sources that hold open files (DWARF) export their records.
    def __getstate__(self):
        src = self._src
        if not getattr(src, "picklable", True):
            copy = ListSource({tid: src.record(tid) for tid in src.ids()}, src.source)
            for attr in _INDEXES:
                setattr(copy, attr, dict(getattr(src, attr)))
            src = copy
        return {"src": src}

    def __setstate__(self, state):
        self.__init__(state["src"])

    # -- materialization ---------------------------------------------------
    def by_id(self, tid: int | None) -> Type:
        if tid is None:
            return _VOID
        t = self._cache.get(tid)
        if t is None:
            t = self._build(tid, self._src.record(tid))
            self._cache[tid] = t
        return t

    def _ref(self, tid):
        if tid is None:
            return _VOID
        t = self._cache.get(tid)
        return t if t is not None else _Ref(lambda: self.by_id(tid))

    def _build(self, tid: int, r: tuple) -> Type:
        k = r[0]
        if k == "int":
            return IntType(r[1], r[2], bool(r[3]), bool(r[4]), bool(r[5]))
        if k == "ptr":
            return PointerType(self._ref(r[1]))
        if k in ("struct", "union"):
            members = r[3]
            return StructType(r[1], r[2], k == "union", lambda: self._members(members))
        if k == "typedef":
            return TypedefType(r[1], self._ref(r[2]))
        if k in ("const", "volatile", "restrict", "type_tag"):
            return QualifiedType(k, self._ref(r[1]))
        if k == "array":
            return ArrayType(self._ref(r[1]), r[2])
        if k == "enum":
            return EnumType(r[1], r[2], dict(r[4]), bool(r[3]))
        if k == "void":
            return _VOID
        if k == "float":
            return FloatType(r[1], r[2])
        if k == "fwd":
            return FwdType(r[1], bool(r[2]))
        if k == "func":
            return FuncType(r[1], self._ref(r[2]))
        if k == "proto":
            return FuncProto(self._ref(r[1]), [(n, self._ref(t)) for n, t in r[2]])
        if k == "var":
            return OtherType("var", r[1])
        if k == "datasec":
            return OtherType("datasec", r[1], r[2])
        raise SymbolError(f"{self.source} type id {tid}: unknown record kind {k!r}")

    def _members(self, members) -> list[Field]:
        return [Field(n, bo // 8, self._ref(t), bo, bs or None) for n, t, bo, bs in members]

    # -- queries -----------------------------------------------------------
    def get(self, name: str) -> Type | None:
        """Struct/union by tag first, then typedef, then base type, then enum.
        A leading ``struct``/``union``/``enum`` keyword restricts the search."""
        m = _C_PREFIX.match(name)
        src = self._src
        if m:
            kw, name = m.group(1), name[m.end():].strip()
            tid = (src.enums if kw == "enum" else src.structs).get(name)
            if tid is None:
                return None
            t = self.by_id(tid)
            if kw != "enum" and (t.kind == "union") != (kw == "union"):
                return None
            return t
        for index in (src.structs, src.typedefs, src.bases, src.enums):
            tid = index.get(name)
            if tid is not None:
                return self.by_id(tid)
        if name == "void":
            return _VOID
        return None

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def struct(self, name: str) -> StructType:
        t = self.get(name)
        if t is None:
            raise SymbolError(f"type {name!r} is not in the {self.source} type information")
        r = t.resolve()
        if not isinstance(r, StructType):
            raise SymbolError(f"type {name!r} is a {r.kind}, not a struct or union")
        return r

    def offsetof(self, struct: str, path: str) -> int:
        return self.struct(struct).field(path)[0]

    def sizeof(self, name: str) -> int:
        t = self.get(name)
        if t is None:
            raise SymbolError(f"type {name!r} is not in the {self.source} type information")
        size = t.size
        if size is None:
            raise SymbolError(f"type {name!r} has no size (incomplete type)")
        return size

    def enum(self, name: str) -> EnumType:
        tid = self._src.enums.get(name)
        if tid is None:
            t = self.get(name)
            t = t.resolve() if t is not None else None
            if not isinstance(t, EnumType):
                raise SymbolError(f"enum {name!r} is not in the {self.source} type information")
            return t
        return self.by_id(tid)  # type: ignore[return-value]

    def enum_value(self, enum: str | None, enumerator: str) -> int:
        """Value of ``enumerator``; with ``enum=None`` search every enum."""
        if enum is not None:
            e = self.enum(enum)
            if enumerator not in e.values:
                raise SymbolError(f"enum {enum} has no enumerator {enumerator!r}")
            return e.values[enumerator]
        if self._enumerators is None:
            self._enumerators = self._src.enumerator_index()
        hit = self._enumerators.get(enumerator)
        if hit is None:
            raise SymbolError(f"no enum in the {self.source} type information has an enumerator {enumerator!r}")
        return hit[1]

    def struct_names(self) -> list[str]:
        return list(self._src.structs)

    def check_all(self) -> int:
        """Materialize every type and every reference; raise SymbolError on a
        dangling type id.  Returns the number of types checked."""
        n = 0
        for tid in self._src.ids():
            t = self.by_id(tid)
            n += 1
            if isinstance(t, (PointerType, TypedefType, QualifiedType)):
                t.target  # noqa: B018 (resolves the reference)
            elif isinstance(t, ArrayType):
                t.element  # noqa: B018
            elif isinstance(t, StructType):
                for m in t.members:
                    m.type  # noqa: B018
            elif isinstance(t, FuncType):
                t.proto  # noqa: B018
            elif isinstance(t, FuncProto):
                t.ret  # noqa: B018
                for _, p in t.params:
                    _deref(p)
        return n

    # -- export ------------------------------------------------------------
    def to_json(self) -> dict:
        """A self-contained JSON-able export (records renumbered densely)."""
        src = self._src
        remap: dict[int, int] = {}
        recs: list[tuple] = []
        for tid in src.ids():  # decoding may add inline types (ISF): ids() sees them
            remap[tid] = len(recs)
            recs.append(src.record(tid))

        def m(t):
            return None if t is None else remap[t]

        out = [_remap_record(r, m) for r in recs]
        names = {attr: {n: remap[t] for n, t in getattr(src, attr).items() if t in remap} for attr in _INDEXES}
        return {"format": "armvmi-types/1", "source": src.source, "records": out, "names": names}

    @classmethod
    def from_json(cls, data: dict) -> "TypeModel":
        if not isinstance(data, dict) or data.get("format") != "armvmi-types/1":
            raise SymbolError("not an armvmi type export (format armvmi-types/1 expected)")
        try:
            recs = [_tupleize(r) for r in data["records"]]
            src = ListSource(recs, data.get("source", "json"))
            names = data.get("names")
            if names:
                for attr in _INDEXES:
                    setattr(src, attr, dict(names.get(attr) or {}))
            else:
                src.index_names()
        except (KeyError, IndexError, TypeError) as e:
            raise SymbolError(f"corrupt armvmi type export: {type(e).__name__}: {e}") from None
        return cls(src)


def _remap_record(r: tuple, m) -> list:
    k = r[0]
    if k in ("ptr", "const", "volatile", "restrict", "type_tag"):
        return [k, m(r[1])]
    if k == "array":
        return [k, m(r[1]), r[2]]
    if k in ("struct", "union"):
        return [k, r[1], r[2], [[n, m(t), bo, bs] for n, t, bo, bs in r[3]]]
    if k in ("typedef", "var"):
        return [k, r[1], m(r[2])]
    if k == "func":
        return [k, r[1], m(r[2])]
    if k == "proto":
        return [k, m(r[1]), [[n, m(t)] for n, t in r[2]]]
    if k == "enum":
        return [k, r[1], r[2], r[3], [list(e) for e in r[4]]]
    return list(r)


def _tupleize(r: list) -> tuple:
    k = r[0]
    if k in ("struct", "union"):
        return (k, r[1], r[2], [tuple(x) for x in r[3]])
    if k == "proto":
        return (k, r[1], [tuple(x) for x in r[2]])
    if k == "enum":
        return (k, r[1], r[2], r[3], [tuple(x) for x in r[4]])
    return tuple(r)


_VOID = VoidType()
