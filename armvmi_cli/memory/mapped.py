"""Open an image file as a read-only mmap, with one-line errors for bad paths."""

from __future__ import annotations

import mmap
import os

from ..errors import ImageFormatError


def open_image_file(path: str):
    """open(path, 'rb') with the usual failures as one-line ImageFormatErrors."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise ImageFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageFormatError(f"{path}: is a directory, not a memory image") from None
    except OSError as e:
        raise ImageFormatError(f"{path}: cannot open: {e.strerror}") from None


class MappedFile:
    """A read-only memory map of a whole file (never read into RAM)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._f = open_image_file(self.path)
        self.size = os.fstat(self._f.fileno()).st_size
        if self.size == 0:
            self._f.close()
            raise ImageFormatError(f"{self.path}: empty file")
        self.mm = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        try:  # random 4 KiB reads: don't let the kernel read ahead megabytes
            self.mm.madvise(mmap.MADV_RANDOM)
        except (AttributeError, OSError):  # pragma: no cover - non-Linux
            pass

    def close(self) -> None:
        try:
            self.mm.close()
        except BufferError:  # a memoryview is still alive; the GC will unmap
            pass
        self._f.close()
