"""The ``PhysicalMemory`` interface every image reader implements.

A reader maps physical addresses to bytes.  It is the bottom of the layer stack
(host physical -> stage 2 -> guest physical -> stage 1 -> guest virtual); the
translation layers in :mod:`armvmi_cli.mmu` expose the same ``read`` /
``is_mapped`` pair so that they stack on top of it or of each other.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from ..errors import ImageFormatError, MemoryReadError, UsageError


@dataclass(frozen=True)
class Range:
    """A run of physical memory present in the image: [start, end)."""

    start: int
    end: int  # exclusive

    @property
    def size(self) -> int:
        return self.end - self.start

    def __contains__(self, pa: int) -> bool:
        return self.start <= pa < self.end


class PhysicalMemory:
    """Base class of image readers.

    Subclasses set ``format`` and implement ``_ranges`` (sorted, non-overlapping
    :class:`Range` list) and ``_read_in_range(range_index, pa, n)`` which returns
    exactly ``n`` bytes lying wholly inside that range.  The base class splits
    reads across ranges and raises :class:`MemoryReadError` for holes.
    """

    format: str = "unknown"
    layer_name: str = "host physical"
    #: why an address outside every range cannot be read (sparse snapshots say more)
    hole_reason: str = "not in image (hole or past the end)"

    def __init__(self, path: str | None = None):
        self.path = path
        self._ranges: list[Range] = []
        self._starts: list[int] = []
        #: VMCOREINFO key -> value (strings), when the image carries the note.
        self.vmcoreinfo: dict[str, str] | None = None
        #: free-form metadata: host name, capture time, boot_id, notes ...
        self.metadata: dict = {}
        #: an embedded .smclog event log (bytes), for .armvmi snapshots
        self.embedded_events: bytes | None = None

    # -- set-up helpers for subclasses ------------------------------------
    def _set_ranges(self, ranges: list[Range]) -> None:
        ranges = sorted((r for r in ranges if r.size > 0), key=lambda r: r.start)
        for a, b in zip(ranges, ranges[1:]):
            if b.start < a.end:
                raise ImageFormatError(
                    f"{self.path or 'image'}: overlapping physical ranges {a.start:#x}-{a.end:#x} and {b.start:#x}-{b.end:#x}"
                )
        self._ranges = ranges
        self._starts = [r.start for r in ranges]

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the interface -----------------------------------------------------
    def ranges(self) -> list[Range]:
        return list(self._ranges)

    @property
    def size(self) -> int:
        """Total bytes of physical memory present (not the file size)."""
        return sum(r.size for r in self._ranges)

    def _find(self, pa: int) -> int:
        i = bisect.bisect_right(self._starts, pa) - 1
        if i >= 0 and pa < self._ranges[i].end:
            return i
        return -1

    def is_mapped(self, pa: int) -> bool:
        return self._find(pa) >= 0

    def read(self, pa: int, n: int) -> bytes:
        try:
            bad = n <= 0 or pa < 0 or pa >> 64
        except TypeError:
            bad = True
        if bad:  # the slow path: only an empty or a wrong request gets here
            if type(n) is int and n == 0 and type(pa) is int and 0 <= pa < 1 << 64:
                return b""
            raise UsageError(f"read({pa!r}, {n!r}): the address must be 0..2**64-1 and the length a non-negative integer")
        i = self._find(pa)
        if i < 0:
            raise MemoryReadError(pa, n, self.layer_name, self.hole_reason)
        r = self._ranges[i]
        if pa + n <= r.end:
            return self._read_in_range(i, pa, n)
        parts = []
        cur, left = pa, n
        while left:
            i = self._find(cur)
            if i < 0:
                raise MemoryReadError(cur, left, self.layer_name, self.hole_reason)
            r = self._ranges[i]
            take = min(left, r.end - cur)
            parts.append(self._read_in_range(i, cur, take))
            cur += take
            left -= take
        return b"".join(parts)

    def read_u64(self, pa: int) -> int:
        return int.from_bytes(self.read(pa, 8), "little")

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> dict:
        """A JSON-able summary for ``snapshot info`` / ``info``."""
        return {
            "format": self.format,
            "path": self.path,
            "ranges": [{"start": r.start, "end": r.end, "size": r.size} for r in self._ranges],
            "size": self.size,
            "vmcoreinfo": self.vmcoreinfo,
            "metadata": self.metadata,
            "embedded_events": len(self.embedded_events) if self.embedded_events else 0,
        }


def open_image(path: str, phys_base: int | None = None) -> PhysicalMemory:
    """Open a memory image, detecting its format from its first bytes.

    ``phys_base`` only applies to raw images (where the file carries no
    addresses); it is an error to give it for a self-describing format.
    """
    from . import detect

    return detect.open_image(path, phys_base)
