"""System.map: the kernel's symbol table as ``nm`` prints it (``addr type name``).

A distro map has ~150k lines.  Parsing is one regex pass plus ``int(x, 16)``;
the parsed form is cached (keyed by a digest of the file, see
:mod:`armvmi_cli.symbols.cachefile`) in ``$XDG_CACHE_HOME/armvmi/system_map`` so later runs load it in milliseconds.
Addresses are *unslid* (link-time); the KASLR slide is applied by the caller.

Debian's ``linux-image-*`` packages ship an 83-byte stub System.map whose only
line says the real one is in the ``-dbg`` package; :meth:`SystemMap.check`
recognises stubs and truncated maps so nobody debugs a wrong answer later.
"""

from __future__ import annotations

import bisect
import os
import re
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from ..errors import SymbolError

_LINE = re.compile(rb"^\s*([0-9A-Fa-f]{1,16})[ \t]+([A-Za-z?\-])[ \t]+(\S+)", re.M)
_CACHE_VERSION = 2  # 2: digest-keyed armvmi cache file (1 was marshal)
MIN_SYMBOLS = 1000
# Symbols every arm64 vmlinux has; a map without them is cut short or not a kernel's.
REQUIRED = ("_text", "_stext", "_etext", "_end")
# nm types that are not addresses in the kernel image (absolute, undefined).
_NOT_ADDRESSES = frozenset("AaUwv")

MASK64 = (1 << 64) - 1


class Symbol(NamedTuple):
    address: int
    type: str
    name: str


class SymbolRow(NamedTuple):
    """One row of ``armvmi symbols``: the slid (runtime) address first."""

    address: int
    type: str
    name: str
    unslid: int


def read_maybe_compressed(path: str | os.PathLike, what: str = "System.map") -> bytes:
    """File contents, transparently decompressing xz, gzip, bzip2 or zstd (by
    magic), in a stream bounded by what a real file of this kind can be."""
    from ..inputs import read_input

    return read_input(path, what)


_CACHE_KIND = "system_map"


def _cache_file(p: Path) -> tuple[Path, bytes] | None:
    """(cache file, key) for a map: keyed by a digest of the file's bytes, so
    a map edited in place (even with its mtime put back) is parsed again."""
    from .cachefile import file_digest
    from .resolve import cache_dir

    try:
        key = file_digest(p)
    except OSError:
        return None
    return cache_dir() / "system_map" / f"{key.hex()[:40]}.v{_CACHE_VERSION}", key


