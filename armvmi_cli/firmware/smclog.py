"""The front-end SMC event log (``.smclog``, version 1): reader, writer, JSON Lines.

The layout is declared once with construct (:data:`HEADER`, :data:`RECORD`) as in
``shared/spec/smclog.md``; the hot path unpacks records with a ``struct.Struct``
*derived from* that declaration (construct parses ~20 µs a record, struct ~0.2 µs),
reading the file in large blocks so multi-GB logs stream in constant memory.

This module imports construct; the CLI imports it only inside commands.
"""

from __future__ import annotations

import io
import json
import os
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import IO, Iterable, Iterator, NamedTuple, Union

from construct import Array, Bytes, Int8ul, Int16ul, Int32ul, Int64ul, Struct

from ..errors import LogFormatError
from .anomaly import SCOPE_RECORD, SCOPE_STREAM, Anomaly

MAGIC = b"ARMVMIEV"
VERSION = 1
HEADER_SIZE = 64
RECORD_SIZE = 96
FLAG_CRC = 1 << 0
RFLAG_RET_VALID = 1 << 0
CRC_OFFSET = 20

HEADER = Struct(
    "magic" / Bytes(8),
    "version" / Int16ul,
    "header_size" / Int16ul,
    "record_size" / Int16ul,
    "flags" / Int16ul,
    "boot_id" / Bytes(16),
    "created_ns" / Int64ul,
    "record_count" / Int64ul,
    "reserved" / Bytes(16),
)

RECORD = Struct(
    "seq" / Int64ul,
    "timestamp_ns" / Int64ul,
    "cpu" / Int16ul,
    "caller" / Int8ul,  # 0 non-secure (front-end), 1 secure (core library)
    "rflags" / Int8ul,  # bit 0: ret valid
    "crc32" / Int32ul,  # zlib CRC-32 of the 96 bytes with this field zeroed
    "x" / Array(8, Int64ul),
    "ret" / Int64ul,
)


def _struct_format(decl) -> str:
    """A struct format string equivalent to a flat construct Struct of fixed fields."""
    parts = []
    for sc in decl.subcons:
        sub = sc.subcon
        if hasattr(sub, "fmtstr"):  # FormatField, e.g. '<Q'
            parts.append(sub.fmtstr.lstrip("<>=!@"))
        elif type(sub).__name__ == "Array":
            parts.append(f"{sub.count}{sub.subcon.fmtstr.lstrip('<>=!@')}")
        else:  # Bytes(n)
            parts.append(f"{sub.length}s")
    return "<" + "".join(parts)


HEADER_STRUCT = struct.Struct(_struct_format(HEADER))
RECORD_STRUCT = struct.Struct(_struct_format(RECORD))
assert HEADER_STRUCT.size == HEADER.sizeof() == HEADER_SIZE
assert RECORD_STRUCT.size == RECORD.sizeof() == RECORD_SIZE


class Record(NamedTuple):
    """One 96-byte record, fields flat in file order (x0..x7 unrolled)."""

    seq: int
    timestamp_ns: int
    cpu: int
    caller: int
    rflags: int
    crc32: int
    x0: int
    x1: int
    x2: int
    x3: int
    x4: int
    x5: int
    x6: int
    x7: int
    ret: int

    @property
    def x(self) -> tuple[int, ...]:
        return tuple(self[6:14])

    @property
    def ret_valid(self) -> bool:
        return bool(self.rflags & RFLAG_RET_VALID)


class Corrupt(NamedTuple):
    """A whole record slot whose CRC failed: shown, never applied."""

    record: Record
    anomaly: Anomaly


