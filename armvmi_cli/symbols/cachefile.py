"""armvmi's on-disk caches: a format that cannot run code and cannot serve a
stale or foreign answer.

A cache entry is derived data (a parsed System.map, the index of a BTF blob).
It is keyed by a digest of the exact bytes it was built from, and that digest
(SHA-256) is stored in the file and checked on every use, so an entry built from
altered bytes (a hostile image's BTF with the build id left as is) is never
served for other bytes.  The file holds only byte strings: a header

    magic "ARMVMIC\\0", u16 format version, u16 kind version, u16 kind length,
    u16 section count, 32-byte key digest, 32-byte payload digest,
    kind (ascii), u64 length per section

then the sections.  The caller turns its sections into plain data (arrays of
integers, NUL-separated names) and checks their shape; nothing is unpickled
or unmarshalled.  Any mismatch (wrong magic, version, kind, key, length or
payload digest: a truncated, garbage, ``[]`` or ``null`` file) is a miss; the
caller rebuilds the entry and replaces the file.  Caching is an optimisation:
a cache directory that cannot be read or written is no error.
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
from pathlib import Path

MAGIC = b"ARMVMIC\0"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sHHHH32s32s")
_MAX_SECTIONS = 64


def digest(data) -> bytes:
    """The key of a cache entry: a digest of the bytes it is built from."""
    return hashlib.sha256(data).digest()  # sha256: hardware-assisted here, ~2x blake2b


def file_digest(path) -> bytes:
    """:func:`digest` of a file's content, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.digest()


def debug(msg: str) -> None:
    """Say why a cache was not used, with ``--debug`` only."""
    try:
        from ..cli import state
    except ImportError:  # pragma: no cover
        return
    if state.DEBUG:
        print(f"armvmi: debug: cache: {msg}", file=sys.stderr)


def read(path: Path, kind: str, kind_version: int, key: bytes) -> list[bytes] | None:
    """The sections of a valid entry for ``key``, or None (absent, unreadable
    or not valid: rebuild it)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        debug(f"{path}: cannot read ({e.strerror}); rebuilding")
        return None
    why = _check(raw, kind, kind_version, key)
    if isinstance(why, str):
        debug(f"{path}: {why}; rebuilding")
        return None
    return why


def _check(raw: bytes, kind: str, kind_version: int, key: bytes):
    if len(raw) < _HEAD.size:
        return "not an armvmi cache file (too short)"
    magic, fver, kver, klen, n, kdig, pdig = _HEAD.unpack_from(raw)
    if magic != MAGIC:
        return "not an armvmi cache file"
    if fver != FORMAT_VERSION or kver != kind_version:
        return f"cache format {fver}/{kver}, this armvmi writes {FORMAT_VERSION}/{kind_version}"
    if n > _MAX_SECTIONS:
        return "malformed header"
    pos = _HEAD.size
    if raw[pos:pos + klen] != kind.encode():
        return f"holds {raw[pos:pos + klen]!r}, not {kind}"
    pos += klen
    if len(raw) < pos + 8 * n:
        return "truncated"
    sizes = struct.unpack_from(f"<{n}Q", raw, pos)
    pos += 8 * n
    if kdig != key:
        return "built from other bytes (digest differs)"
    if pos + sum(sizes) != len(raw):
        return "truncated or padded"
    if digest(memoryview(raw)[pos:]) != pdig:
        return "content does not match its digest"
    out = []
    for s in sizes:
        out.append(raw[pos:pos + s])
        pos += s
    return out


def write(path: Path, kind: str, kind_version: int, key: bytes, sections: list[bytes]) -> None:
    """Write an entry atomically (temporary file, then rename); errors are ignored."""
    payload = b"".join(sections)
    k = kind.encode()
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, kind_version, len(k), len(sections), key, digest(payload))
    blob = head + k + struct.pack(f"<{len(sections)}Q", *map(len, sections)) + payload
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with open(tmp, "xb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except OSError as e:
        debug(f"{path}: not written ({e.strerror or e})")
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def pack_names(names) -> bytes | None:
    """NUL-separated UTF-8 names; None if a name cannot be stored so."""
    try:
        blob = "\0".join(names).encode("utf-8")
    except UnicodeEncodeError:
        return None
    if names and blob.count(b"\0") != len(names) - 1:
        return None  # a name holds a NUL
    return blob


def unpack_names(blob: bytes, count: int) -> list[str] | None:
    """The names :func:`pack_names` wrote, or None if there are not ``count``."""
    if count == 0:
        return [] if not blob else None
    try:
        names = blob.decode("utf-8").split("\0")
    except UnicodeDecodeError:
        return None
    return names if len(names) == count else None
