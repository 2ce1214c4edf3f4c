"""scan() through stage 2 searches host memory run by run; it must find exactly
what a page-by-page search of guest physical memory finds, joins included."""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from armvmi_cli.memory.scan import _scan_flat, scan
from armvmi_cli.mmu import Stage2
from armvmi_cli.mmu.builder import PageAllocator, SparseMemory, Stage2Tables

PAGE = 4096
NEEDLE = b"OSRELEASE="


def _guest(seed: int, pages: int = 24):
    rnd = random.Random(seed)
    host = SparseMemory()
    tables = Stage2Tables(host, PageAllocator(0x4000_0000, 0x4010_0000), ia_bits=40)
    frames = rnd.sample(range(0x5000_0000 // PAGE, 0x5000_0000 // PAGE + 4 * pages), pages)
    for i, f in enumerate(frames):
        if rnd.random() < 0.85:  # leave some IPA pages unmapped (lazy stage 2)
            tables.map(0x8000_0000 + i * PAGE, f * PAGE, PAGE)
        host.write(f * PAGE, bytes(rnd.getrandbits(8) & 0x7F for _ in range(PAGE)))
    vttbr, vtcr = tables.registers(vmid=3)
    return host, Stage2(host, vttbr, vtcr), rnd


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), cuts=st.lists(st.integers(-len(NEEDLE) + 1, 0), min_size=1, max_size=6))
def test_translated_scan_equals_page_by_page(seed, cuts):
    host, s2, rnd = _guest(seed)
    mapped = [m for m in s2.mappings()]
    # plant needles across page joins (where the neighbour is mapped) and inside pages
    for cut in cuts:
        m = rnd.choice(mapped)
        at = m.va + PAGE + cut if cut else m.va + rnd.randrange(PAGE - len(NEEDLE))
        for k, b in enumerate(NEEDLE):
            if s2.is_mapped(at + k):
                host.write(s2.translate(at + k), bytes([b]))
    want = list(_scan_flat(s2, NEEDLE, None, 16 << 20))
    assert list(scan(s2, NEEDLE)) == want
    lo, hi = 0x8000_0000 + 3 * PAGE + 5, 0x8000_0000 + 17 * PAGE
    # a needle counts in a range when it lies wholly inside it
    assert list(scan(s2, NEEDLE, [(lo, hi)])) == [a for a in want if lo <= a and a + len(NEEDLE) <= hi]