class SystemMap:
    """Symbols by name and by address.  ``sm["init_task"]`` raises SymbolError."""

    banner: str | None = None  # set by sources that know it (ISF, profiles)
    release: str | None = None

    def __init__(self, entries: Iterable[tuple[int, str, str]] = (), source: str = "System.map", path=None):
        addrs, types, names = [], [], []
        for a, t, n in entries:
            addrs.append(a)
            types.append(t)
            names.append(n)
        self._init(addrs, "".join(types), names, source, path, False)

    def _init(self, addrs: list[int], types: str, names: list[str], source: str, path, stub_text: bool):
        self._addrs, self._types, self._names = addrs, types, names
        self.source, self.path, self._stub_text = source, path, stub_text
        self._by_name: dict[str, int] | None = None
        self._sorted: tuple[list[int], list[int]] | None = None

    # -- loading -------------------------------------------------------------
    @classmethod
    def parse(cls, data: bytes, path=None, source: str = "System.map") -> "SystemMap":
        found = _LINE.findall(data)
        addrs = [int(a, 16) for a, _, _ in found]
        types = b"".join(t for _, t, _ in found).decode("ascii")
        names = [n.decode("utf-8", "replace") for _, _, n in found]
        if not found and data.strip():
            raise SymbolError(f"{path or 'input'}: not a System.map (no 'address type name' lines)")
        self = cls.__new__(cls)
        self._init(addrs, types, names, source, path, b"real System.map" in data[:4096])
        return self

    @classmethod
    def load(cls, path: str | os.PathLike, check: bool = True, cache: bool = True) -> "SystemMap":
        """Load a plain or xz/gz/bz2/zstd-compressed System.map (cached)."""
        from ..inputs import check_input

        # Before anything stats, digests (the cache key) or opens it: no FIFO, no /dev/zero, no None.
        check_input(path, "System.map", error=SymbolError)
        p = Path(path)
        entry = _cache_file(p) if cache else None
        sm = cls._from_cache(p, *entry) if entry else None
        if sm is None:
            sm = cls.parse(read_maybe_compressed(p), path=p)
            if entry is not None:
                sm._to_cache(*entry)
        if check:
            sm.check()
        return sm

    @classmethod
    def _from_cache(cls, p: Path, cfile: Path, key: bytes):
        from array import array

        from . import cachefile

        sec = cachefile.read(cfile, _CACHE_KIND, _CACHE_VERSION, key)
        if sec is None:
            return None
        try:
            if len(sec) != 4 or len(sec[0]) % 8 or sec[3] not in (b"\0", b"\1"):
                raise ValueError("shape")
            addrs = array("Q")
            addrs.frombytes(sec[0])
            types = sec[1].decode("ascii")
            names = cachefile.unpack_names(sec[2], len(addrs))
            if names is None or len(types) != len(addrs):
                raise ValueError("shape")
        except ValueError:
            cachefile.debug(f"{cfile}: malformed content; rebuilding")
            return None
        sm = cls.__new__(cls)
        sm._init(addrs.tolist(), types, names, "System.map", p, sec[3] == b"\1")
        return sm

    def _to_cache(self, cfile: Path, key: bytes) -> None:
        from array import array

        from . import cachefile

        names = cachefile.pack_names(self._names)
        if names is None or any(a > MASK64 for a in self._addrs):
            return
        cachefile.write(cfile, _CACHE_KIND, _CACHE_VERSION, key,
                        [array("Q", self._addrs).tobytes(), self._types.encode("ascii"), names,
                         b"\1" if self._stub_text else b"\0"])

    # -- sanity --------------------------------------------------------------
    @property
    def is_stub(self) -> bool:
        return self._stub_text or len(self._names) < MIN_SYMBOLS

    def missing_required(self) -> list[str]:
        idx = self._index()
        return [n for n in REQUIRED if n not in idx]

    def check(self) -> "SystemMap":
        """Raise SymbolError for a stub, truncated or non-kernel map."""
        where = f"{self.path}: " if self.path else ""
        if self.is_stub:
            raise SymbolError(
                f"{where}System.map looks like the stub shipped in linux-image-* ({len(self._names)} lines); "
                "use the one from the -dbg package"
            )
        missing = self.missing_required()
        if missing:
            raise SymbolError(
                f"{where}System.map is truncated or not a kernel's: {', '.join(missing)} missing "
                f"({len(self._names)} symbols, last {self._names[-1]!r})"
            )
        return self

    # -- queries -------------------------------------------------------------
    def _index(self) -> dict[str, int]:
        if self._by_name is None:
            # Duplicates (static symbols): the first wins, so fill from the end;
            # dict(zip()) runs in C (~5x the setdefault loop on 90k names).
            n = len(self._names)
            self._by_name = dict(zip(reversed(self._names), range(n - 1, -1, -1)))
        return self._by_name

    def address(self, name: str) -> int | None:
        i = self._index().get(name)
        return None if i is None else self._addrs[i]

    def symbol(self, name: str) -> Symbol | None:
        i = self._index().get(name)
        return None if i is None else Symbol(self._addrs[i], self._types[i], name)

    def __getitem__(self, name: str) -> int:
        i = self._index().get(name)
        if i is None:
            raise SymbolError(f"symbol {name!r} is not in the {self.source}" + (f" ({self.path})" if self.path else ""))
        return self._addrs[i]

    def __contains__(self, name: str) -> bool:
        return name in self._index()

    def _by_addr(self) -> tuple[list[int], list[int]]:
        if self._sorted is None:
            t, n, a = self._types, self._names, self._addrs
            keep = [i for i in range(len(a)) if t[i] not in _NOT_ADDRESSES and not n[i].startswith("$")]
            keep.sort(key=a.__getitem__)  # stable: equal addresses keep file order
            self._sorted = ([a[i] for i in keep], keep)
        return self._sorted

    def lookup(self, addr: int) -> tuple[str, int] | None:
        """(name, offset) of the nearest symbol at or below ``addr`` (unslid);
        None past the end of the kernel image (``_end``): vmalloc, vmemmap and
        the fixmap belong to no symbol, and a wrong name is worse than none."""
        addrs, idx = self._by_addr()
        j = bisect.bisect_right(addrs, addr) - 1
        end = self.address("_end")
        if j < 0 or (end is not None and addr >= end):
            return None
        j = bisect.bisect_left(addrs, addrs[j])  # first symbol at that address
        return self._names[idx[j]], addr - addrs[j]

    def grep(self, pattern: str) -> list[tuple[int, str, str]]:
        """Every (address, type, name) whose name matches the regex ``pattern``."""
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise SymbolError(f"bad symbol pattern {pattern!r}: {e}") from None
        a, t = self._addrs, self._types
        return [(a[i], t[i], n) for i, n in enumerate(self._names) if rx.search(n)]

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self) -> Iterator[Symbol]:
        for a, t, n in zip(self._addrs, self._types, self._names):
            yield Symbol(a, t, n)

    def __repr__(self) -> str:
        return f"<SystemMap {self.path or self.source}: {len(self)} symbols>"

    def to_text(self) -> str:
        """Back to System.map text (for profiles)."""
        return "".join(f"{a:016x} {t} {n}\n" for a, t, n in zip(self._addrs, self._types, self._names))


def symbol_rows(symbolmap: SystemMap, pattern: str | None, slide: int = 0) -> list[SymbolRow]:
    """Rows for ``armvmi symbols IMAGE --grep PATTERN``: matching symbols with
    the KASLR slide applied to kernel addresses (absolute symbols stay as they are)."""
    items = symbolmap.grep(pattern) if pattern else list(symbolmap)
    rows = []
    for a, t, n in items:
        slid = a if t in _NOT_ADDRESSES else (a + slide) & MASK64
        rows.append(SymbolRow(slid, t, n, a))
    return rows
