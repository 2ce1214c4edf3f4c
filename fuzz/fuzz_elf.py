#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the elf parser: see fuzz/README.md and fuzz/targets.py (run_elf)."""

from _harness import main

if __name__ == "__main__":
    main("elf", ["armvmi_cli.memory.elfcore", "armvmi_cli.memory.base"])
