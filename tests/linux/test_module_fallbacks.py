"""lsmod's last-resort ways to the ``modules`` head and the ``mod_tree``, on
the rich capture's real memory: no symbol and no code reference, only the
modules themselves; corrupt rings and trees end the walk."""

from __future__ import annotations

import time

import pytest

import armvmi_cli
from tests.fixtures.rich import patched, u64


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("armvmi-cache")


@pytest.fixture
def kernel(rich_capture, shared_cache, monkeypatch):
    monkeypatch.setenv("ARMVMI_CACHE", str(shared_cache))
    return armvmi_cli.open(rich_capture.image, system_map=rich_capture.system_map).vm().kernel


@pytest.fixture
def no_code_references(monkeypatch):
    import armvmi_cli.host.adrp as adrp

    monkeypatch.setattr(adrp, "find_data", lambda *a, **kw: None)


def _modules(k, rich_capture):
    by_name = {m["name"]: int(m["struct_module_addr_from_gnu_linkonce_this_module"], 16)
               for m in rich_capture.ground_truth["rich"]["modules"]}
    return [by_name[n] for n in sorted(by_name)]


def test_modules_head_is_the_one_node_of_a_modules_ring_that_is_not_a_module(kernel, rich_capture, no_code_references):
    from armvmi_cli.linux.module import modules_head

    for m in _modules(kernel, rich_capture):
        assert modules_head(kernel, [m]) == kernel.symbol("modules")


def test_a_ring_that_never_reaches_the_head_gives_no_head_quickly(kernel, rich_capture, no_code_references):
    from armvmi_cli.linux.module import modules_head

    a, b, c = (m + kernel.offsetof("module", "list") for m in _modules(kernel, rich_capture))
    with patched(kernel, {a: u64(b), b: u64(c), c: u64(b)}):  # a -> b -> c -> b -> ...
        t0 = time.perf_counter()
        assert modules_head(kernel, [a - kernel.offsetof("module", "list")]) is None
        assert time.perf_counter() - t0 < 2


def test_mod_tree_lists_each_module_once_and_a_cycle_is_a_problem(kernel, rich_capture):
    from armvmi_cli.linux.module import mod_tree, tree_modules

    root = mod_tree(kernel)
    problems: list[str] = []
    mods = tree_modules(kernel, root, problems)
    assert sorted(mods) == sorted(_modules(kernel, rich_capture)) and not problems
    top = int(kernel.object("mod_tree_root", root).root.tree[0].rb_node)
    with patched(kernel, {top + kernel.offsetof("rb_node", "rb_left"): u64(top)}):  # the root its own left child
        problems = []
        got = tree_modules(kernel, root, problems)
    assert problems and all(p.startswith("mod_tree: ") for p in problems) and any("revisited" in p for p in problems)
    assert set(got) <= set(mods)
