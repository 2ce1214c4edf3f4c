"""The per-image facts cache (session._facts_*): keyed by the image's identity
including a digest of sampled pages, hints only (re-verified), and --no-cache
writes nothing.  Runs on the shipped sample (no ../shared needed)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from armvmi_cli import session as S
from armvmi_cli.cli.app import main

SAMPLE = Path(__file__).resolve().parents[2] / "snapshots" / "deb61-generic-nokaslr.armvmi"


@pytest.fixture
def image(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    img = tmp_path / "img.armvmi"
    shutil.copyfile(SAMPLE, img)
    return img


def _ps(capsys, img, *extra):
    rc = main(["ps", str(img), "--json", *extra])
    return rc, json.loads(capsys.readouterr().out)["vms"]


def _facts(img):
    with S.Session.open(img) as s:
        s._facts_get("-")
        return dict(s._facts), s._facts_path()


def test_facts_are_written_and_served(capsys, image):
    rc, _ = _ps(capsys, image)
    assert rc == 0
    facts, path = _facts(image)
    assert path.exists() and any(k.startswith("vmcoreinfo:") for k in facts)


def test_changed_image_with_forged_mtime_gets_no_stale_facts(capsys, image):
    _ps(capsys, image)
    facts, path = _facts(image)
    assert facts
    st = os.stat(image)
    # Same bytes, mtime set back: the same identity (control).
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _facts(image) == (facts, path)
    # One byte of a sampled page changed, size and mtime forged back.
    off = (st.st_size * 8 // (S.SAMPLE_PAGES + 1)) & ~0xFFF
    with open(image, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0xFF]))
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(image)
    assert (st2.st_size, st2.st_mtime_ns, st2.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    new_facts, new_path = _facts(image)
    assert new_path != path and new_facts == {}


def test_wrong_facts_never_change_the_answer(capsys, image):
    rc0, want = _ps(capsys, image, "--no-cache")
    _facts_dict, path = _facts(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Addresses that hold no VMCOREINFO / no init_task: verified, rejected, searched for again.
    path.write_text(json.dumps({"vmcoreinfo:host": [0x40001000], "vmcoreinfo:guest (plain dump, no stage 2)": [0x40002000],
                                "init_task:0xffff800008010000": 0xFFFF800009000000}))
    rc, got = _ps(capsys, image)
    assert rc == rc0 == 0 and got == want
    assert json.loads(path.read_text())["vmcoreinfo:host"] != [0x40001000]  # the real address replaced it


def test_no_cache_writes_nothing(capsys, image, tmp_path):
    rc, vms = _ps(capsys, image, "--no-cache")
    assert rc == 0 and vms[0]["tasks"]
    cache = tmp_path / "cache"
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]


@pytest.mark.capture
def test_kallsyms_and_init_task_facts_are_verified_hints(capsys, kaslr_capture, tmp_path, monkeypatch):
    """No System.map: kallsyms and init_task are found by search on the first
    run and from the facts afterwards; wrong facts are rejected, not used."""
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    img = kaslr_capture.image
    truth = {(t["pid"], t["comm_task_struct"]) for t in kaslr_capture.ground_truth["tasks"]}
    rc, first = _ps(capsys, img)
    assert rc == 0 and {(t["pid"], t["comm"]) for t in first[0]["tasks"]} == truth
    facts, path = _facts(img)
    ks = [k for k in facts if k.startswith("kallsyms:")]
    it = [k for k in facts if k.startswith("init_task:")]
    assert ks and it
    rc, second = _ps(capsys, img)
    assert rc == 0 and second == first
    forged = dict(facts)
    forged[ks[0]] = [facts[ks[0]][0] + 0x1000, *facts[ks[0]][1:]]
    forged[it[0]] = facts[it[0]] + 0x40
    path.write_text(json.dumps(forged))
    rc, third = _ps(capsys, img)
    assert rc == 0 and third == first
    assert _facts(img)[0] == facts  # the searched-for locations replaced the wrong ones
