"""Reduce one layer's attention weights while the model runs: fuse heads, renormalise rows.

Called once per layer and example, from the hooks of :mod:`attnflow.capture._hooks`
(:func:`reduce_layer`, every head at once) or from the attention function of
:mod:`attnflow.capture._fused_attention` (:class:`LayerAccumulator`, a group of heads
at a time), so that only the reduced result outlives the layer:

- ``heads="mean"`` / ``"max"`` / ``"min"``: the head-fused ``(n, n)`` in float32;
- ``heads="all"``: the per-head ``(H, n, n)`` in float64 (what capture returned before).

Rows are renormalised to sum to 1. Softmax in float32 leaves rows within about
``1e-7`` of 1; bfloat16 and float16 weights (half-precision models) leave them up to
a few ``1e-3`` off. The row sums are taken in float64 and their largest deviation
from 1, the *correction*, is returned so the caller can report it. Weights already
within :data:`EXACT_ROWS` of 1 in float32 or float64 are fused as they are; others
are divided by their row sums head by head in float64. Either way the heads are
folded into one float32 ``(n, n)`` (summing at most a few dozen values in ``[0, 1]``
loses about ``1e-7``), which keeps the extra memory at one ``(n, n)`` float64 array
whatever ``H`` is.
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


class LayerAccumulator:
    """Fuse one example's heads of one layer as they arrive, a group of heads at a time.

    ``add`` takes weights ``(heads_in_group, rows, width)`` (any float dtype, any
    device) of query rows ``start:start + rows`` and keeps what falls in the
    top-left ``n`` by ``n`` block (all of it when ``n`` is ``None``), the example's
    own tokens in a right-padded batch. Every query row must come once per head. Each head is
    renormalised in float64 unless its rows already sum to 1 within
    :data:`EXACT_ROWS` (float32 and float64 weights), and folded into one float32
    ``(n, n)``: summed for ``"mean"``, the running maximum or minimum otherwise.
    The fold happens in ``out`` itself when it is a float32 tensor on the weights'
    device (no extra memory); ``close`` finishes the mean and returns the fused
    float32 result on the CPU (``out``, or a new tensor).

    Attributes
    ----------
    correction
        The largest ``|row sum - 1|`` of the weights as given.
    finite
        ``False`` once a head had a NaN or infinite row.

    Examples
    --------
    >>> import torch
    >>> acc = LayerAccumulator("mean", 2)
    >>> acc.add(torch.tensor([[[0.5, 0.5], [0.2, 0.8]]]))
    >>> acc.add(torch.tensor([[[1.0, 0.0], [0.4, 0.6]]]))
    >>> [round(v, 3) for v in acc.close()[1].tolist()]
    [0.3, 0.7]
    """

    def __init__(self, heads: str, n: int | None = None, out: Any = None) -> None:
        if heads not in HEAD_MODES[1:]:
            raise AttnflowError(f"LayerAccumulator fuses with 'mean', 'max' or 'min'; got {heads!r}.")
        self.heads = heads
        self.n = None if n is None else int(n)
        self.out = out
        self.correction = 0.0
        self.finite = True
        self.count = 0
        self._sum: Any = None

    def add(self, weights: Any, start: int = 0) -> None:
        """Fold weights ``(heads_in_group, rows, width)`` of the layer's query rows ``start:start + rows``."""
        import torch

        if not self.finite:
            return
        rows = int(weights.shape[1])
        n = rows + start if self.n is None else self.n
        keys = int(weights.shape[2]) if self.n is None else self.n
        block = weights[:, : max(0, min(rows, n - start)), :keys]
        # float32 rows are summed in float32 (a float64 sum would copy the block) and
        # compared with 1 in float64; half-precision rows are summed in float64.
        if block.dtype == torch.float32:
            sums = block.sum(-1).to(torch.float64)
        else:
            sums = block.sum(-1, dtype=torch.float64)
        if not bool(torch.isfinite(sums).all()):
            self.finite = False
            self._sum = None
            return
        if start == 0:
            self.count += int(block.shape[0])
        if not block.shape[1]:
            return
        correction = float((sums - 1.0).abs().max()) if sums.numel() else 0.0
        self.correction = max(self.correction, correction)
        exact = block.dtype in (torch.float32, torch.float64) and correction <= EXACT_ROWS
        if self._sum is None:
            self._sum = self._buffer(n, keys, block.device)
        target = self._sum[start : start + block.shape[1]]
        for head in range(block.shape[0]):
            values = block[head] if exact else block[head].to(torch.float64) / sums[head].clamp_min(1e-300)[:, None]
            if self.heads == "mean":
                target.add_(values)
            elif self.heads == "max":
                torch.maximum(target, values.to(torch.float32), out=target)
            else:
                torch.minimum(target, values.to(torch.float32), out=target)
            del values

    def _buffer(self, n: int, keys: int, device: Any) -> Any:
        """Where the fusion is folded: ``out`` itself when it is float32 on the weights' device."""
        import torch

        out = self.out
        if not (out is not None and out.dtype == torch.float32 and out.device == device):
            out = torch.empty((n, keys), dtype=torch.float32, device=device)
        start = {"mean": 0.0, "max": float("-inf"), "min": float("inf")}[self.heads]
        return out.fill_(start)

    def close(self) -> Any:
        """The fused float32 ``(n, n)`` on the CPU (``out`` when given); ``None`` when not finite or empty."""
        import torch

        if not self.finite or self._sum is None:
            self._sum = None
            return None
        fused = self._sum
        self._sum = None
        if self.heads == "mean":
            fused /= self.count
        if self.out is None:
            self.out = fused.to(device="cpu", dtype=torch.float32)
        elif fused is not self.out:
            self.out.copy_(fused)
        return self.out


def reduce_layer(weights: Any, heads: str = "mean") -> tuple[Any, float] | None:
    """Reduce one example's weights of one layer, ``(H, n_query, n_key)``; ``None`` when not finite.

    Returns the reduced tensor on the CPU (float32 ``(n_query, n_key)`` for a fusion,
    float64 ``(H, n_query, n_key)`` for ``"all"``) and the largest ``|row sum - 1|``
    of the weights as given, before renormalising. A fusion is a
    :class:`LayerAccumulator` fed every head at once.

    Examples
    --------
    >>> import torch
    >>> w = torch.tensor([[[0.5, 0.5], [0.2, 0.8]], [[1.0, 0.0], [0.4, 0.6]]]).to(torch.bfloat16)
    >>> fused, correction = reduce_layer(w, "mean")
    >>> fused.dtype, [round(v, 3) for v in fused[1].tolist()], correction < 1e-2
    (torch.float32, [0.3, 0.7], True)
    """
    import torch

    if heads != "all":
        accumulator = LayerAccumulator(heads)
        accumulator.add(weights)
        fused = accumulator.close()
        return None if fused is None else (fused, accumulator.correction)
    sums = weights.sum(-1, dtype=torch.float64)
    if not bool(torch.isfinite(sums).all()):
        return None
    correction = float((sums - 1.0).abs().max()) if sums.numel() else 0.0
    out = weights.to(torch.float64)
    if not (weights.dtype in (torch.float32, torch.float64) and correction <= EXACT_ROWS):
        out = out / sums.clamp_min(1e-300)[..., None]
    return out.cpu(), correction
