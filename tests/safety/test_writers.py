"""Every command that writes: never over an input, never over an existing file
without --force, never anything but a regular file or a new path, and
atomically (no temporary file left behind, nothing half-written visible)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import cli, dev_null, one_line_error, run


def digest(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def no_temp_files(d: Path) -> None:
    left = [p.name for p in Path(d).iterdir() if "armvmi-partial" in p.name or ".tmp" in p.name or p.name.endswith(".part")]
    assert not left, left


def jsonl_of(tmp_path: Path) -> Path:
    """A JSON Lines event log, as `armvmi events LOG --json` prints it."""
    from armvmi_cli.firmware.builder import LogBuilder

    b = LogBuilder()
    b.driver_init()
    log = tmp_path / "ev.smclog"
    b.write(log)
    from armvmi_cli.cli.app import main

    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        main(["events", str(log), "--json"])
    p = tmp_path / "ev.jsonl"
    p.write_text(buf.getvalue())
    return p


# (name, argv builder(image, out) for a raw image, whether the image's sibling .smclog is an input)
WRITERS = {
    "pack": lambda img, out: ["snapshot", "pack", img, out],
    "export-lime": lambda img, out: ["snapshot", "export", img, out],
    "export-avml": lambda img, out: ["snapshot", "export", img, out, "--format", "avml"],
    "read-o": lambda img, out: ["read", img, "--hpa", "0x100", "64", "-o", out],
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_output_that_is_the_image_is_refused(writer, raw_image, capsys):
    before = digest(raw_image)
    for force in ([], ["--force"]):
        rc, _, err = cli(capsys, *WRITERS[writer](raw_image, raw_image), *force)
        assert rc == 2
        assert "input" in one_line_error(err)
    assert digest(raw_image) == before
    no_temp_files(raw_image.parent)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_output_linked_to_an_input_is_refused(writer, raw_image, capsys, tmp_path):
    sib = Path(str(raw_image) + ".smclog")
    keep = {p: digest(p) for p in (raw_image, sib)}
    hard = tmp_path / "hard"
    os.link(raw_image, hard)
    sym = tmp_path / "sym"
    sym.symlink_to(raw_image)
    for out in (hard, sym, sib):
        rc, _, err = cli(capsys, *WRITERS[writer](raw_image, out), "--force")
        assert rc == 2, (out, err)
        one_line_error(err)
    assert {p: digest(p) for p in keep} == keep
    no_temp_files(tmp_path)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_existing_file_needs_force_and_device_never(writer, raw_image, capsys, tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(b"someone else's file")
    rc, _, err = cli(capsys, *WRITERS[writer](raw_image, other))
    assert rc == 2 and "--force" in one_line_error(err)
    assert other.read_bytes() == b"someone else's file"
    for bad in (dev_null(), tmp_path):
        rc, _, err = cli(capsys, *WRITERS[writer](raw_image, bad), "--force")
        assert rc == 2
        one_line_error(err)
    assert Path(dev_null()).is_char_device()
    rc, _, err = cli(capsys, *WRITERS[writer](raw_image, other), "--force")
    assert rc == 0, err
    assert other.read_bytes() != b"someone else's file"
    no_temp_files(tmp_path)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_fifo_output_is_refused_without_blocking(writer, raw_image, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    r = run(*WRITERS[writer](raw_image, fifo), "--force", timeout=60)
    assert r.returncode == 2, r.stderr
    assert "FIFO" in one_line_error(r.stderr)


def test_pack_never_writes_over_its_events_or_page_list(raw_image, capsys, tmp_path):
    ev = Path(str(raw_image) + ".smclog")
    ev2 = tmp_path / "given.smclog"
    ev2.write_bytes(ev.read_bytes())
    pages = tmp_path / "pages.txt"
    pages.write_text("0x0\n0x1000\n")
    keep = {p: digest(p) for p in (ev, ev2, pages, raw_image)}
    for argv in (["--events", ev2, "--force"], ["--pages-from", pages, "--force"]):
        out = argv[1]
        rc, _, err = cli(capsys, "snapshot", "pack", raw_image, out, *argv)
        assert rc == 2 and "input" in one_line_error(err)
    assert {p: digest(p) for p in keep} == keep


def test_new_output_is_complete_and_alone(raw_image, capsys, tmp_path):
    out = tmp_path / "new.armvmi"
    rc, _, err = cli(capsys, "snapshot", "pack", raw_image, out)
    assert rc == 0, err
    rc, o, _ = cli(capsys, "snapshot", "info", out, "--json", "--check")
    assert rc == 0 and json.loads(o)["format"] == "armvmi"
    no_temp_files(tmp_path)


def test_unfinished_output_is_never_read_as_an_image(raw_image, capsys, tmp_path):
    """What a killed pack leaves (SIGKILL gives no chance to clean up) is refused by every reader."""
    from armvmi_cli.output import Output

    o = Output(tmp_path / "out.armvmi")
    o.__enter__()
    Path(o.tmp).write_bytes(raw_image.read_bytes())
    for argv in (["snapshot", "info", o.tmp], ["read", o.tmp, "--hpa", "0", "16"], ["snapshot", "pack", o.tmp, tmp_path / "x"]):
        rc, _, err = cli(capsys, *argv)
        assert rc == 2 and "unfinished" in one_line_error(err)
    o._remove_tmp()
    o._untrap()


def test_ps_record_pages_never_replaces_an_input(sample, capsys, tmp_path):
    before = digest(sample)
    for out in (sample, dev_null()):
        rc, _, err = cli(capsys, "ps", sample, "--record-pages", out, "--force")
        assert rc == 2, err
        one_line_error(err)
    assert digest(sample) == before
    pages = tmp_path / "pages.txt"
    pages.write_text("precious\n")
    rc, _, err = cli(capsys, "ps", sample, "--record-pages", pages)
    assert rc == 2 and "--force" in err and pages.read_text() == "precious\n"
    rc, _, err = cli(capsys, "ps", sample, "--record-pages", pages, "--force")
    assert rc == 0, err
    assert len(pages.read_text().splitlines()) > 100
    no_temp_files(tmp_path)


def test_read_o_of_the_sample_kernel(sample, capsys, tmp_path):
    out = tmp_path / "bytes.bin"
    rc, _, err = cli(capsys, "read", sample, "init_task", "16", "-o", sample)
    assert rc == 2 and "input" in one_line_error(err)
    rc, _, err = cli(capsys, "read", sample, "0x0", "16", "--hpa", "-o", out)
    assert rc == 4 and not out.exists()  # a hole: nothing written, no temp file
    no_temp_files(tmp_path)


def test_events_import_leaves_a_user_part_file_alone(tmp_path, capsys):
    src = jsonl_of(tmp_path)
    out = tmp_path / "new.smclog"
    part = tmp_path / "new.smclog.part"
    part.write_text("the user's own file")
    rc, _, err = cli(capsys, "events", "import", src, out)
    assert rc == 0, err
    assert part.read_text() == "the user's own file"
    rc, _, err = cli(capsys, "events", "import", src, src, "--force")
    assert rc == 2 and "input" in one_line_error(err)
    rc, _, err = cli(capsys, "events", "import", src, out)
    assert rc == 2 and "--force" in one_line_error(err)


def test_profile_create_never_truncates_its_own_map(tmp_path, capsys):
    from armvmi_cli.symbols.profiles import SYSTEM_MAP

    from .helpers import REPO

    src = REPO / "profiles" / "6.1.0-56-arm64" / SYSTEM_MAP
    prof = tmp_path / "P"
    rc, _, err = cli(capsys, "profile", "create", prof, "-m", src, "--release", "6.1.0-56-arm64")
    assert rc == 0, err
    inside = prof / SYSTEM_MAP
    before = digest(inside)
    rc, _, err = cli(capsys, "profile", "create", "--force", "-m", inside, "--release", "6.1.0-56-arm64", prof)
    assert rc == 2 and "input" in one_line_error(err)
    assert digest(inside) == before
    # a directory that is not a profile is not armvmi's to write into
    other = tmp_path / "notes"
    other.mkdir()
    (other / "profile.txt").write_text("mine")
    rc, _, err = cli(capsys, "profile", "create", "--force", "-m", src, "--release", "6.1.0-56-arm64", other)
    assert rc == 2 and "not an armvmi profile" in one_line_error(err)
    assert sorted(p.name for p in other.iterdir()) == ["profile.txt"]
    no_temp_files(prof)


# --- a seeded property test over the rules ---------------------------------

KINDS = ("new", "existing", "image", "hardlink", "symlink-image", "symlink-other", "dangling", "sibling-log", "directory", "devnull")


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writer=st.sampled_from(sorted(WRITERS)), kind=st.sampled_from(KINDS), force=st.booleans())
def test_writer_rules_hold_for_every_kind_of_output(writer, kind, force, raw_image, capsys):
    d = raw_image.parent
    sib = Path(str(raw_image) + ".smclog")
    work = d / "w"
    work.mkdir(exist_ok=True)
    for p in work.iterdir():
        p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    other = work / "other"
    other.write_bytes(b"other")
    out = {
        "new": work / "new",
        "existing": other,
        "image": raw_image,
        "hardlink": work / "hard",
        "symlink-image": work / "sym",
        "symlink-other": work / "sym2",
        "dangling": work / "dangle",
        "sibling-log": sib,
        "directory": work / "dir",
        "devnull": Path(dev_null()),
    }[kind]
    if kind == "hardlink":
        os.link(raw_image, out)
    elif kind == "symlink-image":
        out.symlink_to(raw_image)
    elif kind == "symlink-other":
        out.symlink_to(other)
    elif kind == "dangling":
        out.symlink_to(work / "nowhere")
    elif kind == "directory":
        out.mkdir()
    keep = {p: digest(p) for p in (raw_image, sib, other)}
    rc, _, err = cli(capsys, *WRITERS[writer](raw_image, out), *(["--force"] if force else []))
    allowed = kind == "new" or (kind == "existing" and force)
    if allowed:
        assert rc == 0, err
        assert out.is_file() and out.stat().st_size > 0
        keep.pop(other, None)
    else:
        assert rc == 2, (kind, force, err)
        one_line_error(err)
        assert not (work / "new").exists()
    assert {p: digest(p) for p in keep} == keep
    if kind in ("symlink-image", "symlink-other", "dangling"):
        assert out.is_symlink()
    no_temp_files(work)
    no_temp_files(d)
