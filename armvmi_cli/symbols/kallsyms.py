"""Recover the kernel's own symbol table (the compressed kallsyms tables) from memory.

``scripts/kallsyms.c`` emits, into ``.rodata``, each table behind an 8-byte
``ALGN``:

* ``kallsyms_token_table``: 256 NUL-terminated tokens; ``kallsyms_token_index``
  (256 u16) right after it holds each token's offset.  Every character that
  occurs in a symbol name keeps its own code as a one-character token, so the
  table always contains ``"0\\0" "1\\0" … "9\\0"`` at slots 0x30…0x39: a cheap,
  exact anchor for a ``bytes.find`` scan.
* ``kallsyms_names``: per symbol a ULEB128 length then that many token indices;
  the first expanded character is the ``nm`` type.  ``kallsyms_num_syms`` sits
  8 bytes before it in every layout.
* ``kallsyms_markers``: u32 offset into ``names`` of every 256th symbol; it
  follows ``names``.
* ``kallsyms_seqs_of_names`` (6.2+, and Debian's 6.1 backport): 3 bytes (later
  a u32) per symbol, between the markers and the token table in the older order.
* ``kallsyms_offsets`` (u32 per symbol) + ``kallsyms_relative_base`` (u64), or
  ``kallsyms_addresses`` (u64 per symbol) without KALLSYMS_BASE_RELATIVE: before
  ``num_syms`` in the old order, after ``token_index`` in the newer one.

The tables are located by that structure, never by a fixed order, and each
candidate is validated end to end (token index, every marker, every name, the
sorted address array) before it is accepted.  The kernel image is physically
contiguous, so the scan runs over physical memory; the addresses read back are
runtime VAs (``relative_base`` is relocated at boot, so KASLR is already applied).
"""

from __future__ import annotations

import bisect
import re
import struct
from dataclasses import asdict, dataclass
from typing import Iterator

from ..errors import ArmvmiError, SymbolError
from ..memory.scan import layer_ranges, scan
from .system_map import Symbol


#: one-character tokens that every real kernel's token table holds in a row
#: (every digit occurs in some symbol name, so slots 0x30-0x39 keep "0".."9");
#: the first byte is also the slot index.  One anchor = one pass over memory.
ANCHORS: tuple[bytes, ...] = (b"0\x001\x002\x003\x004\x005\x006\x007\x008\x009\x00",)

TOKEN_INDEX_SIZE = 256 * 2
MAX_TOKEN_TABLE = 256 * 64  # tokens are short; 16 KiB is generous
MARKER_WINDOW = 4 << 20  # markers lie at most this far before the token table
#: bytes per kallsyms_names entry: 1-2 length bytes + at least one token ...
MIN_ENTRY, MAX_ENTRY = 2, 2 + 512  # ... and at most KSYM_NAME_LEN tokens
#: nm type letters kallsyms can hold (plus '?' some toolchains emit)
TYPE_CHARS = frozenset(b"AaBbCcDdGgiIlNnpRrSsTtUuVvWw?-")
_NAME_OK = re.compile(rb"[\x21-\x7e]+\Z")

MASK64 = (1 << 64) - 1


def _align8(x: int) -> int:
    return (x + 7) & ~7


@dataclass
class KallsymsLayout:
    """Where each table was found (physical addresses in the scanned layer)."""

    token_table: int
    token_index: int
    markers: int
    names: int
    num_syms: int  # PA of kallsyms_num_syms
    addresses: int  # PA of kallsyms_offsets or kallsyms_addresses
    relative_base: int | None  # PA of kallsyms_relative_base (None: absolute addresses)
    seqs_of_names: int | None
    order: str  # "offsets-first" (<= 6.x) or "names-first" (newer)

    @property
    def start(self) -> int:
        return min(self.addresses, self.num_syms)

    def as_dict(self) -> dict:
        return asdict(self)


