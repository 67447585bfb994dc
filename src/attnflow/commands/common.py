"""What every subcommand shares: consoles, progress bars, method checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

from ..errors import AttnflowError
from ..methods import available_methods

console = Console()
error_console = Console(stderr=True)


def check_methods(methods: list[str]) -> list[str]:
    known = available_methods()
    for method in methods:
        if method not in known:
            raise AttnflowError(f"Unknown method {method!r}; available: {', '.join(known)}.")
    return methods


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields a ``progress(done, total)`` callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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


