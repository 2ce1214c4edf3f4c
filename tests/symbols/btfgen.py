"""A tiny BTF writer for synthetic tests: types are added in id order."""

from __future__ import annotations

import struct

KIND = dict(INT=1, PTR=2, ARRAY=3, STRUCT=4, UNION=5, ENUM=6, FWD=7, TYPEDEF=8, VOLATILE=9, CONST=10,
            RESTRICT=11, FUNC=12, FUNC_PROTO=13, VAR=14, DATASEC=15, FLOAT=16, DECL_TAG=17, TYPE_TAG=18, ENUM64=19)


class BtfWriter:
    def __init__(self):
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.next_id = 1

    def s(self, text: str) -> int:
        if not text:
            return 0
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def _t(self, name, kind, vlen=0, kflag=0, size_type=0, trailer=b"") -> int:
        info = (kflag << 31) | (KIND[kind] << 24) | vlen
        self.types += struct.pack("<III", self.s(name), info, size_type) + trailer
        tid = self.next_id
        self.next_id += 1
        return tid

    def int(self, name, size, signed=False, char=False, boolean=False, bits=None, offset=0):
        enc = (1 if signed else 0) | (2 if char else 0) | (4 if boolean else 0)
        return self._t(name, "INT", size_type=size, trailer=struct.pack("<I", enc << 24 | offset << 16 | (bits or size * 8)))

    def ptr(self, target):
        return self._t("", "PTR", size_type=target)

    def array(self, elem, n, index_type=1):
        return self._t("", "ARRAY", trailer=struct.pack("<III", elem, index_type, n))

    def struct(self, name, size, members, union=False, kflag=None):
        """members: (name, type, bit_offset[, bitfield_size])"""
        kf = kflag if kflag is not None else int(any(len(m) > 3 and m[3] for m in members))
        tr = b""
        for m in members:
            off = m[2] | ((m[3] if len(m) > 3 else 0) << 24) if kf else m[2]
            tr += struct.pack("<III", self.s(m[0]), m[1], off)
        return self._t(name, "UNION" if union else "STRUCT", len(members), kf, size, tr)

    def enum(self, name, size, values, signed=False):
        tr = b"".join(struct.pack("<Ii", self.s(n), v) for n, v in values)
        return self._t(name, "ENUM", len(values), int(signed), size, tr)

    def enum64(self, name, size, values, signed=False):
        tr = b"".join(struct.pack("<III", self.s(n), v & 0xFFFFFFFF, (v >> 32) & 0xFFFFFFFF) for n, v in values)
        return self._t(name, "ENUM64", len(values), int(signed), size, tr)

    def fwd(self, name, union=False):
        return self._t(name, "FWD", kflag=int(union))

    def typedef(self, name, target):
        return self._t(name, "TYPEDEF", size_type=target)

    def qual(self, kind, target):
        return self._t("", kind, size_type=target)

    def func_proto(self, ret, params):
        tr = b"".join(struct.pack("<II", self.s(n), t) for n, t in params)
        return self._t("", "FUNC_PROTO", len(params), 0, ret, tr)

    def func(self, name, proto, linkage=1):
        return self._t(name, "FUNC", linkage, 0, proto)

    def var(self, name, t, linkage=1):
        return self._t(name, "VAR", size_type=t, trailer=struct.pack("<I", linkage))

    def datasec(self, name, size, vars_):
        tr = b"".join(struct.pack("<III", *v) for v in vars_)
        return self._t(name, "DATASEC", len(vars_), 0, size, tr)

    def float(self, name, size):
        return self._t(name, "FLOAT", size_type=size)

    def decl_tag(self, name, target, component=-1):
        return self._t(name, "DECL_TAG", size_type=target, trailer=struct.pack("<i", component))

    def type_tag(self, name, target):
        return self._t(name, "TYPE_TAG", size_type=target)

    def build(self, magic=0xEB9F, version=1) -> bytes:
        hdr_len = 24
        return struct.pack("<HBBIIIII", magic, version, 0, hdr_len, 0, len(self.types), len(self.types), len(self.strings)) + bytes(self.types) + bytes(self.strings)


