"""A small scripts/kallsyms.c in Python: builds the kallsyms tables for a
made-up symbol list in either table order, to test the locator on layouts
the real captures do not have (newer kernels, absolute addresses, no seqs)."""

from __future__ import annotations

import random
import struct
from collections import Counter
from dataclasses import dataclass

from armvmi_cli.memory.base import PhysicalMemory, Range

TEXT_BASE = 0xFFFF800008010000


def _align8(b: bytearray) -> None:
    b += b"\0" * (-len(b) % 8)


def make_symbols(count: int, seed: int = 0, base: int = TEXT_BASE) -> list[tuple[int, str, str]]:
    """Sorted (address, type, name); names mix words and digits like a kernel's."""
    rnd = random.Random(seed)
    words = ["sys", "read", "write", "irq", "handler", "init", "dev", "pci", "tcp", "v4", "get", "set", "lock", "ops"]
    out, addr, seen = [], base, set()
    for i in range(count):
        while True:
            name = "_".join(rnd.choice(words) for _ in range(rnd.randint(1, 4))) + (str(rnd.randint(0, 99)) if rnd.random() < 0.4 else "")
            if name not in seen:
                seen.add(name)
                break
        out.append((addr, rnd.choice("tTtTW"), name))
        addr += rnd.choice([0, 4, 8, 0x20, 0x64, 0x400])
    # every digit and a-z must occur, as in any real kernel (the anchor relies on it)
    out.append((addr + 4, "T", "z0123456789" + "abcdefghijklmnopqrstuvwxy"))
    return out


def _compress(strings: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Token table + encoded names: real chars keep their slot; free slots get
    the most frequent bigrams (a one-pass version of the kernel's method)."""
    table: list[bytes] = [b""] * 256
    for s in strings:
        for c in s:
            table[c] = bytes([c])
    bigrams = Counter(s[i : i + 2] for s in strings for i in range(len(s) - 1))
    best = iter(b for b, _ in bigrams.most_common())
    code: dict[bytes, int] = {}
    for slot in range(255, -1, -1):
        if not table[slot]:
            tok = next(best, None)
            if tok is None:
                break  # leave empty tokens, as the kernel does on small symbol sets
            table[slot] = tok
            code[tok] = slot
    encoded = []
    for s in strings:
        out, i = bytearray(), 0
        while i < len(s):
            if s[i : i + 2] in code:
                out.append(code[s[i : i + 2]])
                i += 2
            else:
                out.append(s[i])
                i += 1
        encoded.append(bytes(out))
    return table, encoded


@dataclass
class Blob:
    data: bytes
    labels: dict[str, int]  # offsets of each table inside data


def build(symbols, order: str = "offsets-first", seqs: int | None = 3, absolute: bool = False) -> Blob:
    """The kallsyms .rodata tables, each behind ALGN 8, as scripts/kallsyms.c emits them."""
    n = len(symbols)
    base = symbols[0][0]
    tokens, enc = _compress([(t + name).encode() for _a, t, name in symbols])
    labels: dict[str, int] = {}
    out = bytearray()

    def label(name):
        _align8(out)
        labels[name] = len(out)

    def addresses():
        if absolute:
            label("kallsyms_addresses")
            out.extend(struct.pack(f"<{n}Q", *(a for a, _t, _n in symbols)))
        else:
            label("kallsyms_offsets")
            out.extend(struct.pack(f"<{n}I", *(a - base for a, _t, _n in symbols)))
            label("kallsyms_relative_base")
            out.extend(struct.pack("<Q", base))

    def seqs_of_names():
        if seqs:
            label("kallsyms_seqs_of_names")
            order_by_name = sorted(range(n), key=lambda i: symbols[i][2])
            for i in order_by_name:
                out.extend(i.to_bytes(4, "little")[:seqs])

    if order == "offsets-first":
        addresses()
    label("kallsyms_num_syms")
    out.extend(struct.pack("<I", n))
    label("kallsyms_names")
    markers, off = [], 0
    for i, e in enumerate(enc):
        if i % 256 == 0:
            markers.append(off)
        ln = len(e)
        head = bytes([ln]) if ln < 0x80 else bytes([(ln & 0x7F) | 0x80, ln >> 7])
        out.extend(head + e)
        off += len(head) + ln
    label("kallsyms_markers")
    out.extend(struct.pack(f"<{len(markers)}I", *markers))
    if order == "offsets-first":
        seqs_of_names()
    label("kallsyms_token_table")
    index, toff = [], 0
    for tok in tokens:
        index.append(toff)
        out.extend(tok + b"\0")
        toff += len(tok) + 1
    label("kallsyms_token_index")
    out.extend(struct.pack("<256H", *index))
    if order == "names-first":
        addresses()
        seqs_of_names()
    _align8(out)
    return Blob(bytes(out), labels)


class BytesMemory(PhysicalMemory):
    """PhysicalMemory over in-memory bytes (tests only)."""

    format = "bytes"

    def __init__(self, runs: list[tuple[int, bytes]]):
        super().__init__(None)
        self._data = [bytes(d) for _pa, d in sorted(runs)]
        self._set_ranges([Range(pa, pa + len(d)) for pa, d in sorted(runs)])

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:
        o = pa - self._ranges[index].start
        return self._data[index][o : o + n]


def image_with(blob: bytes, at: int = 0x123458, size: int = 4 << 20, seed: int = 1, phys: int = 0x40000000) -> BytesMemory:
    """``blob`` placed at offset ``at`` of a random-filled RAM run."""
    rnd = random.Random(seed)
    ram = bytearray(rnd.randbytes(size))
    ram[at : at + len(blob)] = blob
    return BytesMemory([(phys, bytes(ram))])
