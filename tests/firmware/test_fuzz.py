"""Fuzzing the reader and the replay: no crash, no hang, every bad record accounted for."""

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from armvmi_cli.errors import LogFormatError
from armvmi_cli.firmware.anomaly import Anomaly
from armvmi_cli.firmware.builder import LogBuilder
from armvmi_cli.firmware.replay import Replay, replay
from armvmi_cli.firmware.smclog import Corrupt, LogHeader, Record, SmcLogReader, make_record

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIDS = [0xF0000001, 0x70000001, 0xF0000002, 0x84000000, 0xF0010001, 0xF0200001, 0xB0000001, 0xC2000000, 0x04000000]
u64 = st.integers(0, (1 << 64) - 1)
small = st.integers(0, 8)
reg = st.one_of(small, u64)


def _check_invariants(res, n_slots):
    assert res.records_seen == n_slots
    rec_scope = sum(1 for a in res.anomalies if a.scope == "record")
    assert res.anomalies_dropped == 0
    assert res.records_seen == res.records_ok + rec_scope
    assert res.records_seen == res.records_ok + res.records_rejected + res.records_corrupt
    reg = res.registry
    assert len(reg.by_id) <= reg.max_vms
    assert {vm.vm_id for vm in reg.slots if vm is not None} == set(reg.by_id)
    assert all(reg.slots[vm.slot] is vm for vm in reg.by_id.values())


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_reader(data):
    try:
        r = SmcLogReader(data)
    except LogFormatError:
        return
    items = list(r)
    assert all(isinstance(i, (Record, Corrupt, Anomaly)) for i in items)


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from([0, 1]))
def test_valid_header_random_body(body, flags):
    data = LogHeader(flags=flags).encode() + body
    res = replay(data)
    _check_invariants(res, len(body) // 96)
    torn = [a for a in res.anomalies if a.kind == "torn-tail"]
    assert len(torn) == (1 if len(body) % 96 else 0)


record_st = st.builds(
    lambda x0, x1, x2, x3, x4, x5, x6, x7, caller, cpu, ret, seqjump: (x0, x1, x2, x3, x4, x5, x6, x7, caller, cpu, ret, seqjump),
    st.one_of(st.sampled_from(FIDS), u64), st.one_of(st.integers(0, 6), u64), st.one_of(st.integers(0, 70), u64),
    st.one_of(st.integers(0, 4), u64), reg, reg, reg, st.one_of(st.integers(0, 3), u64),
    st.sampled_from([0, 0, 0, 1, 2, 255]), st.integers(0, 65535), st.one_of(st.none(), st.sampled_from([0, (1 << 64) - 1, (1 << 64) - 2]), u64),
    st.sampled_from([1, 1, 1, 1, 0, 2, -1]),
)


@FUZZ
@given(st.lists(record_st, max_size=120), st.lists(st.integers(0, 10_000), max_size=5))
def test_random_records_replay(records, corrupt_at):
    b = LogBuilder()
    b.driver_init()
    seq = 1
    for x0, x1, x2, x3, x4, x5, x6, x7, caller, cpu, ret, jump in records:
        seq = max(0, seq + jump - 1) if jump != 1 else seq
        b.records.append(make_record(seq, [x0, x1, x2, x3, x4, x5, x6, x7], caller=caller, cpu=cpu, ret=ret))
        seq += 1
    n = len(b.records)
    for c in corrupt_at:
        b.crcs[c % n] = 0xBADC0DE
    data = b.bytes()
    res = replay(data)
    _check_invariants(res, n)
    assert res.records_corrupt >= len({c % n for c in corrupt_at})  # plus malformed callers
    # per-step: at most one record-scope anomaly, and steps cover every slot
    slots = 0
    for s in Replay(data):
        if s.record is not None:
            slots += 1
            assert sum(1 for a in s.anomalies if a.scope == "record") <= 1
    assert slots == n


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=20))
def test_bit_flips_in_a_valid_log(flips):
    b = LogBuilder()
    b.driver_init()
    for i in range(1, 30):
        b.vm_create(i)
        b.vm_run_change(i, vcpu=i % 3)
    data = bytearray(b.bytes())
    for pos, val in flips:
        p = 64 + pos % (len(data) - 64)  # leave the header alone: its damage is a LogFormatError
        data[p] ^= val or 1
    res = replay(bytes(data))
    _check_invariants(res, len(b.records))
    # a flipped record can never be applied silently: it is either corrupt or the flip cancelled out
    changed = {(64 + pos % (len(data) - 64) - 64) // 96 for pos, val in flips}
    assert res.records_corrupt <= len(changed)


def test_large_log_streams_in_constant_memory():
    import tracemalloc

    def log_of(n):
        b = LogBuilder()
        b.driver_init()
        b.vm_create(1)
        for i in range(n):
            b.vm_run_change(1, vcpu=i % 4)
        return b.bytes()

    peaks = []
    for n in (10_000, 100_000):  # both beyond one read block (8192 records)
        data = io.BytesIO(log_of(n))
        tracemalloc.start()
        replay(data)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.2, peaks


@FUZZ
@given(st.integers(0, 3), st.integers(0, 200), st.integers(0, 300), st.integers(0, 0xFFFF), st.binary(min_size=40, max_size=40),
       st.binary(max_size=1500))
def test_random_headers_behind_the_magic(version, hsize, rsize, flags, rest, body):
    import struct

    data = b"ARMVMIEV" + struct.pack("<HHHH", version, hsize, rsize, flags) + rest + body
    try:
        r = Replay(data)
    except LogFormatError as e:
        assert str(e)
        return
    assert version == 1 and hsize >= 64 and rsize >= 96
    for _ in r:
        pass
    whole = max(0, len(data) - hsize) // rsize
    _check_invariants(r.result, whole)
