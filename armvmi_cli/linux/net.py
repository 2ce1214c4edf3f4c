"""Sockets, two ways: the kernel's own tables and the processes' fds.

``/proc/net/{tcp,tcp6,udp,udp6,raw,raw6,unix}`` walk the kernel's hash
tables; ``lsof`` walks fd tables.  Enumerating both and joining them on the
``struct sock`` gives each socket its owners (pid/comm/fd, all of them) and
shows a socket that no visible process owns.

The tables, found without data symbols (Debian's kallsyms has functions only):
- TCP: ``net->ipv4.tcp_death_row.hashinfo`` of every network namespace (what
  /proc/net/tcp reads on 6.1), else ``sk->sk_prot->h.hashinfo`` of any TCP
  socket from an fd; ``lhash2`` (listeners) then ``ehash`` (established,
  TIME_WAIT and request socks), as /proc lists them;
- UDP: ``sk_prot->h.udp_table`` of any UDP socket, else the ``udp_table`` that
  ``udp4_lib_lookup``'s code loads (ADRP+ADD), validated by structure;
- raw: ``sk_prot->h.raw_hash``, else the table ``raw_local_deliver`` /
  ``raw6_local_deliver`` load;
- unix: the per-namespace ``net->unx.table.buckets`` (5.17+).
Network namespaces: every process's ``nsproxy->net_ns``, every socket's
``sk_net``, and the ring of ``net->list`` around init_net.

``orphan-socket`` (warning): a socket in a kernel table that no visible
process (task list or PID IDR) holds in an fd, although it is a full socket
attached to a user ``struct socket`` with a file.  Not orphans, by rule:
TIME_WAIT and request socks (no struct socket by design); sockets with
``sk_socket == NULL`` (closed by their process and finishing the TCP shutdown,
or accepted-queue children not yet accept()ed -- their listener has the
owner); kernel sockets (``sk_kern_sock``).  A socket whose process was hidden
from the task list but is still in the PID IDR *is* owned by a visible
process: its owner is listed (marked hidden), and the hiding itself is ps's
``hidden-process`` finding, not a second one here.
"""

from __future__ import annotations

import socket as _socket
from dataclasses import field

from ..errors import ArmvmiError
from ..view import addr, record

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
_FAMILY = {AF_UNIX: "unix", AF_INET: "inet", AF_INET6: "inet6", AF_NETLINK: "netlink", AF_PACKET: "packet",
           4: "ipx", 5: "appletalk", 15: "key", 38: "alg", 40: "vsock", 44: "xdp"}
IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE = 6, 17, 136
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_SEQPACKET = 1, 2, 3, 5
_UNIX_TYPE = {1: "STREAM", 2: "DGRAM", 5: "SEQPACKET"}
_UNIX_STATE = {1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED", 4: "DISCONNECTING"}
SS_UNCONNECTED, SS_CONNECTING, SS_CONNECTED, SS_DISCONNECTING = 1, 2, 3, 4
__SO_ACCEPTCON = 1 << 16

# include/net/tcp_states.h
TCP_ESTABLISHED, TCP_SYN_RECV, TCP_TIME_WAIT, TCP_CLOSE, TCP_LISTEN, TCP_NEW_SYN_RECV = 1, 3, 6, 7, 10, 12
_TCP_STATE = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}

UNIX_HASH_SIZE = 512  # include/net/af_unix.h (256 * 2), the per-netns table since 5.17
MAX_BUCKETS = 1 << 26
MAX_CHAIN = 1 << 16  # sockets in one hash chain: more is a cycle or garbage
KERNEL_VA = 0xFFFF_0000_0000_0000


@record
class SockRow:
    proto: str  # tcp tcp6 udp udp6 udplite udplite6 raw raw6 unix, or the family of another socket
    local_addr: str | None
    local_port: int | None
    remote_addr: str | None
    remote_port: int | None
    state: str
    inode: int
    uid: int | None
    rx_queue: int | None
    tx_queue: int | None
    owners: list = field(default_factory=list)  # [{pid, comm, fd[, hidden]}], by pid and fd
    path: str | None = None  # unix: the bound name (@ for abstract)
    type: str | None = None  # unix: STREAM/DGRAM/SEQPACKET
    refcount: int | None = None  # unix: sk_refcnt (/proc/net/unix RefCount)
    flags: int | None = None  # unix: __SO_ACCEPTCON when listening
    netns: int | None = None  # network namespace inode number
    sock: int = addr(0)  # struct sock * (or sock_common * of a TIME_WAIT / request sock)
    seen_by: list = field(default_factory=list)  # "table" (a kernel hash table), "fd" (a process's fd table)


class _Walk:
    def __init__(self, problems: list):
        self.problems = problems
        self.complete = True

    def fail(self, msg: str) -> None:
        self.problems.append(msg)
        self.complete = False


