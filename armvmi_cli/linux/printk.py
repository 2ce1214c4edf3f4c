"""The kernel log, read from memory (``dmesg``).

5.10+ kernels keep it in the lockless ring buffer (kernel/printk/
printk_ringbuffer.c): ``prb`` points at a ``printk_ringbuffer`` whose
descriptor ring (``descs``/``infos``, 2^count_bits each, ids from ``tail_id``
to ``head_id``) indexes a text data ring (2^size_bits bytes of blocks, each
an ``unsigned long`` id followed by the text).  A descriptor is readable when
its state is committed or finalized and its id is the one expected in that
slot; a data block must carry the same id.  Records the ring has overwritten
are simply not there; a torn one is skipped with a warning.

Older kernels have ``log_buf`` of ``struct printk_log`` records; that layout
is read when the type model has ``printk_log``.

``prb`` is in VMCOREINFO (``SYMBOL(prb)``), so no System.map is needed; code
references from ``vprintk_store`` are the fallback.
"""

from __future__ import annotations

import struct

from ..errors import ArmvmiError, SymbolError
from ..view import record

DESC_SV_BITS = 64
DESC_FLAGS_SHIFT = DESC_SV_BITS - 2
DESC_ID_MASK = (1 << DESC_FLAGS_SHIFT) - 1
DESC_COMMITTED, DESC_FINALIZED, DESC_REUSABLE = 1, 2, 3
MAX_COUNT_BITS = 24  # 16 M descriptors: far beyond any log_buf_len
MAX_SIZE_BITS = 31


@record
class LogRecord:
    seq: int
    ts: float  # seconds since boot, as dmesg shows it
    level: int
    facility: int
    caller: str  # "T<tid>" (task) or "C<cpu>" (other context), as printk's caller id
    text: str
    ts_nsec: int = 0

    @property
    def raw(self) -> str:
        """The line as ``dmesg -r`` / klogctl print it: ``<prio>[  secs.usecs] text``
        (a multi-line record: each line with the prefix, as the kernel's syslog output)."""
        prefix = f"<{self.facility << 3 | self.level}>[{self.ts_nsec // 10**9:5d}.{self.ts_nsec % 10**9 // 1000:06d}] "
        return "\n".join(prefix + line for line in self.text.split("\n"))


def _caller(cid: int) -> str:
    return f"C{cid & 0x7FFFFFFF}" if cid & 0x80000000 else f"T{cid}"


def find_prb(kernel) -> int:
    """The address of the ``printk_ringbuffer`` (``*prb``)."""
    from ..host.adrp import find_data

    def valid(a):
        p = kernel.read_u64(a)
        rb = kernel.object("printk_ringbuffer", p)
        return 0 < rb.desc_ring.count_bits <= MAX_COUNT_BITS and 0 < rb.text_data_ring.size_bits <= MAX_SIZE_BITS

    a = find_data(kernel, "prb", ("vprintk_store", "printk_get_next_message", "syslog_print", "kmsg_dump_get_line"), valid)
    if a is None:
        raise SymbolError("prb not found (no symbol, not in VMCOREINFO, no code reference validated)")
    return kernel.read_u64(a)


