"""Helpers for the symbols tests: the real BTF blob, read out of a capture.

The MMU layer is written in parallel, so the BTF is extracted the simple way
for a KASLR-off capture: the kernel image is mapped linearly, so
PA = VA - kimage_voffset with kimage_voffset = VA(_text) - PA(_text), and
PA(_text) = start of the "Kernel code" iomem region (which starts at _stext)
minus (_stext - _text).
"""

from __future__ import annotations

import mmap
import struct

import pytest

from armvmi_cli.symbols.system_map import SystemMap


def _elf_read(path, pa: int, n: int) -> bytes:
    """Read ``n`` bytes at physical address ``pa`` from an ELF64 core (PT_LOADs)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        e_phoff, = struct.unpack_from("<Q", mm, 0x20)
        e_phentsize, e_phnum = struct.unpack_from("<HH", mm, 0x36)
        for i in range(e_phnum):
            p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz = struct.unpack_from("<IIQQQQ", mm, e_phoff + i * e_phentsize)
            if p_type == 1 and p_paddr <= pa and pa + n <= p_paddr + p_filesz:
                off = p_offset + pa - p_paddr
                return bytes(mm[off : off + n])
    raise LookupError(f"{pa:#x} not in {path}")


_BTF_CACHE: dict = {}


def extract_btf(capture) -> bytes:
    key = str(capture.image)
    if key in _BTF_CACHE:
        return _BTF_CACHE[key]
    gt = capture.ground_truth
    if gt.get("kaslr", {}).get("kaslr_active", True):
        pytest.skip("BTF extraction helper needs a KASLR-off capture")
    sm = SystemMap.load(capture.system_map)
    code_start = int(gt["kernel_image_phys"]["iomem_kernel_code"][0]["start"], 16)
    text_pa = code_start - (sm["_stext"] - sm["_text"])
    voff = sm["_text"] - text_pa
    start, stop = sm["__start_BTF"], sm["__stop_BTF"]
    blob = _elf_read(capture.image, start - voff, stop - start)
    assert blob[:2] == b"\x9f\xeb", "BTF magic not at the computed PA of __start_BTF"
    _BTF_CACHE[key] = blob
    return blob


@pytest.fixture
def nokaslr_btf(nokaslr_capture) -> bytes:
    return extract_btf(nokaslr_capture)
