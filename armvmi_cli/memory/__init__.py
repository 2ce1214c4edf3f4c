"""Physical-memory images: one ``PhysicalMemory`` interface over raw, LiME, AVML,
ELF core and ``.armvmi`` snapshot files.  ``open_image`` detects the format from
content, never from the file name."""

from .base import PhysicalMemory, Range, open_image

__all__ = ["PhysicalMemory", "Range", "open_image"]
