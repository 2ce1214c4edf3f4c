"""Profiles: everything armvmi needs to know about one guest kernel build.

``profiles/<name>/`` holds
  * ``System.map.xz``  - the real System.map (from the -dbg package), xz-compressed;
  * ``profile.json``   - name, release, banner, arch parameters, where types come from;
  * ``types.json.xz``  - optional: the type model exported (from DWARF or ISF),
    for kernels without BTF.

Profiles are searched in ``$ARMVMI_PROFILES`` (os.pathsep-separated), the
repository's ``profiles/`` and ``$XDG_DATA_HOME/armvmi/profiles``
(``~/.local/share/armvmi/profiles``).  Given an image, the session finds the
kernel banner in guest memory and asks :func:`find_profile_for_banner`.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SymbolError
from .system_map import SystemMap, read_maybe_compressed
from .types import TypeModel

PROFILE_JSON = "profile.json"
SYSTEM_MAP = "System.map.xz"
TYPES_JSON = "types.json.xz"
_RELEASE = re.compile(r"Linux version (\S+)")
_NAME_OK = re.compile(r"^[A-Za-z0-9._+-]+$")


def release_from_banner(banner: str | None) -> str | None:
    m = _RELEASE.search(banner or "")
    return m.group(1) if m else None


def _norm_banner(b: str) -> str:
    return b.split("\0", 1)[0].strip()


def search_path() -> list[Path]:
    dirs: list[Path] = []
    env = os.environ.get("ARMVMI_PROFILES")
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    repo = Path(__file__).resolve().parents[2] / "profiles"  # checkout / editable install
    if repo.is_dir():
        dirs.append(repo)
    shipped = Path(__file__).resolve().parents[1] / "profiles"  # installed: package data (setup.py)
    if shipped.is_dir() and shipped != repo:
        dirs.append(shipped)
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    dirs.append(Path(data) / "armvmi" / "profiles")
    return dirs


@dataclass
class Profile:
    dir: Path
    name: str
    release: str | None = None
    banner: str | None = None
    arch: str = "aarch64"
    page_size: int | None = None
    va_bits: int | None = None
    source: dict = field(default_factory=dict)  # where symbols/types came from
    meta: dict = field(default_factory=dict)  # the whole profile.json
    _system_map: SystemMap | None = field(default=None, repr=False)
    _types: TypeModel | None = field(default=None, repr=False)

    @classmethod
    def read(cls, d: str | os.PathLike) -> "Profile":
        d = Path(d)
        pj = d / PROFILE_JSON
        try:
            meta = json.loads(pj.read_text())
        except FileNotFoundError:
            raise SymbolError(f"{d}: not a profile (no {PROFILE_JSON})") from None
        except (OSError, ValueError) as e:
            raise SymbolError(f"{pj}: unreadable profile metadata: {e}") from None
        if not isinstance(meta, dict):
            raise SymbolError(f"{pj}: profile metadata must be a JSON object")
        for key, kinds in (("name", str), ("release", str), ("banner", str), ("arch", str),
                           ("page_size", int), ("va_bits", int), ("source", dict)):
            v = meta.get(key)
            if v is not None and (not isinstance(v, kinds) or isinstance(v, bool)):
                raise SymbolError(f"{pj}: {key!r} must be a {'string' if kinds is str else kinds.__name__}, "
                                  f"not {type(v).__name__} {v!r:.40}")
        return cls(
            dir=d, name=meta.get("name") or d.name, release=meta.get("release"), banner=meta.get("banner"),
            arch=meta.get("arch", "aarch64"), page_size=meta.get("page_size"), va_bits=meta.get("va_bits"),
            source=meta.get("source") or {}, meta=meta,
        )

    @property
    def system_map_path(self) -> Path:
        for n in (SYSTEM_MAP, "System.map.zst", "System.map.gz", "System.map"):
            if (self.dir / n).exists():
                return self.dir / n
        raise SymbolError(f"profile {self.name}: no System.map in {self.dir}")

    @property
    def system_map(self) -> SystemMap:
        return self.load_system_map()

    def load_system_map(self, cache: bool = True) -> SystemMap:
        """The profile's map; ``cache=False`` (``--no-cache``) neither reads nor writes the parse cache."""
        if self._system_map is None:
            sm = SystemMap.load(self.system_map_path, cache=cache)
            sm.banner, sm.release = self.banner, self.release
            self._system_map = sm
        return self._system_map

    @property
    def has_types(self) -> bool:
        return (self.dir / TYPES_JSON).exists()

    def types(self) -> TypeModel | None:
        """The exported type model, or None (then types come from the image's BTF)."""
        if self._types is None and self.has_types:
            try:
                doc = json.loads(read_maybe_compressed(self.dir / TYPES_JSON, "types"))
            except ValueError as e:
                raise SymbolError(f"profile {self.name}: corrupt {TYPES_JSON}: {e}") from None
            self._types = TypeModel.from_json(doc)
        return self._types

    def match_banner(self, banner: str | None) -> bool:
        """True when ``banner`` (as found in memory) is this profile's kernel:
        the full banner when the profile has one, else the release string."""
        if not banner:
            return False
        if self.banner:
            return _norm_banner(banner) == _norm_banner(self.banner)
        return bool(self.release) and release_from_banner(banner) == self.release

    def to_dict(self) -> dict:
        d = dict(self.meta)
        d.update(name=self.name, dir=str(self.dir), has_types=self.has_types)
        return d