def prb_records(kernel, rb_addr: int, problems: list) -> list[LogRecord]:
    rb = kernel.object("printk_ringbuffer", rb_addr)
    dr, tr = rb.desc_ring, rb.text_data_ring
    count_bits, size_bits = dr.count_bits, tr.size_bits
    if not (0 < count_bits <= MAX_COUNT_BITS and 0 < size_bits <= MAX_SIZE_BITS):
        raise ArmvmiError(f"printk ring buffer at {rb_addr:#x} is corrupt (count_bits {count_bits}, size_bits {size_bits})")
    count, size = 1 << count_bits, 1 << size_bits
    desc_size = kernel.type("prb_desc").resolve().size
    info_size = kernel.type("printk_info").resolve().size
    o_sv = kernel.offsetof("prb_desc", "state_var")
    o_lpos = kernel.offsetof("prb_desc", "text_blk_lpos")
    o_seq, o_ts = kernel.offsetof("printk_info", "seq"), kernel.offsetof("printk_info", "ts_nsec")
    o_len, o_fac = kernel.offsetof("printk_info", "text_len"), kernel.offsetof("printk_info", "facility")
    o_caller = kernel.offsetof("printk_info", "caller_id")
    lvl = kernel.type("printk_info").resolve().fields["level"]
    o_lvl, lvl_shift, lvl_bits = lvl.offset, (lvl.bit_offset or 0) % 8, lvl.bit_size or 3
    head_id = int(dr.head_id.counter) & DESC_ID_MASK
    tail_id = int(dr.tail_id.counter) & DESC_ID_MASK
    descs = kernel.read(int(dr.descs), count * desc_size)
    infos = kernel.read(int(dr.infos), count * info_size)
    data_addr = int(tr.data)
    data = kernel.read(data_addr, size)
    n = ((head_id - tail_id) & DESC_ID_MASK) + 1
    if n > count:
        problems.append(f"printk ring: head id {head_id:#x} and tail id {tail_id:#x} are {n} apart, more than the "
                        f"{count} descriptors; reading the last {count}")
        n, tail_id = count, (head_id - count + 1) & DESC_ID_MASK
    out = []
    torn = 0
    for k in range(n):
        did = (tail_id + k) & DESC_ID_MASK
        slot = did % count
        sv, begin, nxt = struct.unpack_from("<QQQ", descs, slot * desc_size + o_sv)
        if o_lpos != o_sv + 8:
            begin, nxt = struct.unpack_from("<QQ", descs, slot * desc_size + o_lpos)
        state = sv >> DESC_FLAGS_SHIFT & 3
        if (sv & DESC_ID_MASK) != did or state not in (DESC_COMMITTED, DESC_FINALIZED):
            if (sv & DESC_ID_MASK) == did and (state == DESC_REUSABLE or (state == 0 and did == head_id)):
                continue  # already freed (the ring's initial descriptor too), or the newest, still being written
            torn += 1
            problems.append(f"printk descriptor {did:#x} (slot {slot}) skipped: state_var {sv:#x} "
                            f"({'id mismatch' if (sv & DESC_ID_MASK) != did else f'state {state}'})")
            continue
        ib = slot * info_size
        seq, ts = struct.unpack_from("<QQ", infos, ib + o_seq)[0], struct.unpack_from("<Q", infos, ib + o_ts)[0]
        text_len = struct.unpack_from("<H", infos, ib + o_len)[0]
        fac = infos[ib + o_fac]
        level = infos[ib + o_lvl] >> lvl_shift & ((1 << lvl_bits) - 1)
        cid = struct.unpack_from("<I", infos, ib + o_caller)[0]
        text = _text(data, size_bits, begin, nxt, text_len, did)
        if text is None:
            torn += 1
            problems.append(f"printk record seq {seq} (descriptor {did:#x}) skipped: its text block "
                            f"[{begin:#x}, {nxt:#x}) is inconsistent")
            continue
        out.append(LogRecord(seq=seq, ts=ts / 1e9, level=level, facility=fac, caller=_caller(cid),
                             text=text.decode("utf-8", "replace"), ts_nsec=ts))
    out.sort(key=lambda r: r.seq)
    return out


def _text(data: bytes, size_bits: int, begin: int, nxt: int, text_len: int, did: int):
    """The record's text from the data ring (kernel/printk/printk_ringbuffer.c get_data())."""
    size = 1 << size_bits
    if begin & 1:  # data-less block (FAILED_LPOS / EMPTY_LINE_LPOS)
        return b""
    wraps_b, wraps_n = begin >> size_bits, nxt >> size_bits
    if wraps_b == wraps_n:
        off, n = begin & (size - 1), nxt - begin
    elif (begin + size) >> size_bits == wraps_n:
        off, n = 0, nxt & (size - 1)  # wrapped: the block was written at the start of the ring
    else:
        return None
    if n < 8 or off + n > size:
        return None
    if struct.unpack_from("<Q", data, off)[0] & DESC_ID_MASK != did:
        return None  # the block belongs to another (newer) record
    return data[off + 8 : off + 8 + min(text_len, n - 8)]


