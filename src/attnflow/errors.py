"""The one error type users see."""

from __future__ import annotations


class AttnflowError(ValueError):
    """Raised for every problem with user input: bad arrays, texts, models or options.

    The message names the parameter, what was expected and what was given, and
    where possible what to do about it.

    Examples
    --------
    >>> import numpy as np
    >>> from attnflow import rollout
    >>> rollout(np.ones((1, 1)))
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The 'attentions' parameter must have shape (L, H, n, n) or (L, n, n); got an array of rank 2 with shape (1, 1) instead.
    """
