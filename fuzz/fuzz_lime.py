#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the lime parser: see fuzz/README.md and fuzz/targets.py (run_lime)."""

from _harness import main

if __name__ == "__main__":
    main("lime", ["armvmi_cli.memory.lime", "armvmi_cli.memory.base"])
