"""Composed KVM host images (see tests/fixtures/compose.py), built once per test session.

The default suite composes two hosts covering every granule, a concatenated
initial table, block leaves, an ELF core with two banks and a LiME file, a
destroyed VM whose vm_id is re-used, and two different kernels on one host.
``ARMVMI_SLOW_TESTS=1`` adds the exhaustive geometry matrix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixtures.compose import GuestSpec, S2Geometry, compose_host  # noqa: E402

SLOW = os.environ.get("ARMVMI_SLOW_TESTS") == "1"

# (format, [(vm_id, capture, geometry)], reuse_id[, compose_host keywords])
HOSTS = {
    # KVM's default (4K, 40-bit IPA, level 1, 2 concatenated tables, 2 MiB blocks); 16K with 32 MiB
    # blocks at its start level; 64K pages only, on a vm_id that a destroyed VM had before.
    "elf3": ("elf", [(1, "nokaslr", S2Geometry(4096, 40, 1)), (2, "kaslr", S2Geometry(16384, 36)),
                     (3, "nokaslr", S2Geometry(65536, 42, blocks=False))], True),
    # 4 concatenated level-2 tables (32-bit IPA), and a full 4-level 48-bit stage 2, in a LiME file.
    "lime2": ("lime", [(7, "kaslr", S2Geometry(4096, 32, 2)), (9, "nokaslr", S2Geometry(4096, 48, 0))], False),
    # 52-bit: LPA2 (4K, level -1) and FEAT_LPA (64K), with guest pages in a host bank above 2**48,
    # so OA[51:48] (or [51:50]) sit in the descriptors' extra bits and VTTBR's BADDR[5:2].
    "pa52": ("elf", [(5, "nokaslr", S2Geometry(4096, 52, -1, oa_bits=52, ds=True)),
                     (6, "kaslr", S2Geometry(65536, 52, 1, blocks=False, oa_bits=52))], False,
             {"high_base": 0x8_0000_0000_0000}),
}


if SLOW:
    HOSTS["pa52x"] = ("lime", [(11, "kaslr", S2Geometry(16384, 52, 0, oa_bits=52, ds=True)),
                               (12, "nokaslr", S2Geometry(4096, 52, 0, oa_bits=52, ds=True)),
                               (13, "kaslr", S2Geometry(65536, 46, 2, oa_bits=52))], False, {"high_base": 0xF_FFFF_0000_0000})


def _matrix():
    """Every granule x IPA size x start level that a 256 MiB guest at IPA 1 GiB fits (opt-in)."""
    from armvmi_cli.mmu.geometry import Granule, s2_inconsistent

    out = []
    for g in (Granule.K4, Granule.K16, Granule.K64):
        for ipa in (32, 36, 40, 42, 44, 48):
            for sl in (-1, 0, 1, 2, 3):
                if sl == -1 or s2_inconsistent(ipa, g, sl) or (g == Granule.K64 and sl == 0):
                    continue
                out.append(S2Geometry(int(g), ipa, sl, blocks=len(out) % 2 == 0))
    return out


if SLOW:
    for i in range(0, len(_matrix()), 4):
        group = _matrix()[i : i + 4]
        fmt = ("elf", "lime", "raw")[(i // 4) % 3]
        HOSTS[f"matrix{i // 4}"] = (fmt, [(10 + i + j, ("nokaslr", "kaslr")[j % 2], geom) for j, geom in enumerate(group)],
                                    False)


@pytest.fixture(scope="session")
def composed_cache(tmp_path_factory):
    return {"dir": tmp_path_factory.mktemp("composed"), "hosts": {}}


@pytest.fixture(scope="session")
def armvmi_cache(tmp_path_factory):
    """One parsed-types cache for the module: the cold path is covered by tests/core."""
    return tmp_path_factory.mktemp("armvmi-cache")


def get_host(name, cache, captures):
    if name not in cache["hosts"]:
        fmt, vms, reuse, *kw = HOSTS[name]
        specs = [GuestSpec(vm_id, captures[which], geom) for vm_id, which, geom in vms]
        cache["hosts"][name] = compose_host(cache["dir"] / f"{name}.{fmt}", specs, fmt=fmt, reuse_id=reuse,
                                            seed=len(name) * 7 + ord(name[-1]), **(kw[0] if kw else {}))
    return cache["hosts"][name]
