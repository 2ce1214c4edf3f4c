#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the raw parser: see fuzz/README.md and fuzz/targets.py (run_raw)."""

from _harness import main

if __name__ == "__main__":
    main("raw", ["armvmi_cli.memory.raw", "armvmi_cli.memory.base"])
