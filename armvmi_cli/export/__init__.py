"""Hand a guest to the tools people already use.

- :mod:`.guestmem`: one VM's guest-physical memory as runs of present pages
  (stage 2, else the VMM's memslot mapping), what exists nowhere counted;
- :mod:`.vmcore`: that memory as a kdump-style ELF core (VMCOREINFO and
  NT_PRSTATUS notes) or a LiME file, streamed;
- :mod:`.isf`: a Volatility 3 symbol file from the kernel's own BTF and symbols;
- :mod:`.output`: atomic, non-clobbering output files.
"""
