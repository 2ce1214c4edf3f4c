#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the cachefile parser: see fuzz/README.md and fuzz/targets.py (run_cachefile)."""

from _harness import main

if __name__ == "__main__":
    main("cachefile", ["armvmi_cli.symbols.cachefile"])
