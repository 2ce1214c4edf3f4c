"""A model of TF-A's runtime-service framework (common/runtime_svc.c, include/common/runtime_svc.h).

Services are declared with :func:`DECLARE_RT_SVC`; :meth:`RuntimeServices.runtime_svc_init`
validates each descriptor exactly as ``validate_rt_svc_desc`` does, runs its init
(a failing init skips the service: its calls answer SMC_UNK) and fills
``rt_svc_descs_indices[128]`` indexed by ``(call_type << 6) | oen`` (0xFF = none).
Like TF-A, a later descriptor silently overwrites an overlapping OEN range; unlike
TF-A, the model reports it. :meth:`RuntimeServices.dispatch` is the SMC entry
(runtime_exceptions.S + handle_runtime_svc): fast calls with non-zero bits 23:17
answer SMC_UNK, the SVE hint (bit 16) is stripped from the id and passed in ``flags``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import ArmvmiError, ExitCode
from .anomaly import SCOPE_NOTE, SCOPE_RECORD, Anomaly
from .smccc import MAX_RT_SVCS, OEN_LIMIT, SMC_TYPE_FAST, SMC_TYPE_YIELD, SMC_UNK, get_unique_oen

# flags passed to handlers (TF-A include/lib/smccc.h and runtime_exceptions.S)
SMC_FROM_SECURE = 0
SMC_FROM_NON_SECURE = 1 << 0
SMC_FLAG_SVE_HINT = 1 << 16

INDEX_NONE = 0xFF

RtSvcInit = Callable[[], int]
# handle(smc_fid, x1, x2, x3, x4, cookie, handle, flags) -> x0, as rt_svc_handle_t
RtSvcHandle = Callable[[int, int, int, int, int, object, "SmcContext", int], int]


class RuntimeSvcPanic(ArmvmiError):
    """runtime_svc_init found an invalid descriptor: TF-A panics at boot."""

    exit_code = ExitCode.INTERNAL


@dataclass(frozen=True)
class RtSvcDesc:
    name: str
    start_oen: int
    end_oen: int
    call_type: int
    init: Optional[RtSvcInit]
    handle: Optional[RtSvcHandle]


def DECLARE_RT_SVC(name: str, start_oen: int, end_oen: int, call_type: int,
                   init: Optional[RtSvcInit], handle: Optional[RtSvcHandle]) -> RtSvcDesc:
    """The model of TF-A's macro: a descriptor for the ``rt_svc_descs`` section (a list here)."""
    return RtSvcDesc(name, start_oen, end_oen, call_type, init, handle)


class SmcContext:
    """The per-SMC 'handle' (saved CPU context) plus what the model learnt about the call.

    Handlers read x5..x7 from ``record`` (as SMC_GET_GP does), return x0 through
    :meth:`ret1`, and describe the outcome in ``route``/``event``/``detail``;
    :meth:`reject` and :meth:`note` attach anomalies.
    """

    # Class-level defaults instead of __slots__: a call sets only what it learns (hot path).
    ret = SMC_UNK
    route = None  # handler that took the call, e.g. "vmi_std_init_entry"
    event = None  # e.g. "VM_CREATE"
    detail = None  # one-line human summary
    anomalies = None  # list[Anomaly] | None
    applied = False  # did it change the model's state (or answer a query)?
    answer = None  # VMI_GET_INFORMATION's answer, for display

    def __init__(self, record):
        self.record = record

    def ret1(self, value: int) -> int:
        self.ret = value
        return value

    def reject(self, ret: int, kind: str, reason: str, severity: str = "error") -> int:
        """EL3 refuses the call: one record-scope anomaly, the record is not applied."""
        self._add(Anomaly(self.record.seq, kind, reason, severity, SCOPE_RECORD))
        self.applied = False
        self.ret = ret
        return ret

    def note(self, kind: str, reason: str, severity: str = "warning") -> None:
        self._add(Anomaly(self.record.seq, kind, reason, severity, SCOPE_NOTE))

    def _add(self, an: Anomaly) -> None:
        if self.anomalies is None:
            self.anomalies = [an]
        else:
            self.anomalies.append(an)

    @property
    def rejected(self) -> bool:
        return any(a.scope == SCOPE_RECORD for a in self.anomalies or ())


