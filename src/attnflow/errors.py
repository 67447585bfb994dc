"""The one error type users see."""

from __future__ import annotations

import re

#: numpy 2's repr of a scalar, ``np.float64(0.5)``: in a message the value alone is meant.
_NUMPY_SCALAR = re.compile(r"\bnp\.(?:float|int|uint|bool|str|bytes|complex|longdouble|clongdouble)\w*\(([^()]*)\)")


class AttnflowError(ValueError):
    """Raised for every problem with user input: bad arrays, texts, models or options.

    The message names the parameter, what was expected and what was given, and
    where possible what to do about it. A value given as a numpy scalar is shown
    as its value (``2.0``, not ``np.float64(2.0)``).

    Examples
    --------
    >>> import numpy as np
    >>> from attnflow import rollout
    >>> rollout(np.ones((1, 1)))
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The 'attentions' parameter must have shape (L, H, n, n) or (L, n, n); got an array of rank 2 with shape (1, 1) instead.
    >>> str(AttnflowError(f"got {np.float64(2.0)!r} and {[np.int64(3)]!r}"))
    'got 2.0 and [3]'
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (_NUMPY_SCALAR.sub(r"\1", args[0]),)
        super().__init__(*args)
