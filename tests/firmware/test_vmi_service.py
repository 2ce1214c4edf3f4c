"""Each VMI event and each rejection path, with logs built by the writer."""

import pytest

from armvmi_cli.firmware.builder import LogBuilder
from armvmi_cli.firmware.replay import replay, replay_iter
from armvmi_cli.firmware.smccc import SMC_INVALID_PARAM, SMC_OK, SMC_UNK


def _host() -> LogBuilder:
    b = LogBuilder()
    b.driver_init()
    return b


def _last_step(b):
    steps = [s for s in replay_iter(b.bytes()) if s.record is not None]
    return steps[-1]


def _record_anomalies(res):
    return [a for a in res.anomalies if a.scope == "record"]


def test_driver_init_sets_host_record():
    b = LogBuilder()
    b.driver_init(phys_offset=1, page_offset=2, kimage_voffset=3, ttbr1=4, tcr=5, vhe=True)
    res = replay(b.bytes())
    h = res.registry.host
    assert (h.phys_offset, h.page_offset, h.kimage_voffset, h.ttbr1, h.tcr, h.vhe, h.epoch) == (1, 2, 3, 4, 5, True, 1)
    assert res.anomalies == [] and res.records_ok == 1


def test_each_event_is_routed_to_its_entry():
    b = _host()
    b.vm_create(5)
    b.vm_run_change(5)
    b.vm_migration(5, 1)
    b.vm_migration(5, 2)
    b.vm_migration(5, 3, vttbr=(2 << 48) | 0x50000000, vtcr=0x80243558, ram_base=0x40000000, ram_size=1 << 27)
    b.vm_destroy(5)
    steps = [s for s in replay_iter(b.bytes())]
    assert [(s.verdict.event, s.verdict.route, s.verdict.ret) for s in steps] == [
        ("DRIVER_INIT", "vmi_fast_runtime_entry", SMC_OK),
        ("VM_CREATE", "vmi_std_init_entry", SMC_OK),
        ("VM_RUN_CHANGE", "vmi_std_init_entry", SMC_OK),
        ("VM_MIGRATION", "vmi_std_init_entry", SMC_OK),
        ("VM_MIGRATION", "vmi_std_init_entry", SMC_OK),
        ("VM_MIGRATION", "vmi_std_init_entry", SMC_OK),
        ("VM_DESTROY", "vmi_fast_runtime_entry", SMC_OK),
    ]
    assert all(s.anomalies == () for s in steps)


@pytest.mark.parametrize("build,kind,ret,severity", [
    # misrouted: yielding-only events as fast calls and the reverse
    (lambda b: b.vm_create(1, fast=True, ret=SMC_UNK), "misrouted", SMC_UNK, "error"),
    (lambda b: b.vm_run_change(1, fast=True, ret=SMC_UNK), "misrouted", SMC_UNK, "error"),
    (lambda b: b.vm_destroy(1, fast=False, ret=SMC_UNK), "misrouted", SMC_UNK, "error"),
    (lambda b: b.smc(0x70000001, 0, ret=SMC_UNK), "misrouted", SMC_UNK, "error"),  # DRIVER_INIT yielding
    (lambda b: b.smc(0xF0000001, 9, ret=SMC_UNK), "unknown-event", SMC_UNK, "error"),
    (lambda b: b.smc(0x70000001, 5, ret=SMC_UNK), "unknown-event", SMC_UNK, "error"),
    (lambda b: b.smc(0xF0000003, ret=SMC_UNK), "unknown-function", SMC_UNK, "warning"),
    (lambda b: b.smc(0xB0000001, 0, ret=SMC_UNK), "unknown-function", SMC_UNK, "warning"),  # SMC32 variant
    (lambda b: b.smc(0xC2000000, ret=SMC_UNK), "unowned-function", SMC_UNK, "warning"),  # SiP
    (lambda b: b.smc(0xF0200001, 0, ret=SMC_UNK), "fast-reserved-bits", SMC_UNK, "warning"),
    (lambda b: b.get_information(0, caller=0, ret=SMC_UNK), "non-secure-get-information", SMC_UNK, "critical"),
    (lambda b: b.vm_create(1, caller=1, ret=SMC_UNK), "denied-caller", SMC_UNK, "error"),
    (lambda b: b.get_information(1, vm_id=42, ret=SMC_INVALID_PARAM), "unknown-vm-id", SMC_INVALID_PARAM, "error"),
    (lambda b: b.get_information(7, ret=SMC_INVALID_PARAM), "unknown-request", SMC_INVALID_PARAM, "error"),
    (lambda b: b.vm_create(0, ret=SMC_INVALID_PARAM), "bad-vm-id", SMC_INVALID_PARAM, "error"),
    (lambda b: (b.vm_create(3), b.vm_create(3, ret=SMC_INVALID_PARAM)), "duplicate-vm-id", SMC_INVALID_PARAM, "error"),
    (lambda b: b.vm_run_change(9, ret=SMC_INVALID_PARAM), "unknown-vm-id", SMC_INVALID_PARAM, "error"),
    (lambda b: (b.vm_create(3), b.vm_run_change(3, run_state=3, ret=SMC_INVALID_PARAM)), "bad-run-state", SMC_INVALID_PARAM, "error"),
    (lambda b: (b.vm_create(3), b.vm_run_change(3, vcpu=512, ret=SMC_INVALID_PARAM)), "bad-vcpu", SMC_INVALID_PARAM, "error"),
    (lambda b: b.vm_destroy(9, ret=SMC_INVALID_PARAM), "unknown-vm-id", SMC_INVALID_PARAM, "error"),
    (lambda b: b.vm_migration(9, 1, ret=SMC_INVALID_PARAM), "unknown-vm-id", SMC_INVALID_PARAM, "error"),
    (lambda b: (b.vm_create(3), b.vm_migration(3, 4, ret=SMC_INVALID_PARAM)), "bad-migration-phase", SMC_INVALID_PARAM, "error"),
    (lambda b: (b.vm_create(3), b.vm_migration(3, 3, ret=SMC_INVALID_PARAM)), "duplicate-vm-id", SMC_INVALID_PARAM, "error"),
    (lambda b: b.smc(0xF0000001, 0, caller=2, ret=None), "malformed", SMC_UNK, "error"),
])
def test_rejections(build, kind, ret, severity):
    b = _host()
    build(b)
    s = _last_step(b)
    assert s.verdict.ret == ret
    rec_anoms = [a for a in s.anomalies if a.scope == "record"]
    assert len(rec_anoms) == 1
    assert rec_anoms[0].kind == kind and rec_anoms[0].severity == severity and rec_anoms[0].seq == s.record.seq
    # the log recorded what the spec says EL3 answers: no ret-mismatch note
    assert not any(a.kind == "ret-mismatch" for a in s.anomalies)
    res = replay(b.bytes())
    assert res.records_seen == res.records_ok + len(_record_anomalies(res))
    assert res.has_findings


