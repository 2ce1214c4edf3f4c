from __future__ import annotations

import pytest

from tests.conftest import RICH_CAPTURE, get_capture
from tests.fixtures.rich import SYMBOL_MODES, open_rich


@pytest.fixture(scope="module")
def rich():
    return get_capture(RICH_CAPTURE)


@pytest.fixture(scope="module", params=SYMBOL_MODES)
def rich_kernel(request, rich, tmp_path_factory):
    """The rich capture's kernel, with System.map and with kallsyms only."""
    with open_rich(rich, request.param, tmp_path_factory.mktemp("cache")) as k:
        yield k
