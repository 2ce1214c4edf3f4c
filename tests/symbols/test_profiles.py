"""Profiles: create/list/show through the CLI, search path, banner matching."""

from __future__ import annotations

import json

import pytest

from armvmi_cli.cli.app import main
from armvmi_cli.errors import SymbolError
from armvmi_cli.symbols import profiles
from armvmi_cli.symbols.profiles import Profile, create_profile, find_profile_for_banner, find_profiles, load_profile

from .test_isf import MINI
from .test_system_map import BASE, synth_map

BANNER = "Linux version 6.1.0-test (gcc) #1 SMP Debian 6.1.1-1"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ARMVMI_PROFILES", str(tmp_path / "profiles"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(profiles, "search_path", lambda: [tmp_path / "profiles", tmp_path / "xdg" / "armvmi" / "profiles"])


@pytest.fixture
def smap(tmp_path):
    p = tmp_path / "System.map-6.1.0-test"
    p.write_text(synth_map())
    return p


def test_create_from_system_map_only(tmp_path, smap, capsys):
    out = tmp_path / "profiles" / "k1"
    assert main(["profile", "create", str(out), "--system-map", str(smap)]) == 0
    assert "created profile 6.1.0-test" in capsys.readouterr().out
    p = load_profile("6.1.0-test")
    assert p.dir == out and p.release == "6.1.0-test" and p.banner is None and p.arch == "aarch64"
    assert (out / "System.map.xz").exists() and not p.has_types and p.types() is None
    assert p.system_map["_text"] == BASE and len(p.system_map) == 1508
    assert p.match_banner(BANNER) and not p.match_banner(BANNER.replace("6.1.0-test", "6.1.0-other"))
    assert not p.match_banner(None)


def test_create_with_isf_types_and_banner(tmp_path, smap, capsys):
    isf = tmp_path / "k.json"
    doc = json.loads(json.dumps(MINI))
    doc["symbols"]["_text"] = {"address": BASE}
    doc["symbols"]["linux_banner"]["address"] = BASE + 0x200000
    isf.write_text(json.dumps(doc))
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_ARM64_VA_BITS=48\nCONFIG_ARM64_4K_PAGES=y\nCONFIG_DEBUG_INFO_BTF=y\n")
    out = tmp_path / "xdg" / "armvmi" / "profiles" / "k2"
    assert main(["profile", "create", str(out), "-m", str(smap), "--isf", str(isf), "--config", str(cfg), "--name", "mini"]) == 0
    p = load_profile("mini")
    assert p.banner == "Linux version 6.1.0-test (gcc)" and p.release == "6.1.0-test"
    assert (p.page_size, p.va_bits) == (4096, 48)
    tm = p.types()
    assert tm.source == "isf" and tm.offsetof("task_struct", "comm") == 40
    assert p.match_banner("Linux version 6.1.0-test (gcc)\n") and not p.match_banner(BANNER)  # exact banner when known
    capsys.readouterr()
    assert main(["profile", "show", "mini", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["types_summary"] == {"source": "isf", "structs": 3} and shown["system_map"]["symbols"] == 1508
    assert main(["profile", "show", str(out)]) == 0
    text = capsys.readouterr().out
    assert "isf, 3 structs/unions" in text and "VA bits     48" in text


def test_isf_for_another_build_is_refused(tmp_path, smap):
    isf = tmp_path / "k.json"
    doc = json.loads(json.dumps(MINI))
    doc["symbols"]["_text"] = {"address": BASE + 0x1000}
    isf.write_text(json.dumps(doc))
    with pytest.raises(SymbolError, match="another kernel build: _text"):
        create_profile(tmp_path / "p", smap, isf=isf)


def test_list_and_banner_lookup(tmp_path, smap, capsys):
    create_profile(tmp_path / "profiles" / "a", smap, release="6.1.0-test")
    create_profile(tmp_path / "profiles" / "b", smap, banner=BANNER.replace("6.1.0-test", "6.1.0-two"))
    (tmp_path / "profiles" / "broken").mkdir()
    (tmp_path / "profiles" / "broken" / "profile.json").write_text("{nope")
    assert [p.name for p in find_profiles()] == ["6.1.0-test", "6.1.0-two"]
    assert find_profile_for_banner(BANNER).name == "6.1.0-test"
    assert find_profile_for_banner(BANNER.replace("6.1.0-test", "6.1.0-two")).name == "6.1.0-two"
    assert find_profile_for_banner("Linux version 5.10.0 (x)") is None
    capsys.readouterr()
    assert main(["profile", "list", "--json"]) == 0
    assert [d["name"] for d in json.loads(capsys.readouterr().out)] == ["6.1.0-test", "6.1.0-two"]
    assert main(["profile", "list"]) == 0
    assert "6.1.0-two" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--release", "6.1.0-x", "--banner", BANNER], "disagrees with the banner"),
    (["--name", "bad/name", "--release", "r"], "may only hold"),
])
def test_bad_create_arguments(tmp_path, smap, capsys, args, message):
    assert main(["profile", "create", str(tmp_path / "p"), "-m", str(smap), *args]) == 2
    assert message in capsys.readouterr().err


def test_errors_are_one_line(tmp_path, smap, capsys):
    stub = tmp_path / "System.map"
    stub.write_text("ffffffffffffffff B The real System.map is in the linux-image-6.1.0-56-arm64-dbg package\n")
    assert main(["profile", "create", str(tmp_path / "p"), "-m", str(stub), "--release", "x"]) == 2
    assert "use the one from the -dbg package" in capsys.readouterr().err
    assert main(["profile", "show", "nope"]) == 2
    assert "no profile named 'nope'" in capsys.readouterr().err
    create_profile(tmp_path / "p", smap)
    assert main(["profile", "create", str(tmp_path / "p"), "-m", str(smap)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["profile", "create", str(tmp_path / "p"), "-m", str(smap), "--force"]) == 0
    (tmp_path / "p" / "profile.json").write_text("[]")
    with pytest.raises(SymbolError, match="JSON object"):
        Profile.read(tmp_path / "p")


def test_real_profile_round_trip(tmp_path, nokaslr_capture, nokaslr_btf):
    """A profile made from the real System.map (no types: BTF comes from the image)."""
    out = tmp_path / "profiles" / "real"
    p = create_profile(out, nokaslr_capture.src / "System.map.zst", release=nokaslr_capture.ground_truth["kernel_release"])
    assert p.system_map["__start_BTF"] < p.system_map["__stop_BTF"]
    assert p.system_map["__stop_BTF"] - p.system_map["__start_BTF"] == len(nokaslr_btf)
    assert p.match_banner(nokaslr_capture.ground_truth["proc_version"])
