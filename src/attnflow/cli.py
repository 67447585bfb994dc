"""The ``attnflow`` command: parses arguments, calls the library, writes files. Nothing else."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from . import __version__
from .commands.common import console, error_console
from .errors import AttnflowError

app = typer.Typer(
    name="attnflow",
    help="Where does a transformer's output draw its information from? "
    "Attention rollout and exact attention flow for Hugging Face models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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

app.command()(explain)
app.command()(evaluate)
app.command()(report)
app.command()(heads)
app.command()(reproduce)
app.command()(batch)


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns user errors into one line and exit status 2."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        status = app(args=argv, standalone_mode=False)
    except AttnflowError as exc:
        error_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    except KeyboardInterrupt:
        error_console.print("interrupted; nothing was written.")
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            error_console.print("aborted.")
            return 130
        raise
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
