"""`armvmi sweep` on a real Dask LocalCluster: every image's rows equal what
`armvmi ps IMAGE --jsonl` prints for it alone, a corrupt image is an error
row (exit 5), --resume skips what is done and survives a torn last line.

Runs without ../shared on the shipped sample plus a corrupt file; with the
shared captures it adds both guest dumps and a composed one-VM host."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from armvmi_cli.cli.app import main

pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "snapshots" / "deb61-generic-nokaslr.armvmi"
sys.path.insert(0, str(REPO / "tests"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """(images, extra CLI args): the sample, a corrupt image and, when the
    captures are there, the two guest dumps and a composed host."""
    # tests/conftest.py itself (other folders have a conftest module of their own)
    conftest = next(m for m in list(sys.modules.values())
                    if getattr(m, "__file__", None) and Path(m.__file__) == Path(__file__).parent.parent / "conftest.py")

    d = tmp_path_factory.mktemp("fleet")
    corrupt = d / "corrupt.img"
    corrupt.write_bytes(os.urandom(1 << 20))
    images, args = [str(SAMPLE), str(corrupt)], []
    caps = {}
    for name in ("deb61-generic-nokaslr", "deb61-cloud-kaslr"):
        src = conftest.SHARED_CAPTURES / name
        if (src / "ground_truth.json").exists():
            caps[name] = conftest.Capture(name, src)
    if caps:
        from fixtures.compose import GuestSpec, S2Geometry, compose_host

        for c in caps.values():
            images.append(str(c.image))
            args += ["--system-map", str(c.system_map)]
        first = next(iter(caps.values()))
        host = compose_host(d / "host.elf", [GuestSpec(3, first, S2Geometry(4096, 40, 1))])
        images.append(str(host.image))
    return images, args


def _alone(capsys, image, args):
    rc = main(["ps", image, "--jsonl", *args])
    out = capsys.readouterr().out
    return rc, [{"image": image, **json.loads(line)} for line in out.splitlines()]


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_sweep_equals_each_view_alone(fleet, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    images, args = fleet
    out = tmp_path / "out.jsonl"
    manifest = tmp_path / "images.txt"
    manifest.write_text("# the fleet\n" + "\n".join(images[1:]) + "\n\n")
    rc = main(["sweep", "ps", images[0], "--manifest", str(manifest), "-o", str(out), "--workers", "2", *args])
    err = capsys.readouterr().err
    assert rc == 5, err  # the corrupt image failed
    rows = _rows(out)
    assert {r["image"] for r in rows} == set(images)
    for img in images:
        got = [r for r in rows if r["image"] == img]
        if img.endswith("corrupt.img"):
            (row,) = got
            assert set(row) == {"image", "error", "exit_code"} and row["exit_code"] == 2
            continue
        rc_alone, want = _alone(capsys, img, args)
        assert rc_alone == 0 and want and got == want, img
        assert all("vm" in r for r in got)
    assert "1 failed" in err


def test_resume_skips_done_images_and_repairs_a_torn_line(fleet, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    images, args = fleet
    sample, corrupt = images[0], images[1]
    out = tmp_path / "out.jsonl"
    # A sweep killed while writing: the sample done, then half of a line.
    _rc, sample_rows = _alone(capsys, sample, [])
    block = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in sample_rows)
    out.write_text(block + block[:40])
    # Without --resume an existing OUT is refused.
    assert main(["sweep", "ps", sample, "-o", str(out)]) == 2
    capsys.readouterr()
    rc = main(["sweep", "ps", sample, corrupt, "-o", str(out), "--resume", "--workers", "1"])
    assert rc == 5
    rows = _rows(out)  # every line parses: the torn one is gone
    assert [r for r in rows if r["image"] == sample] == sample_rows  # redone once (it was last), not twice
    assert [r["image"] for r in rows if "exit_code" in r] == [corrupt]
    # Everything done: a second resume redoes only the last image.
    before = [r for r in rows if r["image"] == sample]
    rc = main(["sweep", "ps", sample, corrupt, "-o", str(out), "--resume", "--workers", "1"])
    rows2 = _rows(out)
    assert rc == 5 and [r for r in rows2 if r["image"] == sample] == before
    assert len(rows2) == len(rows)


def test_resume_point_units(tmp_path):
    from armvmi_cli.errors import UsageError
    from armvmi_cli.fleet import resume_point

    p = tmp_path / "o.jsonl"
    assert resume_point(p) == {} and not p.exists()
    p.write_text('{"image":"a","vm":"1","x":1}\n{"image":"a","vm":"1","x":2}\n{"image":"b","error":"bad","exit_code":2}\n'
                 '{"image":"c","vm":"1","x":1}\n{"ima')
    assert resume_point(p) == {"a": None, "b": "bad"}
    assert p.read_text() == '{"image":"a","vm":"1","x":1}\n{"image":"a","vm":"1","x":2}\n{"image":"b","error":"bad","exit_code":2}\n'
    p.write_text('{"image":"a"}\nnot json\n{"image":"b"}\n')
    with pytest.raises(UsageError):
        resume_point(p)


def test_without_distributed_one_line_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    rc = main(["sweep", "ps", str(SAMPLE), "-o", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "pip install 'armvmi[fleet]'" in err and err.count("\n") == 0
    assert not (tmp_path / "o.jsonl").exists()


def test_unknown_view_is_a_usage_error(capsys, tmp_path):
    rc = main(["sweep", "nosuchview", str(SAMPLE), "-o", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "no view 'nosuchview'" in capsys.readouterr().err


def test_sweep_on_a_running_cluster(capsys, tmp_path, monkeypatch):
    from distributed import LocalCluster

    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "o.jsonl"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        rc = main(["sweep", "ps", str(SAMPLE), "-o", str(out), "--scheduler", cluster.scheduler_address])
    assert rc == 0
    _rc, want = _alone(capsys, str(SAMPLE), [])
    assert _rows(out) == want


def test_bad_scheduler_address_is_one_line_exit_2(capsys, tmp_path):
    rc = main(["sweep", "ps", str(SAMPLE), "-o", str(tmp_path / "o.jsonl"), "--scheduler", "nosuch://host:1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len([e for e in err if e.startswith("armvmi: error:")]) == 1 and "nosuch" in err[-1]
    assert not (tmp_path / "o.jsonl").exists()
