"""Raw flat images: byte ``i`` of the file is physical address ``phys_base + i``."""

from __future__ import annotations

from .base import PhysicalMemory, Range
from .mapped import MappedFile


class RawMemory(PhysicalMemory):
    format = "raw"

    def __init__(self, path, phys_base: int | None = None):
        super().__init__(str(path))
        self.phys_base = phys_base or 0
        self._file = MappedFile(path)
        self._mm = self._file.mm
        if self.phys_base < 0 or self.phys_base + self._file.size > 1 << 64:
            self._file.close()
            from ..errors import UsageError

            raise UsageError(f"--phys-base {self.phys_base:#x}: the image would run past the 64-bit physical address space")
        self._set_ranges([Range(self.phys_base, self.phys_base + self._file.size)])

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:
        off = pa - self.phys_base
        return self._mm[off : off + n]

    def view(self, pa: int, n: int):
        """Like :meth:`read`, but a memoryview into the map (no copy); the caller releases it."""
        i = self._find(pa)
        if i >= 0 and pa + n <= self._ranges[i].end:
            off = pa - self.phys_base
            return memoryview(self._mm)[off : off + n]
        return self.read(pa, n)

    def close(self) -> None:
        self._file.close()

    def describe(self) -> dict:
        d = super().describe()
        d["phys_base"] = self.phys_base
        d["file_size"] = self._file.size
        return d
