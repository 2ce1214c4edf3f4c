"""BTF (BPF Type Format) parser: the kernel's own type information.

Kernels built with CONFIG_DEBUG_INFO_BTF keep the blob in memory between
``__start_BTF`` and ``__stop_BTF``.  Layout (include/uapi/linux/btf.h): a
header, a type section (a sequence of ``struct btf_type`` each followed by a
kind-specific trailer) and a string section.  Type ids count from 1 in
section order; id 0 is ``void``.

Parsing is two-stage so a 5 MB / 100k-type blob costs well under a second:
one pass over the type section records where each type starts and indexes the
names of structs, unions, enums, typedefs and base types; a type's members are
decoded only when the model asks for that type.
"""

from __future__ import annotations

import struct as _struct

from construct import Const, Int8ul, Int16ul, Int32sl, Int32ul, Struct

from ..errors import SymbolError
from .types import RecordSource, TypeModel

BTF_MAGIC = 0xEB9F

btf_header = Struct(
    "magic" / Const(BTF_MAGIC, Int16ul),
    "version" / Int8ul,
    "flags" / Int8ul,
    "hdr_len" / Int32ul,
    "type_off" / Int32ul,  # offsets are relative to the end of the header
    "type_len" / Int32ul,
    "str_off" / Int32ul,
    "str_len" / Int32ul,
)

# struct btf_type: name_off; info (vlen 0-15, kind 24-28, kind_flag 31); size|type
btf_type = Struct("name_off" / Int32ul, "info" / Int32ul, "size_type" / Int32ul)
btf_array = Struct("type" / Int32ul, "index_type" / Int32ul, "nelems" / Int32ul)
btf_member = Struct("name_off" / Int32ul, "type" / Int32ul, "offset" / Int32ul)
btf_enum = Struct("name_off" / Int32ul, "val" / Int32sl)
btf_enum64 = Struct("name_off" / Int32ul, "val_lo32" / Int32ul, "val_hi32" / Int32ul)
btf_param = Struct("name_off" / Int32ul, "type" / Int32ul)
btf_var = Struct("linkage" / Int32ul)
btf_var_secinfo = Struct("type" / Int32ul, "offset" / Int32ul, "size" / Int32ul)
btf_decl_tag = Struct("component_idx" / Int32sl)

KINDS = {
    0: "UNKN", 1: "INT", 2: "PTR", 3: "ARRAY", 4: "STRUCT", 5: "UNION", 6: "ENUM", 7: "FWD",
    8: "TYPEDEF", 9: "VOLATILE", 10: "CONST", 11: "RESTRICT", 12: "FUNC", 13: "FUNC_PROTO",
    14: "VAR", 15: "DATASEC", 16: "FLOAT", 17: "DECL_TAG", 18: "TYPE_TAG", 19: "ENUM64",
}
(K_INT, K_PTR, K_ARRAY, K_STRUCT, K_UNION, K_ENUM, K_FWD, K_TYPEDEF, K_VOLATILE, K_CONST, K_RESTRICT,
 K_FUNC, K_FUNC_PROTO, K_VAR, K_DATASEC, K_FLOAT, K_DECL_TAG, K_TYPE_TAG, K_ENUM64) = range(1, 20)

# Trailer size after the 12-byte btf_type: fixed part, and per-vlen element size.
_FIXED = {K_INT: 4, K_ARRAY: btf_array.sizeof(), K_VAR: btf_var.sizeof(), K_DECL_TAG: btf_decl_tag.sizeof()}
_PER_VLEN = {
    K_STRUCT: btf_member.sizeof(), K_UNION: btf_member.sizeof(), K_ENUM: btf_enum.sizeof(),
    K_FUNC_PROTO: btf_param.sizeof(), K_DATASEC: btf_var_secinfo.sizeof(), K_ENUM64: btf_enum64.sizeof(),
}
_TYPE = _struct.Struct("<III")  # the same layout as btf_type, for the hot loop
assert _TYPE.size == btf_type.sizeof()
_U32 = _struct.Struct("<I")
_ARRAY = _struct.Struct("<III")
_MEMBER = _struct.Struct("<III")
_ENUM = _struct.Struct("<Ii")
_ENUM64 = _struct.Struct("<III")
_PARAM = _struct.Struct("<II")

_QUALIFIER = {K_VOLATILE: "volatile", K_CONST: "const", K_RESTRICT: "restrict", K_TYPE_TAG: "type_tag"}


