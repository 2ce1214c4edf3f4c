#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the detect parser: see fuzz/README.md and fuzz/targets.py (run_detect)."""

from _harness import main

if __name__ == "__main__":
    main("detect", ["armvmi_cli.memory.detect", "armvmi_cli.memory.raw", "armvmi_cli.memory.lime", "armvmi_cli.memory.avml", "armvmi_cli.memory.elfcore", "armvmi_cli.memory.armvmi_snapshot"])
