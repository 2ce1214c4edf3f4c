"""Open an image file as a read-only mmap, with one-line errors for bad paths."""

from __future__ import annotations

import mmap
import os
import stat

from ..errors import ImageFormatError


def open_image_file(path: str):
    """open(path, 'rb') with the usual failures as one-line ImageFormatErrors;
    anything but a regular file or a block device is refused before open()
    (a FIFO would block in it, /dev/zero never ends)."""
    from ..inputs import check_input

    check_input(path, block_ok=True, error=ImageFormatError)
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
        st = os.fstat(self._f.fileno())
        self.size = st.st_size
        if stat.S_ISBLK(st.st_mode):  # a block device's size is where its end is
            self.size = os.lseek(self._f.fileno(), 0, os.SEEK_END)
        if self.size == 0:
            self._f.close()
            raise ImageFormatError(f"{self.path}: empty file")
        try:
            self.mm = mmap.mmap(self._f.fileno(), self.size, access=mmap.ACCESS_READ)
        except OSError as e:
            self._f.close()
            raise ImageFormatError(f"{self.path}: cannot map: {e.strerror}") from None
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
