"""sockstat on the real rich capture: /proc/net/{tcp,tcp6,udp,udp6,unix} with owners,
from the kernel's tables (found without data symbols too) joined with the fds."""

from __future__ import annotations

import json

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.linux import lsof, net
from armvmi_cli.linux.net import sockets
from armvmi_cli.linux.tasks import for_each_task
from tests.fixtures.rich import open_rich, patched, u64

INET_KEYS = ("local_addr", "local_port", "remote_addr", "remote_port", "state", "tx_queue", "rx_queue", "uid", "inode")


def _owners(rows):
    return [{k: o[k] for k in ("pid", "comm", "fd")} for o in rows]


def _inet(r):
    return {**{k: getattr(r, k) for k in INET_KEYS}, "owners": _owners(r.owners)}


def _want_inet(g):
    return {**{k: g[k] for k in INET_KEYS}, "owners": g["owners"]}


def _unix(r):
    return {"path": r.path, "type": r.type, "state": r.state, "inode": r.inode, "refcount": r.refcount,
            "flags_hex": f"{r.flags:08X}", "listening": bool(r.flags), "owners": _owners(r.owners)}


def _want_unix(g):
    return {k: g[k] for k in ("path", "type", "state", "inode", "refcount", "flags_hex", "listening", "owners")}


def _check_against_ground_truth(res, gt):
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        got = [_inet(r) for r in res.records if r.proto == proto]
        assert got == [_want_inet(g) for g in gt[proto]], proto  # in /proc's order, too
    assert [_unix(r) for r in res.records if r.proto == "unix"] == [_want_unix(g) for g in gt["unix"]]
    assert {r.proto for r in res.records} == {"tcp", "tcp6", "udp", "unix"}  # no raw sockets, no others


def test_sockets_match_ground_truth(rich, rich_kernel):
    res = sockets(rich_kernel)
    assert res.complete and not res.problems
    assert res.findings == []  # the clean capture: no orphan
    _check_against_ground_truth(res, rich.ground_truth["rich"]["net"])
    assert all(r.seen_by == ["table", "fd"] for r in res.records)
    assert len({r.netns for r in res.records}) == 1


def test_tables_found_without_any_fd(rich, rich_kernel, monkeypatch):
    """No process visible at all (as if every owner were hidden): the tables are still found
    (TCP through init's network namespace, UDP and raw from code: ADRP+ADD in
    udp4_lib_lookup/raw_local_deliver) and every socket is an orphan."""
    monkeypatch.setattr(lsof, "seen_processes", lambda kernel, problems: ([], True))
    res = sockets(rich_kernel)
    assert res.complete
    gt = rich.ground_truth["rich"]["net"]
    for proto in ("tcp", "tcp6", "udp", "unix"):
        got = [{**_inet(r), "owners": []} if proto != "unix" else _unix(r) for r in res.records if r.proto == proto]
        want = [({**_want_inet(g), "owners": []} if proto != "unix" else {**_want_unix(g), "owners": []}) for g in gt[proto]]
        assert got == want, proto
    assert all(r.seen_by == ["table"] for r in res.records)
    assert len(res.findings) == len(res.records) == 9
    f = next(f for f in res.findings if f.evidence["local"] == "127.0.0.1:40404")
    assert f.kind == "orphan-socket" and f.severity == "warning"
    assert f.evidence["remote"] == "127.0.0.1:8443" and f.evidence["sock"].startswith("0x") and f.evidence["inode"] == 9025


def test_udp_and_raw_tables_from_code_are_the_real_ones(rich, rich_kernel):
    from armvmi_cli.symbols.system_map import SystemMap

    sm = SystemMap.load(rich.system_map)
    k = rich_kernel
    slide = k.info.slide
    # udp4_lib_lookup's ADRP+ADD points 8 bytes before udp_table (a section anchor): the window finds it
    got = net._from_code(k, ("udp4_lib_lookup",), lambda a: net._valid_udp_table(k, a), window=64)
    assert got == [sm.address("udp_table") + slide]
    assert net._from_code(k, ("udp4_lib_lookup",), lambda a: net._valid_udp_table(k, a)) == []
    got = net._from_code(k, ("raw_local_deliver",), lambda a: net._valid_raw_hash(k, a, net.AF_INET))
    assert got[:1] == [sm.address("raw_v4_hashinfo") + slide]
    got = net._from_code(k, ("raw6_local_deliver",), lambda a: net._valid_raw_hash(k, a, net.AF_INET6))
    assert got[:1] == [sm.address("raw_v6_hashinfo") + slide]


