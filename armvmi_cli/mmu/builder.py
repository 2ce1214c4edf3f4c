"""Build real VMSAv8-64 translation tables in a memory, for tests and composed fixture images.

    mem = SparseMemory()
    alloc = PageAllocator(0x8000_0000)
    s2 = Stage2Tables(mem, alloc, ia_bits=40)            # KVM's geometry: level 1, 2 tables
    s2.map(0x4000_0000, 0x9000_0000, 256 << 20)           # largest blocks that fit
    vttbr, vtcr = s2.registers(vmid=1)
    s1 = Stage1Tables(guest_mem, guest_alloc, va_bits=48)
    s1.map(0xffff_8000_0000_0000, 0x4000_0000, 2 << 20)
    ttbr0, ttbr1, tcr = s1.registers()

``memory`` is anything with ``write(pa, bytes)`` and ``read(pa, n)`` (a :class:`SparseMemory`,
or a composed image under construction).  The builder encodes descriptors itself
(independently of :mod:`.walk`), so tests of the walker check against it.
"""

from __future__ import annotations

from ..errors import MemoryReadError
from ..memory.base import PhysicalMemory, Range
from .geometry import (
    FINAL_LEVEL,
    PS_ENCODING,
    Geometry,
    Granule,
    s1_start_level,
    s2_inconsistent,
    s2_sl_encoding,
)

_PAGE = 4096