def _hlist(kernel, first: int, node_off: int, walk: _Walk, what: str, nulls: bool):
    """Entry addresses of an ``hlist`` (NULL-terminated) or ``hlist_nulls`` (odd end marker) chain."""
    node, seen = first, set()
    while node and not (nulls and node & 1):
        if node in seen or len(seen) >= MAX_CHAIN:
            walk.fail(f"{what}: chain loops or is too long at {node:#x}")
            return
        if node < KERNEL_VA:
            walk.fail(f"{what}: chain points outside the kernel ({node:#x})")
            return
        seen.add(node)
        try:
            nxt = kernel.read_u64(node)
        except ArmvmiError as e:
            walk.fail(f"{what}: chain node {node:#x} unreadable: {e}")
            return
        yield node - node_off
        node = nxt


def _buckets(kernel, base: int, count: int, stride: int, walk: _Walk, what: str) -> bytes | None:
    if not 0 < count <= MAX_BUCKETS or base < KERNEL_VA:
        walk.fail(f"{what}: impossible table ({count} buckets at {base:#x})")
        return None
    try:
        return kernel.read(base, count * stride)
    except ArmvmiError as e:
        walk.fail(f"{what}: bucket array unreadable: {e}")
        return None


def _u64(raw: bytes, off: int) -> int:
    return int.from_bytes(raw[off : off + 8], "little")


# -- addresses ---------------------------------------------------------------------------------------

def _ip4(kernel, va: int) -> str:
    return _socket.inet_ntop(_socket.AF_INET, kernel.read(va, 4))


def _ip6(kernel, va: int) -> str:
    return _socket.inet_ntop(_socket.AF_INET6, kernel.read(va, 16))


def _be16(v: int) -> int:
    return ((v & 0xFF) << 8) | (v >> 8 & 0xFF)


class _Layout:
    """Offsets in sock_common and friends, once per kernel."""

    def __init__(self, kernel):
        off = lambda t, m: kernel.offsetof(t, m)  # noqa: E731
        base = off("sock", "__sk_common")
        c = lambda m: base + off("sock_common", m)  # noqa: E731
        self.family, self.state, self.num, self.dport = c("skc_family"), c("skc_state"), c("skc_num"), c("skc_dport")
        self.saddr, self.daddr = c("skc_rcv_saddr"), c("skc_daddr")
        self.v6_saddr = c("skc_v6_rcv_saddr") if kernel.has_member("sock_common", "skc_v6_rcv_saddr") else None
        self.v6_daddr = c("skc_v6_daddr") if kernel.has_member("sock_common", "skc_v6_daddr") else None
        self.net = c("skc_net")
        self.nulls_node = c("skc_nulls_node")
        self.node = c("skc_node")
        self.refcnt = c("skc_refcnt")
        self.prot = c("skc_prot")


def _layout(kernel) -> _Layout:
    lay = getattr(kernel, "_net_layout", None)
    if lay is None:
        lay = kernel._net_layout = _Layout(kernel)
    return lay


def _sock_inode(kernel, sk) -> int:
    """sock_i_ino: the inode of the socket's ``struct socket`` (0 without one)."""
    s = int(sk.sk_socket)
    if not s:
        return 0
    return int(kernel.container_of(s, "socket_alloc", "socket").vfs_inode.i_ino)


def _signed32(v: int) -> int:
    v &= 0xFFFF_FFFF
    return v - (1 << 32) if v >> 31 else v


