"""ifaddr on the real rich capture, against what the guest printed (`ip addr` of lo in
serial.log, /proc/net/dev's device list)."""

from __future__ import annotations

import json
import re

from armvmi_cli.cli.app import main
from armvmi_cli.linux.net import ifaddr_view
from tests.fixtures.rich import patched, u64


def _ip_addr_blocks(serial: str) -> dict:
    """`ip addr` output in the console log: {name: {flags, mtu, qlen, mac, inet, inet6}}."""
    out, cur = {}, None
    for line in serial.splitlines():
        m = re.match(r"^\d+: (\S+): <([^>]*)> mtu (\d+).*?(?:qlen (\d+))?$", line)
        if m:
            cur = out[m.group(1)] = {"flags": m.group(2).split(","), "mtu": int(m.group(3)),
                                      "qlen": int(m.group(4)) if m.group(4) else None, "inet": [], "inet6": []}
            continue
        if cur is None:
            continue
        m = re.match(r"^\s+link/\S+ (\S+)", line)
        if m:
            cur["mac"] = m.group(1)
        m = re.match(r"^\s+(inet6?) (\S+) ", line)
        if m:
            cur[m.group(1)].append(m.group(2))
        if not line.startswith(" "):
            cur = None
    return out


def test_lo_as_ip_printed_it(rich, rich_kernel):
    printed = _ip_addr_blocks((rich.src / "serial.log").read_text(errors="replace"))
    assert "lo" in printed
    res = ifaddr_view(rich_kernel)
    assert res.complete and not res.problems
    by = {r.name: r for r in res.records}
    lo, want = by["lo"], printed["lo"]
    assert (lo.flags, lo.mtu, lo.qlen, lo.mac, lo.ipv4, lo.ipv6) == (want["flags"], want["mtu"], want["qlen"], want["mac"],
                                                                      want["inet"], want["inet6"])
    assert lo.ifindex == 1


def test_devices_are_proc_net_dev(rich, rich_kernel):
    dev = rich.ground_truth["rich"]["net_raw"]["dev"]
    names = [line.split(":")[0].strip() for line in dev[2:]]
    res = ifaddr_view(rich_kernel)
    assert [r.name for r in res.records] == names  # dev_base_head order is /proc/net/dev's
    assert [r.ifindex for r in res.records] == list(range(1, len(names) + 1))
    for r in res.records[1:]:  # dummy0, ifb0, ifb1: created, never brought up
        assert "UP" not in r.flags and r.ipv4 == [] and re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", r.mac)


def test_cyclic_device_list_is_partial(rich_kernel):
    k = rich_kernel
    res = ifaddr_view(k)
    devs = [r.dev for r in res.records]
    off = k.offsetof("net_device", "dev_list")
    with patched(k, {devs[2] + off: u64(devs[1] + off)}):  # ifb0 -> dummy0 again
        res = ifaddr_view(k)
    assert not res.complete and [r.name for r in res.records] == ["lo", "dummy0", "ifb0"]
    assert any("loops" in p or "cycle" in p for p in res.problems)


def test_cli(rich, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["ifaddr", str(rich.image), "-m", str(rich.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    lo = out["vms"][0]["interfaces"][0]
    assert lo["name"] == "lo" and lo["ipv4"] == ["127.0.0.1/8"] and lo["dev"].startswith("0x")