class KallsymsTable:
    """The recovered symbol table; duck-type compatible with ``SystemMap``.

    ``symbols`` is in kallsyms order (sorted by address), each entry
    ``(runtime_va, type_char, name)``.
    """

    source = "kallsyms"

    def __init__(self, symbols: list[tuple[int, str, str]], relative_base: int | None, layout: KallsymsLayout):
        self.symbols = symbols
        self.relative_base = relative_base
        self.layout = layout
        self.table_pa = layout.start
        self.num_syms = len(symbols)
        self._addrs = [s[0] for s in symbols]
        self._first_index: dict[str, int] = {}
        for i, (_a, _t, name) in enumerate(symbols):
            self._first_index.setdefault(name, i)  # duplicates (static symbols): first wins
        self._by_name = {name: symbols[i][0] for name, i in self._first_index.items()}

    def __len__(self) -> int:
        return len(self.symbols)

    def __iter__(self) -> Iterator[Symbol]:
        return (Symbol(*s) for s in self.symbols)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> int:
        addr = self._by_name.get(name)
        if addr is None:
            raise SymbolError(f"symbol {name!r} is not in the kernel's kallsyms (text symbols only without KALLSYMS_ALL)")
        return addr

    def address(self, name: str) -> int | None:
        return self._by_name.get(name)

    def symbol(self, name: str) -> Symbol | None:
        i = self._first_index.get(name)
        return None if i is None else Symbol(*self.symbols[i])

    def lookup(self, addr: int) -> tuple[str, int] | None:
        """(name, offset) of the first symbol at the nearest address at or below
        ``addr`` (runtime VA); None below the first symbol or more than a page
        past the last: kallsyms covers the text only, so anything beyond is
        not inside the last function."""
        i = bisect.bisect_right(self._addrs, addr) - 1
        if i < 0 or addr > self._addrs[-1] + 0x1000:
            return None
        i = bisect.bisect_left(self._addrs, self._addrs[i])
        a, _t, name = self.symbols[i]
        return name, addr - a

    def grep(self, pattern: str) -> list[tuple[int, str, str]]:
        """Every (address, type, name) whose name matches the regex ``pattern``."""
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise SymbolError(f"bad symbol pattern {pattern!r}: {e}") from None
        return [s for s in self.symbols if rx.search(s[2])]

    def to_system_map(self, slide: int = 0):
        """A :class:`SystemMap` of link-time addresses (runtime - ``slide``), for
        code that applies the KASLR slide itself."""
        from .system_map import SystemMap

        m = SystemMap(((a - slide) & MASK64, t, n) for a, t, n in self.symbols)
        m.source = "kallsyms"
        return m

    def __repr__(self) -> str:
        return f"<KallsymsTable {self.num_syms} symbols at PA {self.table_pa:#x}, base {self.relative_base or 0:#x}>"


class _Window:
    """A bounded physical window read once; out-of-window reads reject the candidate."""

    def __init__(self, mem, lo: int, hi: int):
        self.lo = lo
        self.buf = mem.read(lo, hi - lo)
        self.hi = lo + len(self.buf)

    def has(self, pa: int, n: int) -> bool:
        return self.lo <= pa and pa + n <= self.hi

    def u16s(self, pa: int, n: int) -> tuple[int, ...]:
        return struct.unpack_from(f"<{n}H", self.buf, pa - self.lo)

    def u32(self, pa: int) -> int:
        return struct.unpack_from("<I", self.buf, pa - self.lo)[0]

    def bytes(self, pa: int, n: int) -> bytes:
        o = pa - self.lo
        return self.buf[o : o + n]


class _Reject(Exception):
    """A candidate failed validation (internal; the reason ends up in the error)."""


# --------------------------------------------------------------------------
# token table + token index


def _tokens_at(win: _Window, tt: int, ti: int) -> list[bytes]:
    """Validate token_index at ``ti`` against the token table at ``tt``."""
    idx = win.u16s(ti, 256)
    if idx[0] != 0:
        raise _Reject("token_index[0] != 0")
    tokens = []
    for i in range(256):
        start = tt + idx[i]
        end = tt + idx[i + 1] - 1 if i < 255 else None
        if i < 255 and idx[i + 1] <= idx[i]:
            raise _Reject("token_index not increasing")
        if end is None:
            j = win.buf.find(b"\0", start - win.lo, ti - win.lo)
            if j < 0:
                raise _Reject("last token unterminated")
            end = win.lo + j
        tok = win.bytes(start, end - start)
        if win.bytes(end, 1) != b"\0" or (tok and not _NAME_OK.match(tok)) or len(tok) > 128:
            raise _Reject(f"token {i} malformed")
        tokens.append(tok)
    if _align8(end + 1) != ti:
        raise _Reject("token_index does not follow the token table")
    return tokens


