"""/proc's rules on states the rich capture does not hold, made in a patched
copy of its real memory: a process that rewrote its argv (setproctitle), one
whose title runs into its environment, and a named anonymous mapping."""

from __future__ import annotations

import json

import pytest

import armvmi_cli
from armvmi_cli.cli.app import main
from armvmi_cli.linux.mm import mm_layer
from armvmi_cli.linux.proc import find_process
from tests.fixtures.patch import copy_image, elf_offset, patch_u64


@pytest.fixture
def rich_copy(rich_capture, tmp_path, monkeypatch):
    dst = copy_image(rich_capture.image, tmp_path, monkeypatch)
    k = armvmi_cli.open(dst).vm().kernel
    return dst, k


def _write_user(path, k, task, va, data):
    layer = mm_layer(k, task.mm.deref())
    with open(path, "r+b") as f:
        for i, b in enumerate(data):  # byte by byte: the area may cross a page
            f.seek(elf_offset(path, layer.translate(va + i)))
            f.write(bytes([b]))


def _argv(capsys, path, pid):
    rc = main(["psaux", str(path), "--pid", str(pid), "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    return json.loads(out)["vms"][0]["processes"][0]["argv"]


def test_rewritten_argv_end_shows_up_to_the_first_nul(rich_copy, capsys):
    path, k = rich_copy
    t = find_process(k, 97)
    mm = t.mm
    # The final NUL of argv overwritten (setproctitle): /proc then shows one
    # page from arg_start up to the first NUL -- here, argv[0] alone.
    _write_user(path, k, t, mm.arg_end - 1, b"!")
    assert _argv(capsys, path, 97) == ["/usr/bin/tls-gw"]


def test_title_running_into_the_environment(rich_copy, capsys):
    path, k = rich_copy
    t = find_process(k, 99)
    mm = t.mm
    assert mm.env_start == mm.arg_end
    title = b"beacon: idle " + b"x" * (mm.arg_end - mm.arg_start) + b"\0"  # longer than argv was
    _write_user(path, k, t, mm.arg_start, title)
    assert _argv(capsys, path, 99) == [title[:-1].decode()]


def test_named_anonymous_mapping(rich_copy, rich_capture, capsys):
    path, k = rich_copy
    t = find_process(k, 97)
    from armvmi_cli.linux.mm import for_each_vma

    vma = next(v for v in for_each_vma(k, t.mm.deref()) if not int(v.vm_file) and v.vm_flags & 2
               and not int(v.vm_ops) and v.vm_start > t.mm.brk and v.vm_end < t.mm.start_stack)
    # anon_vma_name is {kref, name[]}: point anon_name 4 bytes before a NUL-terminated
    # string the kernel already holds (init_task.comm, "swapper/0").
    from armvmi_cli.linux.tasks import init_task

    comm = init_task(k).address_ + k.offsetof("task_struct", "comm")
    name_field = vma.address_ + vma.offsetof_("anon_name")
    patch_u64(path, k.vmem.translate(name_field), comm - k.offsetof("anon_vma_name", "name"))
    rc = main(["maps", str(path), "--pid", "97", "--json"])
    rows = json.loads(capsys.readouterr().out)["vms"][0]["maps"]
    assert rc == 0
    named = [r for r in rows if r["start"] == hex(vma.vm_start)]
    assert named[0]["path"] == "[anon:swapper/0]"
    assert named[0]["line"].endswith(" [anon:swapper/0]") and len(named[0]["line"].split(" [anon:")[0]) == 72
    gt = {p["pid"]: p for p in rich_capture.ground_truth["rich"]["processes"]}[97]["maps"]
    assert [r["line"] for r in rows if r["start"] != hex(vma.vm_start)] == [x for x in gt if not x.startswith(f"{vma.vm_start:08x}-")]