def _inet_row(kernel, sk_addr: int, lay: _Layout, proto_hint: str | None = None) -> SockRow:
    """One /proc/net/{tcp,udp,raw}[6] line's facts, from any sock_common."""
    family = int.from_bytes(kernel.read(sk_addr + lay.family, 2), "little")
    state = kernel.read(sk_addr + lay.state, 1)[0]
    num = int.from_bytes(kernel.read(sk_addr + lay.num, 2), "little")
    dport = _be16(int.from_bytes(kernel.read(sk_addr + lay.dport, 2), "little"))
    if family == AF_INET6 and lay.v6_saddr is not None:
        la, ra = _ip6(kernel, sk_addr + lay.v6_saddr), _ip6(kernel, sk_addr + lay.v6_daddr)
    else:
        la, ra = _ip4(kernel, sk_addr + lay.saddr), _ip4(kernel, sk_addr + lay.daddr)
    six = "6" if family == AF_INET6 else ""
    row = SockRow(proto="", local_addr=la, local_port=num, remote_addr=ra, remote_port=dport, state="",
                  inode=0, uid=0, rx_queue=0, tx_queue=0, sock=sk_addr)
    if state in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV):
        # not a full sock: inet_timewait_sock / request_sock share only sock_common
        row.proto = "tcp" + six
        if state == TCP_TIME_WAIT:
            tw = kernel.object("inet_timewait_sock", sk_addr)
            row.state = _TCP_STATE.get(int(tw.tw_substate), str(int(tw.tw_substate)))
        else:
            row.state = _TCP_STATE[TCP_SYN_RECV]  # get_openreq4 prints TCP_SYN_RECV
            req = kernel.object("request_sock", sk_addr)
            listener = int(req.rsk_listener) if req.has_member_("rsk_listener") else int(req.member_("__req_common.skc_listener"))
            row.uid = int(kernel.object("sock", listener).sk_uid.val) if listener else 0
        row.netns = _net_inum(kernel, kernel.read_u64(sk_addr + lay.net))
        return row
    sk = kernel.object("sock", sk_addr)
    protocol, stype = int(sk.sk_protocol), int(sk.sk_type)
    row.uid = int(sk.sk_uid.val)
    row.inode = _sock_inode(kernel, sk)
    row.netns = _net_inum(kernel, kernel.read_u64(sk_addr + lay.net))
    if stype == SOCK_RAW:
        row.proto = "raw" + six
        row.state = _udp_state(state)
        row.local_port = protocol  # /proc/net/raw prints the protocol as the local "port"
        row.rx_queue, row.tx_queue = _rmem(sk), _wmem(sk)
    elif protocol in (IPPROTO_UDP, IPPROTO_UDPLITE) and stype == SOCK_DGRAM:
        row.proto = ("udp" if protocol == IPPROTO_UDP else "udplite") + six
        row.state = _udp_state(state)
        u = kernel.object("udp_sock", sk_addr)
        row.rx_queue = _rmem(sk) - int(u.forward_deficit)
        row.tx_queue = _wmem(sk)
    elif protocol == IPPROTO_TCP or proto_hint == "tcp":
        row.proto = "tcp" + six
        row.state = _TCP_STATE.get(state, str(state))
        tp = kernel.object("tcp_sock", sk_addr)
        if state == TCP_LISTEN:
            row.rx_queue = int(sk.sk_ack_backlog)
        else:
            row.rx_queue = max(_signed32(tp.rcv_nxt - tp.copied_seq), 0)
        row.tx_queue = _signed32(tp.write_seq - tp.snd_una)
    else:
        row.proto = f"{_FAMILY.get(family, str(family))}-{protocol}"
        row.state = _TCP_STATE.get(state, str(state))
    return row


def _udp_state(state: int) -> str:
    return {TCP_ESTABLISHED: "ESTABLISHED", TCP_CLOSE: "UNCONN"}.get(state, _TCP_STATE.get(state, str(state)))


def _rmem(sk) -> int:
    return int(sk.member_("sk_backlog.rmem_alloc.counter"))


def _wmem(sk) -> int:
    return int(sk.sk_wmem_alloc.refs.counter) - 1


def _net_inum(kernel, net: int) -> int | None:
    if not net:
        return None
    cache = _cache(kernel, "_net_inums")
    if net not in cache:
        try:
            cache[net] = int(kernel.object("net", net).ns.inum)
        except ArmvmiError:
            cache[net] = None
    return cache[net]


def _cache(kernel, name: str) -> dict:
    c = getattr(kernel, name, None)
    if c is None:
        c = {}
        setattr(kernel, name, c)
    return c


def _unix_row(kernel, sk_addr: int) -> SockRow:
    """af_unix.c unix_seq_show."""
    sk = kernel.object("sock", sk_addr)
    u = kernel.container_of(sk_addr, "unix_sock", "sk")
    state = int(sk.member_("__sk_common.skc_state"))
    has_socket = bool(int(sk.sk_socket))
    if has_socket:
        ss = SS_CONNECTED if state == TCP_ESTABLISHED else SS_UNCONNECTED
    else:
        ss = SS_CONNECTING if state == TCP_ESTABLISHED else SS_DISCONNECTING
    path = None
    a = int(u.addr)
    if a:
        ua = kernel.object("unix_address", a)
        n = int(ua.len) - kernel.offsetof("sockaddr_un", "sun_path")
        raw = kernel.read(ua.name.address_ + kernel.offsetof("sockaddr_un", "sun_path"), max(n, 0)) if n > 0 else b""
        if raw[:1] and raw[0]:
            raw = raw[: n - 1]  # a filesystem name: the length counts its NUL
            path = raw.decode("utf-8", "backslashreplace")
        else:
            path = "@" + raw[1:].replace(b"\0", b"@").decode("utf-8", "backslashreplace")
    stype = int(sk.sk_type)
    return SockRow(proto="unix", local_addr=None, local_port=None, remote_addr=None, remote_port=None,
                   state=_UNIX_STATE.get(ss, str(ss)), inode=_sock_inode(kernel, sk), uid=int(sk.sk_uid.val),
                   rx_queue=None, tx_queue=None, path=path, type=_UNIX_TYPE.get(stype, str(stype)),
                   refcount=int(sk.member_("__sk_common.skc_refcnt.refs.counter")),
                   flags=__SO_ACCEPTCON if state == TCP_LISTEN else 0,
                   netns=_net_inum(kernel, int(sk.member_("__sk_common.skc_net.net"))), sock=sk_addr)


