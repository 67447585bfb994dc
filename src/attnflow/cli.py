"""The ``attnflow`` command: parses arguments, calls the library, writes files. Nothing else."""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape

from . import __version__
from .commands.common import console, error_console, stdout
from .errors import AttnflowError

app = typer.Typer(
    name="attnflow",
    help="Where does a transformer's output draw its information from? "
    "Attention rollout and exact attention flow for Hugging Face models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: readable at 80 columns, and "[default: ...]" in a help text is kept
)


def _version(value: bool) -> None:
    if value:
        console.print(f"attnflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """attnflow: attention rollout and flow from the command line."""


from .commands.batch import batch  # noqa: E402
from .commands.evaluate import evaluate  # noqa: E402
from .commands.explain import explain  # noqa: E402
from .commands.heads import heads  # noqa: E402
from .commands.report import report  # noqa: E402
from .commands.reproduce import reproduce  # noqa: E402
from .commands.train import samples, train  # noqa: E402


class _Interrupted(Exception):
    """Ctrl-C inside a command, carried past the CLI framework (which would turn it into a silent exit 130)."""


def _interruptible(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            raise _Interrupted() from None

    return run


_COMMANDS = {
    command.__name__: command for command in (explain, evaluate, report, heads, reproduce, batch, train, samples)
}
for _command in _COMMANDS.values():
    app.command()(_interruptible(_command))


def _interrupted_message(before: int) -> str:
    from .io import written_files

    written = written_files()[before:]
    if not written:
        return "interrupted; nothing was written."
    return f"interrupted; already written: {', '.join(map(str, written))}."


def _show_usage_error(exc: Exception, argv: list[str]) -> None:
    """The usual usage line and help hint, then one ``error:`` line like every other attnflow error."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:  # bare `attnflow`: the help itself
        error_console.print(ctx.get_help(), highlight=False, markup=False)
        return
    if ctx is not None:
        error_console.print(ctx.get_usage(), highlight=False, markup=False, soft_wrap=True)
        error_console.print(f"Try '{ctx.command_path} --help' for help.", highlight=False, markup=False)
    else:  # the parser's own errors (an option missing its value) carry no context
        error_console.print(_help_hint(argv), highlight=False, markup=False)
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    error_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _help_hint(argv: list[str]) -> str:
    command = next((arg for arg in argv if arg in _COMMANDS), None)
    return f"Try 'attnflow {command + ' ' if command else ''}--help' for help."


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app; user errors become one line (exit 2), usage errors the usage line (exit 2).

    Examples
    --------
    >>> main(["report"])  # a required argument is missing
    2
    """
    from .io import written_files

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    before = len(written_files())
    stdout.reopen()
    installed, previous = _terminate_like_ctrl_c()
    try:
        status = _run(argv)
        if stdout.closed and status in (0, None):  # the files are written; the reader left early, as with `| head`
            return SIGPIPE_STATUS
    except AttnflowError as exc:
        error_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except (_Interrupted, KeyboardInterrupt):
        error_console.print(_interrupted_message(before), highlight=False, markup=False, soft_wrap=True)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        error_console.print("aborted.")
        return 130
    except OSError as exc:  # the file system said no (a name too long, a full disk, no permission): one line
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        error_console.print(f"[bold red]error:[/] {escape(exc.strerror or str(exc))}:{escape(where)}", highlight=False,
                            soft_wrap=True)
        return 1
    except typer.TyperException as exc:  # typer's own click: usage errors (exit 2), file errors (exit 1)
        _show_usage_error(exc, sys.argv[1:] if argv is None else argv)
        return int(getattr(exc, "exit_code", 2))
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return status if isinstance(status, int) else 0


#: The shell's exit status of a command that a closed pipe stopped (128 + SIGPIPE).
SIGPIPE_STATUS = 128 + 13


def _run(argv: list[str] | None) -> Any:
    """The app; output to a closed pipe (help or a table into ``| head``) is dropped, the command goes on."""
    try:
        return app(args=argv, standalone_mode=False, prog_name="attnflow")
    except SystemExit as exc:  # typer turns a closed pipe past the console (click's help) into exit 1
        if not isinstance(exc.__context__, BrokenPipeError):
            raise
        stdout.close_pipe()
        return SIGPIPE_STATUS


def _terminate_like_ctrl_c() -> tuple[bool, Any]:
    """Make SIGTERM (a scheduler, ``timeout``) stop a command the way Ctrl-C does: temporary files removed.

    Returns whether the handler was installed (not outside the main thread) and the previous one.
    """

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return True, signal.signal(signal.SIGTERM, stop)
    except ValueError:  # signals can only be handled in the main thread
        return False, None


if __name__ == "__main__":
    sys.exit(main())