def _token_table_from_anchor(win: _Window, anchor_pa: int, slot: int) -> tuple[int, int, list[bytes]]:
    """From a run of one-char tokens starting at slot ``slot``, find the table
    start and the index after it, and validate both."""
    # walk forward over the remaining tokens to the end of the table
    pos = anchor_pa
    for _ in range(256 - slot):
        j = win.buf.find(b"\0", pos - win.lo, pos - win.lo + 256)
        if j < 0:
            raise _Reject("token run broken")
        pos = win.lo + j + 1
    ti = _align8(pos)
    if not win.has(ti, TOKEN_INDEX_SIZE):
        raise _Reject("token_index outside window")
    idx = win.u16s(ti, 256)
    tt = anchor_pa - idx[slot]
    if not win.has(tt, ti - tt):
        raise _Reject("token table outside window")
    tokens = _tokens_at(win, tt, ti)
    if tokens[slot : slot + 1] != [bytes([win.bytes(anchor_pa, 1)[0]])]:
        raise _Reject("anchor slot mismatch")
    return tt, ti, tokens


# --------------------------------------------------------------------------
# names, markers, num_syms


def _decode_names(win: _Window, names: int, n: int, markers: list[int], tokens: list[bytes]):
    """Decode ``n`` entries; every 256th must start at its marker. Returns
    (list of expanded byte strings, end PA)."""
    buf = win.buf
    p = names - win.lo
    base = p
    limit = len(buf)
    out = []
    tok = tokens
    for i in range(n):
        if not (i & 0xFF) and p - base != markers[i >> 8]:
            raise _Reject(f"marker {i >> 8} mismatch")
        if p >= limit:
            raise _Reject("names run past window")
        ln = buf[p]
        if ln & 0x80:
            ln = (ln & 0x7F) | (buf[p + 1] << 7)
            p += 2
        else:
            p += 1
        if ln == 0 or p + ln > limit:
            raise _Reject("bad name length")
        out.append(b"".join([tok[c] for c in buf[p : p + ln]]))
        p += ln
    return out, win.lo + p


def _marker_candidates(win: _Window, tt: int) -> Iterator[tuple[int, list[int]]]:
    """8-aligned u32 arrays before ``tt`` that start at 0 and grow by a
    plausible names-block size each step, nearest the token table first."""
    lo = max(win.lo, tt - MARKER_WINDOW) - win.lo
    buf = win.buf
    step_lo, step_hi = 256 * MIN_ENTRY, 256 * MAX_ENTRY
    end = tt - win.lo
    while True:
        j = buf.rfind(b"\0\0\0\0", lo, end)
        if j < 0:
            return
        end = j + 3  # next search finds earlier (possibly overlapping) zero words
        m = win.lo + j
        if m & 7:
            continue
        vals = [0]
        k = m + 4
        while k + 4 <= tt:
            v = win.u32(k)
            if not step_lo <= v - vals[-1] <= step_hi:
                break
            vals.append(v)
            k += 4
        # a kernel has far more than 256 symbols: one marker alone is just a zero word
        if len(vals) >= 2:
            yield m, vals


