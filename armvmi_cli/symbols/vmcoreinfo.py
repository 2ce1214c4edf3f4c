"""VMCOREINFO: the kernel's own description of itself.

Every CRASH_CORE kernel keeps this ``KEY=VALUE`` text in memory (the
``vmcoreinfo_data`` page and a copy inside ``vmcoreinfo_note``) even when the
dump format carries no note.  It gives the release, build id, page size,
VA_BITS, ``kimage_voffset``, ``PHYS_OFFSET``, the KASLR offset and
``swapper_pg_dir`` — everything needed to walk the kernel's page tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..memory.scan import read_cstring, scan

ANCHOR = b"OSRELEASE="


def parse(text: str | bytes) -> dict[str, str]:
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    out: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if sep and key and " " not in key:
            out[key] = value.strip()
    return out


@dataclass
class VmcoreInfo:
    """The parsed fields armvmi relies on; ``raw`` keeps every line."""

    raw: dict[str, str]
    address: int | None = None  # where the text was found (in the scanned layer)
    source: str = "note"
    derived: bool = False  # built by armvmi (banner + System.map), not the kernel's own text

    def _hex(self, key: str) -> int | None:
        v = self.raw.get(key)
        if v is None:
            return None
        try:
            return int(v, 16)
        except ValueError:
            return None

    def _num(self, key: str) -> int | None:
        v = self.raw.get(key)
        if v is None:
            return None
        try:
            return int(v, 0)
        except ValueError:
            return None

    @property
    def release(self) -> str | None:
        return self.raw.get("OSRELEASE")

    @property
    def build_id(self) -> str | None:
        return self.raw.get("BUILD-ID")

    @property
    def page_size(self) -> int | None:
        return self._num("PAGESIZE")

    @property
    def va_bits(self) -> int | None:
        return self._num("NUMBER(VA_BITS)")

    @property
    def kimage_voffset(self) -> int | None:
        return self._hex("NUMBER(kimage_voffset)")

    @property
    def phys_offset(self) -> int | None:
        return self._hex("NUMBER(PHYS_OFFSET)")

    @property
    def kaslr_offset(self) -> int | None:
        return self._hex("KERNELOFFSET")

    def symbol(self, name: str) -> int | None:
        return self._hex(f"SYMBOL({name})")

    def offset(self, name: str) -> int | None:
        return self._num(f"OFFSET({name})")

    @property
    def complete(self) -> bool:
        """True when it carries what a page-table walk needs."""
        return None not in (self.symbol("swapper_pg_dir"), self.kimage_voffset, self.page_size)


def iter_memory(layer, ranges=None, limit: int = 64):
    """Each complete, distinct VMCOREINFO text in ``layer``, in address order,
    as it is found (a caller that needs only one stops the search early)."""
    seen: set[tuple] = set()
    for addr in scan(layer, ANCHOR, ranges):
        text = read_cstring(layer, addr, 8192)
        info = VmcoreInfo(parse(text), address=addr, source=f"VMCOREINFO text in memory at {addr:#x}")
        if not info.complete:
            continue  # the printf format string "OSRELEASE=%s", a torn copy ...
        key = tuple(sorted(info.raw.items()))
        if key in seen:
            continue
        seen.add(key)
        yield info
        if len(seen) >= limit:
            return


def scan_memory(layer, ranges=None, limit: int = 64) -> list[VmcoreInfo]:
    """Every complete, distinct VMCOREINFO text in ``layer``.

    A host image holds its guests' copies too (guest RAM is host memory), so
    more than one distinct result is normal; the caller picks by checking
    each against the page tables.
    """
    return list(iter_memory(layer, ranges, limit))