class RuntimeServices:
    """``rt_svc_descs`` + ``rt_svc_descs_indices`` and the SMC entry point."""

    def __init__(self, descs: list[RtSvcDesc]):
        self.descs = list(descs)
        self.indices = bytearray([INDEX_NONE]) * MAX_RT_SVCS
        self.reports: list[str] = []  # what TF-A would ERROR()/silently do at boot
        self.skipped: list[str] = []
        self.overlaps: list[tuple[int, str, str]] = []  # (unique oen, overwritten, by)
        self._handles: list[Optional[RtSvcHandle]] = []

    @staticmethod
    def validate_rt_svc_desc(desc: Optional[RtSvcDesc]) -> str | None:
        """None when valid, else why (TF-A returns -EINVAL)."""
        if desc is None:
            return "no descriptor"
        if desc.start_oen > desc.end_oen:
            return f"start_oen {desc.start_oen} > end_oen {desc.end_oen}"
        if desc.end_oen >= OEN_LIMIT:
            return f"end_oen {desc.end_oen} >= OEN_LIMIT {OEN_LIMIT}"
        if desc.call_type not in (SMC_TYPE_FAST, SMC_TYPE_YIELD):
            return f"call type {desc.call_type} is neither fast nor yielding"
        if desc.init is None and desc.handle is None:
            return "neither init nor handle"
        return None

    def runtime_svc_init(self) -> "RuntimeServices":
        if len(self.descs) >= MAX_RT_SVCS:
            raise RuntimeSvcPanic(f"{len(self.descs)} runtime service descriptors: at most {MAX_RT_SVCS - 1}")
        self.indices[:] = bytes([INDEX_NONE]) * MAX_RT_SVCS
        self._handles = [d.handle for d in self.descs]
        for index, svc in enumerate(self.descs):
            why = self.validate_rt_svc_desc(svc)
            if why:
                raise RuntimeSvcPanic(f"invalid runtime service descriptor {getattr(svc, 'name', svc)!r}: {why}")
            if svc.init is not None:
                try:
                    rc = svc.init()
                except Exception as e:  # a model bug in an init must not look like a firmware decision
                    raise RuntimeSvcPanic(f"init of runtime service {svc.name!r} raised {e!r}") from e
                if rc != 0:
                    self.reports.append(f"Error initializing runtime service {svc.name} (rc={rc}): skipped")
                    self.skipped.append(svc.name)
                    continue
            if svc.handle is None:
                self.reports.append(f"runtime service {svc.name} has no handler: its calls answer SMC_UNK")
            start = get_unique_oen(svc.start_oen, svc.call_type)
            end = get_unique_oen(svc.end_oen, svc.call_type)
            for idx in range(start, end + 1):
                prev = self.indices[idx]
                if prev != INDEX_NONE and prev != index:
                    other = self.descs[prev].name
                    self.overlaps.append((idx, other, svc.name))
                    kind = "fast" if idx >> 6 else "yielding"
                    self.reports.append(f"{kind} OEN {idx & 0x3F}: {svc.name} overwrites {other}"
                                        " (TF-A does this silently)")
                self.indices[idx] = index
        return self

    def owner(self, call_type: int, oen: int) -> RtSvcDesc | None:
        i = self.indices[get_unique_oen(oen, call_type)]
        return None if i == INDEX_NONE else self.descs[i]

    def dispatch(self, ctx: SmcContext, x0: int, x1: int, x2: int, x3: int, x4: int, non_secure: bool) -> int:
        """One SMC: decode W0, look up the owning service, call its handler. Returns x0."""
        w0 = x0 & 0xFFFFFFFF
        flags = SMC_FROM_NON_SECURE if non_secure else SMC_FROM_SECURE
        fast = w0 >> 31
        if fast and (w0 >> 17) & 0x7F:
            ctx.route = "runtime_svc"
            return ctx.reject(SMC_UNK, "fast-reserved-bits",
                              f"fast call {w0:#010x} has non-zero bits 23:17: EL3 answers SMC_UNK", "warning")
        if w0 & (1 << 16):
            flags |= SMC_FLAG_SVE_HINT
            w0 &= ~(1 << 16)
        idx = ((w0 >> 24) & 0x3F) | (fast << 6)
        i = self.indices[idx]
        handle = self._handles[i] if i != INDEX_NONE else None
        if handle is None:
            ctx.route = "runtime_svc"
            what = "no runtime service owns" if i == INDEX_NONE else f"service {self.descs[i].name} has no handler for"
            return ctx.reject(SMC_UNK, "unowned-function",
                              f"{what} {'fast' if fast else 'yielding'} OEN {idx & 0x3F} (function id {w0:#010x}):"
                              " EL3 answers SMC_UNK", "warning")
        return handle(w0, x1, x2, x3, x4, None, ctx, flags)


__all__ = ["DECLARE_RT_SVC", "RtSvcDesc", "RuntimeServices", "RuntimeSvcPanic", "SmcContext", "SMC_FROM_SECURE",
           "SMC_FROM_NON_SECURE", "SMC_FLAG_SVE_HINT", "INDEX_NONE", "SCOPE_NOTE"]
