"""lsof, mounts, sockstat, ifaddr and d_path through stage 2: the rich capture composed
into a KVM host three times (4K, 16K and 64K stage-2 granules, the 64K one with page
leaves only), each VM must give exactly the ground truth, as on the plain dump."""

from __future__ import annotations

import json

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.linux.fs import task_cwd, task_exe, task_root
from armvmi_cli.linux.lsof import lsof_view
from armvmi_cli.linux.mount import mounts_view
from armvmi_cli.linux.net import ifaddr_view, sockets
from armvmi_cli.linux.tasks import for_each_task
from armvmi_cli.session import Session
from tests.conftest import RICH_CAPTURE, get_capture
from tests.fixtures.compose import GuestSpec, S2Geometry, compose_host
from tests.fs.test_lsof import _got, _want_fds
from tests.net.test_sockstat import _check_against_ground_truth

GEOMETRIES = {21: S2Geometry(4096, 40, 1), 22: S2Geometry(16384, 36), 23: S2Geometry(65536, 42, blocks=False)}


@pytest.fixture(scope="module")
def rich():
    return get_capture(RICH_CAPTURE)


@pytest.fixture(scope="module")
def host(rich, tmp_path_factory):
    specs = [GuestSpec(vm_id, rich, g) for vm_id, g in GEOMETRIES.items()]
    return compose_host(tmp_path_factory.mktemp("rich-host") / "rich3.elf", specs, fmt="elf", seed=21)


@pytest.fixture(scope="module")
def session(rich, host, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARMVMI_CACHE", str(tmp_path_factory.mktemp("cache")))
        with Session.open(host.image, events=host.smclog, system_map=[rich.system_map]) as s:
            yield s


@pytest.mark.parametrize("vm_id", list(GEOMETRIES))
def test_views_through_stage2(rich, session, vm_id):
    gt = rich.ground_truth["rich"]
    k = session.vm(str(vm_id)).kernel
    procs = {p["pid"]: p for p in gt["processes"]}
    for t in for_each_task(k):
        p = procs[t.pid]
        assert (task_cwd(k, t), task_exe(k, t), task_root(k, t)) == (p.get("cwd"), p.get("exe"), p.get("root"))
    res = lsof_view(k)
    assert res.complete
    got: dict[int, dict] = {pid: {} for pid in procs}
    for r in res.records:
        got[r.pid][r.fd] = _got(r)
    assert got == {pid: _want_fds(p) for pid, p in procs.items()}
    res = mounts_view(k, pids=[1])
    assert [r.line() for r in res.records] == gt["mounts"]
    res = sockets(k)
    assert res.complete and res.findings == []
    _check_against_ground_truth(res, gt["net"])
    res = ifaddr_view(k)
    assert [(r.name, r.ipv4, r.ipv6) for r in res.records][0] == ("lo", ["127.0.0.1/8"], ["::1/128"])


def test_cli_every_vm(rich, host, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main(["sockstat", str(host.image), "--events", str(host.smclog), "-m", str(rich.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert sorted(v["vm_id"] for v in out["vms"]) == sorted(GEOMETRIES)
    assert all(len(v["sockets"]) == 9 for v in out["vms"])


def test_without_system_map(rich, host, capsys, tmp_path, monkeypatch):
    """No System.map, no profile: kallsyms (functions only) recovered from the guest; the
    UDP table comes from sk_prot or code, totalram (mount options) from shmem_show_options."""
    from armvmi_cli.symbols import profiles

    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(profiles, "find_profiles", lambda dirs=None: [])
    rc = main(["sockstat", str(host.image), "--events", str(host.smclog), "--vm", "23", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and len(out["vms"][0]["sockets"]) == 9
    rc = main(["mounts", str(host.image), "--events", str(host.smclog), "--vm", "22", "--pid", "1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    rows = out["vms"][0]["mounts"]
    assert [f"{r['device']} {r['mountpoint']} {r['fstype']} {r['options']} 0 0" for r in rows] == rich.ground_truth["rich"]["mounts"]