class BtfSource(RecordSource):
    source = "btf"

    def __init__(self, data: bytes):
        super().__init__()
        data = bytes(data)
        if len(data) < btf_header.sizeof():
            raise SymbolError(f"BTF blob too short ({len(data)} bytes)")
        try:
            hdr = btf_header.parse(data)
        except Exception:
            magic = int.from_bytes(data[:2], "little")
            raise SymbolError(f"not BTF: magic {magic:#06x}, expected {BTF_MAGIC:#06x}") from None
        if hdr.version != 1:
            raise SymbolError(f"unsupported BTF version {hdr.version}")
        self.header = hdr
        t0 = hdr.hdr_len + hdr.type_off
        s0 = hdr.hdr_len + hdr.str_off
        if hdr.hdr_len < btf_header.sizeof() or t0 + hdr.type_len > len(data) or s0 + hdr.str_len > len(data):
            raise SymbolError(
                f"BTF header out of bounds (types {t0:#x}+{hdr.type_len:#x}, strings {s0:#x}+{hdr.str_len:#x}, blob {len(data):#x})"
            )
        self._data = data
        self._str0, self._str_end = s0, s0 + hdr.str_len
        self._offsets = self._scan(t0, t0 + hdr.type_len)

    # -- the parse index, as a cache entry (see resolve.btf_types) ----------
    def index_sections(self) -> list[bytes]:
        """What :meth:`_scan` built, as plain byte strings."""
        from array import array

        from .cachefile import pack_names

        out = [array("I", self._offsets[1:]).tobytes()]
        for idx in (self.structs, self.typedefs, self.bases, self.enums):
            out.append(pack_names(idx) or b"")
            out.append(array("I", idx.values()).tobytes())
        return out

    @classmethod
    def from_index(cls, data: bytes, sec: list[bytes]) -> "BtfSource | None":
        """A source over ``data`` with the index :meth:`index_sections` wrote,
        or None when the index does not have the right shape for this blob."""
        from array import array

        from .cachefile import unpack_names

        self = cls.__new__(cls)
        RecordSource.__init__(self)
        data = bytes(data)
        try:
            hdr = btf_header.parse(data)
        except Exception:
            return None
        t0, s0 = hdr.hdr_len + hdr.type_off, hdr.hdr_len + hdr.str_off
        if len(sec) != 9 or any(len(x) % 4 for x in sec[0::2]) or hdr.hdr_len < btf_header.sizeof():
            return None
        if t0 + hdr.type_len > len(data) or s0 + hdr.str_len > len(data):
            return None
        offs = array("I")
        offs.frombytes(sec[0])
        if offs and (offs[0] != t0 or max(offs) + 12 > t0 + hdr.type_len):
            return None
        n = len(offs) + 1
        for i, idx in enumerate((self.structs, self.typedefs, self.bases, self.enums)):
            tids = array("I")
            tids.frombytes(sec[2 + 2 * i])
            names = unpack_names(sec[1 + 2 * i], len(tids))
            if names is None or (tids and not 0 < min(tids) <= max(tids) < n):
                return None
            idx.update(zip(names, tids))
        self.header, self._data = hdr, data
        self._str0, self._str_end = s0, s0 + hdr.str_len
        self._offsets = [-1] + offs.tolist()
        return self

    def _name(self, off: int) -> str:
        if off == 0:
            return ""
        start = self._str0 + off
        if start >= self._str_end:
            raise SymbolError(f"BTF string offset {off:#x} outside the string section")
        end = self._data.find(b"\0", start, self._str_end)
        if end < 0:
            raise SymbolError(f"BTF string at {off:#x} is not NUL-terminated")
        return self._data[start:end].decode("utf-8", "replace")

    def _scan(self, pos: int, end: int) -> list[int]:
        """Record where each type starts; index names.  offsets[0] is void."""
        data, unpack, name = self._data, _TYPE.unpack_from, self._name
        offsets = [-1]
        structs, typedefs, bases, enums = self.structs, self.typedefs, self.bases, self.enums
        fixed, per = _FIXED, _PER_VLEN
        while pos < end:
            if pos + 12 > end:
                raise SymbolError(f"BTF type section truncated at {pos:#x}")
            name_off, info, _ = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            tid = len(offsets)
            offsets.append(pos)
            if kind == 0 or kind > K_ENUM64:
                raise SymbolError(f"BTF type id {tid}: unknown kind {kind}")
            pos += 12 + fixed.get(kind, 0) + per.get(kind, 0) * (info & 0xFFFF)
            if name_off:
                if kind == K_STRUCT or kind == K_UNION:
                    structs.setdefault(name(name_off), tid)
                elif kind == K_TYPEDEF:
                    typedefs.setdefault(name(name_off), tid)
                elif kind == K_INT or kind == K_FLOAT:
                    bases.setdefault(name(name_off), tid)
                elif kind == K_ENUM or kind == K_ENUM64:
                    enums.setdefault(name(name_off), tid)
        if pos != end:
            raise SymbolError(f"BTF type section overruns its length ({pos:#x} > {end:#x})")
        return offsets

    def __len__(self) -> int:
        return len(self._offsets)

    def ids(self):
        return iter(range(len(self._offsets)))

    def _tid(self, t: int, owner: int):
        if t >= len(self._offsets):
            raise SymbolError(f"BTF type id {owner} refers to type id {t}, which does not exist (last is {len(self._offsets) - 1})")
        return None if t == 0 else t

    def record(self, tid: int) -> tuple:
        if tid == 0:
            return ("void",)
        if not 0 < tid < len(self._offsets):
            raise SymbolError(f"BTF type id {tid} does not exist (last is {len(self._offsets) - 1})")
        data, pos = self._data, self._offsets[tid]
        name_off, info, size_type = _TYPE.unpack_from(data, pos)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        name = self._name(name_off)
        p = pos + 12
        if kind == K_INT:
            (enc,) = _U32.unpack_from(data, p)
            # pahole leaves BTF_INT_CHAR clear on plain (unsigned, on arm64) char: go by the name too.
            is_char = bool(enc >> 24 & 2) or (size_type == 1 and "char" in name)
            return ("int", name, size_type, bool(enc >> 24 & 1), bool(enc >> 24 & 4), is_char)
        if kind == K_PTR:
            return ("ptr", self._tid(size_type, tid))
        if kind == K_ARRAY:
            elem, _index, n = _ARRAY.unpack_from(data, p)
            return ("array", self._tid(elem, tid), n)
        if kind in (K_STRUCT, K_UNION):
            members = []
            for i in range(vlen):
                m_name, m_type, m_off = _MEMBER.unpack_from(data, p + 12 * i)
                # kind_flag: offset packs bitfield size (bits 24-31) and bit offset (0-23)
                bits, bsize = (m_off & 0xFFFFFF, m_off >> 24) if kflag else (m_off, 0)
                members.append((self._name(m_name), self._tid(m_type, tid), bits, bsize))
            if not kflag:
                members = [self._legacy_bitfield(m) for m in members]
            return ("struct" if kind == K_STRUCT else "union", name, size_type, members)
        if kind == K_ENUM:
            vals = []
            for i in range(vlen):
                e_name, val = _ENUM.unpack_from(data, p + 8 * i)
                vals.append((self._name(e_name), val if kflag else val & 0xFFFFFFFF))
            return ("enum", name, size_type, bool(kflag), vals)
        if kind == K_ENUM64:
            vals = []
            for i in range(vlen):
                e_name, lo, hi = _ENUM64.unpack_from(data, p + 12 * i)
                v = hi << 32 | lo
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                vals.append((self._name(e_name), v))
            return ("enum", name, size_type, bool(kflag), vals)
        if kind == K_FWD:
            return ("fwd", name, bool(kflag))
        if kind == K_TYPEDEF:
            return ("typedef", name, self._tid(size_type, tid))
        if kind in _QUALIFIER:
            return (_QUALIFIER[kind], self._tid(size_type, tid))
        if kind == K_FUNC:
            return ("func", name, self._tid(size_type, tid))
        if kind == K_FUNC_PROTO:
            params = []
            for i in range(vlen):
                p_name, p_type = _PARAM.unpack_from(data, p + 8 * i)
                params.append((self._name(p_name), self._tid(p_type, tid)))
            return ("proto", self._tid(size_type, tid), params)
        if kind == K_VAR:
            return ("var", name, self._tid(size_type, tid))
        if kind == K_DATASEC:
            for i in range(vlen):
                self._tid(_U32.unpack_from(data, p + 12 * i)[0], tid)
            return ("datasec", name, size_type)
        if kind == K_FLOAT:
            return ("float", name, size_type)
        if kind == K_DECL_TAG:
            # An annotation on another type, not a type itself; keep it resolvable.
            return ("type_tag", self._tid(size_type, tid))
        raise SymbolError(f"BTF type id {tid}: unknown kind {kind}")

    def _legacy_bitfield(self, m: tuple) -> tuple:
        """Without kind_flag, a bitfield's size lives in its INT type's encoding."""
        name, t, bits, _ = m
        if t is None:
            return m
        data, pos = self._data, self._offsets[t]
        _, info, size = _TYPE.unpack_from(data, pos)
        if (info >> 24) & 0x1F == K_INT:
            (enc,) = _U32.unpack_from(data, pos + 12)
            nr_bits, int_off = enc & 0xFF, (enc >> 16) & 0xFF
            if nr_bits != size * 8 or int_off:
                return (name, t, bits + int_off, nr_bits)
        return m


def parse_btf(data: bytes) -> TypeModel:
    """Parse a raw BTF blob into a :class:`TypeModel` (source ``"btf"``)."""
    return TypeModel(BtfSource(data))


def btf_kind_counts(data: bytes) -> dict[str, int]:
    """How many types of each kind a blob holds (for `profile show` and tests)."""
    src = BtfSource(data)
    counts: dict[str, int] = {}
    for tid in range(1, len(src)):
        _, info, _ = _TYPE.unpack_from(src._data, src._offsets[tid])
        k = KINDS[(info >> 24) & 0x1F]
        counts[k] = counts.get(k, 0) + 1
    return counts
