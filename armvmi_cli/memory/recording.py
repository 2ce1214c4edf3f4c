"""Record which pages a command reads, so a sparse snapshot can hold just those.

``RecordingMemory(inner)`` is a :class:`PhysicalMemory` that forwards every read
to ``inner`` and notes the 4 KiB pages it touched (whether or not the read
succeeded: a failed read of a hole is still evidence the page was wanted).
"""

from __future__ import annotations

import re

from .base import PhysicalMemory

PAGE = 4096
_HEX = re.compile(r"(0[xX])?[0-9a-fA-F]{1,16}")


class RecordingMemory(PhysicalMemory):
    def __init__(self, inner: PhysicalMemory, page_size: int = PAGE):
        super().__init__(inner.path)
        self.inner = inner
        self.page_size = page_size
        self.format = inner.format
        self.layer_name = inner.layer_name
        self.vmcoreinfo = inner.vmcoreinfo
        self.metadata = inner.metadata
        self.embedded_events = inner.embedded_events
        #: page-aligned physical addresses read so far
        self.pages: set[int] = set()
        self._set_ranges(inner.ranges())

    def _note(self, pa: int, n: int) -> None:
        ps = self.page_size
        first = pa - pa % ps
        self.pages.update(range(first, pa + max(n, 1), ps))

    def read(self, pa: int, n: int) -> bytes:
        self._note(pa, n)
        return self.inner.read(pa, n)

    def _read_in_range(self, index: int, pa: int, n: int) -> bytes:  # pragma: no cover - read() is overridden
        return self.inner.read(pa, n)

    def is_mapped(self, pa: int) -> bool:
        return self.inner.is_mapped(pa)

    def __getattr__(self, name):  # prstatus, notes ... of the wrapped reader
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> dict:
        d = self.inner.describe()
        d["recorded_pages"] = len(self.pages)
        return d

    #: what the page list may not replace (set by the command that records)
    record_inputs: tuple = ()
    record_force: bool = False

    def write_page_list(self, path) -> int:
        """One hex page address per line (the ``--pages-from`` format),
        written atomically; never over an input."""
        from ..output import write_atomic

        inputs = [self.inner.path, *self.record_inputs]
        write_atomic(path, "".join(f"{p:#x}\n" for p in sorted(self.pages)).encode(), inputs, self.record_force, "--record-pages")
        self.record_force = True  # our own output now: a second save (at close) replaces it
        return len(self.pages)


def read_page_list(path) -> list[int]:
    """Parse a ``--pages-from`` file: one hex address per line (``0x`` optional); '#' comments."""
    from ..errors import UsageError

    from ..inputs import check_input, os_reason

    check_input(path, "--pages-from")
    out = []
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise UsageError(f"--pages-from {path}: cannot read page list: {os_reason(e)}") from None
    for no, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            if not _HEX.fullmatch(line) or int(line, 16) >= 1 << 64:
                raise ValueError
            out.append(int(line, 16))
        except ValueError:
            raise UsageError(f"{path}:{no}: {line!r} is not a page address") from None
    return out