def sample() -> tuple[bytes, dict]:
    """Every BTF kind once, in a kernel-like shape; returns (blob, ids)."""
    w = BtfWriter()
    ids = {}
    ids["int"] = w.int("int", 4, signed=True)
    ids["uint"] = w.int("unsigned int", 4)
    ids["char"] = w.int("char", 1, char=True)
    ids["bool"] = w.int("_Bool", 1, boolean=True)
    ids["u64"] = w.int("long long unsigned int", 8)
    ids["list_head"] = lh = w.next_id
    lhp = lh + 1
    w.struct("list_head", 16, [("next", lhp, 0), ("prev", lhp, 64)])
    assert w.ptr(lh) == lhp
    ids["u64_t"] = w.typedef("u64", ids["u64"])
    ids["cchar"] = w.qual("CONST", ids["char"])
    ids["vint"] = w.qual("VOLATILE", ids["int"])
    ids["rptr"] = w.qual("RESTRICT", w.ptr(ids["cchar"]))
    ids["comm"] = w.array(ids["char"], 16, ids["int"])
    ids["upid"] = w.struct("upid", 16, [("nr", ids["int"], 0), ("ns", w.ptr(0), 64)])
    ids["numbers"] = w.array(ids["upid"], 1, ids["int"])
    ids["pid"] = w.struct("pid", 24, [("level", ids["uint"], 0), ("numbers", ids["numbers"], 64)])
    ids["pid_type"] = w.enum("pid_type", 4, [("PIDTYPE_PID", 0), ("PIDTYPE_TGID", 1), ("PIDTYPE_MAX", 4)])
    ids["neg"] = w.enum("neg", 4, [("NEG_ONE", -1)], signed=True)
    ids["big"] = w.enum64("big", 8, [("BIG", 1 << 40), ("TOP", (1 << 64) - 1)])
    ids["sbig"] = w.enum64("sbig", 8, [("SMIN", -(1 << 63))], signed=True)
    ids["fwd"] = w.fwd("mm_struct")
    ids["fwdu"] = w.fwd("some_union", union=True)
    ids["anon_u"] = w.struct("", 8, [("x", ids["int"], 0), ("name", ids["rptr"], 0)], union=True)
    ids["anon_s"] = w.struct("", 24, [("prio", ids["int"], 0), ("", ids["anon_u"], 64), ("tasks", lh, 128)], kflag=0)
    # bitfields with kind_flag: a:3 @0, b:7 @3, c:1 @10
    ids["flags"] = w.struct("flags", 4, [("a", ids["uint"], 0, 3), ("b", ids["uint"], 3, 7), ("c", ids["uint"], 10, 1)])
    # legacy (no kind_flag) bitfield: size in the INT encoding
    ids["int5"] = w.int("unsigned int", 4, bits=5, offset=0)
    ids["legacy"] = w.struct("legacy", 4, [("lo", ids["int5"], 0), ("hi", ids["int5"], 5)], kflag=0)
    ids["proto"] = w.func_proto(ids["int"], [("pid", ids["int"]), ("", 0)])
    ids["func"] = w.func("do_exit", ids["proto"])
    ids["fptr"] = w.ptr(ids["proto"])
    ids["float"] = w.float("double", 8)
    ids["tagged"] = w.type_tag("user", ids["int"])
    ids["task_struct"] = w.struct("task_struct", 96, [
        ("__state", ids["vint"], 0),
        ("", ids["anon_s"], 64),            # randomized_struct_fields_start
        ("thread_pid", w.ptr(ids["pid"]), 256),
        ("comm", ids["comm"], 320),
        ("mm", w.ptr(ids["fwd"]), 448),
        ("fn", ids["fptr"], 512),
        ("fl", ids["flags"], 576),
        ("start_time", ids["u64_t"], 640),
        ("uptr", w.ptr(ids["tagged"]), 704),
    ])
    ids["decl_tag"] = w.decl_tag("kfunc", ids["func"])
    v = w.var("init_task", ids["task_struct"])
    ids["datasec"] = w.datasec(".data", 96, [(v, 0, 96)])
    ids["task_t"] = w.typedef("task_t", ids["task_struct"])
    return w.build(), ids
