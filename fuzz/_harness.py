"""The shared body of every ``fuzz_<parser>.py`` atheris harness."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(name: str, modules: list[str]) -> None:
    # Instrument armvmi's own code (the parser under test and what it calls), not the stdlib.
    with atheris.instrument_imports(include=["armvmi_cli"]):
        import armvmi_cli  # noqa: F401

        for m in modules:
            importlib.import_module(m)
    sys.path.insert(0, str(HERE))
    import targets

    corpus = HERE / "corpus" / name
    if not corpus.is_dir() or not any(corpus.iterdir()):
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(targets.seeds(name)):
            (corpus / f"seed-{i}").write_bytes(seed)
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(str(corpus))  # default corpus directory: new inputs are kept there

    def one_input(data: bytes) -> None:
        targets.run(name, data)

    atheris.Setup(args, one_input)
    atheris.Fuzz()
