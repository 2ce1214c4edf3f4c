#!/usr/bin/env python3
"""atheris (coverage-guided) fuzzing of the vmcoreinfo parser: see fuzz/README.md and fuzz/targets.py (run_vmcoreinfo)."""

from _harness import main

if __name__ == "__main__":
    main("vmcoreinfo", ["armvmi_cli.symbols.vmcoreinfo", "armvmi_cli.symbols.kaslr", "armvmi_cli.mmu.layers", "armvmi_cli.mmu.walk"])