# -- the tables ---------------------------------------------------------------------------------------

def _tcp_entries(kernel, hashinfo: int, walk: _Walk):
    """/proc/net/tcp order: every lhash2 bucket, then every ehash bucket."""
    lay = _layout(kernel)
    h = kernel.object("inet_hashinfo", hashinfo)
    what = f"TCP hash {hashinfo:#x}"
    if h.has_member_("lhash2") and int(h.lhash2):
        n = int(h.lhash2_mask) + 1
        stride = kernel.type("inet_listen_hashbucket").size
        t = kernel.type("inet_listen_hashbucket")
        nulls = "nulls_head" in t.fields
        head_off = kernel.offsetof("inet_listen_hashbucket", "nulls_head" if nulls else "head")
        # 6.1: listeners chain through skc_nulls_node; before, icsk_listen_portaddr_node
        node_off = lay.nulls_node if nulls else kernel.offsetof("inet_connection_sock", "icsk_listen_portaddr_node")
        raw = _buckets(kernel, int(h.lhash2), n, stride, walk, what + " lhash2")
        for i in range(n if raw else 0):
            first = _u64(raw, i * stride + head_off)
            yield from _hlist(kernel, first, node_off, walk, f"{what} lhash2[{i}]", nulls)
    n = int(h.ehash_mask) + 1
    raw = _buckets(kernel, int(h.ehash), n, 8, walk, what + " ehash")
    for i in range(n if raw else 0):
        yield from _hlist(kernel, _u64(raw, 8 * i), lay.nulls_node, walk, f"{what} ehash[{i}]", True)


def _udp_entries(kernel, table: int, walk: _Walk):
    lay = _layout(kernel)
    t = kernel.object("udp_table", table)
    n = int(t.mask) + 1
    stride = kernel.type("udp_hslot").size
    raw = _buckets(kernel, int(t.hash), n, stride, walk, f"UDP table {table:#x}")
    for i in range(n if raw else 0):
        yield from _hlist(kernel, _u64(raw, i * stride), lay.node, walk, f"UDP table {table:#x}[{i}]", False)


def _raw_entries(kernel, table: int, walk: _Walk):
    lay = _layout(kernel)
    h = kernel.object("raw_hashinfo", table)
    ht = h.ht
    n = len(ht)
    el = kernel.type("raw_hashinfo").fields["ht"].type.resolve().element.resolve()
    nulls = el.name == "hlist_nulls_head"
    raw = _buckets(kernel, ht.address_, n, 8, walk, f"raw hash {table:#x}")
    for i in range(n if raw else 0):
        yield from _hlist(kernel, _u64(raw, 8 * i), lay.nulls_node if nulls else lay.node, walk,
                          f"raw hash {table:#x}[{i}]", nulls)


def _unix_entries(kernel, net, walk: _Walk):
    lay = _layout(kernel)
    buckets = int(net.unx.table.buckets)
    what = f"unix table of netns {_net_inum(kernel, net.address_)}"
    raw = _buckets(kernel, buckets, UNIX_HASH_SIZE, 8, walk, what)
    for i in range(UNIX_HASH_SIZE if raw else 0):
        yield from _hlist(kernel, _u64(raw, 8 * i), lay.node, walk, f"{what}[{i}]", False)


def _valid_udp_table(kernel, va: int) -> bool:
    try:
        t = kernel.object("udp_table", va)
        mask, log, hash_, hash2 = int(t.mask), int(t.log), int(t.hash), int(t.hash2)
    except ArmvmiError:
        return False
    return (8 <= log <= 16 and mask + 1 == 1 << log and hash_ >= KERNEL_VA
            and hash2 == hash_ + (mask + 1) * kernel.type("udp_hslot").size)


def _valid_raw_hash(kernel, va: int, family: int) -> bool:
    """Every bucket NULL or a kernel pointer to a raw socket of ``family``."""
    try:
        h = kernel.object("raw_hashinfo", va)
        n = len(h.ht)
        raw = kernel.read(h.ht.address_, 8 * n)
    except ArmvmiError:
        return False
    lay = _layout(kernel)
    el = kernel.type("raw_hashinfo").fields["ht"].type.resolve().element.resolve()
    nulls = el.name == "hlist_nulls_head"
    for i in range(n):
        first = _u64(raw, 8 * i)
        if nulls and first == (i << 1 | 1) or not nulls and first == 0:
            continue
        if first < KERNEL_VA or first & 7:
            return False
        try:
            sk = first - (lay.nulls_node if nulls else lay.node)
            if int.from_bytes(kernel.read(sk + lay.family, 2), "little") != family:
                return False
        except ArmvmiError:
            return False
    return True


