"""Layers stack: GVA -> GPA -> HPA through builder-made tables; reads, traces, enumeration, caches."""

import json

import pytest

from armvmi_cli.mmu import Granule, Stage1, Stage2, TranslationFault, bottom_mappings, resolve_chain
from armvmi_cli.mmu.builder import LayerWriter, PageAllocator, SparseMemory, Stage1Tables, Stage2Tables

KVA = 0xFFFF_8000_0000_0000
GPA = 0x4000_0000
HPA = 0x8000_0000


@pytest.fixture
def nested():
    """A host with 16 MiB of guest RAM at IPA 0x4000_0000 -> HPA 0x8000_0000 (mixed 2M/4K stage 2),
    and guest stage-1 tables laid *in guest physical memory*, written through stage 2."""
    host = SparseMemory()
    s2t = Stage2Tables(host, PageAllocator(0x7000_0000), ia_bits=40)
    s2t.map(GPA, HPA, 8 << 20)  # four 2 MiB blocks
    s2t.map(GPA + (8 << 20), HPA + (9 << 20), 8 << 20, level=3)  # shifted by 1 MiB, 4K pages
    host.write(HPA, bytes(16 << 20))
    s2 = Stage2(host, *s2t.registers(vmid=7))
    guest = LayerWriter(s2)
    s1t = Stage1Tables(guest, PageAllocator(GPA + (15 << 20)), va_bits=48)
    s1t.map(KVA, GPA, 4 << 20)  # linear map: 2 MiB blocks
    s1t.map(KVA + (16 << 20), GPA + (10 << 20), 64 << 10, level=3)
    s1t.map(KVA + (32 << 20), GPA + (8 << 20), 2 << 20)  # one S1 block over 512 S2 pages
    s1t.map(0x40_0000, GPA + (12 << 20), 8192, attrs=(1 << 10) | (1 << 6) | (1 << 54))  # user page, UXN
    s1 = Stage1(s2, *s1t.registers(asid=3))
    return host, s2, s1


def test_chain_and_reads(nested):
    host, s2, s1 = nested
    va = KVA + (16 << 20) + 0x1234
    assert resolve_chain(s1, va) == [("stage1", va), ("stage2", GPA + (10 << 20) + 0x1234),
                                     ("host physical", HPA + (11 << 20) + 0x1234)]
    host.write(HPA + (11 << 20) + 0xFFC, b"WXYZ")
    host.write(HPA + (11 << 20) + 0x1000, b"abcd")
    assert s1.read(KVA + (16 << 20) + 0xFFC, 8) == b"WXYZabcd"
    assert s1.read_u64(KVA + (16 << 20) + 0x1000) == int.from_bytes(b"abcd\0\0\0\0", "little")
    with pytest.raises(TranslationFault) as e:
        s1.read(KVA + (16 << 20) + (64 << 10) - 4, 8)
    assert e.value.layer == "stage1"


def test_trace_is_explained_and_json(nested):
    _host, _s2, s1 = nested
    t = s1.walk(0x40_0123)
    d = json.loads(json.dumps(t.to_dict()))
    assert d["base_register"] == "TTBR0_EL1" and d["result"] == GPA + (12 << 20) + 0x123
    leaf = t.steps[-1]
    assert leaf.kind == "page" and leaf.attrs["UXN"] == 1 and leaf.attrs["AP"] == 1 and leaf.attrs["AF"] == 1
    assert all(s.table_layer == "stage2" for s in t.steps)
    bad = s1.walk(0x80_0000)
    assert bad.result is None and bad.fault.level == 2 and bad.to_dict()["fault"]["kind"] == "translation"


def test_mappings_in_order_and_ranged(nested):
    _host, s2, s1 = nested
    ms = list(s1.mappings())
    assert [m.va for m in ms] == sorted(m.va for m in ms) and ms[0].va == 0x40_0000
    assert sum(m.size for m in ms) == (6 << 20) + (64 << 10) + 8192
    part = list(s1.mappings(KVA + (2 << 20) + 5, KVA + (16 << 20) + 0x2000))
    assert [(m.va, m.size) for m in part] == [(KVA + (2 << 20), 2 << 20), (KVA + (16 << 20), 4096),
                                               (KVA + (16 << 20) + 4096, 4096)]
    assert s2.ranges() == [(GPA, GPA + (16 << 20))]
    assert s1.translate_page(KVA + (3 << 20))[:2] == (GPA + (2 << 20), 2 << 20)
    assert s1.translate_page(KVA)[2].perms == "el1:rwx el0:--x"


def test_bottom_mappings_follow_stage2_splits(nested):
    host, s2, s1 = nested
    runs = [(m.va, m.out, m.size) for m in bottom_mappings(s1, KVA, KVA + (64 << 20))]
    assert runs[:2] == [(KVA, HPA, 2 << 20), (KVA + (2 << 20), HPA + (2 << 20), 2 << 20)]  # one per S1 leaf
    assert runs[2:4] == [(KVA + (16 << 20), HPA + (11 << 20), 4096), (KVA + (16 << 20) + 4096, HPA + (11 << 20) + 4096, 4096)]
    assert runs[-1] == (KVA + (32 << 20), HPA + (9 << 20), 2 << 20)  # 512 S2 pages, contiguous: one run
    # punch a hole in stage 2 under the S1 block: the block splits around it
    host.write_u64(s2.walk(GPA + (9 << 20)).steps[-1].descriptor_address, 0)
    s1.flush(lower=True)
    assert not s2._tlb
    faults = []
    runs = [(m.va, m.out, m.size) for m in bottom_mappings(s1, KVA + (32 << 20), KVA + (34 << 20), faults)]
    assert runs == [(KVA + (32 << 20), HPA + (9 << 20), 1 << 20), (KVA + (33 << 20) + 4096, HPA + (10 << 20) + 4096, (1 << 20) - 4096)]
    assert len(faults) == 1 and faults[0][0] == KVA + (33 << 20)


def test_tlb_flush(nested):
    _host, s2, s1 = nested
    assert s2.translate(GPA + 0x10) == HPA + 0x10
    s2.lower.write_u64(s2.walk(GPA).steps[-1].descriptor_address, 0)  # unmap the block
    assert s2.translate(GPA + 0x10) == HPA + 0x10  # still cached
    s2.flush()
    assert not s2.is_mapped(GPA + 0x10) and s2.ranges()[0][0] == GPA + (2 << 20)


@pytest.mark.parametrize("granule,va_bits", [(Granule.K4, 48), (Granule.K4, 39), (Granule.K16, 47),
                                             (Granule.K64, 48), (Granule.K64, 52), (Granule.K4, 52)])
def test_for_kernel_matches_explicit_registers(granule, va_bits):
    mem = SparseMemory()
    t = Stage1Tables(mem, PageAllocator(0x1000_0000), granule=granule, va_bits=va_bits, lower=False,
                     oa_bits=52 if va_bits == 52 or granule == Granule.K64 else 48,
                     ds=va_bits == 52 and granule != Granule.K64)
    va = (1 << 64) - (1 << va_bits) + (5 << 30)
    t.map(va, 0x4000_0000, int(granule))
    s1 = Stage1.for_kernel(mem, t.hi.root, va_bits, int(granule))
    assert s1.translate(va + 8) == 0x4000_0008
    g = s1.describe()["halves"]["TTBR1_EL1"]
    assert (g["granule"], g["ia_bits"]) == (int(granule), va_bits)
    with pytest.raises(TranslationFault):
        s1.translate(0x1000)  # no TTBR0
