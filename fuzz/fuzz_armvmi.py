#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the armvmi parser: see fuzz/README.md and fuzz/targets.py (run_armvmi)."""

from _harness import main

if __name__ == "__main__":
    main("armvmi", ["armvmi_cli.memory.armvmi_snapshot", "armvmi_cli.memory.base"])
