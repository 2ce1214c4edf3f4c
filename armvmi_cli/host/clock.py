"""When was the image taken?  The host's own clock, read from memory.

The timekeeper (``tk_core.timekeeper``, kernel/time/timekeeping.c) is updated
on every tick: ``tkr_mono.base + (tkr_mono.xtime_nsec >> shift)`` is
CLOCK_MONOTONIC at the last update (the clock the front-end stamps records
with) and ``xtime_sec`` the wall clock.  The counter cycles since that update
are not in the dump, so both are *lower bounds* of the capture time, short by
at most a tick (more on an idle NO_HZ CPU): callers allow some slack.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ArmvmiError

NSEC_PER_SEC = 1_000_000_000


@dataclass
class CaptureClock:
    monotonic_ns: int  # lower bound of CLOCK_MONOTONIC at capture
    wall_ns: int  # lower bound of CLOCK_REALTIME at capture
    source: str


def capture_clock(hk) -> CaptureClock | None:
    """The host clock at capture, or None when the timekeeper cannot be read."""
    k = hk.kernel
    if not k.has_symbol("tk_core"):
        return None
    try:
        # static struct { seqcount_raw_spinlock_t seq; struct timekeeper timekeeper; } tk_core:
        # the timekeeper follows the seqcount, aligned to 8.
        seq = k.type("seqcount_raw_spinlock_t")
        off = (seq.size + 7) & ~7
        tk = k.object("timekeeper", k.symbol("tk_core") + off)
        mono = tk.tkr_mono
        sub = int(mono.xtime_nsec) >> int(mono.shift)
        mono_ns = int(mono.base) + sub
        wall_ns = int(tk.xtime_sec) * NSEC_PER_SEC + sub
    except (ArmvmiError, AttributeError):
        return None
    if not (0 < mono_ns < 1 << 62 and sub < NSEC_PER_SEC):
        return None  # not a live timekeeper (wrong symbol, torn copy)
    return CaptureClock(mono_ns, wall_ns, "host timekeeper (tk_core) in memory")
