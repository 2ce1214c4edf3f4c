#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the smclog parser: see fuzz/README.md and fuzz/targets.py (run_smclog)."""

from _harness import main

if __name__ == "__main__":
    main("smclog", ["armvmi_cli.firmware.smclog", "armvmi_cli.firmware.replay", "armvmi_cli.firmware.registry"])