def _from_code(kernel, functions, valid, window: int = 0) -> list[int]:
    """Addresses the code of ``functions`` loads (ADRP+ADD/LDR) that pass ``valid``.
    GCC's section anchors make some references point at a neighbour of the
    object (anchor + offset in a later instruction), so with a strong
    structural check ``window`` bytes either side are tried as well."""
    from ..host.adrp import function_references

    out: list[int] = []
    for fn in functions:
        for a in function_references(kernel, fn):
            for c in [a] + [a + d for off in range(8, window + 1, 8) for d in (off, -off)]:
                if c not in out and valid(c):
                    out.append(c)
                    break
        if out:
            break
    return out


class _Tables:
    """The distinct socket tables, with how each was found."""

    def __init__(self):
        self.tcp: dict[int, str] = {}
        self.udp: dict[int, str] = {}
        self.raw: dict[int, str] = {}


def _proto_tables(kernel, tables: _Tables, sk_addr: int) -> None:
    """Follow a socket's ``sk_prot->h`` to its table (the robust route)."""
    lay = _layout(kernel)
    try:
        prot = kernel.read_u64(sk_addr + lay.prot)
        if not prot:
            return
        p = kernel.object("proto", prot)
        sk = kernel.object("sock", sk_addr)
        family = int.from_bytes(kernel.read(sk_addr + lay.family, 2), "little")
        if family not in (AF_INET, AF_INET6):
            return
        stype, protocol = int(sk.sk_type), int(sk.sk_protocol)
        h = p.h
        ptr = kernel.read_u64(h.address_)  # union: hashinfo / udp_table / raw_hash
        if not ptr:
            return
        if stype == SOCK_STREAM and protocol == IPPROTO_TCP:
            tables.tcp.setdefault(ptr, "sk_prot of a socket")
        elif stype == SOCK_DGRAM and protocol in (IPPROTO_UDP, IPPROTO_UDPLITE) and _valid_udp_table(kernel, ptr):
            tables.udp.setdefault(ptr, "sk_prot of a socket")
        elif stype == SOCK_RAW and _valid_raw_hash(kernel, ptr, family):
            tables.raw.setdefault(ptr, "sk_prot of a socket")
    except ArmvmiError:
        return


# -- network namespaces ----------------------------------------------------------------------------

def network_namespaces(kernel, procs, extra_nets, problems: list) -> list:
    """Every ``struct net`` reachable: processes' nsproxy, sockets' sk_net, init's,
    and the ``net->list`` ring through them (nodes that are not a net -- the
    list head ``net_namespace_list`` -- are told apart by ``ns.ops``)."""
    from .list import ListWalk, list_nodes
    from .tasks import init_task

    nets: dict[int, None] = {}
    try:
        nets[int(init_task(kernel).nsproxy.net_ns)] = None
    except ArmvmiError as e:
        problems.append(f"init's network namespace unreadable: {e}")
    for p in procs:
        try:
            if int(p.task.nsproxy):
                nets.setdefault(int(p.task.nsproxy.net_ns), None)
        except ArmvmiError:
            continue
    for n in extra_nets:
        if n:
            nets.setdefault(n, None)
    nets.pop(0, None)
    if not nets:
        return []
    first = next(iter(nets))
    try:
        ops = int(kernel.object("net", first).ns.ops)
        off = kernel.offsetof("net", "list")
        walk = ListWalk()
        for node in list_nodes(kernel, first + off, walk, limit=1 << 14):
            cand = node - off
            try:
                if int(kernel.object("net", cand).ns.ops) == ops:
                    nets.setdefault(cand, None)
            except ArmvmiError:
                continue
        problems += [f"network namespace list: {p}" for p in walk.problems if p.kind != "broken-link"]
    except ArmvmiError as e:
        problems.append(f"network namespace list unreadable: {e}")
    return [kernel.object("net", n) for n in nets]


# -- the view ---------------------------------------------------------------------------------------

_PROTO_ORDER = ("tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6", "unix")


