"""The locator on synthetic kallsyms tables: every table order, corruption refused."""

from __future__ import annotations

import random
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armvmi_cli.errors import SymbolError
from armvmi_cli.symbols.kallsyms import find_kallsyms_tables, recover_kallsyms

from .synth import BytesMemory, build, image_with, make_symbols

PHYS = 0x40000000
AT = 0x123458 & ~7


@pytest.mark.parametrize(
    "order,seqs,absolute",
    [
        ("offsets-first", 3, False),  # 6.2 / Debian 6.1 (the captures)
        ("offsets-first", 4, False),  # 6.3-era u32 seqs_of_names
        ("offsets-first", None, False),  # <= 6.1 upstream
        ("offsets-first", None, True),  # !KALLSYMS_BASE_RELATIVE
        ("names-first", 4, False),  # newer kernels
        ("names-first", None, True),
    ],
)
def test_layouts_round_trip(order, seqs, absolute):
    syms = make_symbols(3000, seed=7)
    blob = build(syms, order=order, seqs=seqs, absolute=absolute)
    table = recover_kallsyms(image_with(blob.data, AT))
    assert table.symbols == syms
    assert table.layout.order == order
    assert table.layout.token_table == PHYS + AT + blob.labels["kallsyms_token_table"]
    assert table.layout.names == PHYS + AT + blob.labels["kallsyms_names"]
    assert (table.relative_base is None) == absolute
    if seqs and order == "offsets-first":
        assert table.layout.seqs_of_names == PHYS + AT + blob.labels["kallsyms_seqs_of_names"]


@settings(max_examples=25, deadline=None)
@given(count=st.integers(600, 2500), seed=st.integers(0, 10_000), at=st.integers(0, 1 << 20))
def test_random_symbol_sets(count, seed, at):
    syms = make_symbols(count, seed=seed)
    blob = build(syms, seqs=random.Random(seed).choice([None, 3, 4]))
    table = recover_kallsyms(image_with(blob.data, at & ~7, seed=seed))
    assert table.symbols == syms
    a, t, name = syms[len(syms) // 2]
    assert table.address(name) == a
    first_at_a = [x[2] for x in syms if x[0] == a][0]
    assert table.lookup(a + 1) == (first_at_a, 1)  # the next address is at least a + 4


def test_long_names_use_two_byte_lengths():
    syms = make_symbols(800, seed=3)
    long_name = "".join(random.Random(5).choice("qwxyzQWXYZ") for _ in range(300))
    syms.append((syms[-1][0] + 8, "T", long_name))
    table = recover_kallsyms(image_with(build(syms).data, AT))
    assert table.symbols[-1] == syms[-1]


def test_no_kallsyms_is_a_clear_error():
    mem = BytesMemory([(PHYS, random.Random(0).randbytes(8 << 20)), (PHYS + (16 << 20), bytes(8 << 20))])
    t0 = time.perf_counter()
    with pytest.raises(SymbolError, match="no kallsyms table"):
        recover_kallsyms(mem)
    assert time.perf_counter() - t0 < 5  # generous: the bench measures the real rate


def test_digit_run_decoy_is_not_a_table():
    ram = bytearray(random.Random(2).randbytes(2 << 20))
    decoy = b"".join(bytes([c]) + b"\0" for c in range(0x21, 0x7F)) * 2
    ram[0x1000 : 0x1000 + len(decoy)] = decoy
    with pytest.raises(SymbolError):
        recover_kallsyms(BytesMemory([(PHYS, bytes(ram))]))


def _corrupt(blob, label, delta, new: bytes):
    data = bytearray(blob.data)
    o = blob.labels[label] + delta
    data[o : o + len(new)] = new
    return bytes(data)


@pytest.mark.parametrize(
    "label,delta,new",
    [
        ("kallsyms_token_index", 2 * 100, b"\xff\x7f"),  # an index entry out of order
        ("kallsyms_token_table", 0, b"\x01"),  # a non-printable token
        ("kallsyms_markers", 4 * 3, b"\x00\x00\x10\x00"),  # a marker that misses its symbol
        ("kallsyms_names", 0, b"\x7f"),  # the first name's length
        ("kallsyms_num_syms", 0, b"\x01\x00\x00\x00"),
        ("kallsyms_offsets", 4 * 1000, b"\xff\xff\xff\xff"),  # unsorted addresses
        ("kallsyms_relative_base", 0, b"\x00" * 8),  # not a kernel address
    ],
)
def test_corrupted_tables_are_refused(label, delta, new):
    blob = build(make_symbols(2000, seed=11))
    with pytest.raises(SymbolError):
        recover_kallsyms(image_with(_corrupt(blob, label, delta, new), AT))


def test_two_kernels_found_and_chosen():
    a = make_symbols(1200, seed=1, base=0xFFFF800008010000)
    b = make_symbols(1200, seed=1, base=0xFFFFA00008010000)
    mem = BytesMemory([(PHYS, image_with(build(a).data, AT).read(PHYS, 4 << 20)), (PHYS + (8 << 20), build(b).data)])
    tables = find_kallsyms_tables(mem)
    assert [t.relative_base for t in tables] == [a[0][0], b[0][0]]
    assert recover_kallsyms(mem).relative_base == a[0][0]  # lowest PA by default
    assert recover_kallsyms(mem, prefer=b[10][0]).relative_base == b[0][0]
    with pytest.raises(SymbolError, match="none covers"):
        recover_kallsyms(mem, prefer=0xFFFF000000001000)


def test_table_split_across_a_hole_is_refused():
    blob = build(make_symbols(2000, seed=4))
    cut = blob.labels["kallsyms_markers"] - 64
    mem = BytesMemory([(PHYS, blob.data[:cut]), (PHYS + (1 << 20), blob.data[cut:])])
    with pytest.raises(SymbolError):
        recover_kallsyms(mem)


def test_marker_off_by_one_is_refused():
    """A marker still plausible in size but not at a symbol boundary: only
    decoding the names against every marker catches it."""
    blob = build(make_symbols(2000, seed=12))
    o = blob.labels["kallsyms_markers"] + 4 * 3
    (m3,) = struct.unpack_from("<I", blob.data, o)
    with pytest.raises(SymbolError):
        recover_kallsyms(image_with(_corrupt(blob, "kallsyms_markers", 4 * 3, struct.pack("<I", m3 + 1)), AT))


def test_system_map_compatible_api():
    syms = [(0xFFFF800008010000, "T", "_stext"), (0xFFFF800008010000, "t", "alias0"), (0xFFFF800008010040, "t", "f1")]
    syms += make_symbols(900, seed=2, base=0xFFFF800008010100)
    table = recover_kallsyms(image_with(build(syms).data, AT))
    assert table.lookup(0xFFFF800008010008) == ("_stext", 8)  # first symbol at that address, like SystemMap
    assert table.lookup(0xFFFF800008000000) is None
    assert table.lookup(syms[-1][0] + 0x100000) is None  # far past the text
    assert table["f1"] == 0xFFFF800008010040 and "f1" in table
    with pytest.raises(SymbolError, match="not in the kernel's kallsyms"):
        table["init_task"]
    with pytest.raises(SymbolError, match="bad symbol pattern"):
        table.grep("(")
    assert [tuple(s) for s in table][:3] == syms[:3]
    assert table.symbol("alias0").type == "t"
    sm = table.to_system_map(slide=0x10000)
    assert sm.address("f1") == 0xFFFF800008000040 and len(sm) == len(table)
