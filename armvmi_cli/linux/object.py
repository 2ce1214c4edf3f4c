"""Typed kernel objects: a struct's fields read by name, as in the kernel source.

``task.pid`` is an int, ``task.comm`` a str, ``task.mm`` a :class:`Pointer`
whose attributes dereference it (``task.mm.pgd``), nested structs are
:class:`Object` s.  Layouts always come from the kernel's own type model (BTF,
DWARF or ISF), never from offset tables.
"""

from __future__ import annotations

from ..errors import ArmvmiError, SymbolError


def strip(t):
    """Remove typedefs and qualifiers."""
    return t.resolve()


def is_kind(t, *kinds: str) -> bool:
    return strip(t).kind in kinds


class Pointer(int):
    """A pointer value: an int that dereferences on attribute access."""

    def __new__(cls, value: int, kernel, target):
        self = super().__new__(cls, value)
        self._kernel = kernel
        self._target = target
        return self

    def deref(self) -> "Object":
        if int(self) == 0:
            raise ArmvmiError("NULL pointer dereference")
        return Object(self._kernel, self._target, int(self))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        if not is_kind(self._target, "struct", "union"):
            raise AttributeError(f"pointer to {getattr(self._target, 'name', '?')} has no field {name}")
        return getattr(self.deref(), name)

    def __repr__(self) -> str:
        return f"Pointer({int(self):#x})"


class Object:
    """A struct/union/array at an address of a kernel's virtual memory."""

    __slots__ = ("_kernel", "_type", "_address")

    def __init__(self, kernel, type_, address: int):
        self._kernel = kernel
        self._type = type_
        self._address = address

    @property
    def address_(self) -> int:
        return self._address

    @property
    def type_(self):
        return self._type

    def member_(self, path: str):
        t = strip(self._type)
        try:
            off, ftype, bit_off, bit_size = _field(t, path)
        except (KeyError, AttributeError, SymbolError):
            raise AttributeError(f"{getattr(t, 'name', '?')} has no field {path!r}") from None
        return value_of(self._kernel, ftype, self._address + off, bit_off, bit_size)

    def __getattr__(self, name: str):
        if name.startswith("__"):  # dunders are Python's; `__state` is read with member_("__state")
            raise AttributeError(name)
        return self.member_(name)

    def has_member_(self, path: str) -> bool:
        try:
            _field(strip(self._type), path)
            return True
        except (KeyError, AttributeError, SymbolError):
            return False

    def offsetof_(self, path: str) -> int:
        return _field(strip(self._type), path)[0]

    def __getitem__(self, i: int):
        t = strip(self._type)
        if not is_kind(t, "array"):
            raise TypeError("not an array")
        count = getattr(t, "count", None)
        # count 0 is a flexible array member (``struct upid numbers[]``).
        if count and not (0 <= i < count):
            raise IndexError(i)
        el = t.element
        return value_of(self._kernel, el, self._address + i * strip(el).size)

    def __len__(self) -> int:
        t = strip(self._type)
        return getattr(t, "count", 0) or 0

    def read_bytes_(self) -> bytes:
        return self._kernel.read(self._address, strip(self._type).size)

    def __repr__(self) -> str:
        return f"<{getattr(strip(self._type), 'name', '?')} at {self._address:#x}>"


def _field(t, path: str):
    """(byte offset, type, bit shift, bit_size) of a member path such as
    ``tasks``, ``se.vruntime`` or ``numbers[0].nr``, within value types.
    Bitfields are direct members; a path resolves through the type model."""
    direct = t.fields.get(path)
    if direct is not None:
        bits = direct.bit_size
        return direct.offset, direct.type, (direct.bit_offset % 8 if bits else None), bits
    off, ftype = t.field(path)
    return off, ftype, None, None


def value_of(kernel, type_, address: int, bit_offset=None, bit_size=None):
    t = strip(type_)
    if is_kind(t, "struct", "union"):
        return Object(kernel, t, address)
    if is_kind(t, "array"):
        el = strip(t.element)
        if el.kind == "int" and el.is_char:
            n = getattr(t, "count", 0) or 0
            raw = kernel.read(address, n)
            return raw.split(b"\0", 1)[0].decode("utf-8", "replace")
        return Object(kernel, t, address)
    if is_kind(t, "pointer"):
        return Pointer(kernel.read_u64(address), kernel, t.target)
    if is_kind(t, "int", "enum", "bool", "float"):
        size = t.size
        if bit_size:
            # ``address`` is the byte holding the first bit; bit_offset is the shift within it.
            nbytes = (bit_offset + bit_size + 7) // 8
            raw = int.from_bytes(kernel.read(address, nbytes), "little")
            return (raw >> bit_offset) & ((1 << bit_size) - 1)
        signed = getattr(t, "signed", False)
        return int.from_bytes(kernel.read(address, size), "little", signed=signed)
    raise SymbolError(f"cannot read a value of type {t.c_name()}")