def sockets(kernel, pids=None):
    """``armvmi sockstat``: every socket in the kernel's tables and in processes' fds."""
    from ..view import Finding, ViewResult
    from .fs import for_each_file
    from .lsof import seen_processes, select_processes

    out = ViewResult()
    walk = _Walk(out.problems)
    procs, complete = seen_processes(kernel, out.problems)
    walk.complete = complete
    lay = _layout(kernel)

    owners: dict[int, list[dict]] = {}
    fd_socks: list[int] = []
    for p in procs:
        try:
            for f in for_each_file(kernel, p.task, out.problems):
                if f.kind != "socket":
                    continue
                s = int(kernel.object("file", f.file).private_data)
                sk = int(kernel.object("socket", s).sk) if s else 0
                if not sk:
                    continue
                o = {"pid": p.pid, "comm": p.comm, "fd": f.fd}
                if p.hidden:
                    o["hidden"] = True
                if sk not in owners:
                    fd_socks.append(sk)
                owners.setdefault(sk, []).append(o)
        except ArmvmiError as e:
            walk.fail(f"pid {p.pid} ({p.comm}): fd table unreadable: {e}")

    tables = _Tables()
    sk_nets = []
    for sk in fd_socks:
        _proto_tables(kernel, tables, sk)
        try:
            sk_nets.append(kernel.read_u64(sk + lay.net))
        except ArmvmiError:
            pass
    nets = network_namespaces(kernel, procs, sk_nets, out.problems)
    for net in nets:
        try:
            tdr = net.ipv4.tcp_death_row
            hi = int(tdr.hashinfo) if not isinstance(tdr, int) else int(kernel.object("inet_timewait_death_row", int(tdr)).hashinfo)
            if hi:
                tables.tcp.setdefault(hi, "net->ipv4.tcp_death_row")
        except (ArmvmiError, AttributeError):
            pass
    if not tables.udp:
        for a in _from_code(kernel, ("udp4_lib_lookup", "udp4_lib_lookup_skb", "udp6_lib_lookup"),
                            lambda a: _valid_udp_table(kernel, a), window=64):
            tables.udp.setdefault(a, "code of udp4_lib_lookup")
    for fam, fns in ((AF_INET, ("raw_local_deliver",)), (AF_INET6, ("raw6_local_deliver",))):
        if kernel.has_member("proto", "h.raw_hash"):
            for a in _from_code(kernel, fns, lambda a, fam=fam: _valid_raw_hash(kernel, a, fam))[:1]:
                tables.raw.setdefault(a, f"code of {fns[0]}")
    if not tables.tcp:
        out.problems.append("no TCP hash table found (no network namespace and no TCP socket to lead to it)")
        walk.complete = False
    if not tables.udp:
        out.problems.append("no UDP table found: UDP sockets are listed from fds only")

    rows: dict[int, SockRow] = {}

    def add(sk_addr: int, hint=None, unix_=False):
        if sk_addr in rows:
            return
        try:
            r = _unix_row(kernel, sk_addr) if unix_ else _inet_row(kernel, sk_addr, lay, hint)
        except ArmvmiError as e:
            walk.fail(f"socket {sk_addr:#x} unreadable: {e}")
            return
        r.seen_by = ["table"]
        rows[sk_addr] = r

    for t in tables.tcp:
        for sk in _tcp_entries(kernel, t, walk):
            add(sk, "tcp")
    for t in tables.udp:
        for sk in _udp_entries(kernel, t, walk):
            add(sk)
    for t in tables.raw:
        for sk in _raw_entries(kernel, t, walk):
            add(sk)
    if kernel.has_member("netns_unix", "table"):
        for net in nets:
            try:
                for sk in _unix_entries(kernel, net, walk):
                    add(sk, unix_=True)
            except ArmvmiError as e:
                walk.fail(f"unix table of a network namespace unreadable: {e}")
    else:
        out.problems.append("this kernel keeps unix sockets in a global table not read here: unix sockets are listed from fds only")

    for sk in fd_socks:  # sockets no table has (unbound, closed, other families)
        if sk in rows:
            rows[sk].seen_by.append("fd")
            continue
        try:
            family = int.from_bytes(kernel.read(sk + lay.family, 2), "little")
            if family == AF_UNIX:
                r = _unix_row(kernel, sk)
            elif family in (AF_INET, AF_INET6):
                r = _inet_row(kernel, sk, lay)
            else:
                skobj = kernel.object("sock", sk)
                r = SockRow(proto=_FAMILY.get(family, f"family-{family}"), local_addr=None, local_port=None,
                            remote_addr=None, remote_port=None, state=str(kernel.read(sk + lay.state, 1)[0]),
                            inode=_sock_inode(kernel, skobj), uid=int(skobj.sk_uid.val), rx_queue=None,
                            tx_queue=None, netns=_net_inum(kernel, kernel.read_u64(sk + lay.net)), sock=sk)
        except ArmvmiError as e:
            walk.fail(f"socket {sk:#x} (from an fd) unreadable: {e}")
            continue
        r.seen_by = ["fd"]
        rows[sk] = r

    for sk, r in rows.items():
        r.owners = sorted(owners.get(sk, []), key=lambda o: (o["pid"], o["fd"]))
        if not r.owners and "table" in r.seen_by and _should_have_owner(kernel, sk, r):
            out.findings.append(Finding("orphan-socket", "warning", None,
                                        f"{r.proto} socket {_endpoint(r)} ({r.state}, inode {r.inode}) is held by no visible process",
                                        {"proto": r.proto, "local": _addr(r.local_addr, r.local_port) if r.proto != "unix" else r.path,
                                         "remote": _addr(r.remote_addr, r.remote_port) if r.proto != "unix" else None,
                                         "state": r.state, "inode": r.inode, "sock": f"{sk:#x}", "netns": r.netns}))

    order = {p: i for i, p in enumerate(_PROTO_ORDER)}
    recs = sorted(rows.values(), key=lambda r: (order.get(r.proto, len(order)), "table" not in r.seen_by))
    if pids:
        want = {p.pid for p in select_processes(procs, pids)}
        recs = [r for r in recs if any(o["pid"] in want for o in r.owners)]
    out.records = recs
    out.complete = walk.complete
    return out


