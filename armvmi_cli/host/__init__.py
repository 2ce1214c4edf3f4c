"""The host side of a host image: the host kernel, KVM's ``vm_list``, and
``verify`` (what the event log says against what memory holds)."""
