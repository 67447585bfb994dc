"""Raw attention: one layer's head-fused weights, the baseline every method is compared with."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..graph import HeadFusion, as_attention_array, fuse_heads, fused_layers
from ..outputs import select_output
from .registry import register_method


def raw_attention(attentions: Any, *, head_fusion: HeadFusion | np.ndarray = "mean") -> np.ndarray:
    """Head-fused attention of each layer, no residual, no propagation.

    Same input forms and conventions as :func:`attnflow.rollout`: returns
    ``(L, n, n)`` with ``[l-1, t, j]`` the weight query ``t`` gives key ``j`` in layer ``l``.

    Examples
    --------
    >>> a = np.array([[[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]]])
    >>> raw_attention(a)[0]
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    return fuse_heads(as_attention_array(attentions), head_fusion)


@register_method(
    "raw",
    "raw attention of each layer, heads fused, no residual (the paper's baseline)",
    options=("head_fusion",),
    every_output=raw_attention,
)
def raw_scores(attentions: np.ndarray, output: int | str, **options: Any) -> np.ndarray:
    """Raw attention scores of every input token for one output: ``(L, n)``.

    Only that output's rows are kept (a copy): a fused capture is read in place
    (:func:`attnflow.graph.fused_layers`), never copied whole.
    """
    head_fusion = options.pop("head_fusion", "mean")
    if options:
        raise AttnflowError(f"raw got unknown options {sorted(options)}.")
    fused = fused_layers(as_attention_array(attentions, keep_float32=True), head_fusion)  # a fused capture: a view
    return np.array(select_output(fused, output), dtype=np.float64)
