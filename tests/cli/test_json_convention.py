"""Issue 11, "One JSON": every command with --json follows one convention
(man/armvmi.1, JSON OUTPUT), checked mechanically on the sample snapshot and,
when present, the real nested host capture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from armvmi_cli.cli.app import app, main
from tests.cli.json_convention import violations
from tests.conftest import NESTED_CAPTURE, get_capture

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "snapshots" / "deb61-generic-nokaslr.armvmi"
INIT_TASK = "0xffff800009cc8dc0"  # the sample's init_task (nokaslr); only an argument, checked by symbols below


def _leaf_commands():
    out = {}

    def walk(c, path):
        subs = getattr(c, "commands", None)
        if subs:
            for n, s in subs.items():
                walk(s, path + (n,))
        else:
            out[path] = [p for p in c.params if "--json" in getattr(p, "opts", ())]

    walk(typer.main.get_command(app), ())
    return out


def _args_for(img: str, log: str | None, tmp_path: Path, task: str) -> dict:
    ev = ["--events", log] if log else []
    return {
        ("ps",): ["ps", img, *ev],
        ("pstree",): ["pstree", img, *ev],
        ("translate",): ["translate", img, "--gva", task, *ev],
        ("struct",): ["struct", "task_struct", task, img, *ev, "--depth", "2"],
        ("read",): ["read", img, task, "64", *ev],
        ("info",): ["info", img, *ev],
        ("symbols",): ["symbols", img, "--grep", "^init_task$", *ev],
        ("vms",): ["vms", img, *ev],
        ("verify",): ["verify", img, *ev],
        ("profile", "list"): ["profile", "list"],
        ("profile", "show"): ["profile", "show", "6.1.0-56-arm64"],
        ("profile", "create"): ["profile", "create", str(tmp_path / "prof"), "--system-map",
                                str(REPO / "profiles" / "6.1.0-56-arm64" / "System.map.xz"), "--release", "6.1.0-56-arm64"],
        ("snapshot", "info"): ["snapshot", "info", img],
        ("events",): ["events", log] if log else None,
    }


def _docs(text: str) -> list:
    text = text.strip()
    try:
        return [json.loads(text)]
    except ValueError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def _run_all(img, log, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    # A task_struct that ps read (a sparse sample holds those pages) for translate, struct and read.
    assert main(["ps", str(img), *(["--events", str(log)] if log else []), "--json"]) == 0
    task = json.loads(capsys.readouterr().out)["vms"][0]["tasks"][0]["task_struct"]
    table = _args_for(str(img), str(log) if log else None, tmp_path, task)
    ran = {}
    commands = {p for p, has_json in _leaf_commands().items() if has_json}  # the rest print no document
    commands.add(("events",))  # a group that is also a command (`events LOG`)
    for path in sorted(commands):
        args = table.get(path, [*path, str(img)])  # a command added later: IMAGE --json
        if args is None:
            continue
        rc = main([*args, "--json"])
        out = capsys.readouterr().out
        if rc in (2, 4) and not out.strip():
            continue  # refused with a one-line error (e.g. `vms` on a plain guest dump): no document
        assert rc in (0, 1, 5), (path, rc)
        docs = _docs(out)
        assert docs, path
        bad = [v for d in docs for v in violations(d)]
        assert not bad, (path, bad[:10])
        ran[path] = docs
    return ran


def test_every_command_json_on_the_sample(tmp_path, capsys, monkeypatch):
    ran = _run_all(SAMPLE, None, tmp_path, capsys, monkeypatch)
    assert {("ps",), ("info",), ("symbols",), ("translate",), ("struct",), ("read",), ("verify",)} <= set(ran)
    (sym,) = ran[("symbols",)]
    assert sym["address"] == INIT_TASK
    (ps,) = ran[("ps",)]
    assert ps["vms"][0]["vm"] == "guest" and ps["vms"][0]["vm_id"] is None
    (st,) = ran[("struct",)]
    parent = next(f for f in st["fields"] if f["name"] == "real_parent")
    assert parent["value"].startswith("0x")  # a pointer is an address, whatever its size


def test_every_command_json_on_the_nested_capture(tmp_path, capsys, monkeypatch):
    cap = get_capture(NESTED_CAPTURE)
    ran = _run_all(cap.image, cap.smclog, tmp_path, capsys, monkeypatch)
    vm_id = cap.ground_truth["vms"][0]["vm_id"]
    (ps,) = ran[("ps",)]
    assert ps["vms"][0]["vm"] == str(vm_id) and ps["vms"][0]["vm_id"] == vm_id
    (info,) = ran[("info",)]
    assert info["vms"][0]["vm_id"] == vm_id
    assert ran[("events",)]
    # verify's findings name their VM the same way (a memory-only VM: its label, vm_id null)
    assert main(["verify", str(cap.image), "--events", str(cap.smclog), "--until", "0", "--no-guests", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert not violations(doc)
    (f,) = [f for f in doc["findings"] if f["kind"] == "hidden-vm"]
    assert f["vm"].startswith("kvm-") and f["vm_id"] is None and f["details"]["struct_kvm"].startswith("0x")


def test_the_checker_catches_each_kind_of_violation():
    assert violations({"address": 5})
    assert violations({"x": {"task_struct": 0xFFFF_0000_0000_0000}})
    assert violations({"count": 2**60})
    assert violations({"vm": 97})
    assert violations({"vm_id": "kvm-97"})
    assert not violations({"vm": "97", "vm_id": 97, "address": "0x10", "size": 4096, "pid": 1})