def find_profiles(dirs=None) -> list[Profile]:
    """Every readable profile in ``dirs`` (default: :func:`search_path`); earlier dirs win on name clashes."""
    out, seen = [], set()
    for base in [Path(d) for d in dirs] if dirs is not None else search_path():
        try:
            entries = sorted(base.iterdir()) if base.is_dir() else []
        except OSError:
            continue  # an unreadable $HOME or profile directory hides only its own profiles
        for d in entries:
            try:
                if not (d / PROFILE_JSON).is_file():
                    continue
            except OSError:
                continue
            try:
                p = Profile.read(d)
            except SymbolError:
                continue  # a broken profile must not hide the others; `profile show` reports it
            if p.name not in seen:
                seen.add(p.name)
                out.append(p)
    return out


def load_profile(name_or_dir: str | os.PathLike, dirs=None) -> Profile:
    p = Path(name_or_dir)
    if (p / PROFILE_JSON).exists():
        return Profile.read(p)
    for prof in find_profiles(dirs):
        if prof.name == str(name_or_dir) or prof.dir.name == str(name_or_dir):
            return prof
    known = ", ".join(x.name for x in find_profiles(dirs)) or "none"
    raise SymbolError(f"no profile named {str(name_or_dir)!r} (known: {known}; see `armvmi profile list`)")


def find_profile_for_banner(banner: str, dirs=None) -> Profile | None:
    """The profile whose kernel printed ``banner``; an exact banner match beats a release match."""
    profiles = find_profiles(dirs)
    for p in profiles:
        if p.banner and p.match_banner(banner):
            return p
    for p in profiles:
        if not p.banner and p.match_banner(banner):
            return p
    return None


def _config_params(config_path) -> dict:
    """page_size and va_bits from a kernel .config (CONFIG_ARM64_*)."""
    text = read_maybe_compressed(config_path, "config").decode("utf-8", "replace")
    out = {}
    m = re.search(r"^CONFIG_ARM64_VA_BITS=(\d+)", text, re.M)
    if m:
        out["va_bits"] = int(m.group(1))
    for size, opt in ((4096, "4K"), (16384, "16K"), (65536, "64K")):
        if re.search(rf"^CONFIG_ARM64_{opt}_PAGES=y", text, re.M):
            out["page_size"] = size
    m = re.search(r"^CONFIG_DEBUG_INFO_BTF=(\w)", text, re.M)
    if m:
        out["btf"] = m.group(1) == "y"
    return out


