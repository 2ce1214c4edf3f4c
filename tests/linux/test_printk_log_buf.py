"""The pre-5.10 ``log_buf`` of ``struct printk_log`` records, synthetic: the
records in order from log_first_idx, across the wrap marker, and a corrupt
length that ends the walk with a warning instead of looping."""

from __future__ import annotations

import struct

import pytest

from armvmi_cli.errors import ArmvmiError, MemoryReadError
from armvmi_cli.linux.printk import log_buf_records
from armvmi_cli.symbols.types import Field, IntType, StructType

U8, U16, U64 = IntType("u8", 1), IntType("u16", 2), IntType("u64", 8)
# include/linux/printk.h (4.x): ts_nsec, len, text_len, dict_len, facility, flags:5, level:3
PRINTK_LOG = StructType("printk_log", 16, False, [
    Field("ts_nsec", 0, U64, 0), Field("len", 8, U16, 64), Field("text_len", 10, U16, 80), Field("dict_len", 12, U16, 96),
    Field("facility", 14, U8, 112), Field("flags", 15, U8, 120, 5), Field("level", 15, U8, 125, 3)])
BUF, LEN = 0x10_0000, 256
SYMS = {"log_buf": 0x1000, "log_buf_len": 0x1008, "log_first_idx": 0x1010, "log_next_idx": 0x1018, "log_first_seq": 0x1020}


def _rec(ts, level, text, facility=0):
    body = text.encode()
    ln = (16 + len(body) + 7) & ~7
    return struct.pack("<QHHHBB", ts, ln, len(body), 0, facility, level << 5) + body + b"\0" * (ln - 16 - len(body))


class FakeKernel:
    def __init__(self, buf: bytes, first: int, nxt: int, seq: int = 7):
        self.mem = {SYMS["log_buf"]: BUF.to_bytes(8, "little"), SYMS["log_buf_len"]: LEN.to_bytes(4, "little"),
                    SYMS["log_first_idx"]: first.to_bytes(4, "little"), SYMS["log_next_idx"]: nxt.to_bytes(4, "little"),
                    SYMS["log_first_seq"]: seq.to_bytes(8, "little"), BUF: buf}

    def read(self, va, n):
        for base, data in self.mem.items():
            if base <= va and va + n <= base + len(data):
                return data[va - base : va - base + n]
        raise MemoryReadError(va, n, "test", "hole")

    def read_u64(self, va):
        return int.from_bytes(self.read(va, 8), "little")

    def read_u32(self, va):
        return int.from_bytes(self.read(va, 4), "little")

    def symbol(self, name):
        return SYMS[name]

    def type(self, name):
        assert name == "printk_log"
        return PRINTK_LOG

    def offsetof(self, t, f):
        return PRINTK_LOG.fields[f].offset


def test_records_across_the_wrap():
    b, c = _rec(2_000_000_000, 4, "second line", facility=1), _rec(3_000_001_000, 3, "third")
    # b near the end, followed by a zero-length wrap marker; c at the start
    start_b = LEN - len(b) - 16
    buf = bytearray(LEN)
    buf[start_b : start_b + len(b)] = b
    buf[0 : len(c)] = c
    k = FakeKernel(bytes(buf), first=start_b, nxt=len(c))
    problems = []
    recs = log_buf_records(k, problems)
    assert not problems
    assert [(r.seq, r.text, r.level, r.facility) for r in recs] == [(7, "second line", 4, 1), (8, "third", 3, 0)]
    assert recs[0].raw == "<12>[    2.000000] second line" and recs[1].ts == pytest.approx(3.000001)


def test_corrupt_length_ends_with_a_warning():
    a = bytearray(_rec(5, 6, "ok") + _rec(6, 6, "bad"))
    struct.pack_into("<H", a, len(_rec(5, 6, "ok")) + 8, 9)  # second record: len 9 < header
    buf = bytes(a) + b"\0" * (LEN - len(a))
    problems = []
    recs = log_buf_records(FakeKernel(buf, 0, len(a) + 64), problems)
    assert [r.text for r in recs] == ["ok"] and "impossible length" in problems[0]


def test_corrupt_indices_are_an_error():
    with pytest.raises(ArmvmiError, match="corrupt"):
        log_buf_records(FakeKernel(b"\0" * LEN, first=LEN + 8, nxt=0), [])


def test_multiline_record_prints_each_line_with_the_prefix():
    from armvmi_cli.linux.printk import LogRecord

    r = LogRecord(seq=1, ts=1.5, level=6, facility=0, caller="T1", text="first\nsecond", ts_nsec=1_500_000_000)
    assert r.raw.splitlines() == ["<6>[    1.500000] first", "<6>[    1.500000] second"]
