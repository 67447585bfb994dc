"""The ``attnflow`` command: parses arguments, calls the library, writes files. Nothing else."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from . import __version__
from .errors import AttnflowError
from .methods import available_methods

app = typer.Typer(
    name="attnflow",
    help="Where does a transformer's output draw its information from? "
    "Attention rollout and exact attention flow for Hugging Face models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"attnflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """attnflow: attention rollout and flow from the command line."""


def _check_methods(methods: list[str]) -> list[str]:
    known = available_methods()
    for method in methods:
        if method not in known:
            raise AttnflowError(f"Unknown method {method!r}; available: {', '.join(known)}.")
    return methods


@contextmanager
def _progress_bar(description: str):
    """A rich progress bar; yields a ``progress(done, total)`` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TextColumn

    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=error_console,
        transient=True,
    )
    task = bar.add_task(description, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


@app.command()
def explain(
    text: Annotated[str, typer.Argument(help="The text to explain.")],
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="Bundled name (minilm), local folder or cached HF id."),
    ] = None,
    method: Annotated[
        list[str],
        typer.Option(
            "--method",
            help=f"Method to run; repeat for several. Available: {', '.join(available_methods())}.",
        ),
    ] = ["raw", "rollout"],  # noqa: B006  (typer reads the default list, never mutates it)
    output: Annotated[
        Optional[str],
        typer.Option(help="Output to explain: cls, last, mean or a token index [default: cls, last for decoders]."),
    ] = None,
    layer: Annotated[int, typer.Option(help="Layer to show (1-based; -1 = top).")] = -1,
    residual: Annotated[float, typer.Option(help="Residual weight r in (1-r)*A + r*I.")] = 0.5,
    head_fusion: Annotated[str, typer.Option(help="How heads are combined: mean, max or min.")] = "mean",
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="Write the full explanation (all layers) as JSON.")
    ] = None,
    truncate: Annotated[bool, typer.Option(help="Cut texts longer than the model's maximum.")] = False,
    trust_remote_code: Annotated[
        bool, typer.Option(help="Allow the model folder's own Python code to run.")
    ] = False,
) -> None:
    """Score every input token for one output, layer by layer, with each method."""
    from .explain import explain as run_explain
    from .report.terminal import explanation_table

    _check_methods(method)
    options = {"residual": residual, "head_fusion": head_fusion}
    with _progress_bar("explaining") as progress:
        result = run_explain(
            text,
            model,
            methods=method,
            output=output,
            truncate=truncate,
            trust_remote_code=trust_remote_code,
            progress=progress,
            **options,
        )
    console.print(explanation_table(result, layer=layer))
    if json_path is not None:
        result.to_json(json_path)
        console.print(f"wrote {json_path}")


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
