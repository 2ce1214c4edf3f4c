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
