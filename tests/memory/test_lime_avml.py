"""LiME and AVML readers and writers: round trips, holes, truncation, corruption."""

from __future__ import annotations

import pytest

from armvmi_cli.errors import ImageFormatError, MemoryReadError
from armvmi_cli.memory import open_image
from armvmi_cli.memory.avml import AvmlMemory, write_avml
from armvmi_cli.memory.lime import HEADER_SIZE, write_lime

from .synth import sample_memory

WRITERS = {"lime": write_lime, "avml": write_avml}


def _same(a, b):
    assert [(r.start, r.end) for r in a.ranges()] == [(r.start, r.end) for r in b.ranges()]
    for r in a.ranges():
        assert a.read(r.start, r.size) == b.read(r.start, r.size)


@pytest.mark.parametrize("fmt", WRITERS)
def test_round_trip(tmp_path, fmt):
    src = sample_memory()
    p = tmp_path / f"img.{fmt}"
    WRITERS[fmt](src, p)
    m = open_image(p)
    assert m.format == fmt
    _same(src, m)


@pytest.mark.parametrize("fmt", WRITERS)
def test_reads_across_frames_and_holes(tmp_path, fmt):
    src = sample_memory()
    p = tmp_path / "img"
    WRITERS[fmt](src, p)
    m = open_image(p)
    # crosses AVML 64 KiB frame boundaries
    assert m.read(0x4000_FFF0, 0x20) == src.read(0x4000_FFF0, 0x20)
    assert m.read(0x8000_0000 + 0x10FFC, 4) == src.read(0x8000_0000 + 0x10FFC, 4)
    with pytest.raises(MemoryReadError) as e:
        m.read(0x4002_7FF8, 16)  # last 8 bytes of range 0, then the hole
    assert e.value.pa == 0x4002_8000
    for pa in (0, 0x3FFF_FFFF, 0x8001_1000):
        assert not m.is_mapped(pa)
        with pytest.raises(MemoryReadError):
            m.read(pa, 1)


def test_lime_header_layout(tmp_path):
    p = tmp_path / "img.lime"
    write_lime(sample_memory(), p)
    head = p.read_bytes()[:HEADER_SIZE]
    assert head[:8] == b"EMiL\x01\x00\x00\x00"
    assert int.from_bytes(head[8:16], "little") == 0x4000_0000
    assert int.from_bytes(head[16:24], "little") == 0x4000_0000 + 40 * 4096 - 1  # inclusive end


def test_avml_header_matches_avml_tool(tmp_path):
    from .synth import BytesMemory

    p = tmp_path / "one.avml"
    write_avml(BytesMemory({0x1000: bytes(0x1F001)}), p)
    # the same bytes microsoft/avml's own unit test expects for (0x1000, 0x20000, v2)
    assert p.read_bytes()[:32] == b"AVML\x02\x00\x00\x00" + (0x1000).to_bytes(8, "little") + (0x20000).to_bytes(8, "little") + bytes(8)


@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("cut", [4, 31, 33, 1000, -9, -1])
def test_truncated(tmp_path, fmt, cut):
    p = tmp_path / "img"
    WRITERS[fmt](sample_memory(), p)
    data = p.read_bytes()
    p.write_bytes(data[: cut if cut > 0 else len(data) + cut])
    with pytest.raises(ImageFormatError, match="truncated|corrupt"):
        open_image(p)


@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("where,value", [(4, b"\x07"), (16, b"\0" * 8)])
def test_corrupt_header(tmp_path, fmt, where, value):
    p = tmp_path / "img"
    WRITERS[fmt](sample_memory(), p)
    data = bytearray(p.read_bytes())
    data[where : where + len(value)] = value  # bad version / end before start
    p.write_bytes(bytes(data))
    with pytest.raises(ImageFormatError):
        open_image(p)


def test_lime_bad_second_magic(tmp_path):
    p = tmp_path / "img"
    write_lime(sample_memory(), p)
    data = bytearray(p.read_bytes())
    second = HEADER_SIZE + 40 * 4096
    data[second : second + 4] = b"XXXX"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageFormatError, match="range #1.*bad magic"):
        open_image(p)


def test_avml_corrupt_frame_data_is_an_image_error(tmp_path):
    p = tmp_path / "img"
    write_avml(sample_memory(), p)
    data = bytearray(p.read_bytes())
    # smash the compressed body of the first frame (after header, stream id, frame header, crc, varint)
    body = HEADER_SIZE + 10 + 4 + 4 + 3
    data[body : body + 40] = b"\xff" * 40
    p.write_bytes(bytes(data))
    m = AvmlMemory(p)
    with pytest.raises(ImageFormatError, match="corrupt AVML snappy frame"):
        m.read(0x4000_0000, 4096)


def test_real_capture_lime_byte_for_byte(nokaslr_capture, tmp_path):
    """LiME written by our writer from the real ELF equals the raw bytes of the capture."""
    elf = open_image(nokaslr_capture.image)
    start = elf.ranges()[0].start
    # 8 MiB of the real capture in two LiME ranges with a hole: keeps the test fast
    from armvmi_cli.memory.base import PhysicalMemory, Range

    class Window(PhysicalMemory):
        def __init__(self):
            super().__init__(None)
            self._set_ranges([Range(start, start + (4 << 20)), Range(start + (16 << 20), start + (20 << 20))])

        def _read_in_range(self, i, pa, n):
            return elf.read(pa, n)

    w = Window()
    lime = tmp_path / "cap.lime"
    write_lime(w, lime)
    raw = tmp_path / "cap.raw"
    with open(raw, "wb") as f:
        f.write(elf.read(start, 20 << 20))
    m = open_image(lime)
    r = open_image(raw, phys_base=start)
    for rg in m.ranges():
        assert m.read(rg.start, rg.size) == r.read(rg.start, rg.size)
    with pytest.raises(MemoryReadError):
        m.read(start + (4 << 20), 8)
    avml = tmp_path / "cap.avml"
    write_avml(w, avml)
    a = open_image(avml)
    assert a.read(start + 0x12345, 0x3000) == r.read(start + 0x12345, 0x3000)
