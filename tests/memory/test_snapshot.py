"""The .armvmi container: round trips (full, sparse), metadata, corruption."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from armvmi_cli.errors import ImageFormatError, MemoryReadError, UsageError
from armvmi_cli.memory import open_image
from armvmi_cli.memory.armvmi_snapshot import HEADER, VERSION, SnapshotMemory, pack, page_ranges
from armvmi_cli.memory.events import find_event_log
from armvmi_cli.memory.recording import RecordingMemory, read_page_list

from .synth import BytesMemory, mixed_pages, sample_memory


@pytest.fixture
def snap(tmp_path):
    p = tmp_path / "s.armvmi"
    pack(sample_memory(), p, events=b"SMCLOG-bytes", metadata={"host_name": "kvm-host-7", "boot_id": "b-1", "notes": ["n1"]})
    return p


def test_full_round_trip(snap):
    src, m = sample_memory(), open_image(snap)
    assert isinstance(m, SnapshotMemory) and m.format == "armvmi"
    assert m.ranges() == src.ranges()
    for r in src.ranges():
        assert m.read(r.start, r.size) == src.read(r.start, r.size)
    assert m.embedded_events == b"SMCLOG-bytes"
    assert m.metadata["host_name"] == "kvm-host-7" and m.metadata["source_format"] == "synthetic"
    assert m.metadata["sparse"] is False
    assert m.check() == m.n_chunks
    st_ = m.stats()["chunks"]
    assert st_["zero"] > 0 and st_["lz4"] > 0 and st_["stored"] > 0  # all three methods exercised


@pytest.mark.parametrize("cs", [4096, 65536])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_reads_match_source(tmp_path_factory, cs, data):
    src = sample_memory()
    p = tmp_path_factory.mktemp("h") / f"s{cs}.armvmi"
    if not p.exists():
        pack(src, p, chunk_size=cs)
    m = open_image(p)
    r = data.draw(st.sampled_from(src.ranges()))
    pa = data.draw(st.integers(r.start, r.end - 1))
    n = data.draw(st.integers(1, r.end - pa))
    assert m.read(pa, n) == src.read(pa, n)
    with pytest.raises(MemoryReadError):
        m.read(r.end - 1, 2)  # every range is followed by a hole or the end


def test_vmcoreinfo_carried_from_source(tmp_path):
    src = sample_memory()
    src.vmcoreinfo = {"OSRELEASE": "6.1.0", "PAGESIZE": "4096"}
    p = tmp_path / "v.armvmi"
    pack(src, p)
    assert open_image(p).vmcoreinfo == {"OSRELEASE": "6.1.0", "PAGESIZE": "4096"}


def test_sparse_pages(tmp_path):
    src = sample_memory()
    pages = [0x4000_0000, 0x4000_1000, 0x4000_5123, 0x8000_3000, 0x1234_5000]  # last one absent
    p = tmp_path / "sp.armvmi"
    info = pack(src, p, pages=pages)
    assert info["pages_absent_from_source"] == 1
    m = open_image(p)
    assert [(r.start, r.end) for r in m.ranges()] == [
        (0x4000_0000, 0x4000_2000), (0x4000_5000, 0x4000_6000), (0x8000_3000, 0x8000_4000)
    ]
    assert m.read(0x4000_0FF0, 0x20) == src.read(0x4000_0FF0, 0x20)
    assert m.read(0x8000_3000, 4096) == src.read(0x8000_3000, 4096)
    with pytest.raises(MemoryReadError, match="sparse snapshot") as e:
        m.read(0x4000_2000, 8)
    assert e.value.pa == 0x4000_2000
    assert m.metadata["sparse"] is True and m.size == 4 * 4096


def test_page_ranges_clip_to_source():
    src = BytesMemory({0x1000: bytes(0x1800)})  # ends mid-page
    assert [(r.start, r.end) for r in page_ranges(src, [0x2000, 0x1000, 0x1000])[0]] == [(0x1000, 0x2800)]


def test_recording_then_sparse_pack(tmp_path):
    src = sample_memory()
    rec = RecordingMemory(src)
    assert rec.read(0x4000_0FFC, 8) == src.read(0x4000_0FFC, 8)
    with pytest.raises(MemoryReadError):
        rec.read(0x5000_0000, 4)
    assert rec.pages == {0x4000_0000, 0x4000_1000, 0x5000_0000}
    assert rec.ranges() == src.ranges() and rec.is_mapped(0x4000_0000)
    lst = tmp_path / "pages.txt"
    rec.write_page_list(lst)
    assert sorted(read_page_list(lst)) == sorted(rec.pages)
    p = tmp_path / "rec.armvmi"
    pack(src, p, pages=read_page_list(lst))
    m = open_image(p)
    assert m.read(0x4000_0FFC, 8) == src.read(0x4000_0FFC, 8) and m.size == 0x2000


def test_page_list_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("0x1000\nnot-a-page\n")
    with pytest.raises(UsageError, match=":2:"):
        read_page_list(bad)
    with pytest.raises(UsageError):
        read_page_list(tmp_path / "missing")


def test_repack_keeps_metadata_and_events(snap, tmp_path):
    m = open_image(snap)
    p = tmp_path / "again.armvmi"
    pack(m, p, events=m.embedded_events, chunk_size=65536)
    m2 = open_image(p)
    assert m2.metadata["host_name"] == "kvm-host-7" and m2.metadata["source_format"] == "armvmi"
    assert m2.read(0x8000_0000, 0x11000) == m.read(0x8000_0000, 0x11000)


def test_bad_chunk_size(tmp_path):
    with pytest.raises(UsageError):
        pack(sample_memory(), tmp_path / "x", chunk_size=5000)
    assert not list(tmp_path.iterdir())  # nothing left behind


# -- corruption: every kind is a one-line ImageFormatError ---------------------


def _mutate(snap, tmp_path, fn):
    data = bytearray(snap.read_bytes())
    fn(data)
    p = tmp_path / "bad.armvmi"
    p.write_bytes(bytes(data))
    return p


@pytest.mark.parametrize("cut", [8, 40, 63, 64, 5000, -1, -100])
def test_truncated(snap, tmp_path, cut):
    data = snap.read_bytes()
    p = tmp_path / "t.armvmi"
    p.write_bytes(data[: cut if cut > 0 else len(data) + cut])
    with pytest.raises(ImageFormatError, match="truncated"):
        open_image(p)


def test_corrupt_header_and_index(snap, tmp_path):
    def flip(at):
        def f(d):
            d[at] ^= 0x40
        return f

    with pytest.raises(ImageFormatError, match="header"):
        open_image(_mutate(snap, tmp_path, flip(20)))  # chunk size
    with pytest.raises(ImageFormatError, match="index"):
        open_image(_mutate(snap, tmp_path, flip(-30)))  # inside the chunk table at the end
    with pytest.raises(ImageFormatError, match="version"):
        def newer(d):
            import struct
            import zlib
            d[8:10] = (VERSION + 1).to_bytes(2, "little")
            d[56:60] = struct.pack("<I", zlib.crc32(bytes(d[: HEADER.size - 8])))
        open_image(_mutate(snap, tmp_path, newer))


def test_corrupt_chunk_data_detected(snap, tmp_path):
    m0 = open_image(snap)
    # find an lz4 chunk and damage its payload
    k = next(k for k in range(m0.n_chunks) if m0._entry(k)[2] == 2)
    off, n = m0._entry(k)[:2]
    m0.close()

    def smash(d):
        d[off : off + n] = b"\xff" * n

    m = SnapshotMemory(_mutate(snap, tmp_path, smash))
    with pytest.raises(ImageFormatError, match=f"chunk {k}"):
        m.check()


def test_event_log_discovery(snap, tmp_path):
    img = tmp_path / "plain.raw"
    img.write_bytes(mixed_pages(0, 2))
    ev = tmp_path / "given.smclog"
    ev.write_bytes(b"x")
    raw = open_image(img)
    assert find_event_log(img, raw, None) == (None, find_event_log(img, raw, None)[1])
    (tmp_path / "plain.raw.smclog").write_bytes(b"y")
    got, where = find_event_log(img, raw, None)
    assert got == str(tmp_path / "plain.raw.smclog") and "sibling" in where
    assert find_event_log(img, raw, ev)[0] == str(ev)
    got, where = find_event_log(snap, open_image(snap), None)
    assert got == b"SMCLOG-bytes" and "embedded" in where
    assert find_event_log(snap, open_image(snap), ev)[0] == str(ev)  # --events wins
    with pytest.raises(UsageError):
        find_event_log(img, raw, tmp_path / "nope.smclog")


def test_real_capture_sparse_and_full(nokaslr_capture, tmp_path):
    elf = open_image(nokaslr_capture.image)
    start = elf.ranges()[0].start
    pages = [start + i * 4096 for i in range(0, 65536, 97)]
    p = tmp_path / "cap.armvmi"
    pack(elf, p, pages=pages, metadata={"host_name": "t"})
    m = open_image(p)
    assert len(m.ranges()) == len(pages)
    for pa in pages[:50]:
        assert m.read(pa, 4096) == elf.read(pa, 4096)
    assert json.loads(json.dumps(m.describe()))["format"] == "armvmi"
    assert m.metadata["source_prstatus"][0]["regs"]["pc"] == elf.prstatus[0]["regs"]["pc"]
