"""The .smclog reader and writer against shared/spec/smclog.md."""

import io
import json
import struct
import uuid
import zlib

import pytest

from armvmi_cli.errors import LogFormatError
from armvmi_cli.firmware import smclog
from armvmi_cli.firmware.anomaly import Anomaly
from armvmi_cli.firmware.builder import LogBuilder
from armvmi_cli.firmware.smclog import (HEADER, RECORD, Corrupt, LogHeader, Record, SmcLogReader, build_log,
                                        import_jsonl, read_log, record_to_json)


def _lifecycle(n_runs=3) -> LogBuilder:
    b = LogBuilder()
    b.driver_init()
    b.vm_create(7)
    for i in range(n_runs):
        b.vm_run_change(7, vcpu=i % 2, run_state=1)
    return b


def test_construct_declaration_and_struct_agree():
    b = _lifecycle()
    data = b.bytes()
    h = HEADER.parse(data[:64])
    assert h.magic == b"ARMVMIEV" and h.version == 1 and h.header_size == 64 and h.record_size == 96 and h.flags == 1
    assert h.record_count == len(b.records)
    r = RECORD.parse(data[64 + 96 : 64 + 192])
    rec = b.records[1]
    assert r.seq == rec.seq and list(r.x) == list(rec.x) and r.ret == rec.ret and r.caller == rec.caller
    raw = bytearray(data[64 + 96 : 64 + 192])
    stored = r.crc32
    raw[20:24] = bytes(4)
    assert zlib.crc32(raw) == stored  # the spec's CRC definition, independently


def test_writer_reader_round_trip_is_byte_identical():
    b = _lifecycle(10)
    data = b.bytes()
    header, items = read_log(data)
    assert all(type(i) is Record for i in items)
    assert build_log(items, header) == data


def test_real_capture_log_round_trips(nested_capture):
    data = nested_capture.smclog.read_bytes()
    header, items = read_log(nested_capture.smclog)
    assert str(header.boot_id) == nested_capture.ground_truth["host"]["smclog_boot_uuid"]
    assert header.record_count == len(items) == 3
    assert build_log(items, header) == data
    # JSON Lines export -> import reproduces it too
    lines = [json.dumps(header.as_dict())] + [json.dumps(record_to_json(r)) for r in items]
    out = io.BytesIO()
    import_jsonl(lines, out)
    assert out.getvalue() == data


@pytest.mark.parametrize("mutate,msg", [
    (lambda d: b"NOTAVMIE" + d[8:], "magic"),
    (lambda d: d[:8] + struct.pack("<H", 2) + d[10:], "version"),
    (lambda d: d[:10] + struct.pack("<H", 32) + d[12:], "header_size"),
    (lambda d: d[:12] + struct.pack("<H", 64) + d[14:], "record_size"),
    (lambda d: d[:40], "too short"),
    (lambda d: b"", "too short"),
])
def test_header_rejections(mutate, msg):
    with pytest.raises(LogFormatError, match=msg):
        read_log(mutate(_lifecycle().bytes()))


def test_missing_file_is_a_log_format_error(tmp_path):
    with pytest.raises(LogFormatError, match="cannot open"):
        SmcLogReader(tmp_path / "nope.smclog")


def test_torn_tail_keeps_whole_records():
    data = _lifecycle(4).bytes()
    header, items = read_log(data[:-40])
    recs = [i for i in items if type(i) is Record]
    assert len(recs) == 5
    torn = [i for i in items if isinstance(i, Anomaly) and i.kind == "torn-tail"]
    assert len(torn) == 1 and "56 of 96" in torn[0].reason and torn[0].offset == 64 + 5 * 96
    # header said 6 records: reported too
    assert any(isinstance(i, Anomaly) and i.kind == "record-count" for i in items)


def test_crc_failure_skips_the_record_and_neighbours_still_count():
    b = _lifecycle(3)
    b.crcs[2] = 0x12345678
    header, items = read_log(b.bytes())
    corrupt = [i for i in items if type(i) is Corrupt]
    assert len(corrupt) == 1 and corrupt[0].anomaly.kind == "crc" and corrupt[0].anomaly.seq == 2
    assert corrupt[0].record.seq == 2 and corrupt[0].anomaly.offset == 64 + 2 * 96
    assert [i.seq for i in items if type(i) is Record] == [0, 1, 3, 4]
    assert not any(isinstance(i, Anomaly) and i.kind == "seq-gap" for i in items)  # the bad slot is not a gap


