"""Errors raised inside a model become one readable line, never a deep traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import AttnflowError


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none).

    Examples
    --------
    >>> first_line(RuntimeError("shape mismatch\\nmore detail"))
    'shape mismatch'
    """
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


@contextmanager
def model_failures(what: str) -> Iterator[None]:
    """Re-raise any exception from the model as ``AttnflowError("{what}: Type: first line")``.

    The original exception stays chained (``__cause__``) for debugging; our own
    ``AttnflowError`` passes through unchanged.

    Examples
    --------
    >>> with model_failures("The model 'toy' failed on a forward pass"):
    ...     raise IndexError("index out of range in self")
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The model 'toy' failed on a forward pass: IndexError: index out of range in self
    """
    try:
        yield
    except AttnflowError:
        raise
    except Exception as exc:
        raise AttnflowError(f"{what}: {type(exc).__name__}: {first_line(exc)}") from exc