@dataclass(frozen=True)
class LogHeader:
    version: int = VERSION
    header_size: int = HEADER_SIZE
    record_size: int = RECORD_SIZE
    flags: int = FLAG_CRC
    boot_id: uuid.UUID = uuid.UUID(int=0)
    created_ns: int = 0
    record_count: int = 0
    reserved: bytes = bytes(16)
    magic: bytes = MAGIC

    @property
    def has_crc(self) -> bool:
        return bool(self.flags & FLAG_CRC)

    def encode(self, record_count: int | None = None) -> bytes:
        n = self.record_count if record_count is None else record_count
        raw = HEADER_STRUCT.pack(self.magic, self.version, self.header_size, self.record_size, self.flags,
                                 self.boot_id.bytes, self.created_ns, n, self.reserved)
        return raw + bytes(max(0, self.header_size - HEADER_SIZE))

    def as_dict(self) -> dict:
        return {"type": "header", "version": self.version, "header_size": self.header_size,
                "record_size": self.record_size, "flags": self.flags, "boot_id": str(self.boot_id),
                "created_ns": self.created_ns, "record_count": self.record_count}


def parse_header(raw: bytes) -> LogHeader:
    """Validate and decode the first 64 bytes; raise LogFormatError for what the spec rejects."""
    if len(raw) < HEADER_SIZE:
        raise LogFormatError(f"event log too short for its {HEADER_SIZE}-byte header ({len(raw)} bytes)")
    magic, version, hsize, rsize, flags, boot, created, count, reserved = HEADER_STRUCT.unpack_from(raw)
    if magic != MAGIC:
        raise LogFormatError(f"not an SMC event log: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise LogFormatError(f"unsupported event log version {version} (this armvmi reads version {VERSION})")
    if hsize < HEADER_SIZE:
        raise LogFormatError(f"event log header_size {hsize} is smaller than {HEADER_SIZE}")
    if rsize < RECORD_SIZE:
        raise LogFormatError(f"event log record_size {rsize} is smaller than {RECORD_SIZE}")
    return LogHeader(version, hsize, rsize, flags, uuid.UUID(bytes=boot), created, count, reserved, magic)


_ZERO_CRC = bytes(4)


def record_crc(raw) -> int:
    """CRC-32 of a 96-byte record with its crc32 field taken as zero."""
    crc32 = zlib.crc32
    return crc32(raw[CRC_OFFSET + 4 : RECORD_SIZE], crc32(_ZERO_CRC, crc32(raw[:CRC_OFFSET])))


def encode_record(rec: Record, crc: int | None = None, with_crc: bool = True) -> bytes:
    """96 bytes for ``rec``; the CRC is computed unless ``crc`` forces a value."""
    raw = bytearray(RECORD_STRUCT.pack(rec.seq, rec.timestamp_ns, rec.cpu, rec.caller, rec.rflags, 0, *rec[6:14], rec.ret))
    if crc is None:
        crc = zlib.crc32(raw) if with_crc else 0
    struct.pack_into("<I", raw, CRC_OFFSET, crc & 0xFFFFFFFF)
    return bytes(raw)


def make_record(seq: int, x: Iterable[int], *, timestamp_ns: int = 0, cpu: int = 0, caller: int = 0,
                ret: int | None = None, rflags: int | None = None) -> Record:
    """Convenience for fixtures: x is x0..x7 (missing ones are 0)."""
    regs = list(x) + [0] * 8
    if rflags is None:
        rflags = RFLAG_RET_VALID if ret is not None else 0
    return Record(seq, timestamp_ns, cpu, caller, rflags, 0, *regs[:8], 0 if ret is None else ret)


Source = Union[str, os.PathLike, bytes, bytearray, memoryview, IO[bytes]]

BLOCK_RECORDS = 8192  # ~768 KiB a read: few syscalls, bounded memory


class _Closing:
    """Context manager over ``close()``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SmcLogReader(_Closing):
    """Stream a log: yields :class:`Record`, :class:`Corrupt` and stream :class:`Anomaly` items.

    Memory is one block whatever the file size. Counters after iteration:
    ``records_seen`` (whole slots), ``records_corrupt``, ``tail_bytes``.
    """

    def __init__(self, source: Source):
        self._own = False
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._fh: IO[bytes] = io.BytesIO(bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            try:
                self._fh = open(source, "rb")
            except OSError as e:
                raise LogFormatError(f"cannot open event log {os.fspath(source)}: {e.strerror}") from None
            self._own = True
        else:
            self._fh = source
        self.name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<bytes>"
        try:
            first = self._read_exact(HEADER_SIZE)
            self.header = parse_header(first)
            if self.header.header_size > HEADER_SIZE:
                extra = self._read_exact(self.header.header_size - HEADER_SIZE)
                if len(extra) < self.header.header_size - HEADER_SIZE:
                    raise LogFormatError(f"event log ends inside its {self.header.header_size}-byte header")
        except BaseException:
            self.close()
            raise
        self.records_seen = 0
        self.records_corrupt = 0
        self.tail_bytes = 0
        self.expected_seq = 0
        self.header_anomalies = self._check_header()

    def _read_exact(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            try:
                b = self._fh.read(n - got)
            except OSError as e:  # EIO and the like: bad input, named
                raise LogFormatError(f"event log {self.name}: cannot read: {e.strerror or e}") from None
            if not b:
                break
            chunks.append(b)
            got += len(b)
        return b"".join(chunks)

    def _check_header(self) -> list[Anomaly]:
        h, out = self.header, []
        if not h.has_crc:
            out.append(Anomaly(None, "no-crc", "records carry no CRC (header flag bit 0 clear): corruption cannot be detected",
                               "warning", SCOPE_STREAM, 14))
        if h.flags & ~FLAG_CRC:
            out.append(Anomaly(None, "header-flags", f"unknown header flags {h.flags:#x}", "info", SCOPE_STREAM, 14))
        if any(h.reserved):
            out.append(Anomaly(None, "header-reserved", "reserved header bytes are not zero", "info", SCOPE_STREAM, 48))
        return out

    def close(self) -> None:
        if self._own:
            self._fh.close()

    def __iter__(self) -> Iterator[Union[Record, Corrupt, Anomaly]]:
        yield from self.header_anomalies
        h = self.header
        rs = h.record_size
        check_crc = h.has_crc
        crc32 = zlib.crc32
        tnew = tuple.__new__
        unpack_from = RECORD_STRUCT.unpack_from
        iter_unpack = RECORD_STRUCT.iter_unpack
        block = BLOCK_RECORDS * rs
        base = h.header_size  # file offset of the first byte in ``buf``
        expected = 0
        last_ts = -1
        buf = b""
        while True:
            data = self._read_exact(block - len(buf))
            eof = not data
            buf = buf + data if buf else data
            data = None  # hold one block at a time, not two
            n = len(buf) // rs
            if n == 0:
                break
            mv = memoryview(buf)
            if rs == RECORD_SIZE:
                tuples = iter_unpack(mv[: n * rs])
            else:
                tuples = (unpack_from(mv, i * rs) for i in range(n))
            o = 0
            for t in tuples:
                seq = t[0]
                if check_crc and crc32(mv[o + 24 : o + 96], crc32(_ZERO_CRC, crc32(mv[o : o + 20]))) != t[5]:
                    self.records_corrupt += 1
                    an = Anomaly(expected, "crc", f"CRC mismatch in the record slot after seq {expected - 1}"
                                 f" (claims seq {seq}): skipped", "error", SCOPE_RECORD, base + o)
                    expected += 1
                    o += rs
                    yield Corrupt(tnew(Record, t), an)
                    continue
                if seq != expected:
                    if seq > expected:
                        lost = seq - expected
                        yield Anomaly(seq, "seq-gap", f"{lost} record(s) lost: seq {expected}"
                                      + (f"..{seq - 1}" if lost > 1 else "") + " missing", "warning", SCOPE_STREAM, base + o)
                    else:
                        yield Anomaly(seq, "seq-backwards", f"seq went back from {expected - 1} to {seq}"
                                      " (duplicated or replayed record)", "warning", SCOPE_STREAM, base + o)
                ts = t[1]
                if ts < last_ts:
                    yield Anomaly(seq, "time-backwards", f"timestamp {ts} ns is before the previous record's {last_ts} ns",
                                  "warning", SCOPE_STREAM, base + o)
                last_ts = ts
                expected = seq + 1
                o += rs
                yield tnew(Record, t)
            self.records_seen += n  # whole slots in this block, good or corrupt
            self.expected_seq = expected
            base += n * rs
            buf = bytes(mv[n * rs :]) if len(buf) > n * rs else b""
            mv.release()
            if eof:
                break
        self.expected_seq = expected
        self.tail_bytes = len(buf)
        if buf:
            yield Anomaly(None, "torn-tail", f"last record is torn: {len(buf)} of {rs} bytes at the end of the file"
                          " (writer stopped mid-record): ignored", "warning", SCOPE_STREAM, base)
        if h.record_count and h.record_count != self.records_seen:
            yield Anomaly(None, "record-count", f"header says {h.record_count} records, file holds {self.records_seen}",
                          "warning", SCOPE_STREAM, 40)


def read_log(source: Source) -> tuple[LogHeader, list]:
    """Whole log as a list (small logs, tests); prefer iterating :class:`SmcLogReader`."""
    with SmcLogReader(source) as r:
        return r.header, list(r)


class SmcLogWriter(_Closing):
    """Writes the spec's bytes; the header's record_count is patched on close when the file is seekable."""

    def __init__(self, dest: Union[str, os.PathLike, IO[bytes]], header: LogHeader | None = None,
                 record_count: int | None = None):
        self.header = header or LogHeader()
        self._own = isinstance(dest, (str, os.PathLike))
        self._fh = open(dest, "wb") if self._own else dest
        self._fixed_count = record_count
        self.count = 0
        self._fh.write(self.header.encode(0 if record_count is None else record_count))
        self._pad = bytes(self.header.record_size - RECORD_SIZE)

    def write(self, rec: Record, crc: int | None = None) -> None:
        """``crc`` forces the stored CRC (to build corrupt fixtures)."""
        self._fh.write(encode_record(rec, crc, self.header.has_crc) + self._pad)
        self.count += 1

    def write_raw(self, raw: bytes) -> None:
        self._fh.write(raw)

    def close(self) -> None:
        if self._fixed_count is None and self.count:
            try:
                self._fh.seek(40)
                self._fh.write(struct.pack("<Q", self.count))
                self._fh.seek(0, io.SEEK_END)
            except (OSError, io.UnsupportedOperation):
                pass
        if self._own:
            self._fh.close()


def write_log(dest, records: Iterable[Record], header: LogHeader | None = None, record_count: int | None = None,
              crcs: dict[int, int] | None = None) -> int:
    """Write a whole log; ``crcs`` maps record index → forced CRC. Returns records written."""
    with SmcLogWriter(dest, header, record_count) as w:
        for i, rec in enumerate(records):
            w.write(rec, (crcs or {}).get(i))
        return w.count


def build_log(records: Iterable[Record], header: LogHeader | None = None, record_count: int | None = None,
              crcs: dict[int, int] | None = None) -> bytes:
    """The bytes of a log (fixtures)."""
    bio = io.BytesIO()
    write_log(bio, records, header, record_count, crcs)
    return bio.getvalue()


# ---- JSON Lines ---------------------------------------------------------------------------------
# Stable field names: the header line has "type": "header"; record lines have "type": "record" and the
# raw fields below (registers as 0x-hex strings: JSON numbers lose u64 precision in jq/JavaScript).
# Other keys (decoded context, verdicts) are informational and ignored on import.

REG_FIELDS = ("x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "ret")


def record_to_json(rec: Record) -> dict:
    d = {"type": "record", "seq": rec.seq, "timestamp_ns": rec.timestamp_ns, "cpu": rec.cpu, "caller": rec.caller,
         "rflags": rec.rflags, "crc32": f"{rec.crc32:#010x}"}
    for name in REG_FIELDS:
        d[name] = f"{getattr(rec, name):#x}"
    return d


def _num(v, what: str, bits: int, line: int) -> int:
    try:
        n = v if isinstance(v, int) and not isinstance(v, bool) else int(str(v).replace("_", ""), 0)
    except (TypeError, ValueError):
        raise LogFormatError(f"line {line}: {what} {v!r} is not a number") from None
    if not 0 <= n < (1 << bits):
        raise LogFormatError(f"line {line}: {what} {v!r} does not fit in {bits} bits")
    return n


def import_jsonl(lines: Iterable[str], dest, keep_crc: bool = False) -> int:
    """Build a .smclog from JSON Lines (as ``armvmi events --json`` prints). Returns records written.

    Without a header line a fresh boot_id is drawn. CRCs are recomputed unless ``keep_crc``
    (then a record's "crc32" is written as given, to hand-craft corrupt records).
    """
    header: LogHeader | None = None
    writer: SmcLogWriter | None = None
    next_seq = 0
    try:
        for lineno, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise LogFormatError(f"line {lineno}: not JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise LogFormatError(f"line {lineno}: expected a JSON object")
            kind = obj.get("type", "record")
            if kind == "header":
                if writer is not None:
                    raise LogFormatError(f"line {lineno}: header after the first record")
                header = LogHeader(
                    version=_num(obj.get("version", VERSION), "version", 16, lineno),
                    header_size=_num(obj.get("header_size", HEADER_SIZE), "header_size", 16, lineno),
                    record_size=_num(obj.get("record_size", RECORD_SIZE), "record_size", 16, lineno),
                    flags=_num(obj.get("flags", FLAG_CRC), "flags", 16, lineno),
                    boot_id=_uuid(obj.get("boot_id"), lineno),
                    created_ns=_num(obj.get("created_ns", 0), "created_ns", 64, lineno),
                    record_count=_num(obj.get("record_count", 0), "record_count", 64, lineno),
                )
                if header.header_size < HEADER_SIZE or header.record_size < RECORD_SIZE or header.version != VERSION:
                    raise LogFormatError(f"line {lineno}: header describes a log this version cannot write")
                continue
            if kind != "record":
                continue  # anomaly lines and other annotations
            if writer is None:
                if header is None:
                    import time

                    header = LogHeader(boot_id=uuid.uuid4(), created_ns=time.time_ns())
                writer = SmcLogWriter(dest, header, header.record_count or None)
            seq = _num(obj.get("seq", next_seq), "seq", 64, lineno)
            regs = [_num(obj.get(f, 0), f, 64, lineno) for f in REG_FIELDS]
            rflags = obj.get("rflags")
            rflags = _num(rflags, "rflags", 8, lineno) if rflags is not None else (RFLAG_RET_VALID if "ret" in obj else 0)
            rec = Record(seq, _num(obj.get("timestamp_ns", 0), "timestamp_ns", 64, lineno),
                         _num(obj.get("cpu", 0), "cpu", 16, lineno), _num(obj.get("caller", 0), "caller", 8, lineno),
                         rflags, 0, *regs)
            crc = _num(obj["crc32"], "crc32", 32, lineno) if keep_crc and "crc32" in obj else None
            writer.write(rec, crc)
            next_seq = seq + 1
        if writer is None:
            writer = SmcLogWriter(dest, header or LogHeader(boot_id=uuid.uuid4()))
        return writer.count
    finally:
        if writer is not None:
            writer.close()


def _uuid(v, lineno: int) -> uuid.UUID:
    if v is None:
        return uuid.uuid4()
    try:
        return uuid.UUID(str(v))
    except ValueError:
        raise LogFormatError(f"line {lineno}: boot_id {v!r} is not a UUID") from None


def is_smclog(path: Union[str, os.PathLike]) -> bool:
    """True when the file starts with the log magic (to tell a log from a memory image)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


__all__ = ["HEADER", "RECORD", "MAGIC", "Record", "Corrupt", "LogHeader", "SmcLogReader", "SmcLogWriter",
           "read_log", "write_log", "build_log", "make_record", "encode_record", "record_crc", "parse_header",
           "record_to_json", "import_jsonl", "is_smclog"]
