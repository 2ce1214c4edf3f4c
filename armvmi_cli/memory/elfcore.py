"""ELF core files: QEMU ``dump-guest-memory`` and kdump ``/proc/vmcore``.

Physical memory comes from the PT_LOAD segments, addressed by ``p_paddr``.
The PT_NOTE segments give the VMCOREINFO note (parsed into ``vmcoreinfo``) and
one NT_PRSTATUS per CPU (``prstatus``: x0-x30, sp, pc, pstate on arm64).

Bytes of a segment beyond ``p_filesz`` (up to ``p_memsz``) are *not present*:
makedumpfile drops filtered pages that way, and their content is unknown, not
zero (``crash`` also refuses them unless told ``--zero_excluded``).  Pass
``zero_fill_excluded=True`` to read them as zeros instead.

Segments may overlap (a kdump vmcore maps the kernel image twice: the linear
map and the kimage segment).  The first segment in file order wins; the bytes
are the same physical memory either way.
"""

from __future__ import annotations

import bisect

import struct

from ..errors import ImageFormatError
from .base import PhysicalMemory, Range
from .mapped import MappedFile

PT_LOAD = "PT_LOAD"
PT_NOTE = "PT_NOTE"
NT_PRSTATUS = 1
EM_AARCH64 = "EM_AARCH64"
ET_CORE = 4
_ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
_PT_NAMES = {1: PT_LOAD, 4: PT_NOTE}
# e_machine as pyelftools spelled it (describe() shows it).
_EM_NAMES = {3: "EM_386", 40: "EM_ARM", 62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV"}

# struct elf_prstatus (arm64): pr_pid at 32, pr_reg[34] (x0..x30, sp, pc, pstate) at 112
_PRSTATUS_PID_OFF = 32
_PRSTATUS_REG_OFF = 112
_AARCH64_REGS = [f"x{i}" for i in range(31)] + ["sp", "pc", "pstate"]


def _align4(n: int) -> int:
    return (n + 3) & ~3


def parse_notes(data: bytes, little_endian: bool = True, where: str = "PT_NOTE") -> list[tuple[str, int, bytes]]:
    """Split an ELF note segment into (name, type, desc) triples."""
    fmt = "<III" if little_endian else ">III"
    notes = []
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from(fmt, data, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break  # zero padding at the end of a kdump note segment
        name_end = pos + 12 + namesz
        desc_off = _align4(name_end)
        desc_end = desc_off + descsz
        if desc_end > len(data):
            raise ImageFormatError(f"{where}: corrupt note at offset {pos:#x} (runs past the segment)")
        name = data[pos + 12 : name_end].rstrip(b"\0").decode("latin-1")
        notes.append((name, ntype, bytes(data[desc_off:desc_end])))
        pos = _align4(desc_end)
    return notes


def parse_vmcoreinfo(desc: bytes) -> dict[str, str]:
    """VMCOREINFO is text: ``KEY=value`` lines (``SYMBOL(x)=``, ``NUMBER(x)=`` ...)."""
    out: dict[str, str] = {}
    for line in desc.rstrip(b"\0").decode("latin-1").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_prstatus_aarch64(desc: bytes) -> dict | None:
    if len(desc) < _PRSTATUS_REG_OFF + 8 * len(_AARCH64_REGS):
        return None
    (pid,) = struct.unpack_from("<i", desc, _PRSTATUS_PID_OFF)
    regs = struct.unpack_from(f"<{len(_AARCH64_REGS)}Q", desc, _PRSTATUS_REG_OFF)
    return {"pid": pid, "regs": dict(zip(_AARCH64_REGS, regs))}


class ElfCoreMemory(PhysicalMemory):
    format = "elf"

    def __init__(self, path, zero_fill_excluded: bool = False):
        super().__init__(str(path))
        self._file = MappedFile(path)
        self._mm = self._file.mm
        self.zero_fill_excluded = zero_fill_excluded
        #: every ELF note: (name, type, desc bytes)
        self.notes: list[tuple[str, int, bytes]] = []
        #: one entry per NT_PRSTATUS note (arm64 only): {"pid", "regs": {x0.., sp, pc, pstate}}
        self.prstatus: list[dict] = []
        try:
            self._parse()
        except BaseException:
            self._file.close()
            raise

    def _segments(self):
        # The ELF and program headers are read with struct: a core needs only
        # e_type/e_machine and the PT_LOAD/PT_NOTE entries, and importing
        # pyelftools for them costs more than the rest of `armvmi ps`.
        mm, size = self._mm, self._file.size
        if size < 52 or mm[:4] != b"\x7fELF" or mm[4] not in (1, 2) or mm[5] not in (1, 2):
            raise ImageFormatError(f"{self.path}: corrupt ELF header: not an ELF32/ELF64 file")
        is64, bo = mm[4] == 2, "<" if mm[5] == 1 else ">"
        if is64:
            if size < 64:
                raise ImageFormatError(f"{self.path}: corrupt ELF header: truncated")
            e_type, e_machine = struct.unpack_from(bo + "HH", mm, 16)
            (e_phoff,) = struct.unpack_from(bo + "Q", mm, 32)
            e_phentsize, e_phnum = struct.unpack_from(bo + "HH", mm, 54)
            ph_fmt, need = bo + "IIQQQQQQ", 56
        else:
            e_type, e_machine = struct.unpack_from(bo + "HH", mm, 16)
            (e_phoff,) = struct.unpack_from(bo + "I", mm, 28)
            e_phentsize, e_phnum = struct.unpack_from(bo + "HH", mm, 42)
            ph_fmt, need = bo + "IIIIIIII", 32
        if e_type != ET_CORE:
            raise ImageFormatError(
                f"{self.path}: ELF file of type {_ET_NAMES.get(e_type, e_type)}, not a core dump (ET_CORE)")
        if e_phnum and (e_phentsize < need or e_phoff + e_phnum * e_phentsize > size):
            raise ImageFormatError(f"{self.path}: corrupt ELF header: program headers run past the end of the file")
        segs = []
        for i in range(e_phnum):
            f = struct.unpack_from(ph_fmt, mm, e_phoff + i * e_phentsize)
            if is64:
                p_type, _flags, off, _va, pa, filesz, memsz, _al = f
            else:
                p_type, off, _va, pa, filesz, memsz, _flags, _al = f
                if pa == 2**32 - 1:
                    pa = 2**64 - 1
            segs.append({"p_type": _PT_NAMES.get(p_type, p_type), "p_offset": off, "p_paddr": pa,
                         "p_filesz": filesz, "p_memsz": memsz})
        self.machine = _EM_NAMES.get(e_machine, e_machine)
        self.little_endian = bo == "<"
        return segs

    def _parse(self) -> None:
        size = self._file.size
        segs = self._segments()
        pieces: list[tuple[int, int, int | None]] = []  # (pa_start, pa_end, file_offset or None=zeros)
        for i, s in enumerate(segs):
            kind, off, filesz = s["p_type"], s["p_offset"], s["p_filesz"]
            if kind not in (PT_LOAD, PT_NOTE):
                continue
            if off + filesz > size:
                what = f"PT_LOAD #{i} (phys {s['p_paddr']:#x})" if kind == PT_LOAD else f"PT_NOTE #{i}"
                raise ImageFormatError(
                    f"{self.path}: truncated: {what} needs file bytes {off:#x}-{off + filesz:#x} but the file has {size:#x}"
                )
            if kind == PT_NOTE:
                self.notes += parse_notes(self._mm[off : off + filesz], self.little_endian, f"{self.path}: PT_NOTE #{i}")
                continue
            pa = s["p_paddr"]
            if pa == 2**64 - 1:  # kcore-style "no physical address"
                continue
            pieces.append((pa, pa + filesz, off))
            if self.zero_fill_excluded and s["p_memsz"] > filesz:
                pieces.append((pa + filesz, pa + s["p_memsz"], None))
        self._pieces = _resolve(pieces)
        self._set_ranges([Range(a, b) for a, b, _ in self._pieces])
        for name, ntype, desc in self.notes:
            if name == "VMCOREINFO":
                self.vmcoreinfo = parse_vmcoreinfo(desc)
            elif name == "CORE" and ntype == NT_PRSTATUS and self.machine == EM_AARCH64:
                st = parse_prstatus_aarch64(desc)
                if st:
                    self.prstatus.append(st)

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:
        start, _, off = self._pieces[index]
        if off is None:
            return bytes(n)
        o = off + (pa - start)
        return self._mm[o : o + n]

    def view(self, pa: int, n: int):
        """Like :meth:`read`, but a memoryview into the map when the run lies in
        one file-backed piece (no copy: a whole-memory search then costs the
        search, not a copy of the image).  The caller releases it."""
        i = self._find(pa)
        if i >= 0 and pa + n <= self._ranges[i].end:
            start, _, off = self._pieces[i]
            if off is not None:
                o = off + (pa - start)
                return memoryview(self._mm)[o : o + n]
        return self.read(pa, n)

    def close(self) -> None:
        self._file.close()

    def describe(self) -> dict:
        d = super().describe()
        d["machine"] = self.machine
        d["notes"] = [{"name": n, "type": t, "size": len(desc)} for n, t, desc in self.notes]
        d["cpus"] = len(self.prstatus)
        d["file_size"] = self._file.size
        return d


def _resolve(pieces):
    """Drop the parts of later pieces that earlier ones already cover, then sort
    and merge pieces contiguous in both address and file offset.

    The covered set is kept as sorted disjoint runs and searched with bisect,
    so a core with tens of thousands of PT_LOADs (a hostile or a very
    fragmented one) costs O(n log n), not O(n^2)."""
    starts: list[int] = []  # covered runs, sorted and disjoint: starts[i], ends[i]
    ends: list[int] = []
    kept: list[tuple[int, int, int | None]] = []
    for a, b, off in pieces:
        if b <= a:
            continue
        # the first run that ends after a, and every run that starts before b
        i = bisect.bisect_right(ends, a)
        j = bisect.bisect_left(starts, b)
        cur, gaps = a, []
        for k in range(i, j):
            if starts[k] > cur:
                gaps.append((cur, starts[k]))
            cur = max(cur, ends[k])
        if cur < b:
            gaps.append((cur, b))
        for x, y in gaps:
            kept.append((x, y, None if off is None else off + (x - a)))
        # the covered set now holds [min(a, runs[i]), max(b, runs[j-1])) as one run
        lo = min(a, starts[i]) if i < j else a
        hi = max(b, ends[j - 1]) if i < j else b
        starts[i:j] = [lo]
        ends[i:j] = [hi]
    kept.sort()
    merged: list[tuple[int, int, int | None]] = []
    for a, b, off in kept:
        if merged:
            pa, pb, poff = merged[-1]
            if pb == a and (
                (poff is None and off is None) or (poff is not None and off is not None and poff + (pb - pa) == off)
            ):
                merged[-1] = (pa, b, poff)
                continue
        merged.append((a, b, off))
    return merged