class SparseMemory(PhysicalMemory):
    """Physical memory held as a dict of 4 KiB pages; absent pages are holes."""

    format = "sparse"

    def __init__(self, name: str = "host physical"):
        super().__init__(None)
        self.name = self.layer_name = name
        self.lower = None
        self.pages: dict[int, bytearray] = {}

    def write(self, pa: int, data: bytes) -> None:
        off = 0
        while off < len(data):
            page, o = divmod(pa + off, _PAGE)
            take = min(_PAGE - o, len(data) - off)
            buf = self.pages.get(page)
            if buf is None:
                buf = self.pages[page] = bytearray(_PAGE)
            buf[o : o + take] = data[off : off + take]
            off += take

    def write_u64(self, pa: int, value: int) -> None:
        self.write(pa, value.to_bytes(8, "little"))

    def discard(self, pa: int, size: int) -> None:
        """Make [pa, pa+size) a hole (page granular)."""
        for page in range(pa // _PAGE, (pa + size + _PAGE - 1) // _PAGE):
            self.pages.pop(page, None)

    def is_mapped(self, pa: int) -> bool:
        return pa // _PAGE in self.pages

    def read(self, pa: int, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            page, o = divmod(pa + len(out), _PAGE)
            buf = self.pages.get(page)
            if buf is None:
                raise MemoryReadError(pa + len(out), n - len(out), self.layer_name, "not in image (hole)")
            out += buf[o : o + min(_PAGE - o, n - len(out))]
        return bytes(out)

    def ranges(self) -> list[Range]:
        runs: list[Range] = []
        for page in sorted(self.pages):
            if runs and runs[-1].end == page * _PAGE:
                runs[-1] = Range(runs[-1].start, (page + 1) * _PAGE)
            else:
                runs.append(Range(page * _PAGE, (page + 1) * _PAGE))
        return runs

    @property
    def size(self) -> int:
        return len(self.pages) * _PAGE


class PageAllocator:
    """Hands out aligned physical ranges for tables from [start, end)."""

    def __init__(self, start: int, end: int | None = None):
        self.next, self.end = start, end

    def alloc(self, size: int, align: int) -> int:
        pa = (self.next + align - 1) & ~(align - 1)
        if self.end is not None and pa + size > self.end:
            raise MemoryError(f"page-table allocator exhausted at {pa:#x}")
        self.next = pa + size
        return pa


def default_leaf_attrs(stage: int, ds: bool = False) -> int:
    """AF, inner-shareable normal memory, kernel RW (stage 1) / S2AP RW (stage 2)."""
    sh = 0 if ds else 3 << 8
    if stage == 2:
        return (1 << 10) | sh | (3 << 6) | (0xF << 2)
    return (1 << 10) | sh


class PageTables:
    """One table tree (one TTBR, or the stage-2 tree) of any granule, size and start level."""

    def __init__(self, memory, allocator: PageAllocator, *, granule: Granule = Granule.K4, stage: int = 1,
                 ia_bits: int = 48, oa_bits: int = 48, start_level: int | None = None, ds: bool = False,
                 root: int | None = None):
        granule = Granule(granule)
        if start_level is None:
            # Stage 1 has one choice; for stage 2 this is also KVM's (fewest levels, <= 16 tables).
            start_level = s1_start_level(ia_bits - (4 if stage == 2 else 0), granule)
        if stage == 2 and s2_inconsistent(ia_bits, granule, start_level):
            raise ValueError(f"a {ia_bits}-bit IPA cannot start at level {start_level} ({granule.name})")
        self.geom = Geometry(granule, ia_bits, start_level, oa_bits, ds, stage)
        self.memory, self.allocator = memory, allocator
        size = max(self.geom.root_bytes, int(granule))
        self.root = allocator.alloc(size, max(self.geom.root_bytes, int(granule))) if root is None else root
        memory.write(self.root, bytes(self.geom.root_bytes))
        # Python-side record of the tree, kept independently of the walker:
        self.tables = {(start_level, 0): self.root}  # (level, ia >> shift of the level above) -> table PA
        self.leaves: list[tuple[int, int, int, int]] = []  # (ia, oa, size, level)

    # -- encodings -------------------------------------------------------
    def encode_oa(self, addr: int) -> int:
        """Place an output address in descriptor bits (LPA2: 51:50 in 9:8; 64K LPA: 51:48 in 15:12)."""
        if self.geom.ds:
            return (addr & 0x0003_FFFF_FFFF_F000) | ((addr >> 50) & 3) << 8
        if self.geom.granule == Granule.K64 and self.geom.oa_bits == 52:
            return (addr & 0x0000_FFFF_FFFF_0000) | ((addr >> 48) & 0xF) << 12
        return addr & 0x0000_FFFF_FFFF_F000

    def leaf_descriptor(self, oa: int, level: int, attrs: int | None = None) -> int:
        attrs = default_leaf_attrs(self.geom.stage, self.geom.ds) if attrs is None else attrs
        return self.encode_oa(oa) | attrs | (3 if level == FINAL_LEVEL else 1)

    def _shift(self, level: int) -> int:
        g = self.geom.granule
        return g.shift + (FINAL_LEVEL - level) * g.stride

    def _index(self, ia: int, level: int) -> int:
        top = self.geom.ia_bits if level == self.geom.start_level else self._shift(level) + self.geom.granule.stride
        return (ia & ((1 << top) - 1)) >> self._shift(level)

    # -- building --------------------------------------------------------
    def table(self, ia: int, level: int, create: bool = True) -> int | None:
        """PA of the level-``level`` table covering ``ia``, creating the path to it."""
        start = self.geom.start_level
        table = self.root
        for lv in range(start, level):
            key = (lv + 1, ia >> self._shift(lv))
            nxt = self.tables.get(key)
            if nxt is None:
                if not create:
                    return None
                daddr = table + self._index(ia, lv) * 8
                if int.from_bytes(self.memory.read(daddr, 8), "little") & 1:
                    raise ValueError(f"{ia:#x}: level {lv} entry is already a block")
                g = int(self.geom.granule)
                nxt = self.allocator.alloc(g, g)
                self.memory.write(nxt, bytes(g))
                self.memory.write(daddr, (self.encode_oa(nxt) | 3).to_bytes(8, "little"))
                self.tables[key] = nxt
            table = nxt
        return table

    def entry_address(self, ia: int, level: int) -> int:
        return self.table(ia, level) + self._index(ia, level) * 8

    def set_descriptor(self, ia: int, level: int, raw: int) -> int:
        """Write a raw descriptor (for malformed-table tests); returns its address."""
        addr = self.entry_address(ia, level)
        self.memory.write(addr, raw.to_bytes(8, "little"))
        return addr

    def leaf_levels(self) -> list[int]:
        """Levels that may hold a leaf, largest first."""
        g = self.geom
        return [lv for lv in range(g.start_level, FINAL_LEVEL) if g.block_allowed(lv)] + [FINAL_LEVEL]

    def map(self, ia: int, oa: int, size: int, *, level: int | None = None, attrs: int | None = None) -> list:
        """Map [ia, ia+size) -> oa with the largest leaves that fit (or all at ``level``)."""
        done = []
        end = ia + size
        while ia < end:
            for lv in ([level] if level is not None else self.leaf_levels()):
                blk = 1 << self._shift(lv)
                if (ia | oa) & (blk - 1) == 0 and ia + blk <= end:
                    break
            else:
                raise ValueError(f"{ia:#x}->{oa:#x}: not aligned to any leaf size")
            if (ia | oa) & (blk - 1) or ia + blk > end:
                raise ValueError(f"{ia:#x}->{oa:#x} (+{size:#x}) does not fit level-{lv} leaves")
            entry = self.entry_address(ia, lv)
            if int.from_bytes(self.memory.read(entry, 8), "little") & 1:
                raise ValueError(f"{ia:#x}: level {lv} entry is already in use")
            self.memory.write(entry, self.leaf_descriptor(oa, lv, attrs).to_bytes(8, "little"))
            self.leaves.append((ia, oa, blk, lv))
            done.append((ia, oa, blk, lv))
            ia += blk
            oa += blk
        return done

    def expected_fault_level(self, ia: int) -> int:
        """For an unmapped ``ia``: the level whose entry is invalid (from the builder's record)."""
        lv = self.geom.start_level
        while lv < FINAL_LEVEL and (lv + 1, ia >> self._shift(lv)) in self.tables:
            lv += 1
        return lv

    def lookup(self, ia: int) -> int | None:
        """Expected output for ``ia`` from the record of leaves (None if unmapped)."""
        for lia, loa, size, _lv in self.leaves:
            if lia <= ia < lia + size:
                return loa + (ia - lia)
        return None

    # -- registers -------------------------------------------------------
    def base_register(self, tag: int = 0, cnp: bool = False) -> int:
        """TTBR / VTTBR: BADDR (52-bit layout when needed) | ASID/VMID << 48 | CnP."""
        if self.geom.ds or self.geom.oa_bits == 52:
            baddr = (self.root & 0x0000_FFFF_FFFF_FFC0) | ((self.root >> 48) & 0xF) << 2
        else:
            baddr = self.root
        return baddr | (tag & 0xFFFF) << 48 | int(cnp)


def _ps(oa_bits: int) -> int:
    return PS_ENCODING[oa_bits]


class Stage1Tables:
    """Both halves of an EL1&0 regime: TTBR0 (lower VAs) and TTBR1 (upper VAs)."""

    def __init__(self, memory, allocator: PageAllocator, *, granule: Granule = Granule.K4,
                 granule1: Granule | None = None, va_bits: int = 48, va_bits1: int | None = None,
                 oa_bits: int = 48, ds: bool = False, tbi0: bool = False, tbi1: bool = False,
                 lower: bool = True, upper: bool = True):
        kw = dict(stage=1, oa_bits=oa_bits, ds=ds)
        self.lo = PageTables(memory, allocator, granule=granule, ia_bits=va_bits, **kw) if lower else None
        self.hi = (PageTables(memory, allocator, granule=granule1 or granule, ia_bits=va_bits1 or va_bits, **kw)
                   if upper else None)
        self.oa_bits, self.ds, self.tbi0, self.tbi1 = oa_bits, ds, tbi0, tbi1

    def half(self, va: int) -> tuple[PageTables, int]:
        pt = self.hi if (va >> 55) & 1 else self.lo
        if pt is None:
            raise ValueError(f"{va:#x}: that half has no tables")
        return pt, va & ((1 << pt.geom.ia_bits) - 1)

    def map(self, va: int, pa: int, size: int, **kw) -> list:
        pt, ia = self.half(va)
        return pt.map(ia, pa, size, **kw)

    def set_descriptor(self, va: int, level: int, raw: int) -> int:
        pt, ia = self.half(va)
        return pt.set_descriptor(ia, level, raw)

    def tcr(self) -> int:
        tcr = _ps(self.oa_bits) << 32 | int(self.ds) << 59 | int(self.tbi0) << 37 | int(self.tbi1) << 38
        if self.lo is None:
            tcr |= 1 << 7 | 16  # EPD0
        else:
            tcr |= (64 - self.lo.geom.ia_bits) | self.lo.geom.granule.tg0 << 14
        if self.hi is None:
            tcr |= 1 << 23 | 16 << 16 | Granule.K4.tg1 << 30  # EPD1
        else:
            tcr |= (64 - self.hi.geom.ia_bits) << 16 | self.hi.geom.granule.tg1 << 30
        return tcr

    def registers(self, asid: int = 0) -> tuple[int | None, int | None, int]:
        """(TTBR0_EL1, TTBR1_EL1, TCR_EL1)."""
        return (
            self.lo.base_register(asid) if self.lo else None,
            self.hi.base_register(asid) if self.hi else None,
            self.tcr(),
        )


class Stage2Tables(PageTables):
    """A stage-2 tree; ``registers()`` gives VTTBR_EL2 and VTCR_EL2."""

    def __init__(self, memory, allocator: PageAllocator, *, granule: Granule = Granule.K4, ia_bits: int = 40,
                 oa_bits: int = 48, start_level: int | None = None, ds: bool = False, root: int | None = None):
        super().__init__(memory, allocator, granule=granule, stage=2, ia_bits=ia_bits, oa_bits=oa_bits,
                         start_level=start_level, ds=ds, root=root)

    def vtcr(self) -> int:
        g = self.geom
        sl0, sl2 = s2_sl_encoding(g.granule, g.start_level)
        # RES1 bit 31; inner/outer write-back, inner shareable walks as KVM sets them.
        return ((64 - g.ia_bits) | sl0 << 6 | 1 << 8 | 1 << 10 | 3 << 12 | g.granule.tg0 << 14
                | _ps(g.oa_bits) << 16 | 1 << 31 | int(g.ds) << 32 | sl2 << 33)

    def registers(self, vmid: int = 0) -> tuple[int, int]:
        """(VTTBR_EL2, VTCR_EL2)."""
        return self.base_register(vmid), self.vtcr()


class LayerWriter:
    """Write into a translated space: ``write(addr, data)`` lands in the bottom memory.

    Lets the builder lay guest stage-1 tables in guest-physical space of a composed host
    image (``LayerWriter(Stage2(host, vttbr, vtcr))``); the bottom must have ``write``.
    """

    def __init__(self, layer):
        self.layer = layer

    def read(self, addr: int, n: int) -> bytes:
        return self.layer.read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        from .layers import resolve_chain

        off = 0
        while off < len(data):
            chain = resolve_chain(self.layer, addr + off)
            take = min(len(data) - off, _PAGE - ((addr + off) & (_PAGE - 1)))
            bottom = self.layer
            while getattr(bottom, "lower", None) is not None:
                bottom = bottom.lower
            bottom.write(chain[-1][1], data[off : off + take])
            off += take
