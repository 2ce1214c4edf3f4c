"""Fixtures for the evidence-safety tests: small images any machine has."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import SAMPLE


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def raw_image(tmp_path) -> Path:
    """A 256 KiB raw image (any bytes are a raw image) with a sibling event log."""
    from armvmi_cli.firmware.builder import LogBuilder

    p = tmp_path / "img.raw"
    p.write_bytes(bytes(range(256)) * 1024)
    b = LogBuilder()
    b.driver_init()
    b.write(str(p) + ".smclog")
    return p


@pytest.fixture
def sample(tmp_path) -> Path:
    """A private copy of the shipped sample snapshot (a real kernel, sparse)."""
    p = tmp_path / "sample.armvmi"
    p.write_bytes(SAMPLE.read_bytes())
    return p
