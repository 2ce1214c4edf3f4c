"""The TF-A runtime-service framework model: validation, init failures, overlaps, dispatch."""

import pytest

from armvmi_cli.firmware.builder import LogBuilder
from armvmi_cli.firmware.replay import El3Model, replay
from armvmi_cli.firmware.runtime_svc import (DECLARE_RT_SVC, INDEX_NONE, SMC_FLAG_SVE_HINT, SMC_FROM_NON_SECURE,
                                             RuntimeServices, RuntimeSvcPanic, SmcContext)
from armvmi_cli.firmware.smccc import SMC_OK, SMC_TYPE_FAST, SMC_TYPE_YIELD, SMC_UNK
from armvmi_cli.firmware.smclog import make_record


def _ok_handler(calls):
    def handle(fid, x1, x2, x3, x4, cookie, ctx, flags):
        calls.append((fid, x1, flags))
        return ctx.ret1(SMC_OK)
    return handle


def _dispatch(rts, x0, x1=0, non_secure=True):
    ctx = SmcContext(make_record(0, [x0, x1]))
    return rts.dispatch(ctx, x0, x1, 0, 0, 0, non_secure), ctx


@pytest.mark.parametrize("desc,why", [
    (DECLARE_RT_SVC("a", 5, 4, SMC_TYPE_FAST, lambda: 0, None), "start_oen"),
    (DECLARE_RT_SVC("b", 60, 64, SMC_TYPE_FAST, lambda: 0, None), "OEN_LIMIT"),
    (DECLARE_RT_SVC("c", 1, 1, 2, lambda: 0, None), "call type"),
    (DECLARE_RT_SVC("d", 1, 1, SMC_TYPE_YIELD, None, None), "neither init nor handle"),
])
def test_invalid_descriptor_panics_like_tf_a(desc, why):
    with pytest.raises(RuntimeSvcPanic, match=why):
        RuntimeServices([desc]).runtime_svc_init()


def test_too_many_descriptors_panics():
    descs = [DECLARE_RT_SVC(f"s{i}", 0, 0, SMC_TYPE_FAST, None, _ok_handler([])) for i in range(128)]
    with pytest.raises(RuntimeSvcPanic):
        RuntimeServices(descs).runtime_svc_init()


def test_indices_filled_by_call_type_and_oen():
    calls = []
    rts = RuntimeServices([
        DECLARE_RT_SVC("fast", 48, 49, SMC_TYPE_FAST, lambda: 0, _ok_handler(calls)),
        DECLARE_RT_SVC("yield", 48, 49, SMC_TYPE_YIELD, None, _ok_handler(calls)),
    ]).runtime_svc_init()
    assert rts.indices[64 + 48] == rts.indices[64 + 49] == 0
    assert rts.indices[48] == rts.indices[49] == 1
    assert sum(1 for i in rts.indices if i != INDEX_NONE) == 4
    assert rts.owner(SMC_TYPE_FAST, 49).name == "fast" and rts.owner(SMC_TYPE_YIELD, 50) is None
    assert _dispatch(rts, 0xF1000007)[0] == SMC_OK  # OEN 49 fast
    assert _dispatch(rts, 0x71000007)[0] == SMC_OK
    ret, ctx = _dispatch(rts, 0xF2000001)  # OEN 50: nobody
    assert ret == SMC_UNK and ctx.anomalies[0].kind == "unowned-function"


def test_failed_init_skips_the_service():
    calls = []
    rts = RuntimeServices([DECLARE_RT_SVC("broken", 3, 3, SMC_TYPE_FAST, lambda: -22, _ok_handler(calls))]).runtime_svc_init()
    assert rts.skipped == ["broken"] and "Error initializing runtime service broken" in rts.reports[0]
    assert rts.indices[64 + 3] == INDEX_NONE
    assert _dispatch(rts, 0x83000000)[0] == SMC_UNK and calls == []


def test_overlap_overwrites_as_tf_a_does_but_is_reported():
    """Trusty's descriptor in the TF-A tree claims OEN_TOS_START..OEN_TOS_END fast; a TLK/Trusty build
    also registers 48-49 style ranges: a later descriptor silently wins."""
    first, second = [], []
    rts = RuntimeServices([
        DECLARE_RT_SVC("vmi_std_interface_fast", 48, 49, SMC_TYPE_FAST, lambda: 0, _ok_handler(first)),
        DECLARE_RT_SVC("trusty_fast", 49, 63, SMC_TYPE_FAST, None, _ok_handler(second)),
    ]).runtime_svc_init()
    assert rts.overlaps == [(64 + 49, "vmi_std_interface_fast", "trusty_fast")]
    assert any("trusty_fast overwrites vmi_std_interface_fast" in r for r in rts.reports)
    _dispatch(rts, 0xF0000001)
    _dispatch(rts, 0xF1000001)
    assert len(first) == 1 and len(second) == 1


def test_overlap_reaches_replay_as_stream_anomaly():
    trusty = DECLARE_RT_SVC("trusty_fast", 48, 63, SMC_TYPE_FAST, lambda: 0, _ok_handler([]))
    b = LogBuilder()
    b.driver_init()
    res = replay(b.bytes(), model=El3Model(extra_descs=[trusty]))
    kinds = [a.kind for a in res.anomalies]
    assert kinds.count("rt-svc-overlap") == 2  # OEN 48 and 49, fast
    assert res.registry.host is None  # DRIVER_INIT went to trusty, not to the VMI service
    assert res.records_ok == 1


def test_fast_call_with_reserved_bits_is_smc_unk_without_calling_the_handler():
    calls = []
    rts = RuntimeServices([DECLARE_RT_SVC("s", 48, 49, SMC_TYPE_FAST, lambda: 0, _ok_handler(calls))]).runtime_svc_init()
    ret, ctx = _dispatch(rts, 0xF0800001)  # bit 23
    assert ret == SMC_UNK and calls == [] and ctx.anomalies[0].kind == "fast-reserved-bits"


def test_sve_hint_is_stripped_and_passed_in_flags():
    calls = []
    rts = RuntimeServices([DECLARE_RT_SVC("s", 48, 49, SMC_TYPE_FAST, lambda: 0, _ok_handler(calls))]).runtime_svc_init()
    _dispatch(rts, 0xF0010001, non_secure=True)
    _dispatch(rts, 0xF0000001, non_secure=False)
    assert calls[0] == (0xF0000001, 0, SMC_FROM_NON_SECURE | SMC_FLAG_SVE_HINT)
    assert calls[1] == (0xF0000001, 0, 0)


def test_psci_stub_is_not_confused_with_vmi():
    b = LogBuilder()
    b.psci_version()
    b.driver_init()
    b.psci_version()
    b.smc(0x84000001, ret=None)  # PSCI_CPU_SUSPEND: not modelled
    b.smc(0x04000000, ret=None)  # yielding call to OEN 4: nobody owns it
    res = replay(b.bytes())
    assert res.registry.host is not None and res.registry.host.seq == 1 and len(res.registry) == 0
    assert res.records_ok == 3 and res.records_rejected == 2
    assert [a.kind for a in res.anomalies] == ["unknown-function", "unowned-function"]
