"""Find the SMC event log (``.smclog``) that goes with an image.

Order: ``--events FILE``, else the log embedded in a ``.armvmi`` snapshot, else
a sibling file ``IMAGE.smclog``.  The log is returned unparsed (a path or the
embedded bytes); :mod:`armvmi_cli.firmware` owns the format.
"""

from __future__ import annotations

import os

from .base import PhysicalMemory


def find_event_log(image_path, mem: PhysicalMemory | None, events_opt=None) -> tuple[bytes | str | None, str]:
    """Return (path or bytes or None, a phrase saying where it came from)."""
    if events_opt is not None:
        from ..inputs import check_input

        p = os.fspath(events_opt)
        check_input(p, "--events")
        return p, f"--events {p}"
    if mem is not None and mem.embedded_events:
        return bytes(mem.embedded_events), f"embedded in {os.path.basename(os.fspath(image_path))}"
    sibling = os.fspath(image_path) + ".smclog"
    if os.path.isfile(sibling):
        return sibling, f"sibling file {sibling}"
    return None, "no event log (give --events, or put IMAGE.smclog next to the image)"
