"""Views by command name, for commands that run *any* view (``armvmi sweep``).

Each entry names the module and attribute of an :class:`armvmi_cli.view.View`;
the module is imported only when the view is asked for.  A new view plugs in
with one line here: ``"maps": "armvmi_cli.linux.mm:MAPS"``.
"""

from __future__ import annotations

import importlib

VIEWS: dict[str, str] = {
    "ps": "armvmi_cli.linux.ps:PS",
}


def names() -> list[str]:
    return sorted(VIEWS)


def get_view(name: str):
    """The View registered as ``name``; UsageError for an unknown name."""
    spec = VIEWS.get(name)
    if spec is None:
        from .errors import UsageError

        raise UsageError(f"no view {name!r} (views: {', '.join(names())})")
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)
