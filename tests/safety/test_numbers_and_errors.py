"""Numbers and names, exit codes and one-line messages, the Python API's arguments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import armvmi_cli
from armvmi_cli.cli.options import parse_int
from armvmi_cli.errors import ArmvmiError, UsageError

from .helpers import cli, one_line_error, run


# --- parse_int ------------------------------------------------------------------

@pytest.mark.parametrize("text", ["٣", "５", " 5", "5 ", "\t5", "0x", "1e3", "+5", "--5", "0x_1", "", "5\n", "0x１"])
def test_parse_int_takes_ascii_numbers_only(text):
    with pytest.raises(UsageError):
        parse_int(text, "N")


def test_parse_int_ranges():
    assert parse_int("0x1000", "N") == 4096 and parse_int("1_000", "N") == 1000 and parse_int("0b101", "N") == 5
    assert parse_int("-5", "N", signed=True) == -5
    with pytest.raises(UsageError, match="negative"):
        parse_int("-1", "--phys-base", bits=64)
    with pytest.raises(UsageError, match="out of range"):
        parse_int(hex(1 << 64), "ADDRESS", bits=64)
    assert parse_int(hex((1 << 64) - 1), "ADDRESS", bits=64) == (1 << 64) - 1


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789abfxXoOB_+- \t\n٣５"), max_size=8))
def test_parse_int_never_accepts_what_a_c_tool_would_not(text):
    import re

    try:
        v = parse_int(text, "N")
    except UsageError:
        return
    assert re.fullmatch(r"(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9_]+)", text, re.ASCII), text
    assert v == int(text, 0)


# --- addresses on the command line -------------------------------------------------

@pytest.mark.parametrize("addr", ["0x1ffff800009cc8dc0", "init_task+0x10000000000000000", "-5", "٣", " 0x10", "init_task-0xffffffffffffffffff"])
def test_addresses_never_wrap(addr, sample, capsys):
    rc, out, err = cli(capsys, "read", sample, addr, "16")
    assert rc == 2, (addr, out, err)
    one_line_error(err)
    assert not out


def test_physical_addresses_never_wrap(raw_image, capsys):
    for argv in (["--hpa", hex(1 << 64), "16"], ["--hpa", "-1", "16"], ["--hpa", hex((1 << 64) - 8), "16"]):
        rc, out, err = cli(capsys, "read", raw_image, *argv)
        assert rc == 2 and not out, (argv, err)
        one_line_error(err)


def test_phys_base_must_be_a_non_negative_64_bit_number(raw_image, capsys):
    for bad in ("-1", hex(1 << 64), "٣", " 5"):
        for argv in (["read", raw_image, "--hpa", "0", "16", "--phys-base", bad], ["snapshot", "info", raw_image, "--phys-base", bad]):
            rc, _, err = cli(capsys, *argv)
            assert rc == 2, (argv, err)
            one_line_error(err)


def test_struct_of_a_non_struct_type(sample, capsys):
    rc, _, err = cli(capsys, "struct", "int", "init_task", sample)
    assert rc == 2 and "not a struct" in one_line_error(err)


# --- exit codes -----------------------------------------------------------------

def test_host_system_map_missing_or_garbage_is_exit_2(sample, capsys, tmp_path):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01 not a map at all\n")
    for m in (tmp_path / "missing", garbage):
        rc, _, err = cli(capsys, "ps", sample, "--host-system-map", m)
        assert rc == 2, err
        assert str(m) in one_line_error(err)


def test_pages_from_matching_no_page_writes_nothing(raw_image, capsys, tmp_path):
    pages = tmp_path / "pages"
    pages.write_text("0x7000000000\n0x7000001000\n")
    out = tmp_path / "o.armvmi"
    rc, _, err = cli(capsys, "snapshot", "pack", raw_image, out, "--pages-from", pages)
    assert rc == 2 and "none of its 2 page" in one_line_error(err)
    assert not out.exists()
    pages.write_text("# nothing\n")
    rc, _, err = cli(capsys, "snapshot", "pack", raw_image, out, "--pages-from", pages)
    assert rc == 2 and not out.exists()
    pages.write_text("0x1000\n" + "٣\n")
    rc, _, err = cli(capsys, "snapshot", "pack", raw_image, out, "--pages-from", pages)
    assert rc == 2 and ":2:" in one_line_error(err)


def test_events_bogus_event_lists_the_names(raw_image, capsys):
    rc, out, err = cli(capsys, "events", str(raw_image) + ".smclog", "--event", "bogus")
    line = one_line_error(err)
    assert rc == 2 and "VM_CREATE" in line and "DRIVER_INIT" in line
    rc, out, err = cli(capsys, "events", str(raw_image) + ".smclog", "--event", "driver-init")
    assert rc == 0 and "DRIVER_INIT" in out


@pytest.mark.parametrize("argv", [["snapshot", "pack"], ["ps", "--bogus", "x"], ["bogus"], ["ps"], ["read", "x", "--hpa"],
                                  ["ps", "img", "--until", "abc"], ["snapshot", "export", "a", "b", "--format"]])
def test_usage_errors_are_one_line(argv, capsys):
    rc, out, err = cli(capsys, *argv)
    assert rc == 2
    one_line_error(err)


def test_usage_error_in_a_real_process_is_one_line():
    r = run("snapshot", "pack", timeout=60)
    assert r.returncode == 2
    assert "Missing argument" in one_line_error(r.stderr)


def test_memory_error_prints_a_real_message(raw_image, capsys, monkeypatch):
    import armvmi_cli.memory.detect as detect

    def boom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(detect, "sniff", boom)
    rc, _, err = cli(capsys, "snapshot", "info", raw_image)
    assert rc == 2 and "out of memory" in one_line_error(err)


# --- the Python API -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(image=None), dict(image=5), dict(image=b"\0"), dict(phys_base="0x10"), dict(phys_base=-1),
                                    dict(phys_base=True), dict(system_map=7), dict(events=3.5), dict(until="1"), dict(isf=[1])])
def test_api_bad_arguments_are_armvmi_errors(kwargs, raw_image):
    kwargs.setdefault("image", raw_image)
    with pytest.raises(ArmvmiError):
        armvmi_cli.open(**kwargs)


def test_api_rejects_unknown_keywords(raw_image):
    from armvmi_cli.session import Session

    with pytest.raises(ArmvmiError, match="sytem_map"):
        armvmi_cli.open(raw_image, sytem_map="x")
    with pytest.raises(TypeError):
        Session.open(raw_image, phys_bse=0)


def test_api_negative_or_wrapping_reads(raw_image):
    with armvmi_cli.open(raw_image) as s:
        assert s.memory.read(0x10, 4) == bytes(range(16, 20))
        for pa, n in ((0, -1), (-16, 4), (1 << 64, 1), ("0", 4)):
            with pytest.raises(ArmvmiError):
                s.memory.read(pa, n)
