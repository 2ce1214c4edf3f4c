#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the isf parser: see fuzz/README.md and fuzz/targets.py (run_isf)."""

from _harness import main

if __name__ == "__main__":
    main("isf", ["armvmi_cli.symbols.isf", "armvmi_cli.symbols.types"])
