"""What every armvmi parser must do with any input: give a result or raise an
:class:`~armvmi_cli.errors.ArmvmiError` - never another exception, never a
hang, never unbounded memory.

One ``run_<parser>(data)`` per parser, and ``seeds_<parser>()`` giving small
valid inputs (built from the real captures' formats; see README.md).  Used by
the seeded mutation tests in ``tests/hostile/test_fuzz_parsers.py`` and by the
atheris harnesses ``fuzz/fuzz_<parser>.py``.  A harness calls ``run(name, data)``
and lets only ArmvmiError through.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "tests" / "memory", REPO / "tests" / "symbols"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from armvmi_cli.errors import ArmvmiError  # noqa: E402

# Parsers that need a file get one in a RAM-backed directory, rewritten per input.
_TMP = Path(tempfile.mkdtemp(prefix="armvmi-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


def _file(data: bytes, name: str = "input") -> Path:
    p = _TMP / name
    p.write_bytes(data)
    return p


# -- image readers ----------------------------------------------------------------
def _exercise(m) -> None:
    """Read what the image says it holds: edges of the first ranges, across a range end."""
    try:
        rs = m.ranges()[:16]
        for r in rs:
            for pa, n in ((r.start, min(64, r.size)), (r.end - 1, 1), (r.end - 8, 16)):
                try:
                    m.read(max(pa, 0), n)
                except ArmvmiError:
                    pass
        m.describe()
        if hasattr(m, "check"):
            m.check()
    finally:
        m.close()


def run_raw(data: bytes) -> None:
    from armvmi_cli.memory.raw import RawMemory

    _exercise(RawMemory(_file(data), phys_base=0x4000_0000))


def run_lime(data: bytes) -> None:
    from armvmi_cli.memory.lime import LimeMemory

    _exercise(LimeMemory(_file(data)))


def run_avml(data: bytes) -> None:
    from armvmi_cli.memory.avml import AvmlMemory

    _exercise(AvmlMemory(_file(data)))


def run_elf(data: bytes) -> None:
    from armvmi_cli.memory.elfcore import ElfCoreMemory

    _exercise(ElfCoreMemory(_file(data)))


def _fix_armvmi_crcs(data: bytes) -> bytes:
    """Recompute the header, index, metadata and events CRCs, so that a
    mutation reaches the index, range and chunk parsing behind them."""
    import zlib

    from armvmi_cli.memory.armvmi_snapshot import HEADER, INDEX_HEADER

    d = bytearray(data)
    if len(d) < HEADER.size:
        return data
    index_off, index_len = struct.unpack_from("<QQ", d, 32)
    if index_off + index_len <= len(d) and index_len >= INDEX_HEADER.size:
        ev_off, ev_len, meta_off, meta_len, _n, _, _ = INDEX_HEADER.unpack_from(d, index_off)
        struct.pack_into("<II", d, index_off + 40, zlib.crc32(d[ev_off:ev_off + ev_len]),
                         zlib.crc32(d[meta_off:meta_off + meta_len]))
        struct.pack_into("<I", d, 28, zlib.crc32(d[index_off:index_off + index_len]))
    struct.pack_into("<I", d, 56, zlib.crc32(d[:HEADER.size - 8]))
    return bytes(d)


def run_armvmi(data: bytes) -> None:
    from armvmi_cli.memory.armvmi_snapshot import SnapshotMemory

    try:
        _exercise(SnapshotMemory(_file(data)))
    except ArmvmiError:
        pass
    _exercise(SnapshotMemory(_file(_fix_armvmi_crcs(data))))


def run_detect(data: bytes) -> None:
    """Format detection by magic, then whichever reader it picks."""
    from armvmi_cli.memory import open_image

    _exercise(open_image(str(_file(data))))


def _small_memory():
    from synth import BytesMemory, mixed_pages

    return BytesMemory({0x4000_0000: mixed_pages(0x4000_0000, 6), 0x4100_0000: mixed_pages(0x4100_0000, 2, seed=1)[:5000]})


def seeds_raw():
    from synth import mixed_pages

    return [mixed_pages(0x4000_0000, 2), b"", b"\0" * 4096]


def seeds_lime():
    from armvmi_cli.memory.lime import write_lime

    p = _TMP / "seed.lime"
    write_lime(_small_memory(), p)
    return [p.read_bytes()]


def seeds_avml():
    from armvmi_cli.memory.avml import write_avml

    p = _TMP / "seed.avml"
    write_avml(_small_memory(), p)
    return [p.read_bytes()]


def seeds_elf():
    from synth import elf_note, mixed_pages, write_elf_core

    notes = elf_note(b"VMCOREINFO", 0, _VMCOREINFO) + elf_note(b"CORE", 1, bytes(392))
    p = write_elf_core(_TMP / "seed.elf", [(0x4000_0000, mixed_pages(0x4000_0000, 2)), (0x4100_0000, b"x" * 100)], notes)
    q = write_elf_core(_TMP / "seed2.elf", [(0x4000_0000, mixed_pages(0, 1))] * 3, memsz_extra=4096)
    return [p.read_bytes(), q.read_bytes()]


def seeds_armvmi():
    from armvmi_cli.memory.armvmi_snapshot import pack

    p = _TMP / "seed.armvmi"
    pack(_small_memory(), p, events=b"SMCLOG", metadata={"host_name": "kvm7"})
    out = [p.read_bytes()]
    sample = REPO / "snapshots" / "deb61-generic-nokaslr.armvmi"
    if sample.exists():  # a few real pages of the shipped sample, re-packed
        from armvmi_cli.memory import open_image

        real = open_image(str(sample))
        pages = [r.start for r in real.ranges()[:3]]
        pack(real, p, pages=pages)
        out.append(p.read_bytes())
    return out


def seeds_detect():
    return seeds_lime() + seeds_elf()[:1] + seeds_armvmi()[:1] + seeds_avml()


# -- the event log --------------------------------------------------------------
def run_smclog(data: bytes) -> None:
    from armvmi_cli.firmware.replay import replay
    from armvmi_cli.firmware.smclog import SmcLogReader

    try:
        list(SmcLogReader(data))
    except ArmvmiError:
        pass
    replay(data)


def seeds_smclog():
    from armvmi_cli.firmware.builder import LogBuilder

    b = LogBuilder()
    b.driver_init()
    b.vm_create(1)
    b.vm_run_change(1)
    b.vm_create(2, vttbr=(2 << 48) | 0x43010000)
    b.vm_destroy(2)
    b.get_information(1, 1)
    out = [b.bytes()]
    real = Path(os.environ.get("ARMVMI_SHARED_CAPTURES", REPO.parent.parent / "shared" / "captures"))
    log = real / "nested-nvhe-kaslr" / "host-mem.elf.smclog"
    if log.exists():
        out.append(log.read_bytes())
    return out


# -- symbols ---------------------------------------------------------------------
def run_system_map(data: bytes) -> None:
    from armvmi_cli.symbols.system_map import SystemMap

    sm = SystemMap.parse(data)
    for name in ("_text", "_stext", "init_task", "nope"):
        sm.address(name)
    for a in (0, 0xFFFF_8000_0800_0000, (1 << 64) - 1):
        sm.lookup(a)
    sm.check()


def seeds_system_map():
    lines = [b"ffff800008000000 T _text", b"ffff800008010000 T _stext", b"ffff800008010000 t __primary_switch"]
    lines += [b"ffff8000080%05x t f%d" % (i * 16, i) for i in range(1, 1100)]
    lines += [b"ffff800009000000 T _etext", b"ffff80000a000000 D init_task", b"ffff80000b000000 B _end",
              b"0000000000000000 A _kernel_flags_le_lo32"]
    out = [b"\n".join(lines) + b"\n", b"83 bytes of a stub: the real System.map is in the -dbg package\n"]
    real = Path(os.environ.get("ARMVMI_CAPTURE_CACHE", Path.home() / ".cache" / "armvmi-captures"))
    sm = real / "deb61-generic-nokaslr" / "System.map"
    if sm.exists():
        with open(sm, "rb") as f:
            out.append(f.read(64 << 10))  # the head of the real map
    return out


def run_isf(data: bytes) -> None:
    from armvmi_cli.symbols.isf import load_isf

    tm, syms = load_isf(_file(data, "isf.json"))
    tm.check_all()
    for name in list(tm.types)[:20]:
        tm.struct(name).fields
    syms.address("init_task")


def seeds_isf():
    sys.path.insert(0, str(REPO / "tests" / "hostile"))
    from test_malformed_parsers import GOOD

    return [json.dumps(GOOD).encode()]


def run_btf(data: bytes) -> None:
    from armvmi_cli.symbols.btf import BtfSource, parse_btf

    tm = parse_btf(data)
    tm.check_all()
    for name in list(tm.types)[:50]:
        st = tm.struct(name)
        st.fields
    # the cached index of this blob must give the same model
    again = BtfSource.from_index(data, tm._src.index_sections())
    assert again is not None and again._offsets == tm._src._offsets


def seeds_btf():
    from btfgen import sample

    return [sample()[0]]


_VMCOREINFO = (
    b"OSRELEASE=6.1.0-56-arm64\nBUILD-ID=0123456789abcdef0123456789abcdef01234567\nPAGESIZE=4096\n"
    b"SYMBOL(init_uts_ns)=ffff800009a3a1c8\nSYMBOL(swapper_pg_dir)=ffff800009d10000\n"
    b"SYMBOL(_stext)=ffff800008010000\nOFFSET(uts_namespace.name)=4\nNUMBER(VA_BITS)=48\n"
    b"NUMBER(kimage_voffset)=ffff7fffc8000000\nNUMBER(PHYS_OFFSET)=0x40000000\nKERNELOFFSET=0\n"
)


def run_vmcoreinfo(data: bytes) -> None:
    """The text as it is found in memory, then the page-table self-check it drives."""
    from armvmi_cli.symbols.kaslr import find_kernels
    from armvmi_cli.symbols.vmcoreinfo import VmcoreInfo, parse
    from synth import BytesMemory

    info = VmcoreInfo(parse(data))
    for p in ("release", "build_id", "page_size", "va_bits", "kimage_voffset", "phys_offset", "kaslr_offset", "complete"):
        getattr(info, p)
    info.symbol("swapper_pg_dir")
    page = (data[:4095] + b"\0").ljust(4096, b"\0")
    # swapper_pg_dir (0xffff800009d10000 - kimage_voffset) lands in this memory
    mem = BytesMemory({0x4000_0000: page + bytes(4096), 0x41D1_0000: bytes(4096)})
    find_kernels(mem, None, None)
    find_kernels(mem, None, parse(data))


def seeds_vmcoreinfo():
    out = [_VMCOREINFO, _VMCOREINFO.replace(b"PAGESIZE=4096", b"PAGESIZE=16384")]
    real = Path(os.environ.get("ARMVMI_SHARED_CAPTURES", REPO.parent.parent / "shared" / "captures"))
    gt = real / "deb61-generic-nokaslr" / "ground_truth.json"
    if gt.exists():
        vi = json.loads(gt.read_text()).get("vmcoreinfo")
        if isinstance(vi, dict):
            out.append("".join(f"{k}={v}\n" for k, v in vi.items()).encode())
        elif isinstance(vi, str):
            out.append(vi.encode())
    return out


def run_cachefile(data: bytes) -> None:
    """A cache file found in the cache directory (anyone may have written it)."""
    from armvmi_cli.symbols import cachefile

    p = _file(data, "cache")
    for kind, ver in (("btf-index", 3), ("system_map", 2)):
        cachefile.read(p, kind, ver, data[28:60].ljust(32, b"\0"))


def seeds_cachefile():
    from armvmi_cli.symbols import cachefile

    p = _TMP / "seed.cache"
    cachefile.write(p, "system_map", 2, b"k" * 32, [struct.pack("<2Q", 1, 2), b"TT", b"a\0b", b"\0"])
    return [p.read_bytes()]


PARSERS = ("raw", "lime", "avml", "elf", "armvmi", "detect", "smclog", "system_map", "isf", "btf", "vmcoreinfo",
           "cachefile")


def run(name: str, data: bytes) -> None:
    """Run parser ``name`` on ``data``; ArmvmiError is an accepted answer."""
    try:
        globals()[f"run_{name}"](data)
    except ArmvmiError:
        pass


def seeds(name: str) -> list[bytes]:
    return globals()[f"seeds_{name}"]()
