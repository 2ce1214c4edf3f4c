"""Render a kernel object's fields as a nested, JSON-able tree (``armvmi struct``)."""

from __future__ import annotations

from ..errors import ArmvmiError
from .object import Object, Pointer, is_kind, strip

MAX_FIELDS = 400


def _tname(t) -> str:
    c = getattr(t, "c_name", None)
    return c() if c else (getattr(t, "name", None) or "?")


def format_object(kernel, obj: Object, depth: int = 1) -> dict:
    t = strip(obj.type_)
    if not isinstance(getattr(t, "fields", None), dict):
        from ..errors import SymbolError

        raise SymbolError(f"{_tname(t)} is not a struct or union (a {getattr(t, 'kind', 'non-struct')} type)")
    kernel.read(obj.address_, 1)  # an object where nothing maps is no object: exit 4, not a screen of <unreadable>
    hit = kernel.lookup(obj.address_)
    out = {"type": _tname(t), "address": f"{obj.address_:#x}", "symbol": f"{hit[0]}+{hit[1]:#x}" if hit else None}
    out["fields"] = _fields(kernel, obj, depth)
    return out


def _fields(kernel, obj: Object, depth: int) -> list[dict]:
    t = strip(obj.type_)
    rows = []
    for name, f in list(t.fields.items())[:MAX_FIELDS]:
        row = {"name": name, "type": _tname(f.type), "offset": f.offset}
        try:
            val = obj.member_(name)
        except (ArmvmiError, AttributeError) as e:
            row["error"] = str(e)
            row["display"] = f"<unreadable: {e}>"
            rows.append(row)
            continue
        if isinstance(val, Pointer):
            row["value"] = f"{int(val):#x}"  # an address: a 0x string in JSON, like every address
            sym = kernel.lookup(int(val)) if int(val) else None
            row["display"] = f"{int(val):#x}" + (f" <{sym[0]}+{sym[1]:#x}>" if sym else "")
        elif isinstance(val, Object):
            vt = strip(val.type_)
            if is_kind(vt, "struct", "union") and depth > 0:
                row["fields"] = _fields(kernel, val, depth - 1)
                row["display"] = ""
            elif is_kind(vt, "array"):
                n = min(len(val), 16)
                try:
                    items = [val[i] for i in range(n)]
                    row["value"] = [int(x) if isinstance(x, int) else str(x) for x in items]
                    row["display"] = "[" + ", ".join(hex(x) if isinstance(x, int) else "{...}" for x in items) + (", ...]" if len(val) > n else "]")
                except ArmvmiError as e:
                    row["display"] = f"<unreadable: {e}>"
            else:
                row["display"] = "{...}"
        elif isinstance(val, str):
            row["value"] = val
            row["display"] = repr(val)
        else:
            row["value"] = val
            row["display"] = f"{val} ({val:#x})" if isinstance(val, int) and val > 9 else str(val)
        rows.append(row)
    return rows
