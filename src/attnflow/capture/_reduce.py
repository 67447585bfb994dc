"""Reduce one layer's attention weights while the model runs: fuse heads, renormalise rows.

Called from the hooks of :mod:`attnflow.capture._hooks` once per layer and example, so
that only the reduced result outlives the layer:

- ``heads="mean"`` / ``"max"`` / ``"min"``: the head-fused ``(n, n)`` in float32;
- ``heads="all"``: the per-head ``(H, n, n)`` in float64 (what capture returned before).

Rows are renormalised to sum to 1. Softmax in float32 leaves rows within about
``1e-7`` of 1; bfloat16 and float16 weights (half-precision models) leave them up to
a few ``1e-3`` off. The row sums are taken in float64 and their largest deviation
from 1, the *correction*, is returned so the caller can report it. Weights already
within :data:`EXACT_ROWS` of 1 in float32 or float64 are fused directly (one pass,
no copy per head); others are divided by their row sums head by head in float64,
which keeps the extra memory at two ``(n, n)`` float64 arrays whatever ``H`` is.
The reduction runs on the weights' device (a GPU when the model is on one); only
the result is moved to the CPU.
"""

from __future__ import annotations

from typing import Any

from ..errors import AttnflowError

#: Head reductions capture accepts: ``"all"`` keeps every head.
HEAD_MODES: tuple[str, ...] = ("all", "mean", "max", "min")
#: Rows of float32/float64 weights within this of 1 are fused without renormalising.
EXACT_ROWS = 1e-5


def check_heads(heads: Any) -> str:
    """Validate a ``heads`` argument: one of :data:`HEAD_MODES`.

    Examples
    --------
    >>> check_heads("mean")
    'mean'
    """
    if not isinstance(heads, str) or heads not in HEAD_MODES:
        raise AttnflowError(
            f"The 'heads' parameter must be one of {', '.join(HEAD_MODES)} ('all' keeps every head, "
            f"the others fuse them while the model runs); got {heads!r} instead."
        )
    return heads


def reduce_layer(weights: Any, heads: str = "mean") -> tuple[Any, float] | None:
    """Reduce one example's weights of one layer, ``(H, n_query, n_key)``; ``None`` when not finite.

    Returns the reduced tensor on the CPU (float32 ``(n_query, n_key)`` for a fusion,
    float64 ``(H, n_query, n_key)`` for ``"all"``) and the largest ``|row sum - 1|``
    of the weights as given, before renormalising.

    Examples
    --------
    >>> import torch
    >>> w = torch.tensor([[[0.5, 0.5], [0.2, 0.8]], [[1.0, 0.0], [0.4, 0.6]]]).to(torch.bfloat16)
    >>> fused, correction = reduce_layer(w, "mean")
    >>> fused.dtype, [round(v, 3) for v in fused[1].tolist()], correction < 1e-2
    (torch.float32, [0.3, 0.7], True)
    """
    import torch

    sums = weights.sum(-1, dtype=torch.float64)
    if not bool(torch.isfinite(sums).all()):
        return None
    correction = float((sums - 1.0).abs().max()) if sums.numel() else 0.0
    exact = weights.dtype in (torch.float32, torch.float64) and correction <= EXACT_ROWS
    if heads == "all":
        out = weights.to(torch.float64)
        if not exact:
            out = out / sums.clamp_min(1e-300)[..., None]
        return out.cpu(), correction
    if exact:
        if heads == "mean":
            fused = weights.mean(0)
        elif heads == "max":
            fused = weights.amax(0)
        else:
            fused = weights.amin(0)
        return fused.to(torch.float32).cpu(), correction
    acc = None
    for head in range(weights.shape[0]):
        normalised = weights[head].to(torch.float64) / sums[head].clamp_min(1e-300)[:, None]
        if acc is None:
            acc = normalised
        elif heads == "mean":
            acc += normalised
        elif heads == "max":
            torch.maximum(acc, normalised, out=acc)
        else:
            torch.minimum(acc, normalised, out=acc)
        del normalised
    if heads == "mean":
        acc /= weights.shape[0]
    return acc.to(torch.float32).cpu(), correction
