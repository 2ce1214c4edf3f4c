"""`.armvmi` integrity (issue 10): every chunk's CRC is checked when it is
read, metadata and events are covered by CRCs, chunk sizes above what `pack`
writes are refused, and the chunk cache is bounded by bytes."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.errors import ImageFormatError
from armvmi_cli.memory import open_image
from armvmi_cli.memory.armvmi_snapshot import (CHUNK_ENTRY, HEADER, INDEX_HEADER, INDEX_HEADER_V1, MAX_CHUNK_SIZE,
                                               SnapshotMemory, pack)
from armvmi_cli.memory.base import PhysicalMemory

from .synth import mixed_pages, sample_memory

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "snapshots" / "deb61-generic-nokaslr.armvmi"


def _fix_crcs(d: bytearray) -> None:
    """Recompute the index and header CRCs, as a forger who knows the format would."""
    index_off, index_len = struct.unpack_from("<QQ", d, 32)
    d[28:32] = struct.pack("<I", zlib.crc32(bytes(d[index_off:index_off + index_len])))
    d[56:60] = struct.pack("<I", zlib.crc32(bytes(d[:HEADER.size - 8])))


class _Forged(PhysicalMemory):
    """``inner`` with ``old`` replaced by ``new`` wherever it occurs."""

    format = "forged"

    def __init__(self, inner, old: bytes, new: bytes):
        super().__init__(None)
        self.inner, self.old, self.new = inner, old, new
        # The repack carries no embedded kernel sections: drop their descriptors too.
        self.metadata = {k: v for k, v in inner.metadata.items() if k != "kernels"}
        self.vmcoreinfo = inner.vmcoreinfo
        self._set_ranges(inner.ranges())
        self.hits = []
        for r in inner.ranges():
            data = inner.read(r.start, r.size)
            i = data.find(old)
            while i >= 0:
                self.hits.append(r.start + i)
                i = data.find(old, i + 1)

    def _read_in_range(self, index, pa, n):
        b = bytearray(self.inner.read(pa, n))
        for h in self.hits:
            for j in range(len(self.old)):
                if pa <= h + j < pa + n:
                    b[h + j - pa] = self.new[j]
        return bytes(b)


def _forge(tmp_path, old=b"cryptominer\0", new=b"cryptominex\0") -> tuple[Path, list[int]]:
    """The sample with ``old`` rewritten and each altered chunk's CRC put back
    to the original's: what `snapshot info --check` alone used to catch."""
    src = open_image(SAMPLE)
    forged = _Forged(src, old, new)
    assert forged.hits
    out = tmp_path / "forged.armvmi"
    pack(forged, out, events=src.embedded_events)
    honest = tmp_path / "honest.armvmi"
    pack(src, honest, events=src.embedded_events)
    f, h = open_image(out), open_image(honest)
    d = bytearray(out.read_bytes())
    changed = []
    for k in range(f.n_chunks):
        ef, eh = f._entry(k), h._entry(k)
        if ef[3] != eh[3]:
            changed.append(k)
            at = f._chunks_off + k * CHUNK_ENTRY.size
            d[at:at + CHUNK_ENTRY.size] = CHUNK_ENTRY.pack(ef[0], ef[1], ef[2], eh[3], 0)
    assert changed
    _fix_crcs(d)
    out.write_bytes(bytes(d))
    return out, changed


def test_altered_chunk_is_exit_2_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    forged, changed = _forge(tmp_path)
    rc = main(["ps", str(forged)])
    out = capsys.readouterr()
    assert "cryptominex" not in out.out
    assert rc == 2, out.err
    assert f"chunk {changed[0]}" in out.err and "CRC mismatch" in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_altered_chunk_read_directly(tmp_path):
    forged, changed = _forge(tmp_path)
    m = SnapshotMemory(forged)
    k = changed[0]
    i = max(i for i, f in enumerate(m._first) if f <= k)
    pa = m._ranges[i].start + (k - m._first[i]) * m.chunk_size
    for _ in range(2):  # also the second time (no unchecked fast path)
        with pytest.raises(ImageFormatError, match=f"chunk {k} .*CRC mismatch"):
            m.read(pa, 8)


@pytest.mark.parametrize("what", ["metadata", "event log"])
def test_altered_metadata_or_events(tmp_path, what):
    p = tmp_path / "s.armvmi"
    pack(sample_memory(), p, events=b"SMCLOG-bytes", metadata={"host_name": "kvm7"})
    d = bytearray(p.read_bytes())
    index_off = struct.unpack_from("<Q", d, 32)[0]
    ev_off, ev_len, meta_off, meta_len, *_ = INDEX_HEADER.unpack_from(d, index_off)
    if what == "metadata":
        i = d.index(b"kvm7", meta_off)
        d[i:i + 4] = b"kvm8"
    else:
        d[ev_off] ^= 1
    _fix_crcs(d)
    p.write_bytes(bytes(d))
    with pytest.raises(ImageFormatError, match=f"corrupt .armvmi {what} \\(CRC mismatch\\)"):
        open_image(p)


