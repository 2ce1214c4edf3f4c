"""Detect an image's format from its first bytes (never from its name)."""

from __future__ import annotations

import os

from ..errors import ImageFormatError, UsageError
from .base import PhysicalMemory

ELF_MAGIC = b"\x7fELF"
LIME_MAGIC = (0x4C694D45).to_bytes(4, "little")  # "EMiL"
AVML_MAGIC = (0x4C4D5641).to_bytes(4, "little")  # "AVML"
ARMVMI_MAGIC = b"ARMVMI\x00S"  # see man/armvmi-snapshot.5


def sniff(path) -> str:
    """Return 'elf', 'lime', 'avml', 'armvmi' or 'raw'."""
    path = os.fspath(path)
    from .mapped import open_image_file

    with open_image_file(path) as f:
        try:
            head = f.read(8)
        except OSError as e:
            raise ImageFormatError(f"{path}: cannot read: {e.strerror or e}") from None
    if not head:
        raise ImageFormatError(f"{path}: empty file")
    if head.startswith(ELF_MAGIC):
        return "elf"
    if head.startswith(LIME_MAGIC):
        return "lime"
    if head.startswith(AVML_MAGIC):
        return "avml"
    if head.startswith(ARMVMI_MAGIC):
        return "armvmi"
    return "raw"


def open_image(path, phys_base: int | None = None) -> PhysicalMemory:
    kind = sniff(path)
    if phys_base is not None and kind != "raw":
        raise UsageError(f"--phys-base applies to raw images only; {os.fspath(path)} is a {kind} image with its own addresses")
    if kind == "raw":
        from .raw import RawMemory

        return RawMemory(path, phys_base)
    if kind == "elf":
        from .elfcore import ElfCoreMemory

        return ElfCoreMemory(path)
    if kind == "lime":
        from .lime import LimeMemory

        return LimeMemory(path)
    if kind == "avml":
        from .avml import AvmlMemory

        return AvmlMemory(path)
    from .armvmi_snapshot import SnapshotMemory

    return SnapshotMemory(path)