def _names_candidates(win: _Window, tt: int, markers_pa: int, markers: list[int]) -> Iterator[tuple[int, int, int | None]]:
    """(names PA, num_syms, seqs_of_names PA) consistent with the markers:
    names end at the markers, and the markers end at the token table or at a
    seqs_of_names array of 3 or 4 bytes per symbol that ends there."""
    for m in range(len(markers), max(0, len(markers) - 3), -1):
        after = _align8(markers_pa + 4 * m)
        gap = tt - after
        if gap == 0:
            ok_n = None  # no seqs_of_names: any n with ceil(n/256) == m
        else:
            ok_n = {n for width in (3, 4) for n in range(max(0, (gap - 7) // width), gap // width + 1) if _align8(after + width * n) == tt and (n + 255) >> 8 == m}
            if not ok_n:
                continue
        last = markers[m - 1]
        hi = markers_pa - last - MIN_ENTRY
        lo = markers_pa - last - 256 * MAX_ENTRY
        n_pa = hi & ~7
        while n_pa >= lo and win.has(n_pa - 8, 8):
            n = win.u32(n_pa - 8)
            if ((n + 255) >> 8 == m if ok_n is None else n in ok_n) and win.u32(n_pa - 4) == 0:
                yield n_pa, n, (after if gap else None)
            n_pa -= 8


# --------------------------------------------------------------------------
# address arrays


def _addresses(win: _Window, mem, n: int, ti: int, names_pa: int):
    """Try the address-array layouts; return (addresses, relative_base, layout bits)."""
    tries = []
    num_pa = names_pa - 8
    # old order: offsets | relative_base | num_syms ; new order: token_index | offsets | relative_base
    tries.append(("offsets-first", num_pa - 8 - _align8(4 * n), num_pa - 8, 4))
    new_off = _align8(ti + TOKEN_INDEX_SIZE)
    tries.append(("names-first", new_off, _align8(new_off + 4 * n), 4))
    tries.append(("offsets-first", num_pa - _align8(8 * n), None, 8))
    tries.append(("names-first", new_off, None, 8))
    why = []
    for order, arr_pa, base_pa, width in tries:
        try:
            raw = _read(win, mem, arr_pa, width * n)
            if width == 4:
                base = struct.unpack("<Q", _read(win, mem, base_pa, 8))[0]
                offs = struct.unpack(f"<{n}I", raw)
                addrs = [base + o for o in offs]
            else:
                base = None
                addrs = list(struct.unpack(f"<{n}Q", raw))
        except (_Reject, ArmvmiError, struct.error) as e:
            why.append(f"{order}/{width}: {e}")
            continue
        if not _plausible_addresses(addrs):
            why.append(f"{order}/{width}: not sorted kernel addresses")
            continue
        return addrs, base, order, arr_pa, base_pa
    raise _Reject("no address table: " + "; ".join(why))


def _read(win: _Window, mem, pa: int, n: int) -> bytes:
    if win.has(pa, n):
        return win.bytes(pa, n)
    return mem.read(pa, n)


def _plausible_addresses(addrs: list[int]) -> bool:
    if not addrs or addrs[0] < (1 << 63) or addrs[-1] >= (1 << 64):
        return False
    # kallsyms sorts by address; the kernel's binary search depends on it
    return all(a <= b for a, b in zip(addrs, addrs[1:]))


# --------------------------------------------------------------------------
# driver


def _try_anchor(mem, anchor_pa: int, slot: int, rng: tuple[int, int]) -> KallsymsTable:
    # a small window first: most false anchors die at the token index
    small = _Window(mem, max(rng[0], anchor_pa - MAX_TOKEN_TABLE), min(rng[1], anchor_pa + MAX_TOKEN_TABLE + TOKEN_INDEX_SIZE + 8))
    tt, ti, tokens = _token_table_from_anchor(small, anchor_pa, slot)
    # names, markers, seqs_of_names and (old order) the offsets lie before the token table
    win = _Window(mem, max(rng[0], tt - MARKER_WINDOW - (8 << 20)), min(rng[1], ti + TOKEN_INDEX_SIZE + 8))
    reasons = []
    for markers_pa, markers in _marker_candidates(win, tt):
        for names_pa, n, seqs in _names_candidates(win, tt, markers_pa, markers):
            try:
                names, end = _decode_names(win, names_pa, n, markers, tokens)
                if _align8(end) != markers_pa:
                    raise _Reject("names do not end at the markers")
                syms = _symbols(names)
                addrs, base, order, arr_pa, base_pa = _addresses(win, mem, n, ti, names_pa)
            except (_Reject, ArmvmiError) as e:
                reasons.append(str(e))
                continue
            layout = KallsymsLayout(
                token_table=tt,
                token_index=ti,
                markers=markers_pa,
                names=names_pa,
                num_syms=names_pa - 8,
                addresses=arr_pa,
                relative_base=base_pa,
                seqs_of_names=seqs,
                order=order,
            )
            symbols = [(a, t, s) for a, (t, s) in zip(addrs, syms)]
            return KallsymsTable(symbols, base, layout)
    raise _Reject("token table at %#x: no consistent names/markers (%s)" % (tt, "; ".join(reasons[:3]) or "no markers"))


def _symbols(names: list[bytes]) -> list[tuple[str, str]]:
    out = []
    bad = 0
    for s in names:
        if len(s) < 2 or s[0] not in TYPE_CHARS:
            bad += 1
            if bad > len(names) // 100:
                raise _Reject("decoded names are not symbols")
        out.append((chr(s[0]), s[1:].decode("latin-1")))
    return out


def find_kallsyms_tables(mem, ranges=None, first_only: bool = False) -> list[KallsymsTable]:
    """Every validated kallsyms table in ``mem`` (a host image may hold the
    host's and copies of guests' kernels), in physical-address order."""
    rngs = [(int(a), int(b)) for a, b in ranges] if ranges is not None else layer_ranges(mem)
    found: list[KallsymsTable] = []
    seen_tt: set[int] = set()
    for anchor in ANCHORS:
        slot = anchor[0]
        for start, end in rngs:
            for hit in scan(mem, anchor, [(start, end)]):
                if any(t.layout.token_table <= hit < t.layout.token_index for t in found):
                    continue
                try:
                    table = _try_anchor(mem, hit, slot, (start, end))
                except (_Reject, ArmvmiError):
                    continue
                if table.layout.token_table in seen_tt:
                    continue
                seen_tt.add(table.layout.token_table)
                found.append(table)
                if first_only:
                    return found
    found.sort(key=lambda t: t.table_pa)
    return found


def recover_kallsyms(mem, ranges=None, prefer: int | None = None) -> KallsymsTable:
    """Find and decode the kernel's kallsyms tables in physical memory.

    A host image may hold several valid tables (the host's and each guest
    kernel whose image happens to be host-physically contiguous).  ``prefer``
    — a runtime text address known from elsewhere (e.g. ``_stext`` from
    VMCOREINFO's KERNELOFFSET) — picks the table that covers it; otherwise the
    lowest in physical memory is returned.  :func:`find_kallsyms_tables` lists
    them all.  Raises :class:`SymbolError` when none validates.
    """
    tables = find_kallsyms_tables(mem, ranges)
    if not tables:
        raise SymbolError(
            "no kallsyms table found in memory (looked for the token table's run of one-character "
            "tokens and validated its index, markers and names); the kernel may lack CONFIG_KALLSYMS "
            "or its .rodata is not in the image — give --system-map"
        )
    if prefer is not None:
        for t in tables:
            if t.symbols[0][0] <= prefer <= t.symbols[-1][0]:
                return t
        raise SymbolError(
            f"{len(tables)} kallsyms table(s) found, none covers {prefer:#x} "
            f"(text ranges: {', '.join(f'{t.symbols[0][0]:#x}-{t.symbols[-1][0]:#x}' for t in tables)})"
        )
    return tables[0]


def table_at(mem, token_table: int, rng: tuple[int, int]) -> KallsymsTable:
    """The kallsyms table whose token table starts at ``token_table`` (a
    location remembered from an earlier run), decoded and validated exactly
    as :func:`find_kallsyms_tables` would, without scanning ``rng`` for it.
    Raises :class:`SymbolError` when no valid table starts there."""
    rng = (int(rng[0]), int(rng[1]))
    if not rng[0] <= token_table < rng[1]:
        raise SymbolError(f"kallsyms token table {token_table:#x} is outside {rng[0]:#x}-{rng[1]:#x}")
    for anchor in ANCHORS:
        for hit in scan(mem, anchor, [(token_table, min(rng[1], token_table + MAX_TOKEN_TABLE))]):
            try:
                table = _try_anchor(mem, hit, anchor[0], rng)
            except (_Reject, ArmvmiError):
                continue
            if table.layout.token_table == token_table:
                return table
    raise SymbolError(f"no kallsyms table at {token_table:#x}")