def log_buf_records(kernel, problems: list) -> list[LogRecord]:
    """Pre-5.10 ``log_buf`` of ``struct printk_log`` records (needs the symbols)."""
    buf = kernel.read_u64(kernel.symbol("log_buf"))
    size = kernel.read_u32(kernel.symbol("log_buf_len"))
    first, nxt = kernel.read_u32(kernel.symbol("log_first_idx")), kernel.read_u32(kernel.symbol("log_next_idx"))
    seq = kernel.read_u64(kernel.symbol("log_first_seq"))
    if not 0 < size <= 1 << MAX_SIZE_BITS or first >= size or nxt >= size:
        raise ArmvmiError(f"log_buf is corrupt (len {size}, first {first}, next {nxt})")
    data = kernel.read(buf, size)
    t = kernel.type("printk_log").resolve()
    o = {f: kernel.offsetof("printk_log", f) for f in ("ts_nsec", "len", "text_len", "facility")}
    lvl = t.fields["level"]
    hdr = t.size
    out, idx = [], first
    for _ in range(size // max(hdr, 1) + 1):
        if idx == nxt and out:
            break
        if idx + hdr > size:
            problems.append(f"log_buf record at {idx:#x} runs off the buffer")
            break
        ln = struct.unpack_from("<H", data, idx + o["len"])[0]
        if ln == 0:  # wrap marker
            idx = 0
            if idx == nxt:
                break
            continue
        if ln < hdr or idx + ln > size:
            problems.append(f"log_buf record at {idx:#x} has impossible length {ln}")
            break
        ts = struct.unpack_from("<Q", data, idx + o["ts_nsec"])[0]
        tl = struct.unpack_from("<H", data, idx + o["text_len"])[0]
        lv = data[idx + lvl.offset] >> ((lvl.bit_offset or 0) % 8) & 7
        text = data[idx + hdr : idx + hdr + min(tl, ln - hdr)]
        out.append(LogRecord(seq=seq, ts=ts / 1e9, level=lv, facility=data[idx + o["facility"]], caller="",
                             text=text.decode("utf-8", "replace"), ts_nsec=ts))
        seq += 1
        idx += ln
        if idx == nxt:
            break
    return out


def kernel_log(kernel):
    """(records, problems, complete) of the kernel's log buffer."""
    problems: list[str] = []
    if kernel.types is not None and kernel.types.get("printk_ringbuffer") is not None:
        recs = prb_records(kernel, find_prb(kernel), problems)
    elif kernel.types is not None and kernel.types.get("printk_log") is not None:
        recs = log_buf_records(kernel, problems)
    else:
        raise SymbolError("the type model has neither printk_ringbuffer nor printk_log")
    return recs, problems, not problems


def dmesg_view(kernel):
    from ..view import ViewResult

    try:
        recs, problems, complete = kernel_log(kernel)
    except ArmvmiError as e:  # one VM's unreadable log must not hide the others'
        return ViewResult(problems=[f"kernel log not readable: {e}"], complete=False)
    return ViewResult(records=recs, problems=problems, complete=complete)


def _view():
    from ..view import Column, View

    return View("log", "the kernel log (printk ring buffer)", collect=dmesg_view, columns=(
        Column("seq", align="right", priority=2),
        Column("ts_nsec", "TIME", align="right", fmt=lambda v: f"{v // 10**9}.{v % 10**9 // 1000:06d}"),
        Column("level", "LVL", align="right", priority=1), Column("caller", priority=3), Column("text")))


DMESG = _view()