@pytest.mark.parametrize("mode", ["system_map", "kallsyms"])
def test_dkom_hidden_owner_is_an_owner_not_an_orphan(rich, tmp_path_factory, mode):
    """beacon (pid 99) is unlinked from the task list but still in the PID IDR: armvmi sees it,
    so its socket has a (hidden) owner and is no orphan.  The hiding is ps's hidden-process
    finding; sockstat adds none, so `check` reports it once."""
    with open_rich(rich, mode, tmp_path_factory.mktemp("c"), image=rich.dkom_image) as k:
        res = sockets(k)
    assert res.findings == []
    _check_against_ground_truth(res, rich.ground_truth["rich"]["net"])
    (row,) = [r for r in res.records if r.inode == 9025]
    assert row.owners == [{"pid": 99, "comm": "beacon", "fd": 3, "hidden": True}]


def test_socket_with_no_fd_is_an_orphan(rich, rich_kernel):
    """beacon's fd 3 cleared (as if its last holder were invisible): the socket still shows,
    from the TCP ehash, with an orphan-socket finding; the others do not."""
    k = rich_kernel
    t = next(t for t in for_each_task(k) if t.comm == "beacon")
    fdt = t.files.fdt.deref()
    with patched(k, {int(fdt.fd) + 8 * 3: u64(0)}):
        res = sockets(k)
    (f,) = res.findings
    assert f.kind == "orphan-socket" and f.evidence["inode"] == 9025 and f.evidence["state"] == "ESTABLISHED"
    (row,) = [r for r in res.records if r.inode == 9025]
    assert row.owners == [] and row.seen_by == ["table"]


def _ehash(k):
    from armvmi_cli.linux.tasks import init_task

    netobj = init_task(k).nsproxy.net_ns.deref()
    return k.object("inet_hashinfo", int(netobj.ipv4.tcp_death_row.hashinfo))


def test_cyclic_chain_and_bucket_outside_memory_are_partial(rich_kernel):
    k = rich_kernel
    h = _ehash(k)
    lay = net._layout(k)
    n = int(h.ehash_mask) + 1
    raw = k.read(int(h.ehash), 8 * n)
    used = [i for i in range(n) if not int.from_bytes(raw[8 * i : 8 * i + 8], "little") & 1]
    assert len(used) == 2  # the two ESTABLISHED sockets
    first = int.from_bytes(raw[8 * used[0] : 8 * used[0] + 8], "little")
    # the chain's node points at itself: a cycle
    with patched(k, {first: u64(first)}):
        res = sockets(k)
    assert not res.complete and any("loops" in p for p in res.problems)
    assert len([r for r in res.records if r.proto == "tcp"]) == 4  # still every socket (once), from the fds too
    # a bucket pointing outside memory
    with patched(k, {int(h.ehash) + 8 * used[1]: u64(0xFFFF_FFFF_DEAD_0000)}):
        res = sockets(k)
    assert not res.complete and any("unreadable" in p for p in res.problems)
    # an impossible table size
    with patched(k, {h.address_ + h.offsetof_("ehash_mask"): (0xFFFF_FFFF).to_bytes(4, "little")}):
        res = sockets(k)
    assert not res.complete and any("impossible table" in p for p in res.problems)


def test_cli(rich, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["sockstat", str(rich.image), "-m", str(rich.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["findings"] == []
    rows = out["vms"][0]["sockets"]
    assert len(rows) == 9 and all(r["sock"].startswith("0x") for r in rows)
    rc = main(["sockstat", str(rich.image), "-m", str(rich.system_map), "--pid", "101", "--jsonl"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 0 and sorted(r["inode"] for r in lines) == [9029, 9030]
