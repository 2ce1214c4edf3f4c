"""Anomalies: everything odd found while reading or replaying an event log.

``scope`` says what an anomaly accounts for, so a caller can check that every
record slot is explained exactly once:

- ``record``: this record slot was *not applied* (CRC failure, malformed, or
  rejected by EL3). Exactly one such anomaly per dropped slot.
- ``note``: the record was applied but is suspicious (new host epoch, recorded
  return value disagrees with the model, shared stage-2 tables, ...).
- ``stream``: about the file, not one record (header, sequence gap, torn tail).
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("info", "warning", "error", "critical")

SCOPE_RECORD = "record"
SCOPE_NOTE = "note"
SCOPE_STREAM = "stream"


@dataclass(frozen=True, slots=True)
class Anomaly:
    seq: int | None  # the record's seq, None for file-level problems
    kind: str  # short stable identifier, e.g. "crc", "seq-gap", "misrouted"
    reason: str  # one human sentence
    severity: str = "warning"
    scope: str = SCOPE_RECORD
    offset: int | None = None  # byte offset in the log, where known

    def as_dict(self) -> dict:
        return {"seq": self.seq, "kind": self.kind, "severity": self.severity, "scope": self.scope,
                "offset": self.offset, "reason": self.reason}


LogAnomaly = Anomaly  # the reader's items use the same type
