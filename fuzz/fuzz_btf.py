#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the btf parser: see fuzz/README.md and fuzz/targets.py (run_btf)."""

from _harness import main

if __name__ == "__main__":
    main("btf", ["armvmi_cli.symbols.btf", "armvmi_cli.symbols.types"])
