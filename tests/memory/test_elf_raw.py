"""ELF core and raw readers, on synthetic files and on the real capture."""

from __future__ import annotations

import pytest

from armvmi_cli.errors import ImageFormatError, MemoryReadError, UsageError
from armvmi_cli.memory import open_image
from armvmi_cli.memory.detect import sniff
from armvmi_cli.memory.elfcore import ElfCoreMemory

from .synth import elf_note, page_pattern, write_elf_core

A, B = 0x4000_0000, 0x4010_0000  # two segments with a hole between them
SEG_A = page_pattern(A, 0x8000)
SEG_B = page_pattern(B, 0x3000)
VMCI = b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\nKERNELOFFSET=1234000\nNUMBER(kimage_voffset)=0xffff7fffc0000000\nSYMBOL(swapper_pg_dir)=ffff800009b2e000\n"


def _prstatus(pc: int) -> bytes:
    regs = list(range(31)) + [0xAAAA, pc, 0x3C5]
    return bytes(32) + (77).to_bytes(4, "little") + bytes(112 - 36) + b"".join(r.to_bytes(8, "little") for r in regs) + bytes(8)


@pytest.fixture
def elf(tmp_path):
    notes = elf_note(b"CORE", 1, _prstatus(0xFFFF800008001234)) + elf_note(b"VMCOREINFO", 0, VMCI)
    return write_elf_core(tmp_path / "core", [(A, SEG_A), (B, SEG_B)], notes)


def test_elf_reads_segments_by_paddr(elf):
    m = open_image(elf)
    assert m.format == "elf" and isinstance(m, ElfCoreMemory)
    assert [(r.start, r.end) for r in m.ranges()] == [(A, A + 0x8000), (B, B + 0x3000)]
    assert m.read(A, 0x8000) == SEG_A
    assert m.read(B + 0x1FF8, 16) == SEG_B[0x1FF8:0x2008]
    assert m.is_mapped(A + 0x7FFF) and not m.is_mapped(A + 0x8000)


def test_elf_vmcoreinfo_and_prstatus(elf):
    m = open_image(elf)
    assert m.vmcoreinfo["OSRELEASE"] == "6.1.0-test"
    assert m.vmcoreinfo["NUMBER(kimage_voffset)"] == "0xffff7fffc0000000"
    assert m.vmcoreinfo["SYMBOL(swapper_pg_dir)"] == "ffff800009b2e000"
    assert [n for n, _, _ in m.notes] == ["CORE", "VMCOREINFO"]
    assert m.prstatus[0]["pid"] == 77
    assert m.prstatus[0]["regs"]["pc"] == 0xFFFF800008001234 and m.prstatus[0]["regs"]["x30"] == 30


def test_elf_hole_and_past_end(elf):
    m = open_image(elf)
    with pytest.raises(MemoryReadError) as e:
        m.read(A + 0x7FF0, 0x20)  # runs off segment A into the hole
    assert e.value.pa == A + 0x8000
    with pytest.raises(MemoryReadError):
        m.read(B + 0x3000, 1)
    with pytest.raises(MemoryReadError):
        m.read(0, 8)


def test_elf_filtered_tail_is_not_present_unless_zero_filled(tmp_path):
    p = write_elf_core(tmp_path / "core", [(A, SEG_A)], memsz_extra=0x2000)
    m = open_image(p)
    with pytest.raises(MemoryReadError):
        m.read(A + 0x8000, 1)
    z = ElfCoreMemory(p, zero_fill_excluded=True)
    assert z.read(A + 0x7FFC, 8) == SEG_A[-4:] + bytes(4)
    assert z.ranges()[-1].end == A + 0xA000 and z.read(A + 0x9FF8, 8) == bytes(8)


def test_elf_overlapping_segments_first_wins(tmp_path):
    p = write_elf_core(tmp_path / "core", [(A, SEG_A), (A + 0x4000, page_pattern(A + 0x4000, 0x8000, seed=9))])
    m = open_image(p)
    assert m.read(A + 0x4000, 16) == SEG_A[0x4000:0x4010]
    assert m.ranges()[-1].end == A + 0xC000


def test_elf_truncated_names_segment(elf, tmp_path):
    data = elf.read_bytes()
    t = tmp_path / "trunc"
    t.write_bytes(data[: len(data) - 100])
    with pytest.raises(ImageFormatError, match=r"truncated: PT_LOAD #2 \(phys 0x40100000\)"):
        open_image(t)


@pytest.mark.parametrize("cut", [3, 20, 63, 100])
def test_elf_corrupt_header(elf, tmp_path, cut):
    t = tmp_path / "cut"
    t.write_bytes(elf.read_bytes()[:cut])
    if cut < 4:
        assert sniff(t) == "raw"  # not even the magic: it is just a tiny raw image
        return
    with pytest.raises(ImageFormatError):
        open_image(t)


def test_elf_garbage_phdrs(elf, tmp_path):
    data = bytearray(elf.read_bytes())
    data[32:40] = (10**9).to_bytes(8, "little")  # e_phoff far past the end
    t = tmp_path / "bad"
    t.write_bytes(bytes(data))
    with pytest.raises(ImageFormatError):
        open_image(t)


def test_raw_phys_base(tmp_path):
    p = tmp_path / "raw"
    data = page_pattern(0, 0x5000)
    p.write_bytes(data)
    m = open_image(p, phys_base=0x8000_0000)
    assert m.format == "raw" and m.ranges()[0].start == 0x8000_0000 and m.size == 0x5000
    assert m.read(0x8000_1000, 0x100) == data[0x1000:0x1100]
    with pytest.raises(MemoryReadError):
        m.read(0x8000_4FFF, 2)
    assert open_image(p).read(0, 4) == data[:4]


def test_phys_base_rejected_for_self_describing(elf):
    with pytest.raises(UsageError):
        open_image(elf, phys_base=0)


def test_missing_empty_and_directory(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    for p in (tmp_path / "nope", tmp_path / "empty", tmp_path):
        with pytest.raises(ImageFormatError):
            open_image(p)


def test_real_capture_elf_and_raw_slice(nokaslr_capture, tmp_path):
    m = open_image(nokaslr_capture.image)
    assert m.format == "elf"
    assert [(r.start, r.size) for r in m.ranges()] == [(0x4000_0000, 256 << 20)]
    assert m.prstatus and m.prstatus[0]["regs"]["pc"] >= 0xFFFF_0000_0000_0000
    # the raw form of the same memory: a 16 MiB slice written with the reader itself
    raw = tmp_path / "slice.raw"
    with open(raw, "wb") as f:
        for off in range(0, 16 << 20, 1 << 20):
            f.write(m.read(0x4000_0000 + off, 1 << 20))
    r = open_image(raw, phys_base=0x4000_0000)
    for pa in (0x4000_0000, 0x4012_3456, 0x40FF_F000):
        assert r.read(pa, 4096) == m.read(pa, 4096)
    # and the real ELF, truncated, is refused with a one-line error
    t = tmp_path / "trunc.elf"
    with open(nokaslr_capture.image, "rb") as fi, open(t, "wb") as fo:
        fo.write(fi.read(1 << 20))
    with pytest.raises(ImageFormatError, match="truncated: PT_LOAD"):
        open_image(t)
