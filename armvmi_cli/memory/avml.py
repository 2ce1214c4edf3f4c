"""AVML images (Microsoft's acquisition tool, version 2: compressed LiME).

Each range is the LiME header (magic "AVML", version 2, inclusive end) followed
by a snappy *framed* stream of the range's bytes and then a u64 (LE) holding the
length of that stream.  Snappy frames hold at most 64 KiB of data each, so on
open we index the frames (headers and the varint length preamble only, no
decompression) and a read decompresses just the frames it touches, keeping a
small LRU of decompressed frames.  Frame CRCs are not checked.
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict

from ..errors import ImageFormatError
from .base import PhysicalMemory, Range
from .lime import AVML_MAGIC, AVML_VERSION, HEADER_SIZE, iter_range_chunks, parse_range_header, range_header
from .mapped import MappedFile

FRAME_STREAM_ID = 0xFF
FRAME_COMPRESSED = 0x00
FRAME_UNCOMPRESSED = 0x01
STREAM_ID_BODY = b"sNaPpY"


def _varint(mm, off: int, limit: int) -> int:
    value = shift = 0
    while off < limit and shift < 35:
        b = mm[off]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        off, shift = off + 1, shift + 7
    raise ValueError("bad varint")


class _RangeFrames:
    """Decompressed offset -> (file offset, length, compressed?) of every frame of one range."""

    __slots__ = ("starts", "frames")

    def __init__(self):
        self.starts: list[int] = []
        self.frames: list[tuple[int, int, bool, int]] = []  # (data off, data len, compressed, decompressed len)


class AvmlMemory(PhysicalMemory):
    format = "avml"
    cache_frames = 64  # 64 x 64 KiB = 4 MiB

    def __init__(self, path):
        super().__init__(str(path))
        self._file = MappedFile(path)
        self._mm = mm = self._file.mm
        self._cache: OrderedDict = OrderedDict()
        ranges, index = [], []
        off = i = 0
        try:
            while off < len(mm):
                h = parse_range_header(mm, off, i, self.path, AVML_MAGIC, AVML_VERSION, "AVML")
                r = Range(h.s_addr, h.e_addr + 1)
                frames, end = self._index_stream(off + HEADER_SIZE, r.size, i)
                if end + 8 > len(mm):
                    raise ImageFormatError(f"{self.path}: truncated: AVML range #{i} lacks its trailing length")
                stored = int.from_bytes(mm[end : end + 8], "little")
                if stored != end - (off + HEADER_SIZE):
                    raise ImageFormatError(
                        f"{self.path}: corrupt AVML range #{i}: trailing length {stored:#x} != stream length {end - off - HEADER_SIZE:#x}"
                    )
                ranges.append(r)
                index.append(frames)
                off, i = end + 8, i + 1
            order = sorted(range(len(ranges)), key=lambda k: ranges[k].start)
            self._frames = [index[k] for k in order]
            self._set_ranges(ranges)
        except BaseException:
            self._file.close()
            raise

    def _index_stream(self, off: int, expected: int, i: int):
        """Walk the frame headers of range ``i``'s stream until it yields ``expected`` bytes."""
        mm, size = self._mm, len(self._mm)
        fr = _RangeFrames()
        got = 0
        while got < expected:
            if off + 4 > size:
                raise ImageFormatError(f"{self.path}: truncated: AVML range #{i} snappy stream is cut short at {off:#x}")
            kind = mm[off]
            flen = int.from_bytes(mm[off + 1 : off + 4], "little")
            body = off + 4
            if body + flen > size:
                raise ImageFormatError(f"{self.path}: truncated: AVML range #{i} snappy frame at {off:#x} is cut short")
            if kind == FRAME_STREAM_ID:
                if mm[body : body + flen] != STREAM_ID_BODY:
                    raise ImageFormatError(f"{self.path}: corrupt AVML range #{i}: bad snappy stream identifier at {off:#x}")
            elif kind in (FRAME_COMPRESSED, FRAME_UNCOMPRESSED):
                if flen < 4:
                    raise ImageFormatError(f"{self.path}: corrupt AVML range #{i}: snappy frame at {off:#x} too short")
                data, dlen = body + 4, flen - 4  # skip the masked CRC-32C
                if kind == FRAME_COMPRESSED:
                    try:
                        n = _varint(mm, data, data + dlen)
                    except ValueError:
                        raise ImageFormatError(f"{self.path}: corrupt AVML range #{i}: bad snappy block at {off:#x}") from None
                else:
                    n = dlen
                if n > 65536:
                    raise ImageFormatError(f"{self.path}: corrupt AVML range #{i}: snappy frame at {off:#x} claims {n} bytes")
                fr.starts.append(got)
                fr.frames.append((data, dlen, kind == FRAME_COMPRESSED, n))
                got += n
            elif 0x02 <= kind <= 0x7F:
                raise ImageFormatError(f"{self.path}: corrupt AVML range #{i}: unskippable snappy frame type {kind:#x} at {off:#x}")
            # 0x80-0xfe: skippable / padding
            off = body + flen
        if got != expected:
            raise ImageFormatError(f"{self.path}: corrupt AVML range #{i}: stream holds {got:#x} bytes, header says {expected:#x}")
        return fr, off

    def _frame(self, ri: int, fi: int) -> bytes:
        key = (ri, fi)
        data = self._cache.get(key)
        if data is not None:
            self._cache.move_to_end(key)
            return data
        off, dlen, compressed, n = self._frames[ri].frames[fi]
        raw = self._mm[off : off + dlen]
        if compressed:
            import cramjam

            try:
                data = bytes(cramjam.snappy.decompress_raw(raw))
            except Exception as e:  # cramjam raises its own DecompressionError
                raise ImageFormatError(f"{self.path}: corrupt AVML snappy frame at {off:#x}: {e}") from None
            if len(data) != n:
                raise ImageFormatError(f"{self.path}: corrupt AVML snappy frame at {off:#x}: {len(data)} bytes, expected {n}")
        else:
            data = raw
        self._cache[key] = data
        if len(self._cache) > self.cache_frames:
            self._cache.popitem(last=False)
        return data

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:
        fr = self._frames[index]
        rel = pa - self._ranges[index].start
        fi = bisect.bisect_right(fr.starts, rel) - 1
        parts = []
        while n:
            data = self._frame(index, fi)
            o = rel - fr.starts[fi]
            piece = data[o : o + n]
            parts.append(piece)
            n -= len(piece)
            rel += len(piece)
            fi += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        self._cache.clear()
        self._file.close()

    def describe(self) -> dict:
        d = super().describe()
        d["file_size"] = self._file.size
        d["frames"] = sum(len(f.frames) for f in self._frames)
        return d


def write_avml(src: PhysicalMemory, out_path) -> int:
    """Write ``src`` as an AVML v2 file (used by tests; AVML itself is the real producer)."""
    import cramjam

    total = 0
    with open(os.fspath(out_path), "wb") as f:
        for r in src.ranges():
            f.write(range_header.build(dict(magic=AVML_MAGIC, version=AVML_VERSION, s_addr=r.start, e_addr=r.end - 1, reserved=bytes(8))))
            n = 0
            # concatenated framed streams are one valid stream (the identifier may repeat)
            for data in iter_range_chunks(src, r):
                c = cramjam.snappy.compress(data)
                f.write(c)
                n += len(c)
            f.write(n.to_bytes(8, "little"))
            total += HEADER_SIZE + n + 8
    return total
