"""The ``armvmi`` command.

Each command group lives in its own module with a ``register(app)`` function;
those modules import only typer and the standard library at top level so that
``armvmi --help`` stays fast (pyelftools, construct and lz4 load on use).
"""

from __future__ import annotations

import sys

import typer

from .. import __version__
from . import state

_APP_SETTINGS = dict(
    name="armvmi",
    help="Look inside ARM64 KVM virtual machines from a dump of the host's physical memory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app = typer.Typer(**_APP_SETTINGS)


def _version(value: bool):
    if value:
        print(f"armvmi {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """Look inside ARM64 KVM virtual machines from a dump of the host's physical memory."""
    state.DEBUG = debug


# Command modules register themselves; order here is the order in --help.
_COMMAND_MODULES = ("guest_cmds", "events_cmds", "symbols_cmds", "snapshot_cmds", "verify_cmds", "fs_cmds", "proc_cmds", "kernel_cmds", "export_cmds", "sweep_cmds", "net_cmds")


def _register_all() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(app)


_register_all()


def _command_name(info) -> str | None:
    """The name typer gives a registered command or group (None: unknown)."""
    from typer.models import DefaultPlaceholder

    def given(v):
        v = v.value if isinstance(v, DefaultPlaceholder) else v
        return v if isinstance(v, str) and v else None

    if given(getattr(info, "name", None)):
        return given(info.name)
    inner = getattr(info, "typer_instance", None)
    if inner is not None:
        return given(inner.info.name)
    cb = given_cb = getattr(info, "callback", None)
    cb = cb.value if isinstance(cb, DefaultPlaceholder) else given_cb
    return cb.__name__.lower().replace("_", "-") if callable(cb) else None


def _app_for(argv: list[str]):
    """The app to run ``argv`` with: one holding only the invoked command.

    typer turns every registered command's signature into click parameters
    each time it runs (~40 commands, a few ms each); a run needs just one.
    The one-command app has the same root callback and settings, so the
    command's parsing, --help and errors are exactly those of the full app;
    ``armvmi --help`` and anything unrecognised get the full app."""
    name = next((a for a in argv if not a.startswith("-")), None)
    if name is None:
        return app
    cmds = [c for c in app.registered_commands if _command_name(c) == name]
    groups = [g for g in app.registered_groups if _command_name(g) == name]
    if len(cmds) + len(groups) != 1:
        return app
    one = typer.Typer(**_APP_SETTINGS)
    one.registered_callback = app.registered_callback
    one.registered_commands, one.registered_groups = cmds, groups
    return one


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one error scheme for every command."""
    from ..errors import ArmvmiError, ExitCode

    try:  # typer >= 0.2x vendors click and has its own exception classes
        from typer import TyperException as ClickException
    except ImportError:  # older typer on top of click
        from click.exceptions import ClickException

    if "--debug" in (argv if argv is not None else sys.argv[1:]):
        state.DEBUG = True
    try:
        args = list(argv if argv is not None else sys.argv[1:])
        rc = _app_for(args)(args=args, standalone_mode=False, prog_name="armvmi")
        code = rc if isinstance(rc, int) else 0
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        print("armvmi: aborted", file=sys.stderr)
        code = 130
    except ClickException as e:
        code = ExitCode.BAD_INPUT
        if type(e).__name__ == "NoArgsIsHelpError":  # `armvmi snapshot`: the group's help is the answer
            e.show()
        else:  # one line, like every other error (click prints a 3-4 line block)
            ctx = getattr(e, "ctx", None)
            where = f"{ctx.command_path.removeprefix('armvmi').strip()}: " if ctx is not None and ctx.command_path != "armvmi" else ""
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            msg = " ".join(e.format_message().split())
            print(f"armvmi: error: {where}{msg}{hint}", file=sys.stderr)
            code = getattr(e, "exit_code", code) or code
    except ArmvmiError as e:
        if state.DEBUG:
            import traceback

            traceback.print_exc()
        print(f"armvmi: error: {e}", file=sys.stderr)
        code = e.exit_code
    except BrokenPipeError:
        # `armvmi ps img | head`: not an error; silence the flush at exit too.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt:
        print("armvmi: interrupted", file=sys.stderr)
        code = 130
    except MemoryError:
        print("armvmi: error: out of memory (the input is larger than this machine can hold, or hostile)", file=sys.stderr)
        code = ExitCode.BAD_INPUT
    except Exception as e:  # a bug: say so briefly, traceback only on request
        if state.DEBUG:
            import traceback

            traceback.print_exc()
        print(f"armvmi: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr)
        code = ExitCode.INTERNAL
    return int(code)


def run() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
