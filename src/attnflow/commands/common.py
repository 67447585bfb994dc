"""What every subcommand shares: consoles, progress bars, and the option checks.

Every option whose value can be judged without a model is checked by a
``callback`` here, while the command line is parsed, so a bad value is a usage
error (exit 2, naming the option) before any model is loaded. Checks that need
the model (``--layer`` against its depth) run right after loading it, before
any attention is computed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console

from ..capture.targets import parse_target
from ..errors import AttnflowError
from ..methods import available_methods
from ..methods.attribution import available_attributions


class PipeSafeStdout:
    """Standard output that a closed pipe (``attnflow ... | head -1``) silences instead of stopping the command.

    Every later write is dropped, so the command goes on to write its files;
    :func:`attnflow.cli.main` then exits with the shell's status for SIGPIPE (141).
    It is ``sys.stdout`` looked up at each write (pytest's capture replaces it).

    Examples
    --------
    >>> out = PipeSafeStdout()
    >>> out.write("hello\\n") == 6 and not out.closed
    hello
    True
    """

    closed = False

    def write(self, text: str) -> int:
        if not self.closed:
            try:
                sys.stdout.write(text)
            except BrokenPipeError:
                self.close_pipe()
        return len(text)

    def flush(self) -> None:
        if not self.closed:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                self.close_pipe()

    def reopen(self) -> None:
        """Write again (a new command in the same process, as tests run them)."""
        self.closed = False

    def isatty(self) -> bool:
        return not self.closed and sys.stdout.isatty()

    def close_pipe(self) -> None:
        """The reader went away: drop what is still buffered and send the rest, and Python's last flush, nowhere."""
        self.closed = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):  # a stream without a descriptor (a test's capture)
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.stdout, name)


stdout = PipeSafeStdout()
console = Console(file=stdout)
error_console = Console(stderr=True)


def check_methods(methods: list[str]) -> list[str]:

    known = available_methods() + available_attributions()
    for method in methods:
        if method not in known:
            raise AttnflowError(f"Unknown method {method!r}; available: {', '.join(known)}.")
    return methods


#: What ``--head-fusion`` takes on the command line (an array of head weights is for the Python API).
CLI_HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min", "importance")
HEAD_FUSION_HELP = "How heads are combined: mean, max, min or importance (weighted by each head's importance)."


def _bad(message: str) -> typer.BadParameter:
    return typer.BadParameter(message)


def choice(*choices: str, lower: bool = True) -> Callable[[Any], Any]:
    """A callback accepting one of ``choices`` (case-insensitive), or a list of them for repeated options.

    Examples
    --------
    >>> choice("mean", "max")("MAX")
    'max'
    """

    def check(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return [check(item) for item in value]
        key = value.strip().lower() if lower else value
        if key not in choices:
            raise _bad(f"must be one of {', '.join(choices)}; got {value!r}.")
        return key

    return check


def number_range(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Callable[[Any], Any]:
    """A callback accepting numbers in an interval (or ``None``), or a list of them for repeated options.

    Examples
    --------
    >>> number_range(0, 1)(0.5)
    0.5
    """
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"

    def check(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return [check(item) for item in value]
        if value != value or (low is not None and (value < low or (low_open and value == low))) or (
            high is not None and (value > high or (high_open and value == high))
        ):
            raise _bad(f"must be in {span}; got {value!r}.")
        return value

    return check


def check_method_option(value: Sequence[str] | None) -> Sequence[str] | None:
    """Callback of ``--method``: every name must be a registered method."""
    if value is None:
        return None

    known = available_methods() + available_attributions()
    for name in value:
        if name not in known:
            raise _bad(f"Unknown method {name!r}; available: {', '.join(known)}.")
    return value


def check_target_option(value: str | None) -> str | None:
    """Callback of ``--target``: its form (``cosine:TEXT``, ``label:NAME``, ``A|B``); the model checks the rest.

    Examples
    --------
    >>> check_target_option("are|is"), check_target_option(None)
    ('are|is', None)
    """
    if value is None:
        return None

    try:
        parse_target(value)
    except AttnflowError as exc:
        raise _bad(str(exc)) from None
    return value


def check_output_option(value: str | None) -> str | None:
    """Callback of ``--output``: cls, last, mean or an integer (its range is checked against the text)."""
    if value is None:
        return None
    key = value.strip().lower()
    if key in ("cls", "last", "mean"):
        return key
    try:
        int(key)
    except ValueError:
        raise _bad(f"must be cls, last, mean or a token index; got {value!r}.") from None
    return key


def check_layer_option(value: int) -> int:
    """Callback of ``--layer``: 1-based, negative from the top; never 0."""
    if value == 0:
        raise _bad("layers count from 1 (or -1 for the top); got 0.")
    return value


def check_layer(layer: int, n_layers: int, option: str = "--layer") -> None:
    """After loading a model: ``layer`` must be one of its ``n_layers`` (1..L or -L..-1).

    Examples
    --------
    >>> check_layer(-1, 6)
    """
    if not (1 <= layer <= n_layers or -n_layers <= layer <= -1):
        raise AttnflowError(
            f"The {option} option must be from 1 to {n_layers} (or -1 for the top) for this model of "
            f"{n_layers} layers; got {layer}."
        )


def model_depth(loaded: Any) -> int | None:
    """The number of layers of a loaded model, from its config, or ``None`` when the config does not say."""
    config = getattr(getattr(loaded, "model", None), "config", None)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


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




#: ``--overwrite``, the same on every command that writes files (see :mod:`attnflow.io` for the policy).
OVERWRITE_HELP = (
    "Replace existing output files even when they are not files attnflow wrote "
    "(its own results, reports and figures are replaced without it)."
)


def usage_error(ctx: typer.Context, message: str) -> Exception:
    """A usage error of the command in ``ctx``: the CLI prints its usage line, then ``error: message`` (exit 2).

    For mistakes a single option's callback cannot see (options that exclude each other).
    """
    usage = next(kind for kind in typer.BadParameter.__mro__ if kind.__name__ == "UsageError")
    return usage(message, ctx)


def given_options(ctx: typer.Context) -> set[str]:
    """The parameters of ``ctx`` given on the command line (or by environment), not left at their defaults."""
    return {
        name for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    }
