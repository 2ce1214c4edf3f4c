"""armvmi: look inside ARM64 KVM guests from a dump of the host's physical memory.

Library entry point for scripts::

    import armvmi_cli
    s = armvmi_cli.open("host.img")
    for vm in s.vms:
        for task in vm.tasks():
            print(task.pid, task.comm)

Heavy modules (pyelftools, construct, lz4) are imported lazily so that the CLI
starts fast.
"""

__version__ = "0.1.0"


def open(image, events=None, profile=None, system_map=None, **kwargs):  # noqa: A001 - mirrors builtins.open on purpose
    """Open a memory image and return a :class:`armvmi_cli.session.Session`."""
    import inspect

    from .session import Session

    known = inspect.signature(Session.open).parameters
    unknown = sorted(k for k in kwargs if k not in known)
    if unknown:
        from .errors import UsageError

        raise UsageError(f"armvmi_cli.open(): unknown argument(s) {', '.join(unknown)} (known: {', '.join(k for k in known if k != 'cls')})")
    return Session.open(image, events=events, profile=profile, system_map=system_map, **kwargs)
