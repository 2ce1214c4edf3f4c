"""The registry after realistic lifecycles, prefixes (--until), and the real capture's log."""

from armvmi_cli.firmware.builder import LogBuilder
from armvmi_cli.firmware.registry import DESTROYED, MIGRATED_AWAY, MIGRATED_IN, MIGRATING_OUT, MAX_VMS
from armvmi_cli.firmware.replay import replay
from armvmi_cli.firmware.report import registry_rows
from armvmi_cli.firmware.smccc import SMC_INVALID_PARAM


def _lifecycle() -> LogBuilder:
    b = LogBuilder()
    b.driver_init()  # 0
    b.vm_create(10, kvm_va=0xFFFF000011110000)  # 1
    b.vm_create(20, kvm_va=0xFFFF000022220000)  # 2
    b.vm_run_change(10, vcpu=0, ttbr0=0xA000, ttbr1=(7 << 48) | 0xB000, run_state=1)  # 3
    b.vm_run_change(10, vcpu=1, ttbr0=0xC000, run_state=1, cpu=1)  # 4
    b.vm_run_change(10, vcpu=0, ttbr0=0xD000, ttbr1=(7 << 48) | 0xB000, run_state=2)  # 5
    b.vm_run_change(20, vcpu=0, run_state=1)  # 6
    b.vm_migration(20, 1)  # 7
    b.vm_run_change(20, vcpu=0, run_state=1)  # 8: still runs while migrating out
    b.vm_migration(20, 2)  # 9
    b.vm_migration(30, 3, vttbr=(3 << 48) | 0x60000000, vtcr=0x80243558, ram_base=0x40000000, ram_size=256 << 20)  # 10
    b.vm_run_change(30, vcpu=3, run_state=1)  # 11
    b.vm_destroy(10)  # 12
    b.vm_create(10, kvm_va=0xFFFF000033330000)  # 13: vm_id reused after destroy
    return b


def test_realistic_lifecycle():
    res = replay(_lifecycle().bytes())
    reg = res.registry
    assert res.anomalies == [] and res.records_ok == 14
    assert sorted(reg.by_id) == [10, 30]
    new10 = reg.get(10)
    assert new10.kvm_va == 0xFFFF000033330000 and new10.created_seq == 13 and new10.vcpus == {}
    assert new10.slot == 0  # slot 0 was freed by the destroy and is the lowest free one
    in30 = reg.get(30)
    assert in30.state == MIGRATED_IN and in30.kvm_va is None and in30.ram_size == 256 << 20
    assert in30.slot == 1 and in30.vcpus[3].run_state == 1
    hist = {(vm.vm_id, vm.state): vm for vm in reg.history}
    away = hist[(20, MIGRATED_AWAY)]
    assert away.ended_seq == 9 and away.vcpus[0].seq == 8
    old10 = hist[(10, DESTROYED)]
    assert old10.kvm_va == 0xFFFF000011110000 and old10.ended_seq == 12
    assert old10.vcpus[0].ttbr0 == 0xD000 and old10.vcpus[0].run_state == 2 and old10.vcpus[0].changes == 2
    assert old10.vcpus[1].cpu == 1 and old10.vcpus[1].ttbr0 == 0xC000
    # slot array and hash table agree
    assert all(reg.slots[vm.slot] is vm for vm in reg.by_id.values())
    assert sum(vm is not None for vm in reg.slots) == len(reg.by_id) == 2


def test_until_replays_a_prefix():
    data = _lifecycle().bytes()
    res = replay(data, until=7)
    assert res.stopped_early and res.last_seq == 7 and res.records_seen == 8
    assert res.registry.get(20).state == MIGRATING_OUT
    assert res.registry.get(10).vcpus[0].ttbr0 == 0xD000
    assert replay(data, until=0).registry.host is not None and len(replay(data, until=0).registry) == 0
    assert not replay(data, until=100).stopped_early


