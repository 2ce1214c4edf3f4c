"""Find the kernel's BTF blob by its header when no ``__start_BTF`` symbol is
known (kallsyms without CONFIG_KALLSYMS_ALL holds no data symbols).

The .BTF section sits in the kernel image's read-only data: a
``struct btf_header`` (magic 0xEB9F, version 1, hdr_len 24, type section at
offset 0, string section right after it) followed by the sections.
"""

from __future__ import annotations

import struct

from ..errors import ArmvmiError
from ..memory.scan import scan

MAGIC = b"\x9f\xeb\x01\x00\x18\x00\x00\x00"  # magic, version 1, flags 0, hdr_len 24
_HDR = struct.Struct("<HBBIIIII")


def locate_btf(layer, ranges) -> tuple[int, int] | None:
    """(address, size) of the first plausible vmlinux BTF in ``ranges``."""
    for addr in scan(layer, MAGIC, ranges):
        try:
            magic, ver, flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack(layer.read(addr, _HDR.size))
        except ArmvmiError:
            continue
        # vmlinux BTF: types first, strings right after, both non-trivial.
        if type_off != 0 or str_off != type_len or type_len < 1024 or str_len < 1024:
            continue
        size = hdr_len + str_off + str_len
        if size > (256 << 20):
            continue
        try:
            first = layer.read(addr + hdr_len + str_off, 1)
        except ArmvmiError:
            continue
        if first != b"\0":  # the string section starts with the empty string
            continue
        return addr, size
    return None
