"""Synthetic images for reader tests: small, deterministic, with holes."""

from __future__ import annotations

import random
import struct


def page_pattern(pa: int, n: int, seed: int = 0) -> bytes:
    """Deterministic bytes that differ per address, so misplaced reads show."""
    rnd = random.Random(seed * 1_000_003 + pa)
    return rnd.randbytes(n)


def elf_note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b):
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("<III", len(name) + 1, len(desc), ntype) + pad(name + b"\0") + pad(desc)


def write_elf_core(path, segments, notes: bytes = b"", truncate_to: int | None = None, memsz_extra: int = 0):
    """Write a little-endian ELF64 ET_CORE for EM_AARCH64.

    ``segments`` is a list of (paddr, data bytes).  ``memsz_extra`` bytes are
    added to each PT_LOAD's p_memsz beyond its p_filesz (kdump-style filtered tail).
    """
    phnum = len(segments) + (1 if notes else 0)
    ehdr_size, ph_size = 64, 56
    off = ehdr_size + phnum * ph_size
    phdrs, body = [], []  # lists: tens of thousands of segments must not cost O(n^2)
    if notes:
        phdrs.append(struct.pack("<IIQQQQQQ", 4, 0, off, 0, 0, len(notes), len(notes), 0))
        body.append(notes)
        off += len(notes)
    for paddr, data in segments:
        phdrs.append(struct.pack("<IIQQQQQQ", 1, 0, off, paddr, paddr, len(data), len(data) + memsz_extra, 0))
        body.append(data)
        off += len(data)
    phdrs, body = b"".join(phdrs), b"".join(body)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 4, 183, 1, 0, ehdr_size, 0, 0, ehdr_size, ph_size, phnum, 0, 0, 0)
    blob = ehdr + phdrs + body
    if truncate_to is not None:
        blob = blob[:truncate_to]
    with open(path, "wb") as f:
        f.write(blob)
    return path


from armvmi_cli.memory.base import PhysicalMemory, Range  # noqa: E402


class BytesMemory(PhysicalMemory):
    """An in-memory PhysicalMemory over {start: bytes} ranges."""

    format = "synthetic"

    def __init__(self, chunks: dict[int, bytes]):
        super().__init__(None)
        self._chunks = dict(sorted(chunks.items()))
        self._set_ranges([Range(a, a + len(b)) for a, b in self._chunks.items()])
        self._data = list(self._chunks.values())

    def _read_in_range(self, index, pa, n):
        o = pa - self._ranges[index].start
        return self._data[index][o : o + n]


def mixed_pages(pa: int, npages: int, seed: int = 0) -> bytes:
    """Zero, text-like and random pages, as in a real image."""
    out = []
    for i in range(npages):
        kind = (i * 7 + seed) % 3
        if kind == 0:
            out.append(bytes(4096))
        elif kind == 1:
            out.append((f"page {pa + i * 4096:#x} task sshd swapper ".encode() * 130)[:4096])
        else:
            out.append(page_pattern(pa + i * 4096, 4096, seed))
    return b"".join(out)


def sample_memory() -> BytesMemory:
    """Three ranges with holes, one not page-aligned in size."""
    return BytesMemory(
        {
            0x4000_0000: mixed_pages(0x4000_0000, 40),
            0x4100_0000: mixed_pages(0x4100_0000, 3, seed=1) + b"tail" * 100,
            0x8000_0000: page_pattern(0x8000_0000, 0x11000, seed=2),
        }
    )


def write_many_loads_elf(path, n: int, page: int = 4096, overlap: bool = False):
    """An ELF core with ``n`` one-page PT_LOADs (a hostile-input shape: the
    audit's 30,000).  With ``overlap`` every segment also covers its
    neighbour's page, so overlap resolution has work to do."""
    data = bytes(3 * page if overlap else page)
    return write_elf_core(path, [(0x4000_0000 + i * 2 * page, data) for i in range(n)][::-1])


def write_many_ranges_lime(path, n: int, size: int = 1, magic: int = 0x4C694D45, version: int = 1):
    """A LiME (or, with AVML's magic and version 2, AVML-like headers) file of
    ``n`` tiny ranges, one every other page."""
    out = bytearray()
    for i in range(n):
        s = 0x4000_0000 + i * 8192
        out += struct.pack("<IIQQ8x", magic, version, s, s + size - 1) + bytes(size)
    with open(path, "wb") as f:
        f.write(out)
    return path
