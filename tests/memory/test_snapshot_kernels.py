"""Kernel sections of the .armvmi container (``kernels`` in armvmi-snapshot(5)):
symbols and BTF packed with the image, read back whole, and every kind of
damage to them is a clean ImageFormatError, never wrong bytes."""

from __future__ import annotations

import json

import pytest

from armvmi_cli.errors import ImageFormatError
from armvmi_cli.memory import open_image
from armvmi_cli.memory.armvmi_snapshot import pack
from armvmi_cli.symbols.embedded import embedded_symbols, find_record
from armvmi_cli.symbols.vmcoreinfo import VmcoreInfo

from .synth import sample_memory

SYMS = b"".join(f"{0xffff800008000000 + 16 * i:016x} T func_{i}\n".encode() for i in range(2000)) + \
    b"ffff800008010000 T _stext\n"
BTF = bytes(range(256)) * 100
KERNEL = {"vm": "guest", "release": "6.1.0-test", "build_id": "ab" * 20, "banner": "Linux version 6.1.0-test",
          "kaslr_offset": "0x1000000", "symbols_source": "System.map", "sections": {"symbols": SYMS, "btf": BTF}}


@pytest.fixture
def snap(tmp_path):
    p = tmp_path / "k.armvmi"
    pack(sample_memory(), p, events=b"LOG", kernels=[KERNEL])
    return p


def test_sections_round_trip(snap):
    m = open_image(snap)
    (k,) = m.kernels
    assert {n: m.section(d) for n, d in k["sections"].items()} == {"symbols": SYMS, "btf": BTF}
    assert k["sections"]["btf"]["compression"] == "xz" and k["sections"]["btf"]["length"] < len(BTF)
    assert m.embedded_events == b"LOG"  # the sections sit after the event log, which is untouched
    vi = VmcoreInfo({"BUILD-ID": "ab" * 20, "KERNELOFFSET": "1000000"})
    assert find_record(m, vi) is k
    assert find_record(m, VmcoreInfo({"BUILD-ID": "cd" * 20, "KERNELOFFSET": "1000000"})) is None
    assert find_record(m, VmcoreInfo({"BUILD-ID": "ab" * 20, "KERNELOFFSET": "2000000"})) is None  # another boot
    sm = embedded_symbols(m, k)
    assert sm.address("_stext") == 0xffff800008010000 and len(sm) == 2001


def _meta_span(path):
    m = open_image(path)
    d = m.kernels[0]["sections"]["btf"]
    m.close()
    return d


@pytest.mark.parametrize("what", ["flip", "offset", "size"])
def test_damaged_section_is_a_clean_error(snap, tmp_path, what):
    d = _meta_span(snap)
    data = bytearray(snap.read_bytes())
    if what == "flip":
        data[d["offset"] + 10] ^= 0xFF  # payload bytes: the descriptor's CRC catches it
        bad = tmp_path / "bad.armvmi"
        bad.write_bytes(bytes(data))
        m = open_image(bad)
        with pytest.raises(ImageFormatError, match="CRC"):
            m.section(m.kernels[0]["sections"]["btf"])
        return
    m = open_image(snap)
    desc = dict(m.kernels[0]["sections"]["btf"])
    if what == "offset":
        desc["offset"] = len(data) + 4096
        with pytest.raises(ImageFormatError, match="outside"):
            m.section(desc)
    else:
        desc["size"] = len(BTF) - 1
        with pytest.raises(ImageFormatError, match="expected"):
            m.section(desc)


def test_snapshot_without_kernels_has_none(tmp_path):
    p = tmp_path / "plain.armvmi"
    pack(sample_memory(), p)
    m = open_image(p)
    assert m.kernels == [] and "kernels" not in m.metadata
    json.dumps(m.metadata)
