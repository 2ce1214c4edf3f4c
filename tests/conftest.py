"""Shared fixtures.

The real captures live in ``../shared/captures`` (read-only, zstd-compressed).
They are decompressed once into a cache directory (``$ARMVMI_CAPTURE_CACHE`` or
``~/.cache/armvmi-captures``).  Tests that need them use the ``capture`` fixture
or the ``needs_captures`` marker and skip cleanly when ``../shared`` is absent.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_CAPTURES = Path(os.environ.get("ARMVMI_SHARED_CAPTURES", REPO.parent / "shared" / "captures"))
CACHE = Path(os.environ.get("ARMVMI_CAPTURE_CACHE", Path.home() / ".cache" / "armvmi-captures"))

GUEST_CAPTURES = ("deb61-generic-nokaslr", "deb61-cloud-kaslr")
NESTED_CAPTURE = "nested-nvhe-kaslr"
RICH_CAPTURE = "deb61-rich-kaslr"


def _decompress(src: Path, dst: Path) -> Path:
    """zstd-decompress ``src`` to ``dst`` once (atomic rename, so parallel runs are safe)."""
    if dst.exists() and dst.stat().st_size > 0:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    zstd = shutil.which("zstd")
    if zstd:
        import subprocess

        subprocess.run([zstd, "-q", "-d", "-f", str(src), "-o", str(tmp)], check=True)
    else:
        try:
            import zstandard
        except ImportError:
            pytest.skip("neither the zstd command nor the zstandard package is available")
        with open(src, "rb") as fi, open(tmp, "wb") as fo:
            zstandard.ZstdDecompressor().copy_stream(fi, fo)
    os.replace(tmp, dst)
    return dst


@dataclass
class Capture:
    name: str
    src: Path  # the read-only folder in ../shared/captures

    @property
    def ground_truth(self) -> dict:
        return json.loads((self.src / "ground_truth.json").read_text())

    @property
    def image(self) -> Path:
        z = self.src / "dump.elf.zst"
        if not z.exists():
            z = self.src / "host-mem.elf.zst"
        return _decompress(z, CACHE / self.name / z.name[: -len(".zst")])

    @property
    def dkom_image(self) -> Path | None:
        """The tampered copy (deb61-rich-kaslr only), decompressed."""
        z = self.src / "dump-dkom.elf.zst"
        return _decompress(z, CACHE / self.name / "dump-dkom.elf") if z.exists() else None

    @property
    def tamper(self) -> dict | None:
        p = self.src / "tamper.json"
        return json.loads(p.read_text()) if p.exists() else None

    @property
    def system_map(self) -> Path:
        return _decompress(self.src / "System.map.zst", CACHE / self.name / "System.map")

    @property
    def smclog(self) -> Path | None:
        p = self.src / "host-mem.elf.smclog"
        return p if p.exists() else None

    @property
    def isf(self) -> Path | None:
        found = sorted(self.src.glob("isf-*.json.xz"))
        return found[0] if found else None


def get_capture(name: str) -> Capture:
    src = SHARED_CAPTURES / name
    if not (src / "ground_truth.json").exists():
        pytest.skip(f"real capture {name} not available ({SHARED_CAPTURES} absent)")
    return Capture(name, src)


@pytest.fixture(params=GUEST_CAPTURES)
def guest_capture(request) -> Capture:
    """Each plain guest capture in turn."""
    return get_capture(request.param)


@pytest.fixture
def nokaslr_capture() -> Capture:
    return get_capture("deb61-generic-nokaslr")


@pytest.fixture
def kaslr_capture() -> Capture:
    return get_capture("deb61-cloud-kaslr")


@pytest.fixture
def nested_capture() -> Capture:
    return get_capture(NESTED_CAPTURE)


@pytest.fixture
def rich_capture() -> Capture:
    """The rich-workload guest (argv, environ, maps, fds, sockets, modules, dmesg,
    mounts in ``ground_truth["rich"]``) with its DKOM-tampered copy."""
    return get_capture(RICH_CAPTURE)
