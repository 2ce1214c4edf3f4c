"""Random geometries and mappings built with the builder: mapped addresses translate to what
was built, unmapped ones fault at the level whose entry is invalid, and enumeration lists
exactly the built leaves."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from armvmi_cli.mmu import Granule, Stage1, Stage2, TranslationFault
from armvmi_cli.mmu.builder import PageAllocator, SparseMemory, Stage1Tables, Stage2Tables
from armvmi_cli.mmu.geometry import s2_inconsistent, s2_start_level

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def stage1_setup(draw):
    granule = draw(st.sampled_from(list(Granule)))
    wide = draw(st.booleans())  # 52-bit VA/OA: LPA2 (DS) for 4K/16K, LVA+LPA for 64K
    lo_bits = 17 if granule == Granule.K64 else 16
    va_bits = draw(st.integers(lo_bits, 52 if wide else 48))
    oa_bits = 52 if wide else draw(st.sampled_from([40, 44, 48]))
    upper = draw(st.booleans())
    return dict(granule=granule, va_bits=va_bits, oa_bits=oa_bits, ds=wide and granule != Granule.K64,
                upper=upper)


@st.composite
def stage2_setup(draw):
    granule = draw(st.sampled_from(list(Granule)))
    options = []
    for sl0 in range(4):
        for sl2 in (0, 1) if granule == Granule.K4 else (0,):
            start = s2_start_level(granule, sl0, sl2)
            if start is None:
                continue
            for ia in range(16 if granule != Granule.K64 else 17, 53):
                ds = ia > 48 or start == -1
                if ds and granule == Granule.K64:
                    ds = False
                if ia > 48 and not (ds or granule == Granule.K64):
                    continue
                if start == -1 and not ds:
                    continue
                if not s2_inconsistent(ia, granule, start):
                    options.append((start, ia, ds))
    start, ia, ds = draw(st.sampled_from(options))
    oa_bits = 52 if (ds or ia > 48 or draw(st.booleans()) and granule == Granule.K64) else 48
    return dict(granule=granule, ia_bits=ia, start_level=start, ds=ds, oa_bits=oa_bits)


def _place_leaves(draw, tables, count):
    """Non-overlapping random leaves of random legal sizes; returns [(ia, oa, size)]."""
    g = tables.geom
    placed = []
    for _ in range(count):
        level = draw(st.sampled_from(tables.leaf_levels()))
        size = 1 << g.level_shift(level)
        slots = (1 << g.ia_bits) // size
        if slots == 0:
            continue
        ia = draw(st.integers(0, slots - 1)) * size
        oa = draw(st.integers(0, (1 << g.oa_bits) // size - 1)) * size
        if any(not (ia + size <= a or a + s <= ia) for a, _o, s in placed):
            continue
        tables.map(ia, oa, size, level=level)
        placed.append((ia, oa, size))
    return placed


def _check(draw, layer, tables, placed, to_addr):
    g = tables.geom
    for ia, oa, size in placed:
        for off in {0, size - 1, draw(st.integers(0, size - 1))}:
            assert layer.translate(to_addr(ia + off)) == oa + off
        assert layer.translate_page(to_addr(ia))[:2] == (oa, size)
    # unmapped addresses: around each leaf and at random
    probes = [ia - 1 for ia, _o, _s in placed] + [ia + s for ia, _o, s in placed]
    probes += draw(st.lists(st.integers(0, (1 << g.ia_bits) - 1), min_size=5, max_size=15))
    for ia in probes:
        if not 0 <= ia < 1 << g.ia_bits or tables.lookup(ia) is not None:
            continue
        try:
            layer.translate(to_addr(ia))
        except TranslationFault as f:
            assert f.level == tables.expected_fault_level(ia), (hex(ia), f)
            assert layer.walk(to_addr(ia)).fault.level == f.level
        else:
            raise AssertionError(f"{ia:#x} is unmapped but translated")
        assert not layer.is_mapped(to_addr(ia))
    got = [(m.va, m.out, m.size) for m in layer.mappings()]
    assert got == sorted((to_addr(ia), oa, s) for ia, oa, s in placed)


@SETTINGS
@given(stage1_setup(), st.data())
def test_stage1_random(setup, data):
    mem = SparseMemory()
    table_base = 1 << 49 if setup["oa_bits"] == 52 and data.draw(st.booleans()) else 0x1000_0000
    upper = setup.pop("upper")
    tables = Stage1Tables(mem, PageAllocator(table_base), lower=not upper, upper=upper, **setup)
    pt = tables.hi if upper else tables.lo
    placed = _place_leaves(data.draw, pt, data.draw(st.integers(1, 8)))
    ttbr0, ttbr1, tcr = tables.registers(asid=data.draw(st.integers(0, 0xFFFF)))
    layer = Stage1(mem, ttbr0, ttbr1, tcr)
    span = 1 << pt.geom.ia_bits
    _check(data.draw, layer, pt, placed, (lambda ia: (1 << 64) - span + ia) if upper else (lambda ia: ia))


@SETTINGS
@given(stage2_setup(), st.data())
def test_stage2_random(setup, data):
    mem = SparseMemory()
    table_base = 1 << 50 if setup["oa_bits"] == 52 and data.draw(st.booleans()) else 0x4000_0000
    tables = Stage2Tables(mem, PageAllocator(table_base), **setup)
    placed = _place_leaves(data.draw, tables, data.draw(st.integers(1, 8)))
    vttbr, vtcr = tables.registers(vmid=data.draw(st.integers(0, 0xFFFF)))
    layer = Stage2(mem, vttbr, vtcr)
    assert (layer.geometry.start_level, layer.geometry.concat) == (tables.geom.start_level, tables.geom.concat)
    _check(data.draw, layer, tables, placed, lambda ia: ia)
