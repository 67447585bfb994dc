"""Which output position an explanation is about: a token index, "cls", "last" or "mean"."""

from __future__ import annotations

from typing import Literal

import numpy as np

from .errors import AttnflowError

OutputName = Literal["cls", "last", "mean"]
Output = int | OutputName
OUTPUT_NAMES: tuple[str, ...] = ("cls", "last", "mean")


def resolve_output(output: Output | str, n_tokens: int) -> int | Literal["mean"]:
    """Turn an output choice into a position ``0 <= t < n`` or ``"mean"``.

    ``"cls"`` is the first position ([CLS] in BERT, ``<s>`` in RoBERTa),
    ``"last"`` the last one (what a decoder predicts from), ``"mean"`` the mean
    over all positions (mean-pooled sentence embeddings). Integers may be
    negative and count from the end; strings of digits are accepted (CLI).

    Examples
    --------
    >>> resolve_output("last", 5), resolve_output(-2, 5), resolve_output("mean", 5)
    (4, 3, 'mean')
    """
    if isinstance(output, str):
        key = output.strip().lower()
        if key == "cls":
            return 0
        if key == "last":
            return n_tokens - 1
        if key == "mean":
            return "mean"
        try:
            output = int(key)
        except ValueError:
            raise AttnflowError(
                f"The 'output' parameter must be a token index or one of {', '.join(OUTPUT_NAMES)}; "
                f"got {output!r} instead."
            ) from None
    if isinstance(output, bool) or not isinstance(output, (int, np.integer)):
        raise AttnflowError(
            f"The 'output' parameter must be a token index or one of {', '.join(OUTPUT_NAMES)}; "
            f"got {output!r} instead."
        )
    index = int(output)
    if not -n_tokens <= index < n_tokens:
        raise AttnflowError(
            f"The 'output' parameter must be a token index from 0 to {n_tokens - 1} "
            f"(or negative from the end); got {index} for an input of {n_tokens} tokens."
        )
    return index % n_tokens


def select_output(matrices: np.ndarray, output: Output | str) -> np.ndarray:
    """Pick the output row of every layer: ``(L, n, n) -> (L, n)``.

    Examples
    --------
    >>> m = np.arange(8.0).reshape(2, 2, 2)
    >>> select_output(m, "last")
    array([[2., 3.],
           [6., 7.]])
    """
    position = resolve_output(output, matrices.shape[-1])
    if position == "mean":
        return matrices.mean(axis=1)
    return matrices[:, position, :]
