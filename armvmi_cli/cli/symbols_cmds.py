"""``armvmi profile create|list|show``: kernel profiles (System.map + metadata
+ optional exported types).  ``armvmi symbols`` lives with the guest commands
(it needs an image session) and calls :func:`armvmi_cli.symbols.system_map.symbol_rows`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import Json

profile_app = typer.Typer(
    name="profile",
    help="Kernel profiles: a System.map, the kernel's banner and (optionally) its types.",
    no_args_is_help=True,
)


@profile_app.command("create")
def create(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write (e.g. profiles/6.1.0-56-arm64).", show_default=False)],
    system_map: Annotated[Path, typer.Option("--system-map", "-m", help="The real System.map (from the -dbg package); may be xz/gz/zstd-compressed.")],
    vmlinux: Annotated[Optional[Path], typer.Option("--vmlinux", help="Debug vmlinux: export its DWARF types into the profile.")] = None,
    isf: Annotated[Optional[Path], typer.Option("--isf", help="Volatility 3 ISF (.json/.json.xz): export its types into the profile.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Kernel .config: record page size and VA bits.")] = None,
    release: Annotated[Optional[str], typer.Option("--release", help="Kernel release (uname -r), if not derivable.")] = None,
    banner: Annotated[Optional[str], typer.Option("--banner", help="Exact `Linux version ...` banner of the kernel.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Profile name (default: the release).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing profile in OUT_DIR.")] = False,
    json: Json = False,
):
    """Make a profile directory from a System.map (and a vmlinux or ISF for types)."""
    from ..symbols.profiles import create_profile
    from . import render

    p = create_profile(out_dir, system_map, vmlinux=vmlinux, isf=isf, release=release, banner=banner,
                       config=config, name=name, overwrite=force)
    if json:
        render.print_json(p.to_dict())
        return
    types = p.meta.get("types")
    what = f"types from {p.source.get('types')}" + (f" ({types['structs']} structs)" if types else "")
    print(f"created profile {p.name} in {p.dir}: {p.meta.get('symbols')} symbols, {what}")


@profile_app.command("list")
def list_(json: Json = False):
    """List the profiles armvmi can find ($ARMVMI_PROFILES, profiles/, ~/.local/share/armvmi/profiles)."""
    from ..symbols.profiles import find_profiles, search_path
    from . import render

    profs = find_profiles()
    if json:
        render.print_json([p.to_dict() for p in profs])
        return
    if not profs:
        where = ", ".join(str(d) for d in search_path())
        print(f"no profiles (searched {where}); make one with `armvmi profile create`")
        return
    from ..view import Column
    from .views import show_table

    cols = (Column("name", "NAME"), Column("release", "RELEASE", priority=2), Column("types", "TYPES", priority=3),
            Column("dir", "DIR", priority=1))
    show_table("profiles", cols, [[p.name, p.release or "-", p.source.get("types", "-") if isinstance(p.source, dict) else "-",
                                   str(p.dir)] for p in profs])


@profile_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Profile name or directory.", show_default=False)],
    json: Json = False,
):
    """Show one profile: release, banner, arch parameters, symbol and type counts."""
    from ..symbols.profiles import load_profile
    from . import render

    p = load_profile(name)
    sm = p.system_map  # also validates: a stub or truncated map is an error here
    d = p.to_dict()
    d["system_map"] = {"path": str(p.system_map_path), "symbols": len(sm)}
    tm = p.types()
    if tm is not None:
        d["types_summary"] = {"source": tm.source, "structs": len(tm.struct_names())}
    if json:
        render.print_json(d)
        return
    rows = [
        ("name", p.name), ("dir", str(p.dir)), ("release", p.release or "-"), ("banner", p.banner or "-"),
        ("arch", p.arch), ("page size", p.page_size or "unknown"), ("VA bits", p.va_bits or "unknown"),
        ("System.map", f"{len(sm)} symbols ({p.system_map_path.name})"),
        ("types", f"{tm.source}, {len(tm.struct_names())} structs/unions" if tm is not None else "BTF read from the image"),
    ]
    for k, v in rows:
        print(f"{k:<11} {v}")


def register(app: typer.Typer) -> None:
    app.add_typer(profile_app, name="profile")
