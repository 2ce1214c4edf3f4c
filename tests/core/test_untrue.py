"""Issue 11, "it says untrue things": what armvmi prints must be what memory holds."""

from __future__ import annotations

import json

import pytest

from armvmi_cli.cli.app import main


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def no_profiles(monkeypatch):
    from armvmi_cli.symbols import profiles

    monkeypatch.setattr(profiles, "find_profiles", lambda dirs=None: [])  # the repo's profile would fit


def test_info_banner_is_the_one_in_memory_without_symbols(guest_capture, cache, no_profiles, capsys):
    """kallsyms has no data symbols (no linux_banner): the banner is found in
    the kernel image, not rebuilt from utsname (which lacks the compiler part)."""
    assert main(["info", str(guest_capture.image), "--json"]) == 0
    (vm,) = json.loads(capsys.readouterr().out)["vms"]
    assert vm["kernel"]["symbols"].startswith("kallsyms")
    assert vm["kernel"]["banner"] == guest_capture.ground_truth["proc_version"]


def test_info_banner_with_a_system_map(guest_capture, cache, capsys):
    assert main(["info", str(guest_capture.image), "-m", str(guest_capture.system_map), "--json"]) == 0
    (vm,) = json.loads(capsys.readouterr().out)["vms"]
    assert vm["kernel"]["banner"] == guest_capture.ground_truth["proc_version"]


def test_host_and_guest_banners_on_the_nested_capture(nested_capture, cache, no_profiles, capsys):
    from armvmi_cli.host.kernel import host_kernel
    from armvmi_cli.session import Session

    gt = nested_capture.ground_truth
    s = Session.open(nested_capture.image, events=nested_capture.smclog)
    assert host_kernel(s).kernel.info.banner == gt["host"]["proc_version"]
    assert s.vm().kernel.info.banner == gt["vms"][0]["guest_proc_version"]


def test_verify_on_a_plain_guest_does_not_call_it_host(guest_capture, cache, capsys):
    rc = main(["verify", str(guest_capture.image), "--json"])
    out = json.loads(capsys.readouterr().out)
    lines = out["checked"] + out["skipped"] + [f["message"] for f in out["findings"]]
    assert not any(line.startswith("host") for line in lines), lines
    assert not any("--host-system-map" in line for line in lines)
    assert any(line.startswith("guest: task list and PID IDR agree") for line in out["checked"])
    assert rc in (0, 5)
    rc = main(["verify", str(guest_capture.image), "-m", str(guest_capture.system_map), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["findings"] == []
    assert not any("host" in line for line in out["checked"])


def test_translate_on_a_plain_guest_says_guest_physical(nokaslr_capture, cache, capsys):
    img = str(nokaslr_capture.image)
    assert main(["translate", img, "--gva", "init_task", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [name for name, _ in out["chain"]] == ["gva", "gpa"]
    assert {st["table_layer"] for w in out["walks"] for st in w["steps"]} == {"guest physical"}
    assert main(["translate", img, "--gva", "init_task"]) == 0
    text = capsys.readouterr().out
    assert "host physical" not in text and "hpa" not in text and "guest physical" in text


def test_struct_at_an_address_that_does_not_map_is_exit_4(nokaslr_capture, cache, capsys):
    assert main(["struct", "task_struct", "0", str(nokaslr_capture.image)]) == 4
    cap = capsys.readouterr()
    assert "<unreadable" not in cap.out and "translation fault" in cap.err
    assert main(["struct", "task_struct", "init_task", str(nokaslr_capture.image), "--json"]) == 0


def test_read_json(nokaslr_capture, cache, capsys):
    img = str(nokaslr_capture.image)
    assert main(["read", img, "init_task", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layer"] == "gva" and out["length"] == 32 and len(out["data_hex"]) == 64
    gpa = int(out["address"], 16)
    assert main(["translate", img, "--gva", out["address"], "--json"]) == 0
    gpa = int(json.loads(capsys.readouterr().out)["chain"][-1][1], 16)
    assert main(["read", img, "--gpa", hex(gpa), "32", "--json"]) == 0
    phys = json.loads(capsys.readouterr().out)
    assert phys["data_hex"] == out["data_hex"] and phys["address"] == hex(gpa) and phys["layer"] == "gpa"


def test_events_that_is_not_a_regular_file_says_what_it_is(nokaslr_capture, cache, capsys, tmp_path):
    img = str(nokaslr_capture.image)
    for path, want in (("/dev/null", "character device"), (str(tmp_path), "directory"),
                       (str(tmp_path / "missing.smclog"), "no such file")):
        assert main(["ps", img, "--events", path]) == 2
        err = capsys.readouterr().err
        assert want in err, (path, err)
        if want != "no such file":
            assert "no such file" not in err