def test_registry_full_at_65_vms_and_slot_reuse():
    b = LogBuilder()
    b.driver_init()
    for i in range(1, MAX_VMS + 1):
        b.vm_create(i)
    b.vm_create(MAX_VMS + 1, ret=SMC_INVALID_PARAM)
    b.vm_destroy(17)
    b.vm_create(MAX_VMS + 1)
    res = replay(b.bytes())
    assert [a.kind for a in res.anomalies] == ["registry-full"]
    assert res.anomalies[0].seq == MAX_VMS + 1
    assert len(res.registry) == MAX_VMS
    assert res.registry.get(MAX_VMS + 1).slot == 16  # vm 17 had slot 16


def test_registry_rows_for_the_vms_command():
    rows = registry_rows(replay(_lifecycle().bytes()))
    live = [r for r in rows if r["live"]]
    assert [(r["vm_id"], r["slot"], r["state"]) for r in live] == [(10, 0, "created"), (30, 1, "migrated-in")]
    assert live[1]["vmid"] == 3 and live[1]["stage2_base"] == 0x60000000 and live[1]["ipa_bits"] == 40
    assert live[1]["start_level"] == 1 and live[1]["concatenated_tables"] == 2 and live[1]["granule"] == "4K"
    hist = [r for r in rows if not r["live"]]
    assert [(r["vm_id"], r["state"]) for r in hist] == [(20, "migrated-away"), (10, "destroyed")]
    v = hist[1]["vcpus"][0]
    assert v["ttbr1"] == (7 << 48) | 0xB000 and v["asid"] == 7  # TCR.A1=1: ASID from TTBR1


def test_history_is_bounded_but_counted():
    from armvmi_cli.firmware.registry import Registry
    from armvmi_cli.firmware.replay import El3Model

    b = LogBuilder()
    b.driver_init()
    for _ in range(10):
        b.vm_create(1)
        b.vm_destroy(1)
    res = replay(b.bytes(), model=El3Model(registry=Registry(history_limit=4)))
    assert len(res.registry.history) == 4 and res.registry.history_total == 10
    assert res.anomalies == []


def test_real_capture_replays_clean_and_matches_ground_truth(nested_capture):
    gt = nested_capture.ground_truth
    res = replay(nested_capture.smclog)
    assert res.anomalies == [] and res.records_seen == res.records_ok == 3 and not res.has_findings
    facts = gt["host"]["facts"]
    h = res.registry.host
    assert h.phys_offset == int(facts["memstart_addr"], 16)
    assert h.page_offset == int(facts["PAGE_OFFSET"], 16)
    assert h.kimage_voffset == int(facts["kimage_voffset"], 16)
    assert h.ttbr1 == int(facts["TTBR1_EL1"], 16) and h.tcr == int(facts["TCR_EL1"], 16)
    assert h.vhe == facts["vhe"] and h.time_ns == gt["host"]["kvm_init_ns"]
    truth = gt["vms"][0]
    (vm,) = res.registry.live()
    assert vm.vm_id == truth["vm_id"]
    assert vm.vttbr == int(truth["vttbr"], 16) and vm.vtcr == int(truth["vtcr"], 16)
    assert vm.kvm_va == int(truth["struct_kvm_va"], 16)
    assert vm.ram_base == int(truth["guest_ram_base"], 16) and vm.ram_size == int(truth["guest_ram_size"], 16)
    for c in truth["vcpus"]:
        v = vm.vcpus[c["vcpu_idx"]]
        assert v.ttbr0 == int(c["TTBR0_EL1"], 16) and v.ttbr1 == int(c["TTBR1_EL1"], 16) and v.tcr == int(c["TCR_EL1"], 16)
    (row,) = registry_rows(res)
    assert row["vmid"] == truth["vmid"] and row["stage2_base"] == int(truth["stage2_base"], 16)
    assert row["start_level"] == truth["start_level"] and row["ipa_bits"] == truth["ipa_bits"]
