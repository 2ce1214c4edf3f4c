"""Seeded mutation fuzzing of every parser (issue 10): any mutated input gives
a result or an ArmvmiError, never another exception and never a hang.

Fast and reproducible (``derandomize=True``, small example counts); the
coverage-guided campaign for longer runs is ``fuzz/`` (see fuzz/README.md).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "fuzz"))

import targets  # noqa: E402

FUZZ = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEEDS = {name: targets.seeds(name) for name in targets.PARSERS}

mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("cut"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("u32"), st.integers(0, 1 << 20), st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x40000000])),
    st.tuples(st.just("u64"), st.integers(0, 1 << 20), st.sampled_from([0, 1 << 63, (1 << 64) - 1, 1 << 40])),
)


def mutate(data: bytes, muts) -> bytes:
    d = bytearray(data)
    for op, at, v in muts:
        at = at % (len(d) + 1)
        if op == "set" and at < len(d):
            d[at] = v
        elif op == "flip" and at < len(d):
            d[at] ^= 1 << v
        elif op == "cut":
            del d[at:]
        elif op == "insert":
            d[at:at] = v
        elif op == "u32":
            d[at:at + 4] = v.to_bytes(4, "little")
        elif op == "u64":
            d[at:at + 8] = v.to_bytes(8, "little")
    return bytes(d)


class Hang(Exception):
    pass


def _alarm(*_):
    raise Hang("parser took more than 10 s")


def _run(name, data):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        targets.run(name, data)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("name", targets.PARSERS)
def test_seeds_parse(name):
    assert SEEDS[name]
    for s in SEEDS[name]:
        _run(name, s)


@pytest.mark.parametrize("name", targets.PARSERS)
def test_mutated_inputs(name):
    @FUZZ
    @given(st.integers(0, 100), st.lists(mutation, min_size=1, max_size=6))
    def check(which, muts):
        seeds = SEEDS[name]
        _run(name, mutate(seeds[which % len(seeds)], muts))

    check()


@pytest.mark.parametrize("name", ["smclog", "system_map", "isf", "btf", "vmcoreinfo", "cachefile", "detect"])
def test_random_bytes(name):
    @FUZZ
    @given(st.binary(max_size=4096))
    def check(data):
        _run(name, data)

    check()


# ISF is JSON: byte mutations mostly break the syntax, so also swap values.
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.text(max_size=8) | st.floats(allow_nan=False),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
    max_leaves=6,
)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))


@FUZZ
@given(st.data())
def test_isf_value_substitution(data):
    import copy
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_malformed_parsers import GOOD

    doc = copy.deepcopy(GOOD)
    paths = [p for p in _paths(doc) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        node = doc
        try:
            for k in path[:-1]:
                node = node[k]
            if isinstance(node, dict):
                node[path[-1]] = data.draw(json_value)
        except (KeyError, TypeError):
            pass
    _run("isf", json.dumps(doc).encode())