def test_huge_declared_chunk_size_is_refused(tmp_path, capsys):
    p = tmp_path / "s.armvmi"
    pack(sample_memory(), p)
    d = bytearray(p.read_bytes())
    d[16:20] = struct.pack("<I", 1 << 30)  # 1 GiB chunks
    _fix_crcs(d)
    p.write_bytes(bytes(d))
    with pytest.raises(ImageFormatError, match="chunk size"):
        open_image(p)
    assert main(["snapshot", "info", str(p)]) == 2
    assert "chunk size" in capsys.readouterr().err


def test_chunk_cache_is_bounded_by_bytes(tmp_path):
    from .synth import BytesMemory

    data = b"".join(mixed_pages(i * 4096 * 64, 64, seed=i) for i in range(8))  # 2 MiB, compressible parts
    assert MAX_CHUNK_SIZE >= 1 << 21
    p = tmp_path / "big.armvmi"
    pack(BytesMemory({i << 24: data for i in range(4)}), p, chunk_size=1 << 21)
    m = SnapshotMemory(p)
    m.cache_bytes = 3 << 20
    for i in range(4):
        assert m.read(i << 24, 16) == data[:16]
    assert m._cached_bytes <= m.cache_bytes and len(m._cache) >= 1


def test_version_1_files_still_read(tmp_path):
    """A file from armvmi before version 2 (no metadata/events CRCs) reads as before."""
    p = tmp_path / "v2.armvmi"
    src = sample_memory()
    pack(src, p, events=b"EV", metadata={"host_name": "old"})
    d = bytearray(p.read_bytes())
    index_off, index_len = struct.unpack_from("<QQ", d, 32)
    ih = INDEX_HEADER.unpack_from(d, index_off)
    # version 1's chunk CRCs are of the decoded bytes (version 2's of the stored ones)
    m2 = SnapshotMemory(p)
    for k in range(m2.n_chunks):
        off, stored, method, crc, _ = m2._entry(k)
        if method == 2:
            import lz4.block

            plain = lz4.block.decompress(bytes(d[off:off + stored]), uncompressed_size=m2.chunk_size)
            at = m2._chunks_off + k * CHUNK_ENTRY.size
            d[at:at + CHUNK_ENTRY.size] = CHUNK_ENTRY.pack(off, stored, method, zlib.crc32(plain), 0)
    m2.close()
    v1 = bytearray(d[:index_off]) + INDEX_HEADER_V1.pack(*ih[:5]) + d[index_off + INDEX_HEADER.size:]
    shrink = INDEX_HEADER.size - INDEX_HEADER_V1.size
    v1[8:10] = (1).to_bytes(2, "little")
    v1[40:48] = struct.pack("<Q", index_len - shrink)
    v1[48:56] = struct.pack("<Q", len(v1))
    _fix_crcs(v1)
    p.write_bytes(bytes(v1))
    m = open_image(p)
    assert m.version == 1 and m.metadata["host_name"] == "old" and bytes(m.embedded_events) == b"EV"
    for r in src.ranges():
        assert m.read(r.start, r.size) == src.read(r.start, r.size)


def test_shipped_sample_is_current_version():
    m = open_image(SAMPLE)
    assert m.version == 2 and m.check() == m.n_chunks
    assert json.loads(json.dumps(m.metadata))["sparse"] is True


def test_unknown_method_with_a_bad_crc(tmp_path):
    """Found by fuzz/fuzz_armvmi.py: a chunk of an unknown method whose CRC
    does not match was a KeyError (exit 3) in the CRC message."""
    p = tmp_path / "s.armvmi"
    pack(sample_memory(), p)
    m = SnapshotMemory(p)
    k = next(k for k in range(m.n_chunks) if m._entry(k)[2] == 2)
    off, stored, _, crc, _ = m._entry(k)
    at = m._chunks_off + k * CHUNK_ENTRY.size
    m.close()
    d = bytearray(p.read_bytes())
    d[at:at + CHUNK_ENTRY.size] = CHUNK_ENTRY.pack(off, stored, 130, crc ^ 1, 0)
    _fix_crcs(d)
    p.write_bytes(bytes(d))
    with pytest.raises(ImageFormatError, match=f"chunk {k} \\(unknown method 130\\)"):
        SnapshotMemory(p).check()