def test_events_before_driver_init_are_refused():
    b = LogBuilder()
    b.vm_create(1, ret=SMC_UNK)
    b.vm_destroy(1, ret=SMC_UNK)
    b.get_information(2, ret=SMC_INVALID_PARAM)
    res = replay(b.bytes())
    assert [a.kind for a in res.anomalies] == ["no-driver-init"] * 3
    assert len(res.registry) == 0


def test_get_information_from_secure_world_answers():
    b = _host()
    b.vm_create(4)
    b.get_information(0)
    b.get_information(1, vm_id=4)
    b.get_information(2)
    steps = [s for s in replay_iter(b.bytes())][-3:]
    assert [s.verdict.answer for s in steps] == [{"live_vms": 1}, {"vm_id": 4, "slot": 0, "vttbr": steps[1].verdict.answer["vttbr"]},
                                                 {"epoch": 1}]
    assert all(s.verdict.route == "vmi_get_information" and s.anomalies == () for s in steps)


def test_second_driver_init_starts_a_new_epoch_and_is_reported():
    b = _host()
    b.vm_create(1)
    b.driver_init(ttbr1=0x1234000)
    res = replay(b.bytes())
    assert res.registry.host.epoch == 2 and res.registry.host.ttbr1 == 0x1234000
    assert res.registry.host_history[0].epoch == 1
    assert [(a.kind, a.scope) for a in res.anomalies] == [("new-host-epoch", "note")]
    assert "1 live VM(s) carried over" in res.anomalies[0].reason
    assert len(res.registry) == 1 and res.records_ok == 3


def test_recorded_return_value_disagreeing_with_model_is_a_note():
    b = _host()
    b.vm_create(1, ret=SMC_INVALID_PARAM)  # front-end says EL3 refused; the model accepts
    b.vm_run_change(2, ret=SMC_OK)  # front-end says accepted; the model refuses
    b.vm_run_change(1, ret=None)  # ret not recorded: nothing to compare
    res = replay(b.bytes())
    kinds = [(a.seq, a.kind) for a in res.anomalies]
    assert (1, "ret-mismatch") in kinds and (2, "ret-mismatch") in kinds and (2, "unknown-vm-id") in kinds
    assert not any(a.seq == 3 for a in res.anomalies)


def test_suspicious_but_accepted_creates():
    b = _host()
    b.vm_create(1, vttbr=(1 << 48) | 0x44000000)
    b.vm_create(2, vttbr=(2 << 48) | 0x44000000)  # same stage-2 tables as vm 1
    b.vm_create(3, vttbr=(1 << 48) | 0x45000000)  # same VMID as vm 1
    b.vm_create(4, vttbr=5 << 48, ram_size=0)
    res = replay(b.bytes())
    assert len(res.registry) == 4 and res.records_ok == 5
    kinds = [a.kind for a in res.anomalies]
    assert kinds == ["shared-stage2", "shared-vmid", "stage2-base", "ram-size"]
