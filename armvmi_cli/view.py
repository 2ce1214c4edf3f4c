"""Views: one shape for everything armvmi lists.

A view is a library function that reads one kernel and returns a
:class:`ViewResult` -- a list of records (dataclasses), the problems met on
the way, whether the walk was complete, and any :class:`Finding` s -- plus a
declared list of :class:`Column` s for people.  The CLI renders every view the
same way (``armvmi_cli.cli.views``): a rich table on a terminal, plain aligned
columns when piped, ``--json`` and ``--jsonl`` for scripts.

JSON convention (documented in ``man/armvmi.1``): a record's fields keep their
names; fields declared with :func:`addr` (addresses, page-table entries,
register values) are ``"0x..."`` strings, because 64-bit values do not survive
a JSON number in most tools; counts and ids are numbers.

Adding a view is one library function and one :class:`View` declaration::

    MAPS = View("maps", "memory maps of each process", collect=maps_view,
                columns=(Column("pid", align="right"), Column("start", kind="addr"), ...))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

ADDR = "addr"
SEVERITIES = ("info", "warning", "error", "critical")


def addr(default=None, **kw):
    """A dataclass field holding an address: rendered ``0x...`` in tables and JSON."""
    return field(default=default, metadata={"kind": ADDR}, **kw)


def hexs(v):
    """An address as JSON: ``"0x..."``, or None."""
    return None if v is None else f"{v:#x}"


@dataclass
class Finding:
    """Something an analyst must look at: a hidden object, a hook, a log that
    lies.  ``evidence`` holds the facts (addresses already as ``0x`` strings)."""

    kind: str
    severity: str  # one of SEVERITIES
    vm: str | None
    message: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "severity": self.severity, "vm": self.vm, "message": self.message,
                "evidence": to_json(self.evidence)}


@dataclass
class ViewResult:
    records: list = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # warnings met on the way
    complete: bool = True  # False: the records are a partial answer (exit 5)
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class Column:
    """One table column: a record field, how to show it, and how important it
    is (0 is never dropped; on a narrow terminal the highest numbers go first)."""

    field: str
    header: str | None = None
    align: str = "left"
    priority: int = 0
    kind: str | None = None  # ADDR, "list" (space-joined), "bool" (yes/blank); None: from the record's field
    fmt: Callable[[Any], str] | None = None

    @property
    def title(self) -> str:
        return self.header if self.header is not None else self.field.upper()


@dataclass(frozen=True)
class View:
    name: str  # the records' key in --json ("tasks", "maps")
    help: str
    columns: tuple[Column, ...]
    collect: Callable[..., ViewResult]  # collect(kernel, **params) -> ViewResult


# -- records as JSON ------------------------------------------------------------------------------

def _field_kinds(cls) -> dict:
    kinds = _KINDS.get(cls)
    if kinds is None:
        kinds = {f.name: f.metadata.get("kind") for f in dataclasses.fields(cls)}
        _KINDS[cls] = kinds
    return kinds


_KINDS: dict = {}


def to_json(value, kind=None):
    """A record (or any value inside one) as JSON-able data, by the convention above."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if hasattr(value, "to_dict") and not hasattr(value, "__view_record__"):
            return value.to_dict()
        kinds = _field_kinds(type(value))
        return {k: to_json(getattr(value, k), kinds[k]) for k in kinds}
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return f"{value:#x}" if kind == ADDR else int(value)
    if isinstance(value, dict):
        return {str(k): to_json(v, kind) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [to_json(v, kind) for v in items]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, float)):
        return value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


# -- the one convention, applied to every document a command prints -------------------------------

import re as _re

# Keys whose integer values are addresses, register values, table bases or descriptors.
ADDRESS_KEY = _re.compile(
    r"^(address|addr|start|end|base|va|pa|gva|gpa|hpa|phys|target|descriptor|vttbr|vtcr|ttbr[01]?|tcr|sctlr|vbar"
    r"|struct_kvm|struct_kvm_vcpu|task_struct|swapper_pg_dir|kimage_voffset|phys_offset|page_offset|kaslr_slide"
    r"|slide|x\d+|sp|pc|elr|pstate)$"
    r"|(_addr|_address|_va|_pa|_gpa|_hpa|_phys|_base|_voffset|_el[0-3])$", _re.IGNORECASE)
MAX_SAFE_INT = 2**53  # beyond this a JSON number loses bits in most tools


def json_convention(value, key=None):
    """A JSON-able document by the convention of man/armvmi.1: an integer
    under an address-like key, or any integer too large for a double, is a
    ``"0x..."`` string; other numbers stay numbers; ``vm`` is a string label
    and ``vm_id`` the registry's number or null."""
    if isinstance(value, dict):
        out = {k: json_convention(v, k) for k, v in value.items()}
        if "vm" in out or "vm_id" in out:
            vm, vm_id = out.get("vm"), out.get("vm_id")
            if isinstance(vm_id, str):  # a label where a number belongs ("kvm-97", "guest", "host")
                out["vm_id"] = None
                out.setdefault("vm", vm_id)
                if out["vm"] is None:
                    out["vm"] = vm_id
            if "vm" in out and out["vm"] is not None and not isinstance(out["vm"], str):
                out["vm"] = str(out["vm"])
        return out
    if isinstance(value, (list, tuple)):
        return [json_convention(v, key) for v in value]
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    if key not in ("vm_id",) and ((key is not None and ADDRESS_KEY.search(str(key))) or abs(value) > MAX_SAFE_INT):
        return f"{value:#x}" if value >= 0 else f"-{-value:#x}"
    return value


def record(cls):
    """Class decorator for view records: a dataclass that JSON-encodes by
    field metadata (even if it also has its own ``to_dict``)."""
    cls = dataclass(cls)
    cls.__view_record__ = True
    return cls


def cell(rec, col: Column) -> str:
    """One table cell as text."""
    v = getattr(rec, col.field, None)
    if col.fmt is not None:
        return col.fmt(v)
    kind = col.kind or (_field_kinds(type(rec)).get(col.field) if dataclasses.is_dataclass(rec) else None)
    if v is None:
        return "-"
    if kind == ADDR and isinstance(v, int):
        return f"{v:#x}"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, (list, tuple)):
        return " ".join(f"{x:#x}" if kind == ADDR and isinstance(x, int) else str(x) for x in v)
    return str(v)