def create_profile(out_dir, system_map, vmlinux=None, isf=None, release=None, banner=None,
                   config=None, name=None, overwrite: bool = False) -> Profile:
    """Write a profile directory.  Types come from ``vmlinux`` (DWARF) or
    ``isf`` when given; otherwise the profile relies on the image's BTF."""
    out = Path(out_dir)
    if vmlinux and isf:
        raise SymbolError("give --vmlinux or --isf, not both: a profile has one source of types")
    inputs = [i for i in (system_map, vmlinux, isf, config) if i is not None]
    _check_profile_dir(out, inputs, overwrite)
    if vmlinux is not None:
        from ..inputs import check_input

        check_input(vmlinux, "--vmlinux")
    map_bytes = read_maybe_compressed(system_map)  # read once, before anything is written
    sm = SystemMap.parse(map_bytes, path=system_map).check()  # refuses stubs and truncated maps
    types: TypeModel | None = None
    source = {"symbols": "System.map", "types": "btf (read from the image)"}
    if vmlinux:
        from .dwarf import load_dwarf, vmlinux_banner

        types = load_dwarf(vmlinux)
        banner = banner or vmlinux_banner(vmlinux)
        source["types"] = f"dwarf ({Path(vmlinux).name})"
    elif isf:
        from .isf import load_isf

        types, isf_syms = load_isf(isf)
        banner = banner or isf_syms.banner
        _check_isf_matches(sm, isf_syms, isf)
        source["types"] = f"isf ({Path(isf).name})"
    release = release or release_from_banner(banner) or _release_from_filename(system_map)
    if not release and not banner:
        raise SymbolError("cannot tell which kernel this is: give --release or --banner (or --vmlinux/--isf)")
    if banner and release and release_from_banner(banner) not in (None, release):
        raise SymbolError(f"--release {release} disagrees with the banner ({release_from_banner(banner)})")
    name = name or release or out.name
    if not _NAME_OK.match(name):
        raise SymbolError(f"profile name {name!r} may only hold letters, digits and . _ + -")
    meta = {
        "name": name, "release": release, "banner": banner, "arch": "aarch64",
        "page_size": None, "va_bits": None, "symbols": len(sm), "source": source,
        "format": 1,
    }
    if config:
        meta.update(_config_params(config))
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SymbolError(f"{out}: cannot create the profile directory: {e.strerror or e}") from None
    from ..output import Output

    # Each file under a temporary name, renamed into place only when all are
    # complete; profile.json (what makes the directory a profile) goes last:
    # the ExitStack commits in reverse order of entry.
    files = [(SYSTEM_MAP, lzma.compress(map_bytes, preset=6))]
    if types is not None:
        doc = types.to_json()
        meta["types"] = {"source": types.source, "records": len(doc["records"]), "structs": len(types.struct_names())}
        files.append((TYPES_JSON, lzma.compress(json.dumps(doc, separators=(",", ":")).encode(), preset=6)))
    files.append((PROFILE_JSON, (json.dumps(meta, indent=2) + "\n").encode()))
    try:
        with contextlib.ExitStack() as stack:
            for fname, data in reversed(files):
                stack.enter_context(Output(out / fname, inputs, force=True, what="profile file")).file().write(data)
        if types is None and (out / TYPES_JSON).exists():
            (out / TYPES_JSON).unlink()  # an old profile's types would no longer match
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return Profile.read(out)


def _check_profile_dir(out: Path, inputs, overwrite: bool) -> None:
    """OUT_DIR is new, empty, or an armvmi profile (replaced only with
    --force); none of its files may be an input."""
    from ..output import check_output

    if not out.exists():
        return
    if out.is_symlink() or not out.is_dir():
        raise SymbolError(f"{out}: exists and is not a directory; a profile is a directory")
    names = set(os.listdir(out))
    if names and PROFILE_JSON not in names:
        raise SymbolError(f"{out}: not empty and not an armvmi profile (no {PROFILE_JSON}); armvmi will not write into it")
    if PROFILE_JSON in names and not overwrite:
        raise SymbolError(f"{out}: a profile already exists there (use --force to replace it)")
    for n in (SYSTEM_MAP, TYPES_JSON, PROFILE_JSON, "System.map.zst", "System.map.gz", "System.map"):
        if n in names:
            check_output(out / n, inputs, force=True, what="profile file")


def _release_from_filename(path) -> str | None:
    m = re.match(r"System\.map-(.+?)(\.(xz|gz|zst|bz2))?$", Path(path).name)
    return m.group(1) if m else None


def _check_isf_matches(sm: SystemMap, isf_syms: SystemMap, isf_path) -> None:
    """An ISF for another build would give wrong offsets silently: compare a few symbols."""
    checked = 0
    for name in ("_text", "_stext", "init_task", "linux_banner", "swapper_pg_dir", "_etext"):
        a, b = sm.address(name), isf_syms.address(name)
        if a is None or b is None:
            continue
        checked += 1
        if a != b:
            raise SymbolError(f"{isf_path} is for another kernel build: {name} is {b:#x} there, {a:#x} in the System.map")


def remove_profile(p: Profile) -> None:  # used by tests and `profile create --force`
    shutil.rmtree(p.dir)
