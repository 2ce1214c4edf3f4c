"""LiME images (the format Android and Linux responders produce).

A LiME file is a sequence of ranges, each a 32-byte header followed by the raw
bytes of the range::

    u32 magic    0x4C694D45 ("EMiL" on disk)
    u32 version  1
    u64 s_addr   first physical address
    u64 e_addr   LAST physical address (inclusive)
    u8  reserved[8]

AVML (:mod:`.avml`) reuses the same header with another magic and version.
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from construct import Bytes, Int32ul, Int64ul, Struct

from ..errors import ImageFormatError
from .base import PhysicalMemory, Range
from .mapped import MappedFile

LIME_MAGIC = 0x4C694D45
AVML_MAGIC = 0x4C4D5641
LIME_VERSION = 1
AVML_VERSION = 2

range_header = Struct(
    "magic" / Int32ul,
    "version" / Int32ul,
    "s_addr" / Int64ul,
    "e_addr" / Int64ul,  # inclusive
    "reserved" / Bytes(8),
)
HEADER_SIZE = range_header.sizeof()  # 32


_RANGE_HEADER = struct.Struct("<IIQQ8x")
assert _RANGE_HEADER.size == HEADER_SIZE


class _RangeHeader(NamedTuple):
    magic: int
    version: int
    s_addr: int
    e_addr: int


def parse_range_header(mm, off: int, index: int, path: str, magic: int, version: int, fmt: str):
    """Parse and check the header of range ``index`` at file offset ``off``."""
    if off + HEADER_SIZE > len(mm):
        raise ImageFormatError(f"{path}: truncated: {fmt} range #{index} header at {off:#x} is cut short")
    # struct, not construct: a file can hold hundreds of thousands of ranges
    h = _RangeHeader(*_RANGE_HEADER.unpack_from(mm, off))
    if h.magic != magic:
        raise ImageFormatError(f"{path}: corrupt {fmt} range #{index} header at {off:#x}: bad magic {h.magic:#010x}")
    if h.version != version:
        raise ImageFormatError(f"{path}: {fmt} range #{index} at {off:#x}: unsupported version {h.version} (expected {version})")
    if h.e_addr < h.s_addr:
        raise ImageFormatError(f"{path}: corrupt {fmt} range #{index} at {off:#x}: end {h.e_addr:#x} before start {h.s_addr:#x}")
    return h


class LimeMemory(PhysicalMemory):
    format = "lime"

    def __init__(self, path):
        super().__init__(str(path))
        self._file = MappedFile(path)
        self._mm = mm = self._file.mm
        ranges, self._offsets = [], []
        off = i = 0
        try:
            while off < len(mm):
                h = parse_range_header(mm, off, i, self.path, LIME_MAGIC, LIME_VERSION, "LiME")
                n = h.e_addr - h.s_addr + 1
                data = off + HEADER_SIZE
                if data + n > len(mm):
                    raise ImageFormatError(
                        f"{self.path}: truncated: LiME range #{i} ({h.s_addr:#x}-{h.e_addr:#x}) needs {n:#x} bytes at {data:#x}, file has {len(mm):#x}"
                    )
                ranges.append(Range(h.s_addr, h.e_addr + 1))
                self._offsets.append(data)
                off, i = data + n, i + 1
            # keep _offsets parallel to the sorted ranges
            order = sorted(range(len(ranges)), key=lambda k: ranges[k].start)
            self._offsets = [self._offsets[k] for k in order]
            self._set_ranges(ranges)
        except BaseException:
            self._file.close()
            raise

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:
        o = self._offsets[index] + (pa - self._ranges[index].start)
        return self._mm[o : o + n]

    def close(self) -> None:
        self._file.close()

    def describe(self) -> dict:
        d = super().describe()
        d["file_size"] = self._file.size
        return d


def iter_range_chunks(src: PhysicalMemory, r: Range, chunk: int = 4 << 20):
    pa = r.start
    while pa < r.end:
        n = min(chunk, r.end - pa)
        yield src.read(pa, n)
        pa += n


def write_lime(src: PhysicalMemory, out_path) -> int:
    """Write every range of ``src`` as a LiME file; returns the bytes written."""
    total = 0
    with open(os.fspath(out_path), "wb") as f:
        for r in src.ranges():
            f.write(range_header.build(dict(magic=LIME_MAGIC, version=LIME_VERSION, s_addr=r.start, e_addr=r.end - 1, reserved=bytes(8))))
            for data in iter_range_chunks(src, r):
                f.write(data)
            total += HEADER_SIZE + r.size
    return total
