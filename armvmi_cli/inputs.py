"""Checks every input passes before armvmi opens it, and bounded reads of
(possibly compressed) symbol files.

A FIFO blocks ``open()`` forever and ``/dev/zero`` never ends, so an input
must be a regular file (a block device too, for an image) *before* it is
opened; a compressed System.map or ISF is decompressed in a bounded stream,
since a few hundred KB can declare many GB.
"""

from __future__ import annotations

import errno
import os
import re
import stat

from .errors import ArmvmiError, ExitCode, UsageError

#: names of armvmi's own unfinished outputs (see :mod:`armvmi_cli.output`):
#: never read as an image, they are at best the start of one
PARTIAL_RE = re.compile(r"^\..*\.armvmi-partial-[0-9a-z_]+")

MiB = 1 << 20
#: the most a symbol file of each kind may expand to (real ones are far smaller:
#: a System.map ~10 MiB, a dwarf2json ISF ~80 MiB)
LIMITS = {"System.map": 256 * MiB, "ISF": 768 * MiB, "types": 768 * MiB, "config": 32 * MiB, "page list": 256 * MiB}


class InputError(UsageError):
    """An input that is missing, of the wrong kind, or unreadable."""

    exit_code = ExitCode.BAD_INPUT


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def os_reason(e: OSError) -> str:
    if e.errno == errno.ENOENT:
        return "no such file"
    if e.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return e.strerror or str(e)


def check_input(path, what: str = "", block_ok: bool = False, error=None) -> os.stat_result:
    """Refuse (one line, exit 2) anything but an existing regular file (or a
    block device when ``block_ok``), before anything opens it.  ``error``:
    the ArmvmiError class to raise (the caller's usual one)."""
    try:
        return _check_input(path, what, block_ok)
    except InputError as e:
        if error is None or isinstance(e, error):
            raise
        raise error(str(e)) from None


def _check_input(path, what: str, block_ok: bool) -> os.stat_result:
    if path is None or isinstance(path, (bool, int, float)) or not isinstance(path, (str, bytes, os.PathLike)):
        raise InputError(f"{what + ': ' if what else ''}expected a file path, got {path!r}")
    p = os.fspath(path)
    label = f"{what} {p}" if what else f"{p}"
    if not p:
        raise InputError(f"{what or 'input'}: empty path")
    if PARTIAL_RE.match(os.path.basename(p)):
        raise InputError(f"{label}: an unfinished armvmi output (interrupted write), not an input; delete it")
    try:
        st = os.stat(p)
    except OSError as e:
        raise InputError(f"{label}: {os_reason(e)}") from None
    except ValueError as e:  # embedded NUL
        raise InputError(f"{label!r}: {e}") from None
    if stat.S_ISREG(st.st_mode) or (block_ok and stat.S_ISBLK(st.st_mode)):
        return st
    raise InputError(f"{label}: is {_kind(st.st_mode)}, not a regular file")


def read_input(path, what: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file, decompressing xz, gzip, bzip2 or zstd
    (by magic) in a bounded stream: more than ``limit`` bytes is exit 2."""
    from .errors import SymbolError

    limit = limit or LIMITS.get(what, 256 * MiB)
    st = check_input(path, what, error=SymbolError)
    p = os.fspath(path)
    if st.st_size > limit:
        raise SymbolError(f"{what} {p}: {st.st_size:,} bytes; larger than any real {what} ({limit // MiB} MiB)")
    try:
        with open(p, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise SymbolError(f"{what} {p}: cannot read: {os_reason(e)}") from None
    try:
        if raw.startswith(b"\xfd7zXZ\x00"):
            import lzma

            return _stream(lzma.LZMADecompressor, raw, limit, p, what)
        if raw.startswith(b"\x1f\x8b"):
            import zlib

            return _zlib(raw, limit, p, what)
        if raw.startswith(b"BZh"):
            import bz2

            return _stream(bz2.BZ2Decompressor, raw, limit, p, what)
        if raw.startswith(b"\x28\xb5\x2f\xfd"):
            return _zstd(raw, limit, p, what)
    except ArmvmiError:
        raise
    except MemoryError:
        raise SymbolError(f"{what} {p}: out of memory decompressing it") from None
    except Exception as e:  # corrupt archive: bad input, not a bug
        raise SymbolError(f"{what} {p}: cannot decompress: {e}") from None
    return raw


def _too_big(p, what, limit):
    from .errors import SymbolError

    return SymbolError(f"{what} {p}: decompresses to more than {limit // MiB} MiB; not a real {what} (a decompression bomb?)")


def _truncated(p, what):
    from .errors import SymbolError

    return SymbolError(f"{what} {p}: cannot decompress: truncated compressed data")


def _stream(make, raw: bytes, limit: int, p, what) -> bytes:
    """xz / bzip2 (possibly several concatenated streams), never more than limit+1 bytes out."""
    out = bytearray()
    data = raw
    while data:
        d = make()
        chunk = d.decompress(data, max_length=limit + 1 - len(out))
        while True:
            out += chunk
            if len(out) > limit:
                raise _too_big(p, what, limit)
            if d.eof:
                break
            if d.needs_input:
                raise _truncated(p, what)
            chunk = d.decompress(b"", max_length=limit + 1 - len(out))
        data = d.unused_data.lstrip(b"\0")  # xz stream padding
    return bytes(out)


def _zlib(raw: bytes, limit: int, p, what) -> bytes:
    import zlib

    out = bytearray()
    data = raw
    while data:
        d = zlib.decompressobj(wbits=31)
        chunk = d.decompress(data, limit + 1 - len(out))
        while True:
            out += chunk
            if len(out) > limit:
                raise _too_big(p, what, limit)
            if d.eof:
                break
            if not d.unconsumed_tail:
                raise _truncated(p, what)
            chunk = d.decompress(d.unconsumed_tail, limit + 1 - len(out))
        data = d.unused_data
    return bytes(out)


def _zstd(raw: bytes, limit: int, p, what) -> bytes:
    """zstd with a hard output bound: never a one-shot decompress that trusts
    the frame's declared size (cramjam's aborts the process on a bomb)."""
    try:
        import zstandard
    except ImportError:
        zstandard = None
    if zstandard is not None:
        # Fed 512 input bytes at a time: at most ~22 MB comes out of a call
        # (128 KiB per 3-byte RLE block header), then the bound is checked.
        out = bytearray()
        data = raw
        while data:
            d = zstandard.ZstdDecompressor().decompressobj()
            pos = 0
            while not d.eof:
                if pos >= len(data):
                    raise _truncated(p, what)
                out += d.decompress(data[pos : pos + 512])
                pos += 512
                if len(out) > limit:
                    raise _too_big(p, what, limit)
            data = d.unused_data + data[pos:]
        return bytes(out)
    import cramjam

    size = 16 * MiB
    while True:  # cramjam has no streaming reader: a bounded buffer, doubled while too small
        buf = bytearray(min(size, limit + 1))
        try:
            n = cramjam.zstd.decompress_into(raw, buf)
        except cramjam.DecompressionError as e:
            if "whole buffer" not in str(e):
                raise
            if len(buf) > limit:
                raise _too_big(p, what, limit) from None
            size *= 4
            continue
        return bytes(buf[:n])
