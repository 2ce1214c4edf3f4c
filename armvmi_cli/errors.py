"""One error scheme for the whole tool.

Every error the user can cause is an :class:`ArmvmiError` carrying the exit code
the CLI returns; the CLI prints ``str(err)`` on one line (no traceback unless
``--debug``).  Errors are values with a place: which layer, which address.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    FINDINGS = 1  # anomalies / findings reported by a command that looks for them
    BAD_INPUT = 2  # usage errors, unreadable or corrupt input, wrong profile
    INTERNAL = 3  # a bug in armvmi
    NOT_FOUND = 4  # a well-formed request whose answer is not in the image (unmapped address, no such pid)
    PARTIAL = 5  # output was produced but is incomplete (e.g. a task list cut by a corrupt link)


class ArmvmiError(Exception):
    """Base of every expected error; ``exit_code`` is what the CLI returns."""

    exit_code: int = ExitCode.BAD_INPUT


class UsageError(ArmvmiError):
    exit_code = ExitCode.BAD_INPUT


class ImageFormatError(ArmvmiError):
    """The memory image is truncated, corrupt or of an unknown format."""

    exit_code = ExitCode.BAD_INPUT


class LogFormatError(ArmvmiError):
    """The .smclog event log is unreadable (bad magic, version, header)."""

    exit_code = ExitCode.BAD_INPUT


class SymbolError(ArmvmiError):
    """Symbols or types are missing, stubbed, or belong to another kernel."""

    exit_code = ExitCode.BAD_INPUT


class ProfileMismatchError(SymbolError):
    """A System.map/profile was given for a kernel other than the one in the image."""


class MemoryReadError(ArmvmiError):
    """A read fell in a hole of the image or past its end."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, pa: int, length: int = 1, layer: str = "host physical", reason: str = "not in image"):
        self.pa = pa
        self.address = pa
        self.length = length
        self.layer = layer
        self.reason = reason
        super().__init__(f"{layer} address {pa:#x} (+{length:#x}): {reason}")


class TranslationFault(ArmvmiError):
    """A page-table walk failed; ``level`` is the lookup level that faulted."""

    exit_code = ExitCode.NOT_FOUND

    def __init__(self, level: int, reason: str, address: int | None = None, layer: str = "", trace=None):
        self.level = level
        self.reason = reason
        self.address = address
        self.layer = layer
        self.trace = trace
        where = f"{layer} " if layer else ""
        addr = f"{address:#x} " if address is not None else ""
        super().__init__(f"{where}translation fault for {addr}at level {level}: {reason}")
