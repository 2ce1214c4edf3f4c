#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the avml parser: see fuzz/README.md and fuzz/targets.py (run_avml)."""

from _harness import main

if __name__ == "__main__":
    main("avml", ["armvmi_cli.memory.avml", "armvmi_cli.memory.lime", "armvmi_cli.memory.base"])
