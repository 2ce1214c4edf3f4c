"""Streaming byte-pattern search over any memory layer.

Used to find text the kernel leaves in memory (VMCOREINFO, the ``Linux
version`` banner).  Reads in large chunks with an overlap so a needle that
straddles two chunks is still found; never holds more than one chunk.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable, Iterator

from ..errors import ArmvmiError

CHUNK = 16 << 20


def layer_ranges(layer) -> list[tuple[int, int]]:
    """The (start, end) runs a layer can read: PhysicalMemory gives Range
    objects, translation layers give tuples."""
    out = []
    for r in layer.ranges():
        if isinstance(r, tuple):
            out.append((int(r[0]), int(r[1])))
        else:
            out.append((r.start, r.end))
    return out


def scan(layer, needle: bytes, ranges: Iterable[tuple[int, int]] | None = None, chunk: int = CHUNK) -> Iterator[int]:
    """Yield every address (in ``layer``'s space) where ``needle`` starts."""
    from .recording import RecordingMemory

    if isinstance(layer, RecordingMemory):
        # A search is not a "use" of every page; only what is then read is.
        layer = layer.inner
    if getattr(layer, "lower", None) is not None and hasattr(layer, "mappings"):
        yield from _scan_translated(layer, needle, ranges, chunk)
        return
    yield from _scan_flat(layer, needle, ranges, chunk)


def _hits(needle: bytes, buf: bytes, base: int, limit: int | None = None) -> Iterator[int]:
    """``base + i`` for each match of ``needle`` in ``buf`` starting before
    ``limit``.  A literal regex beats ``bytes.find`` on memory full of NULs
    (kallsyms' anchor) and matches it elsewhere; compiled once per needle."""
    for m in _regex(needle).finditer(buf):
        if limit is not None and m.start() >= limit:
            return
        yield base + m.start()


@functools.lru_cache(maxsize=32)
def _regex(needle: bytes):
    return re.compile(re.escape(needle))


def _scan_translated(layer, needle: bytes, ranges, chunk: int) -> Iterator[int]:
    """Search a translation layer (e.g. guest physical through stage 2) by
    reading each run that is contiguous in the bottom layer directly, instead
    of translating page by page.  The stream is in the layer's address order;
    the last ``len(needle) - 1`` bytes are carried into the next read when it
    continues the previous one, so a needle across a join is still found."""
    from ..mmu import bottom_mappings

    bottom = layer
    while getattr(bottom, "lower", None) is not None:
        bottom = bottom.lower
    get = getattr(bottom, "view", None) or bottom.read  # in place when the image lends a view
    overlap = max(len(needle) - 1, 0)
    for start, end in ranges if ranges is not None else layer_ranges(layer):
        carry, carry_end = b"", None
        for m in bottom_mappings(layer, start, end - 1):
            lo, hi = max(m.va, start), min(m.va + m.size, end)
            pos = lo
            while pos < hi:
                n = min(chunk, hi - pos)
                try:
                    buf = get(m.out + (pos - m.va), n)
                except ArmvmiError:
                    carry, carry_end = b"", None
                    pos += n
                    continue
                try:
                    if carry_end != pos:
                        carry = b""
                    if carry:
                        # Needles across the join start in the carry: search the
                        # join alone (a few bytes), not carry + buf (a copy of buf).
                        yield from _hits(needle, carry + bytes(buf[:overlap]), pos - len(carry), len(carry))
                    yield from _hits(needle, buf, pos)
                    if overlap:  # shorter than the needle: no hit is found twice
                        carry = bytes(buf[-overlap:]) if len(buf) >= overlap else (carry + bytes(buf))[-overlap:]
                finally:
                    if isinstance(buf, memoryview):
                        buf.release()
                pos += n
                carry_end = pos


def _scan_flat(layer, needle: bytes, ranges, chunk: int) -> Iterator[int]:
    overlap = max(len(needle) - 1, 0)
    # An mmap-backed image lends a view of its bytes: searching it in place
    # is ~2x faster than copying each 16 MiB chunk out first.
    get = getattr(layer, "view", None) or layer.read
    for start, end in ranges if ranges is not None else layer_ranges(layer):
        pos = start
        while pos < end:
            n = min(chunk + overlap, end - pos)
            try:
                buf = get(pos, n)
            except ArmvmiError:
                # A hole inside a coarse range (sparse snapshot, unmapped IPA):
                # fall back to page steps for this chunk.
                yield from _scan_pages(layer, needle, pos, min(pos + chunk, end))
                pos += chunk
                continue
            try:
                yield from _hits(needle, buf, pos, chunk)
            finally:
                if isinstance(buf, memoryview):
                    buf.release()  # the map can be closed once the search moves on
            pos += chunk


def _scan_pages(layer, needle: bytes, start: int, end: int, page: int = 4096) -> Iterator[int]:
    pos = start
    while pos < end:
        try:
            buf = layer.read(pos, min(page + len(needle) - 1, end - pos))
        except ArmvmiError:
            try:
                buf = layer.read(pos, min(page, end - pos))
            except ArmvmiError:
                pos += page
                continue
        yield from _hits(needle, buf, pos, page)
        pos += page


def read_cstring(layer, addr: int, limit: int = 4096) -> bytes:
    """Bytes at ``addr`` up to the first NUL (or ``limit``), tolerant of a
    page boundary followed by a hole."""
    out = bytearray()
    while len(out) < limit:
        n = min(4096 - (addr + len(out)) % 4096, limit - len(out))
        try:
            part = layer.read(addr + len(out), n)
        except ArmvmiError:
            break
        j = part.find(b"\0")
        if j >= 0:
            out += part[:j]
            break
        out += part
    return bytes(out)
