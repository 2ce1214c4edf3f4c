"""Bad input through the CLI: a copy of the rich dump with a TCP hash bucket pointing
outside memory and a cyclic mount list gives a one-line warning and exit 5, never a
traceback or a hang."""

from __future__ import annotations

import shutil
import struct

import pytest

from armvmi_cli.cli.app import main
from tests.conftest import RICH_CAPTURE, get_capture
from tests.fixtures.rich import open_rich, u64


def _elf_offset(path, pa: int) -> int:
    with open(path, "rb") as f:
        hdr = f.read(64)
        phoff, phentsize, phnum = struct.unpack_from("<Q", hdr, 32)[0], *struct.unpack_from("<HH", hdr, 54)
        f.seek(phoff)
        for _ in range(phnum):
            p_type, _flags, off, _va, paddr, filesz = struct.unpack("<IIQQQQ", f.read(phentsize)[:40])
            if p_type == 1 and paddr <= pa < paddr + filesz:
                return off + pa - paddr
    raise AssertionError(f"{pa:#x} not in {path}")


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    """The rich dump with ehash[first used bucket] -> an unmapped address, and the third mount's
    mnt_list.next -> the second's (a cycle that never returns to the head)."""
    from armvmi_cli.linux.lsof import seen_processes
    from armvmi_cli.linux.mount import for_each_mount, mount_namespaces
    from armvmi_cli.linux.tasks import init_task

    rich = get_capture(RICH_CAPTURE)
    d = tmp_path_factory.mktemp("corrupt")
    img = d / "dump.elf"
    shutil.copyfile(rich.image, img)
    edits = {}
    with open_rich(rich, "system_map", d / "cache") as k:
        h = k.object("inet_hashinfo", int(init_task(k).nsproxy.net_ns.ipv4.tcp_death_row.hashinfo))
        n = int(h.ehash_mask) + 1
        raw = k.read(int(h.ehash), 8 * n)
        i = next(i for i in range(n) if not raw[8 * i] & 1)
        edits[k.vmem.translate(int(h.ehash) + 8 * i)] = u64(0xFFFF_8000_DEAD_0000)
        (ns, _p), *_ = mount_namespaces(k, seen_processes(k, [])[0], [])
        ms = list(for_each_mount(k, ns))
        off = k.offsetof("mount", "mnt_list")
        edits[k.vmem.translate(ms[2].address_ + off)] = u64(ms[1].address_ + off)
    with open(img, "r+b") as f:
        for pa, b in edits.items():
            f.seek(_elf_offset(img, pa))
            f.write(b)
    return rich, img


@pytest.mark.parametrize("cmd, what", [("sockstat", "ehash"), ("mounts", "mount list")])
def test_partial_exit_5(corrupt, cmd, what, capsys, tmp_path, monkeypatch):
    rich, img = corrupt
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    rc = main([cmd, str(img), "-m", str(rich.system_map)])
    cap = capsys.readouterr()
    assert rc == 5
    assert what in cap.err and "PARTIAL" in cap.err and "Traceback" not in cap.err
    assert cap.out.strip()  # what could be read is still printed
