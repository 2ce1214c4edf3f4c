"""Find the SMC event log (``.smclog``) that goes with an image.

Order: ``--events FILE``, else the log embedded in a ``.armvmi`` snapshot, else
a sibling file ``IMAGE.smclog``.  The log is returned unparsed (a path or the
embedded bytes); :mod:`armvmi_cli.firmware` owns the format.
"""

from __future__ import annotations

import os

from .base import PhysicalMemory


def not_a_file(p) -> str:
    """Why ``p`` cannot be read as a log file: say what it is, not "no such file" for a file that exists."""
    import stat

    try:
        st = os.stat(p)
    except FileNotFoundError:
        return "no such file"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not an event log file"
    kind = "character device" if stat.S_ISCHR(st.st_mode) else "block device" if stat.S_ISBLK(st.st_mode) else \
        "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "special file"
    return f"is a {kind}, not a regular file holding an event log"


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
