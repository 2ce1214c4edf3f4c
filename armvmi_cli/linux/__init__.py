"""Typed views of a Linux kernel's objects, read through the translation layers.

Modules are named after kernel concepts, like drgn's helpers:
``kernel`` (the program: memory, symbols, types), ``object`` (typed values),
``list`` (list_head walking), ``tasks`` (task_struct), ``pid`` (the PID IDR),
``banner``.
"""