def test_sequence_gaps_and_backwards_are_reported():
    b = LogBuilder()
    b.driver_init()
    b.vm_create(1)
    b.vm_run_change(1, seq=5)
    b.vm_run_change(1, seq=3)
    _, items = read_log(b.bytes())
    gaps = [i for i in items if isinstance(i, Anomaly)]
    assert [(a.kind, a.seq) for a in gaps] == [("seq-gap", 5), ("seq-backwards", 3)]
    assert "seq 2..4 missing" in gaps[0].reason


def test_log_starting_late_is_a_gap():
    b = LogBuilder()
    b.driver_init(seq=10)
    _, items = read_log(b.bytes())
    assert isinstance(items[0], Anomaly) and items[0].kind == "seq-gap" and "10 record(s) lost" in items[0].reason


def test_time_going_backwards_is_reported():
    b = LogBuilder()
    b.driver_init()
    b.time -= 10_000
    b.vm_create(1)
    _, items = read_log(b.bytes())
    assert any(isinstance(i, Anomaly) and i.kind == "time-backwards" for i in items)


def test_larger_header_and_record_sizes_are_skipped():
    b = _lifecycle(2)
    b.header = LogHeader(header_size=80, record_size=128, boot_id=uuid.uuid4())
    data = b.bytes()
    assert len(data) == 80 + 128 * len(b.records)
    header, items = read_log(data)
    assert header.header_size == 80 and header.record_size == 128
    assert [i.seq for i in items] == list(range(len(b.records)))
    assert build_log(items, header) == data


def test_no_crc_flag_is_reported_and_not_checked():
    b = _lifecycle(1)
    b.header = LogHeader(flags=0)
    data = bytearray(b.bytes())
    assert data[64 + 20 : 64 + 24] == bytes(4)
    header, items = read_log(bytes(data))
    assert isinstance(items[0], Anomaly) and items[0].kind == "no-crc"
    assert sum(type(i) is Record for i in items) == len(b.records)


def test_streaming_across_block_boundaries(monkeypatch):
    monkeypatch.setattr(smclog, "BLOCK_RECORDS", 3)
    b = _lifecycle(20)
    b.crcs[7] = 1
    data = b.bytes() + b"\x01" * 17
    _, items = read_log(data)
    assert [i.seq for i in items if type(i) is Record] == [s for s in range(22) if s != 7]
    assert [i.kind for i in items if isinstance(i, Anomaly)] == ["torn-tail"]
    r = SmcLogReader(io.BytesIO(data))
    list(r)
    assert r.records_seen == 22 and r.records_corrupt == 1 and r.tail_bytes == 17


def test_file_source_and_record_count_patched_on_close(tmp_path):
    b = _lifecycle(2)
    p = tmp_path / "x.smclog"
    b.write(p)
    assert struct.unpack_from("<Q", p.read_bytes(), 40)[0] == len(b.records)
    with SmcLogReader(p) as r:
        assert [i.seq for i in r] == list(range(len(b.records)))
        assert r.name == str(p)


def test_import_hand_written_jsonl_defaults_and_keep_crc():
    lines = [
        '{"type":"header","boot_id":"00000000-0000-0000-0000-000000000001","created_ns":5}',
        '{"x0":"0xf0000001","x1":0,"x5":"0x42000041858000","x6":"0x500074b5503510","ret":"0x0"}',
        '{"x0":"0x70000001","x1":1,"x2":7,"crc32":"0xdeadbeef"}',
        '# a comment', '',
        '{"type":"anomaly","kind":"crc"}',
    ]
    out = io.BytesIO()
    assert import_jsonl(lines, out) == 2
    header, items = read_log(out.getvalue())
    assert header.boot_id == uuid.UUID(int=1) and header.created_ns == 5
    assert [i.seq for i in items] == [0, 1] and items[0].rflags == 1 and items[1].rflags == 0
    out2 = io.BytesIO()
    import_jsonl(lines, out2, keep_crc=True)
    _, items2 = read_log(out2.getvalue())
    assert type(items2[1]) is Corrupt


@pytest.mark.parametrize("line,msg", [
    ("not json", "not JSON"),
    ("[1,2]", "JSON object"),
    ('{"x0": "zz"}', "not a number"),
    ('{"x0": -1}', "does not fit"),
    ('{"cpu": 70000}', "does not fit"),
    ('{"type":"header","boot_id":"nope"}', "not a UUID"),
    ('{"type":"header","record_size":10}', "cannot write"),
])
def test_import_rejects_bad_lines(line, msg):
    with pytest.raises(LogFormatError, match=msg):
        import_jsonl([line], io.BytesIO())