def _should_have_owner(kernel, sk: int, r: SockRow) -> bool:
    """The orphan rule's exclusions (module doc): only a full, user, attached socket needs an fd."""
    lay = _layout(kernel)
    try:
        state = kernel.read(sk + lay.state, 1)[0]
        family = int.from_bytes(kernel.read(sk + lay.family, 2), "little")
        if family in (AF_INET, AF_INET6) and state in (TCP_TIME_WAIT, TCP_NEW_SYN_RECV):
            return False
        s = kernel.object("sock", sk)
        if s.has_member_("sk_kern_sock") and int(s.sk_kern_sock):
            return False
        sock = int(s.sk_socket)
        if not sock:
            return False
        return bool(int(kernel.object("socket", sock).file))
    except ArmvmiError:
        return False


def _addr(a, port) -> str | None:
    if a is None:
        return None
    return f"[{a}]:{port}" if ":" in a else f"{a}:{port}"


def _endpoint(r: SockRow) -> str:
    if r.proto == "unix":
        return r.path or f"inode {r.inode}"
    return f"{_addr(r.local_addr, r.local_port)} -> {_addr(r.remote_addr, r.remote_port)}"


def _owners(v) -> str:
    return ",".join(f"{o['pid']}/{o['comm']}:{o['fd']}" + ("(hidden)" if o.get("hidden") else "") for o in v or ()) or "-"


def _view():
    from ..view import Column, View

    return View("sockets", "sockets from the kernel's tables and the processes' fds", collect=sockets, columns=(
        Column("proto"), Column("local_addr", "LOCAL", fmt=lambda v: "-" if v is None else v),
        Column("local_port", "LPORT", align="right"), Column("remote_addr", "REMOTE", priority=1),
        Column("remote_port", "RPORT", align="right", priority=1), Column("state"),
        Column("inode", align="right", priority=2), Column("path", priority=2),
        Column("owners", fmt=_owners), Column("uid", align="right", priority=3),
        Column("rx_queue", "RXQ", align="right", priority=4), Column("tx_queue", "TXQ", align="right", priority=4),
        Column("seen_by", "SEEN", priority=3, fmt=lambda v: "+".join(v or ())), Column("sock", "SOCK", priority=5)))


SOCKSTAT = _view()


# -- network devices (ifaddr) -----------------------------------------------------------------------

# include/uapi/linux/if.h, in the order iproute2's print_link_flags prints them
_IFF = (("LOOPBACK", 0x8), ("BROADCAST", 0x2), ("POINTOPOINT", 0x10), ("MULTICAST", 0x1000), ("NOARP", 0x80),
        ("ALLMULTI", 0x200), ("PROMISC", 0x100), ("MASTER", 0x400), ("SLAVE", 0x800), ("DEBUG", 0x4),
        ("DYNAMIC", 0x8000), ("AUTOMEDIA", 0x4000), ("PORTSEL", 0x2000), ("NOTRAILERS", 0x20), ("UP", 0x1),
        ("LOWER_UP", 0x10000), ("DORMANT", 0x20000), ("ECHO", 0x40000))
IFF_UP, IFF_RUNNING, IFF_PROMISC, IFF_ALLMULTI, IFF_LOWER_UP, IFF_DORMANT = 0x1, 0x40, 0x100, 0x200, 0x10000, 0x20000
__LINK_STATE_START, __LINK_STATE_NOCARRIER, __LINK_STATE_DORMANT = 0, 2, 4
IF_OPER_UNKNOWN, IF_OPER_UP = 0, 6
_OPERSTATE = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")
_SCOPE = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}


@record
class IfRow:
    name: str
    ifindex: int
    mac: str | None
    flags: list  # names, as `ip link` prints them (dev_get_flags; RUNNING not shown, as ip does)
    mtu: int
    qlen: int
    operstate: str
    ipv4: list  # "addr/prefix"
    ipv6: list
    netns: int | None = None
    dev: int = addr(0)  # struct net_device *


