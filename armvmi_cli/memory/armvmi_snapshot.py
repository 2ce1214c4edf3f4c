"""``.armvmi`` snapshots: armvmi's own compressed, indexed image container.

The format is specified in ``man/armvmi-snapshot.5``; in short::

    header (64 bytes) | chunk payloads ... | events | metadata JSON | index

Memory is a list of ranges; each range is cut into ``chunk_size`` chunks from
its start, and each chunk is stored on its own (lz4 block, stored raw, or not at
all when it is all zeros), so a random read decompresses one chunk.  Sparse
snapshots simply have many small page-granular ranges; everything between them
is a hole.  The index lives at the end because it is only known after the data
is written; the header, rewritten last, points at it and carries CRCs of itself
and of the index; the index (version 2) carries CRCs of the metadata and the
event log.  Every chunk's CRC is checked the first time it is read, so a chunk
altered in place is an error naming it, never a forged answer.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable

from ..errors import ImageFormatError, UsageError
from .base import PhysicalMemory, Range
from .detect import ARMVMI_MAGIC
from .mapped import MappedFile

VERSION = 2  # 2: chunk CRCs are of the stored bytes; CRCs of metadata and events in the index
READ_VERSIONS = (1, 2)  # 1 differs only by lacking the metadata/events CRCs: still safe to read
MAX_CHUNK_SIZE = 1 << 24  # the largest chunk `pack` writes; a header claiming more is corrupt
PAGE_SIZE = 4096
DEFAULT_CHUNK_SIZE = 4096  # one page: a random 4 KiB read decodes one small block (bench/bench_memory.py)
FLAG_CHECKSUMS = 1
MAX_SECTION = 1 << 30  # an embedded kernel section (symbols, BTF) is at most this big decompressed

METHOD_ZERO = 0  # all-zero chunk: nothing stored
METHOD_STORED = 1  # raw bytes (lz4 did not help)
METHOD_LZ4 = 2  # one lz4 block, no size prefix
METHOD_NAMES = {METHOD_ZERO: "zero", METHOD_STORED: "stored", METHOD_LZ4: "lz4"}

# magic[8] version u16 header_size u16 flags u32 chunk_size u32 page_size u32
# n_ranges u32 index_crc u32 index_off u64 index_len u64 file_size u64 header_crc u32 reserved u32
HEADER = struct.Struct("<8sHHIIIII QQQ II")
# events_off u64 events_len u64 meta_off u64 meta_len u64 n_chunks u64
INDEX_HEADER_V1 = struct.Struct("<QQQQQ")
# version 2 adds: events_crc u32, meta_crc u32
INDEX_HEADER = struct.Struct("<QQQQQII")
RANGE_ENTRY = struct.Struct("<QQQ")  # start, end (exclusive), first chunk number
CHUNK_ENTRY = struct.Struct("<QIBxxxII")  # file offset, stored length, method, crc32, reserved
assert HEADER.size == 64 and CHUNK_ENTRY.size == 24


_lz4 = None  # lz4.block, once a chunk needs it


class SnapshotMemory(PhysicalMemory):
    format = "armvmi"
    cache_bytes = 16 << 20  # decompressed chunks kept, by size (4096 4-KiB chunks, or one 16 MiB chunk)

    def __init__(self, path):
        super().__init__(str(path))
        self._file = MappedFile(path)
        self._mm = self._file.mm
        self._mv = memoryview(self._mm)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cached_bytes = 0
        #: the first integrity error met while reading (see cli.views.collect_view)
        self.damage: ImageFormatError | None = None
        try:
            self._open()
        except BaseException:
            self._mv.release()
            self._file.close()
            raise

    def _bad(self, what: str) -> ImageFormatError:
        return ImageFormatError(f"{self.path}: {what}")

    def _open(self) -> None:
        mm, size = self._mm, self._file.size
        if size < HEADER.size:
            raise self._bad(f"truncated: {size} bytes, shorter than the {HEADER.size}-byte .armvmi header")
        (magic, version, hsize, flags, cs, ps, n_ranges, index_crc, index_off, index_len, file_size, header_crc, _) = HEADER.unpack_from(mm, 0)
        if magic != ARMVMI_MAGIC:
            raise self._bad("not an .armvmi snapshot (bad magic)")
        if zlib.crc32(mm[: HEADER.size - 8]) != header_crc:
            raise self._bad("corrupt .armvmi header (CRC mismatch; was the pack interrupted?)")
        if version not in READ_VERSIONS:
            raise self._bad(f".armvmi version {version} is not supported (this armvmi reads versions "
                            f"{', '.join(map(str, READ_VERSIONS))})")
        if hsize != HEADER.size or cs < PAGE_SIZE or cs & (cs - 1) or ps != PAGE_SIZE:
            raise self._bad("corrupt .armvmi header (bad sizes)")
        if cs > MAX_CHUNK_SIZE:
            raise self._bad(f"corrupt .armvmi header (chunk size {cs:#x} is above the {MAX_CHUNK_SIZE >> 20} MiB armvmi writes)")
        ih = INDEX_HEADER if version >= 2 else INDEX_HEADER_V1
        self.version = version
        if file_size != size:
            raise self._bad(f"truncated: .armvmi header says {file_size} bytes, file has {size}")
        if index_off < HEADER.size or index_off + index_len > size or index_len < ih.size + n_ranges * RANGE_ENTRY.size:
            raise self._bad("corrupt .armvmi header (index outside the file)")
        if zlib.crc32(mm[index_off : index_off + index_len]) != index_crc:
            raise self._bad("corrupt .armvmi index (CRC mismatch)")
        self.chunk_size, self.flags = cs, flags
        self._zero = bytes(cs)
        ev_off, ev_len, meta_off, meta_len, n_chunks, *crcs = ih.unpack_from(mm, index_off)
        ranges_off = index_off + ih.size
        self._chunks_off = ranges_off + n_ranges * RANGE_ENTRY.size
        self.n_chunks = n_chunks
        if self._chunks_off + n_chunks * CHUNK_ENTRY.size != index_off + index_len:
            raise self._bad("corrupt .armvmi index (chunk table size)")
        ranges, self._first = [], []
        expect = 0
        for i in range(n_ranges):
            start, end, first = RANGE_ENTRY.unpack_from(mm, ranges_off + i * RANGE_ENTRY.size)
            if end <= start or first != expect:
                raise self._bad(f"corrupt .armvmi index (range #{i})")
            ranges.append(Range(start, end))
            self._first.append(first)
            expect += -(-(end - start) // cs)
        if expect != n_chunks:
            raise self._bad("corrupt .armvmi index (chunk count)")
        if sorted(ranges, key=lambda r: r.start) != ranges:
            raise self._bad("corrupt .armvmi index (ranges out of order)")
        self._set_ranges(ranges)
        self._data_end = index_off
        for off, n in ((ev_off, ev_len), (meta_off, meta_len)):
            if off + n > index_off:
                raise self._bad("corrupt .armvmi index (events/metadata outside the data area)")
        if crcs:
            for what, off, n, crc in (("event log", ev_off, ev_len, crcs[0]), ("metadata", meta_off, meta_len, crcs[1])):
                if zlib.crc32(mm[off : off + n]) != crc:
                    raise self._bad(f"corrupt .armvmi {what} (CRC mismatch)")
        #: chunks whose CRC has been checked (stored chunks are then read in place)
        self._checked = bytearray(n_chunks)
        if ev_len:
            self.embedded_events = self._mm[ev_off : ev_off + ev_len]
        if meta_len:
            try:
                self.metadata = json.loads(self._mm[meta_off : meta_off + meta_len])
            except (ValueError, UnicodeDecodeError):
                raise self._bad("corrupt .armvmi metadata (not JSON)") from None
            if not isinstance(self.metadata, dict):
                raise self._bad("corrupt .armvmi metadata (not a JSON object)")
        vmci = self.metadata.get("source_vmcoreinfo")
        if isinstance(vmci, dict):
            self.vmcoreinfo = vmci
        if self.metadata.get("sparse"):
            self.hole_reason = "page not captured in this sparse snapshot"
        kernels = self.metadata.get("kernels")
        #: per kernel packed with the image: {"release", "build_id", ..., "sections": {name: descriptor}}
        self.kernels = [k for k in kernels if isinstance(k, dict)] if isinstance(kernels, list) else []

    def section(self, desc: dict) -> bytes:
        """The bytes of an embedded kernel section (see ``kernels`` in armvmi-snapshot(5)):
        bounds, CRC and size checked, decompressed."""
        try:
            off, n, size, crc, comp = int(desc["offset"]), int(desc["length"]), int(desc["size"]), int(desc["crc32"]), desc["compression"]
        except (KeyError, TypeError, ValueError):
            raise self._bad("corrupt .armvmi kernel section descriptor") from None
        if off < HEADER.size or n < 0 or off + n > self._data_end or not 0 <= size <= MAX_SECTION:
            raise self._bad(f"corrupt .armvmi kernel section at {off:#x} (outside the data area)")
        raw = self._mm[off : off + n]
        if zlib.crc32(raw) != crc:
            raise self._bad(f"corrupt .armvmi kernel section at {off:#x} (CRC mismatch)")
        if comp == "none":
            data = bytes(raw)
        elif comp == "xz":
            import lzma

            try:
                d = lzma.LZMADecompressor()
                data = d.decompress(raw, max_length=size + 1)
            except lzma.LZMAError:
                raise self._bad(f"corrupt .armvmi kernel section at {off:#x} (xz data does not decode)") from None
        else:
            raise self._bad(f".armvmi kernel section at {off:#x}: unknown compression {comp!r}")
        if len(data) != size:
            raise self._bad(f"corrupt .armvmi kernel section at {off:#x} (decodes to {len(data)} bytes, expected {size})")
        return data

    # -- reading -------------------------------------------------------------
    def _entry(self, k: int):
        return CHUNK_ENTRY.unpack_from(self._mm, self._chunks_off + k * CHUNK_ENTRY.size)

    def _load(self, k: int, length: int) -> tuple[bytes, int]:
        """(bytes, method) of chunk ``k`` (``length`` = its uncompressed size)."""
        off, stored, method, crc, _ = self._entry(k)
        if off + stored > self._data_end:
            raise self._bad(f"corrupt .armvmi chunk {k} (outside the data area)")
        if method not in METHOD_NAMES:  # before the CRC: its message names the method
            raise self._bad(f"corrupt .armvmi chunk {k} (unknown method {method})")
        payload = self._mv[off : off + stored]  # no copy: checked, then decoded, in place
        payload_crc = self.version >= 2 and method != METHOD_ZERO and self.flags & FLAG_CHECKSUMS
        if payload_crc and zlib.crc32(payload) != crc:
            # version 2: the CRC is of the stored bytes, checked before lz4 sees them
            # (LZ4 decoding is deterministic: good stored bytes decode to the packed data)
            self._crc_mismatch(k, method, off)
        if method == METHOD_ZERO:
            data = self._zero if length == self.chunk_size else bytes(length)
        elif method == METHOD_STORED:
            if stored != length:
                raise self._bad(f"corrupt .armvmi chunk {k} (stored length {stored}, expected {length})")
            data = bytes(payload)
        elif method == METHOD_LZ4:
            global _lz4
            if _lz4 is None:  # imported on first use: `armvmi --help` must not load lz4
                import lz4.block as _lz4
            try:
                data = _lz4.decompress(payload, uncompressed_size=length)
            except _lz4.LZ4BlockError:
                raise self._bad(f"corrupt .armvmi chunk {k} at {off:#x} (lz4 data does not decode)") from None
            if len(data) != length:
                raise self._bad(f"corrupt .armvmi chunk {k} at {off:#x} (decodes to {len(data)} bytes, expected {length})")
        else:
            raise self._bad(f"corrupt .armvmi chunk {k} (unknown method {method})")
        if not payload_crc and method != METHOD_ZERO and self.flags & FLAG_CHECKSUMS and zlib.crc32(data) != crc:
            self._crc_mismatch(k, method, off)  # version 1: the CRC is of the chunk's decoded bytes
        self._checked[k] = 1
        return data, method

    def _crc_mismatch(self, k: int, method: int, off: int):
        err = self._bad(f"corrupt .armvmi chunk {k} ({self._chunk_span(k)}, {METHOD_NAMES[method]} at file offset "
                        f"{off:#x}): CRC mismatch, its data was altered or damaged")
        # Walks turn read errors into partial results; a damaged container
        # is bad input for the whole command, so the CLI checks this.
        if self.damage is None:
            self.damage = err
        raise err

    def _chunk_span(self, k: int) -> str:
        """Which physical addresses chunk ``k`` holds, for error messages."""
        import bisect

        i = bisect.bisect_right(self._first, k) - 1
        r = self._ranges[i]
        a = r.start + (k - self._first[i]) * self.chunk_size
        return f"physical {a:#x}-{min(a + self.chunk_size, r.end):#x}"

    def _chunk(self, k: int, length: int) -> bytes:
        data = self._cache.get(k)
        if data is not None:
            self._cache.move_to_end(k)
            return data
        return self._chunk_miss(k, length)

    def _chunk_miss(self, k: int, length: int) -> bytes:
        data, method = self._load(k, length)
        if method == METHOD_LZ4:  # zero and stored chunks cost no more than a cache hit
            self._cache[k] = data
            self._cached_bytes += len(data)
            while self._cached_bytes > self.cache_bytes and len(self._cache) > 1:
                self._cached_bytes -= len(self._cache.popitem(last=False)[1])
        return data

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:
        cs = self.chunk_size
        r = self._ranges[index]
        rel = pa - r.start
        j, o = divmod(rel, cs)
        cstart = r.start + j * cs
        length = min(cs, r.end - cstart)
        k = self._first[index] + j
        data = self._cache.get(k)
        if data is not None:
            self._cache.move_to_end(k)
        else:
            if o + n <= length and self._checked[k]:
                # small reads of raw or zero chunks, once checked, need no chunk-sized copy
                off, stored, method, _, _ = self._entry(k)
                if method == METHOD_STORED and stored == length and off + stored <= self._data_end:
                    return self._mm[off + o : off + o + n]
                if method == METHOD_ZERO:
                    return bytes(n)
            data = self._chunk_miss(k, length)
        if o + n <= len(data):
            return data if (o == 0 and n == len(data)) else data[o : o + n]
        parts = [data[o:]]
        left = n - len(parts[0])
        while left:
            j += 1
            cstart += cs
            data = self._chunk(self._first[index] + j, min(cs, r.end - cstart))
            parts.append(data[:left])
            left -= len(parts[-1])
        return b"".join(parts)

    def check(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Decode every chunk and check its CRC; returns the number checked."""
        done = 0
        for i, r in enumerate(self._ranges):
            for j in range(-(-r.size // self.chunk_size)):
                cstart = r.start + j * self.chunk_size
                self._load(self._first[i] + j, min(self.chunk_size, r.end - cstart))
                done += 1
            if progress:
                progress(i + 1, len(self._ranges))
        return done

    def stats(self) -> dict:
        """Stored bytes per method, for ``snapshot info``."""
        count = {name: 0 for name in METHOD_NAMES.values()}
        stored = dict(count)
        for k in range(self.n_chunks):
            _, n, method, _, _ = self._entry(k)
            name = METHOD_NAMES.get(method, f"method{method}")
            count[name] = count.get(name, 0) + 1
            stored[name] = stored.get(name, 0) + n
        return {"chunks": count, "stored_bytes": stored}

    def close(self) -> None:
        self._cache.clear()
        self._cached_bytes = 0
        self._mv.release()
        self._file.close()

    def describe(self) -> dict:
        d = super().describe()
        d["file_size"] = self._file.size
        d["chunk_size"] = self.chunk_size
        d["checksums"] = bool(self.flags & FLAG_CHECKSUMS)
        d["version"] = self.version
        d["compression_ratio"] = round(self._file.size / self.size, 4) if self.size else None
        d.update(self.stats())
        return d


# -- writing -------------------------------------------------------------------


def page_ranges(src: PhysicalMemory, pages: Iterable[int], page_size: int = PAGE_SIZE) -> tuple[list[Range], int]:
    """Turn page addresses into sorted runs clipped to ``src``'s ranges.

    Returns (ranges, number of requested pages absent from ``src``)."""
    wanted = sorted({p - p % page_size for p in pages})
    out: list[Range] = []
    missing = 0
    for p in wanted:
        pieces = []
        for r in src.ranges():  # a page may straddle the edge of a range
            a, b = max(p, r.start), min(p + page_size, r.end)
            if a < b:
                pieces.append((a, b))
        if not pieces:
            missing += 1
        for a, b in pieces:
            if out and out[-1].end == a:
                out[-1] = Range(out[-1].start, b)
            else:
                out.append(Range(a, b))
    return out, missing


def _encode_batch(buf: bytes, sizes: list[int], checksums: bool):
    """Compress consecutive chunks of ``buf``; runs in a worker thread (lz4 drops the GIL)."""
    import lz4.block

    out = []
    mv = memoryview(buf)
    zero = bytes(max(sizes)) if sizes else b""
    if buf == bytes(len(buf)):  # common: a whole batch of free memory
        return [(METHOD_ZERO, b"", 0) for _ in sizes]
    o = 0
    for n in sizes:
        c = mv[o : o + n]
        o += n
        if c == zero[:n]:
            out.append((METHOD_ZERO, b"", 0))
            continue
        z = lz4.block.compress(c, store_size=False)
        if len(z) < n:
            out.append((METHOD_LZ4, z, zlib.crc32(z) if checksums else 0))  # of the stored bytes (version 2)
        else:
            out.append((METHOD_STORED, bytes(c), zlib.crc32(c) if checksums else 0))
    return out


def _source_metadata(src: PhysicalMemory) -> dict:
    meta: dict = {"source_format": src.format}
    if src.path:
        meta["source_file"] = os.path.basename(src.path)
    if src.vmcoreinfo:
        meta["source_vmcoreinfo"] = dict(src.vmcoreinfo)
    prstatus = getattr(src, "prstatus", None)
    if prstatus:
        meta["source_prstatus"] = prstatus
    for k, v in (src.metadata or {}).items():  # re-packing a snapshot keeps its facts
        meta.setdefault(k, v)
    return meta


def pack(
    src: PhysicalMemory,
    out,
    events: bytes | None = None,
    metadata: dict | None = None,
    pages: Iterable[int] | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    checksums: bool = True,
    threads: int | None = None,
    kernels: list[dict] | None = None,
) -> dict:
    """Write ``src`` (or only ``pages`` of it) as an ``.armvmi`` snapshot at ``out``.

    ``metadata`` is merged over what is known from the source (format, its
    VMCOREINFO and CPU registers).  ``kernels`` are per-kernel facts, each with
    ``"sections": {name: bytes}`` (symbols, BTF): the bytes are stored
    xz-compressed after the event log and the metadata's ``kernels`` key
    describes them (armvmi-snapshot(5)).  ``progress(done_bytes, total_bytes)`` is
    called as data is written.  Returns a summary dict.  The file appears
    atomically: a failed pack leaves nothing behind.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .. import __version__

    if chunk_size < PAGE_SIZE or chunk_size & (chunk_size - 1) or chunk_size > MAX_CHUNK_SIZE:
        raise UsageError(f"chunk size {chunk_size} must be a power of two between 4096 and 16 MiB")
    out = os.fspath(out)
    from ..output import check_output

    check_output(out, force=True)  # the rename below would replace a device, a FIFO, a symlink
    meta = _source_metadata(src)
    if pages is None:
        ranges, missing = src.ranges(), 0
        meta["sparse"] = False
    else:
        ranges, missing = page_ranges(src, pages)
        meta["sparse"] = True
        meta["pages_absent_from_source"] = missing
    meta["present_bytes"] = sum(r.size for r in ranges)
    meta["created_by"] = f"armvmi {__version__}"
    meta["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    meta.update(metadata or {})
    total = sum(r.size for r in ranges)
    batch_bytes = max(chunk_size, 1 << 20)
    threads = threads or min(4, os.cpu_count() or 1)

    def batches():
        for ri, r in enumerate(ranges):
            pa = r.start
            while pa < r.end:
                n = min(batch_bytes, r.end - pa)
                sizes = [min(chunk_size, r.end - p) for p in range(pa, pa + n, chunk_size)]
                yield src.read(pa, n), sizes
                pa += n

    tmp = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.armvmi-partial-{os.getpid()}")  # never read as an image
    entries = bytearray()
    done = 0
    try:
        with open(tmp, "wb") as f, ThreadPoolExecutor(threads) as pool:
            f.write(bytes(HEADER.size))
            off = HEADER.size
            pending = []
            for buf, sizes in batches():
                pending.append((pool.submit(_encode_batch, buf, sizes, checksums), sum(sizes)))
                while len(pending) > 2 * threads:  # bounded read-ahead
                    off, done = _drain(pending.pop(0), f, entries, off, done, total, progress)
            while pending:
                off, done = _drain(pending.pop(0), f, entries, off, done, total, progress)
            ev_off, ev = off, events or b""
            f.write(ev)
            off += len(ev)
            if kernels:
                meta["kernels"], off = _write_sections(f, off, kernels)
            meta_off, meta_bytes = off, json.dumps(meta, sort_keys=True, default=str).encode()
            f.write(meta_bytes)
            off += len(meta_bytes)
            n_chunks = len(entries) // CHUNK_ENTRY.size
            index = bytearray(INDEX_HEADER.pack(ev_off, len(ev), meta_off, len(meta_bytes), n_chunks,
                                                zlib.crc32(ev), zlib.crc32(meta_bytes)))
            first = 0
            for r in ranges:
                index += RANGE_ENTRY.pack(r.start, r.end, first)
                first += -(-r.size // chunk_size)
            index += entries
            index_off = off
            f.write(index)
            off += len(index)
            head = HEADER.pack(
                ARMVMI_MAGIC, VERSION, HEADER.size, FLAG_CHECKSUMS if checksums else 0, chunk_size, PAGE_SIZE,
                len(ranges), zlib.crc32(index), index_off, len(index), off, 0, 0,
            )
            head = head[:-8] + struct.pack("<II", zlib.crc32(head[:-8]), 0)
            f.seek(0)
            f.write(head)
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return {"ranges": len(ranges), "bytes": total, "file_size": off, "chunks": n_chunks, "pages_absent_from_source": missing}


def _write_sections(f, off: int, kernels: list[dict]) -> tuple[list[dict], int]:
    """Store each kernel's sections (xz) at ``off``; the kernels' metadata with descriptors."""
    import lzma

    out = []
    for k in kernels:
        rec = {key: v for key, v in k.items() if key != "sections"}
        rec["sections"] = {}
        for name, data in (k.get("sections") or {}).items():
            z = lzma.compress(data, preset=6)
            f.write(z)
            rec["sections"][name] = {"offset": off, "length": len(z), "size": len(data), "compression": "xz",
                                     "crc32": zlib.crc32(z)}
            off += len(z)
        out.append(rec)
    return out, off


def _drain(item, f, entries: bytearray, off: int, done: int, total: int, progress):
    fut, nbytes = item
    for method, z, crc in fut.result():
        if z:
            f.write(z)
        entries += CHUNK_ENTRY.pack(off if z else 0, len(z), method, crc, 0)
        off += len(z)
    done += nbytes
    if progress:
        progress(done, total)
    return off, done
