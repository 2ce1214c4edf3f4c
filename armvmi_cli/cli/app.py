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

app = typer.Typer(
    name="armvmi",
    help="Look inside ARM64 KVM virtual machines from a dump of the host's physical memory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
_COMMAND_MODULES = ("guest_cmds", "events_cmds", "symbols_cmds", "snapshot_cmds", "verify_cmds", "fs_cmds", "net_cmds")


def _register_all() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{name}").register(app)


_register_all()


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
        rc = app(args=argv, standalone_mode=False, prog_name="armvmi")
        code = rc if isinstance(rc, int) else 0
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        print("armvmi: aborted", file=sys.stderr)
        code = 130
    except ClickException as e:
        e.show()
        code = ExitCode.BAD_INPUT
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