def dev_get_flags(dev) -> int:
    """net/core/dev.c dev_get_flags: the flags user space sees."""
    flags = (int(dev.flags) & ~(IFF_PROMISC | IFF_ALLMULTI | IFF_RUNNING | IFF_LOWER_UP | IFF_DORMANT)) | (
        int(dev.gflags) & (IFF_PROMISC | IFF_ALLMULTI))
    state = int(dev.state)
    if state >> __LINK_STATE_START & 1:  # netif_running
        if int(dev.operstate) in (IF_OPER_UP, IF_OPER_UNKNOWN):
            flags |= IFF_RUNNING
        if not state >> __LINK_STATE_NOCARRIER & 1:
            flags |= IFF_LOWER_UP
        if state >> __LINK_STATE_DORMANT & 1:
            flags |= IFF_DORMANT
    return flags


def _ipv4_addrs(kernel, dev, walk: _Walk) -> list[str]:
    out = []
    ind = int(dev.ip_ptr)
    if not ind:
        return out
    ifa, seen = int(kernel.object("in_device", ind).ifa_list), set()
    while ifa:
        if ifa in seen or len(seen) > MAX_CHAIN:
            walk.fail(f"{dev.name}: IPv4 address list loops at {ifa:#x}")
            break
        seen.add(ifa)
        a = kernel.object("in_ifaddr", ifa)
        out.append(f"{_ip4(kernel, a.address_ + a.offsetof_('ifa_local'))}/{int(a.ifa_prefixlen)}")
        ifa = int(a.ifa_next)
    return out


def _ipv6_addrs(kernel, dev, walk: _Walk) -> list[str]:
    from .list import ListWalk, list_for_each_entry

    i6 = int(dev.ip6_ptr)
    if not i6:
        return []
    idev = kernel.object("inet6_dev", i6)
    lw = ListWalk()
    out = [f"{_ip6(kernel, a.address_ + a.offsetof_('addr'))}/{int(a.prefix_len)}"
           for a in list_for_each_entry(kernel, "inet6_ifaddr", idev.address_ + idev.offsetof_("addr_list"), "if_list", lw)]
    if not lw.complete:
        walk.fail(f"{dev.name}: IPv6 address list: {'; '.join(map(str, lw.problems))}")
    return out


def for_each_netdev(kernel, net, walk):
    """Every ``net_device`` of a namespace, in ``dev_base_head`` order (/proc/net/dev's)."""
    from .list import list_for_each_entry

    return list_for_each_entry(kernel, "net_device", net.address_ + net.offsetof_("dev_base_head"), "dev_list", walk)


def ifaddr_view(kernel):
    """``armvmi ifaddr``: the network devices of every network namespace with their addresses."""
    from ..view import ViewResult
    from .list import ListWalk
    from .lsof import seen_processes

    out = ViewResult()
    walk = _Walk(out.problems)
    procs, _ = seen_processes(kernel, out.problems)
    for n in network_namespaces(kernel, procs, [], out.problems):
        inum = _net_inum(kernel, n.address_)
        lw = ListWalk()
        for dev in for_each_netdev(kernel, n, lw):
            try:
                alen = int(dev.addr_len)
                mac = None
                if int(dev.dev_addr) and 0 < alen <= 32:
                    mac = ":".join(f"{b:02x}" for b in kernel.read(int(dev.dev_addr), alen))
                flags = dev_get_flags(dev)
                op = int(dev.operstate)
                out.records.append(IfRow(dev.name, int(dev.ifindex), mac, [nm for nm, bit in _IFF if flags & bit],
                                         int(dev.mtu), int(dev.tx_queue_len),
                                         _OPERSTATE[op] if op < len(_OPERSTATE) else str(op),
                                         _ipv4_addrs(kernel, dev, walk), _ipv6_addrs(kernel, dev, walk), inum, dev.address_))
            except ArmvmiError as e:
                walk.fail(f"net_device {dev.address_:#x} unreadable: {e}")
        if lw.problems:
            out.problems += [f"device list of netns {inum}: {p}" for p in lw.problems]
        walk.complete &= lw.complete
    out.complete = walk.complete
    return out


def _ifview():
    from ..view import Column, View

    return View("interfaces", "network devices and their addresses", collect=ifaddr_view, columns=(
        Column("ifindex", "IDX", align="right"), Column("name"), Column("mac", "MAC", priority=1),
        Column("flags", fmt=lambda v: ",".join(v or ())), Column("mtu", align="right", priority=2),
        Column("operstate", "STATE", priority=3), Column("ipv4", "IPV4"), Column("ipv6", "IPV6"),
        Column("netns", align="right", priority=4), Column("dev", "DEV", priority=5)))


IFADDR = _ifview()
