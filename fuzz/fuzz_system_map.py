#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the system_map parser: see fuzz/README.md and fuzz/targets.py (run_system_map)."""

from _harness import main

if __name__ == "__main__":
    main("system_map", ["armvmi_cli.symbols.system_map"])
