"""kallsyms recovered from the real captures equals the real System.map,
symbol for symbol, for every symbol kallsyms holds."""

from __future__ import annotations


from armvmi_cli.memory import open_image
from armvmi_cli.symbols.kallsyms import find_kallsyms_tables, recover_kallsyms

from .conftest import slide_of, symbol, system_map_entries


def _missing_is_explained(entry, smap: str) -> bool:
    """Why a System.map symbol is legitimately absent from kallsyms: Debian
    builds without KALLSYMS_ALL, so only symbols in [_stext, _etext] and
    [_sinittext, _einittext] are kept, minus __efistub_ aliases and $x/$d
    mapping symbols (scripts/kallsyms.c)."""
    addr, typ, name = entry
    if typ not in "tTwW":
        return True  # data, rodata, bss, absolute: KALLSYMS_ALL is off
    if name.startswith("__efistub_") or "$" in name:
        return True
    for lo, hi in (("_stext", "_etext"), ("_sinittext", "_einittext")):
        if symbol(smap, lo) <= addr < symbol(smap, hi) or (addr == symbol(smap, hi) and name == hi):
            return False
    return True


def _check_against_map(table, capture, slide):
    smap = str(capture.system_map)
    entries = system_map_entries(smap)
    recovered = [(a - slide, t, n) for a, t, n in table]
    mismatches = [e for e in recovered if e not in entries]
    assert mismatches == [], f"{len(mismatches)} of {len(recovered)} differ, e.g. {mismatches[:5]}"
    assert len(set(recovered)) == len(recovered) == table.num_syms
    # every text symbol System.map has in the kallsyms ranges is recovered
    unexplained = [e for e in entries - set(recovered) if not _missing_is_explained(e, smap)]
    assert unexplained == []
    return len(recovered), len(entries)


def test_guest_kallsyms_equals_system_map(guest_capture):
    mem = open_image(str(guest_capture.image))
    table = recover_kallsyms(mem)
    slide = slide_of(guest_capture)
    n, total = _check_against_map(table, guest_capture, slide)
    assert n > 40000 and total > n
    # the table is in the kernel image, which is physically contiguous from _text
    text_pa = int(guest_capture.ground_truth["kernel_image_phys"]["iomem_kernel_code"][0]["start"], 16)
    assert text_pa < table.table_pa < text_pa + (64 << 20)
    # SystemMap-like API on runtime (slid) addresses
    start_kernel = symbol(str(guest_capture.system_map), "start_kernel") + slide
    assert table.address("start_kernel") == start_kernel
    assert table.lookup(start_kernel + 4) == ("start_kernel", 4)
    assert (start_kernel, "T", "start_kernel") in table.grep("^start_kernel$")
    assert table.relative_base == symbol(str(guest_capture.system_map), "_stext") + slide
    assert table.layout.seqs_of_names is not None  # Debian's 6.1 carries the 6.2 backport
    assert table.address("init_task") is None  # data symbol: KALLSYMS_ALL is off


def test_nested_host_kallsyms_equals_system_map(nested_capture):
    mem = open_image(str(nested_capture.image))
    tables = find_kallsyms_tables(mem)
    host_slide = slide_of(nested_capture)
    guest_slide = int(nested_capture.ground_truth["vms"][0]["guest_kaslr_slide"], 16)
    stext = symbol(str(nested_capture.system_map), "_stext")
    by_base = {t.relative_base: t for t in tables}
    host = by_base[stext + host_slide]
    _check_against_map(host, nested_capture, host_slide)
    # the guest kernel's image is host-physically contiguous here, so its table
    # is found as well; it decodes to the same build at the guest's slide
    if stext + guest_slide in by_base:
        _check_against_map(by_base[stext + guest_slide], nested_capture, guest_slide)
    # prefer= picks the host's by a text address known from elsewhere
    assert recover_kallsyms(mem, prefer=stext + host_slide).relative_base == stext + host_slide
