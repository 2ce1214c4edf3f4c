"""Replay an event log through the EL3 model into the VM registry.

``replay(source, until=None)`` → :class:`ReplayResult`; ``replay_iter`` yields one
:class:`Step` per record (and per file-level anomaly) for the ``events`` command.
Streaming: records are not kept, so memory does not grow with the log (history and
the anomaly list are bounded; their counters stay exact).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

from .anomaly import SCOPE_RECORD, SCOPE_STREAM, Anomaly
from .registry import Registry
from .runtime_svc import RtSvcDesc, RuntimeServices, SmcContext
from .smccc import FunctionId, decode_fid, return_name
from .smclog import Corrupt, LogHeader, Record, SmcLogReader, Source
from .vmi_service import PsciStub, VmiService

ANOMALY_LIMIT = 100_000


class El3Model:
    """EL3 as booted: the runtime-service table holding the PSCI stub and vmi_std_interface."""

    def __init__(self, extra_descs: list[RtSvcDesc] | tuple = (), registry: Registry | None = None):
        self.registry = registry if registry is not None else Registry()
        self.vmi = VmiService(self.registry)
        self.psci = PsciStub()
        self.services = RuntimeServices(self.psci.descriptors() + self.vmi.descriptors() + list(extra_descs))
        self.services.runtime_svc_init()

    def boot_anomalies(self) -> list[Anomaly]:
        out = [Anomaly(None, "rt-svc-overlap", f"{by} overwrites {old} at {'fast' if idx >> 6 else 'yielding'} OEN {idx & 0x3F}",
                       "warning", SCOPE_STREAM) for idx, old, by in self.services.overlaps]
        out += [Anomaly(None, "rt-svc-skipped", f"runtime service {n} failed its init: its calls answer SMC_UNK",
                        "warning", SCOPE_STREAM) for n in self.services.skipped]
        return out

    def smc(self, rec: Record) -> SmcContext:
        """One recorded SMC through the EL3 entry; the context holds x0 and the verdict."""
        ctx = SmcContext(rec)
        _seq, _ts, _cpu, caller, rflags, _crc, x0, x1, x2, x3, x4, _x5, _x6, _x7, ret = rec
        if caller > 1:
            ctx.route = "el3_entry"
            ctx.reject(ctx.ret, "malformed", f"caller {caller} is neither 0 (non-secure) nor 1 (secure): record not replayed")
            return ctx
        if x0 >> 32:
            ctx.note("fid-upper-bits", f"x0 {x0:#x} has bits 63:32 set; SMCCC uses W0 only", "info")
        self.services.dispatch(ctx, x0, x1, x2, x3, x4, caller == 0)
        if rflags & 1 and ret != ctx.ret:
            ctx.note("ret-mismatch", f"front-end recorded x0={return_name(ret)} but the EL3 model answers"
                     f" {return_name(ctx.ret)}")
        return ctx


class Step(NamedTuple):
    """One replayed item: a record with its decoded id and verdict, or a file-level anomaly (record None)."""

    record: Record | None
    fid: FunctionId | None
    verdict: SmcContext | None  # .ret, .route, .event, .detail; None for corrupt records
    anomalies: tuple  # anomalies attached to this item


@dataclass
class ReplayResult:
    registry: Registry
    anomalies: list[Anomaly]
    records_seen: int
    header: LogHeader
    records_ok: int = 0
    records_rejected: int = 0  # EL3 refused (record-scope anomaly from a handler)
    records_corrupt: int = 0  # CRC failures and malformed records: never dispatched
    anomaly_counts: Counter = field(default_factory=Counter)  # by kind, exact
    scope_counts: Counter = field(default_factory=Counter)  # by scope, exact
    anomalies_dropped: int = 0
    last_seq: int | None = None
    until: int | None = None
    stopped_early: bool = False
    model: El3Model | None = None

    @property
    def anomaly_total(self) -> int:
        return sum(self.scope_counts.values())

    @property
    def has_findings(self) -> bool:
        """Anything worse than info: what makes the CLI exit 1."""
        return any(a.severity != "info" for a in self.anomalies) or self.anomalies_dropped > 0


class Replay:
    """Iterate to get :class:`Step` items; ``result`` is complete once iteration ends."""

    def __init__(self, source: Source, until: int | None = None, model: El3Model | None = None,
                 anomaly_limit: int = ANOMALY_LIMIT, emit_ok: bool = True):
        self.emit_ok = emit_ok  # False: yield only steps with anomalies (replay() needs no per-record steps)
        self.model = model or El3Model()
        self.until = until
        self.anomaly_limit = anomaly_limit
        self.reader = SmcLogReader(source)
        self.result = ReplayResult(self.model.registry, [], 0, self.reader.header, until=until, model=self.model)

    def _keep(self, anomalies) -> None:
        res = self.result
        for a in anomalies:
            res.anomaly_counts[a.kind] += 1
            res.scope_counts[a.scope] += 1
            if len(res.anomalies) < self.anomaly_limit:
                res.anomalies.append(a)
            else:
                res.anomalies_dropped += 1

    def __iter__(self) -> Iterator[Step]:
        res, model, until, keep = self.result, self.model, self.until, self._keep
        smc = model.smc
        _Record, _Corrupt = Record, Corrupt
        seen = ok = 0
        last_seq = None
        emit_ok = self.emit_ok
        try:
            boot = tuple(model.boot_anomalies())
            if boot:
                keep(boot)
                yield Step(None, None, None, boot)
            for item in self.reader:
                t = type(item)
                if t is _Record:
                    if until is not None and item.seq > until:
                        res.stopped_early = True
                        break
                    seen += 1
                    ctx = smc(item)
                    last_seq = item[0]
                    if ctx.anomalies is None:
                        ok += 1
                        if emit_ok:
                            yield Step(item, decode_fid(item.x0), ctx, ())
                        continue
                    keep(ctx.anomalies)
                    if any(a.scope == SCOPE_RECORD for a in ctx.anomalies):
                        if ctx.route == "el3_entry":
                            res.records_corrupt += 1
                        else:
                            res.records_rejected += 1
                    else:
                        ok += 1
                    yield Step(item, decode_fid(item.x0), ctx, tuple(ctx.anomalies))
                elif t is _Corrupt:
                    if until is not None and item.anomaly.seq > until:
                        res.stopped_early = True
                        break
                    seen += 1
                    res.records_corrupt += 1
                    keep((item.anomaly,))
                    yield Step(item.record, decode_fid(item.record.x0), None, (item.anomaly,))
                else:
                    keep((item,))
                    yield Step(None, None, None, (item,))
        finally:
            res.last_seq = last_seq
            res.records_seen = seen
            res.records_ok = ok
            self.reader.close()


def replay_iter(source: Source, until: int | None = None, model: El3Model | None = None) -> Iterator[Step]:
    return iter(Replay(source, until, model))


def replay(source: Source, until: int | None = None, model: El3Model | None = None) -> ReplayResult:
    r = Replay(source, until, model, emit_ok=False)
    for _ in r:
        pass
    return r.result
