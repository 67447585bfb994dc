"""What ``attnflow.explain`` must capture for the methods and options it is asked for.

Raw attention, rollout and flow read attention only through its head-fused
``(L, n, n)`` (:func:`attnflow.graph.fuse_heads`), and grad-rollout only through
``mean_h max(0, dS/dA ⊙ A)``, which :func:`attnflow.capture.gradients.weighted_attention`
reduces layer by layer. With the default mean fusion, capture fuses the heads while
the model runs (``capture_attention(..., heads="mean")``): float32 ``(L, 1, n, n)``
instead of float64 ``(L, H, n, n)``, and never more than one layer's heads alive at
a time. Everything else captures every head: ``head_fusion`` max or min (their
fused rows do not sum to 1, and the methods validate rows before fusing), head
weights (an ``(L, H)`` array, or ``"importance"``), a method not in
:data:`FUSED_METHODS`, or a caller that asks for the heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Methods whose scores depend on the attention only through its head-fused (or, for grad-rollout,
#: gradient-weighted and fused) layers.
FUSED_METHODS: frozenset[str] = frozenset({"raw", "rollout", "flow", "grad-rollout"})


def capture_heads(methods: Sequence[str] | str, method_options: dict[str, Any] | None = None) -> str:
    """The ``heads=`` to capture with: ``"mean"`` when the head mean is all the methods read, else ``"all"``.

    Max and min fusion keep every head: their fused rows do not sum to 1, which the
    methods check on the attention they are given before fusing it.

    Examples
    --------
    >>> capture_heads(["raw", "rollout", "flow"])
    'mean'
    >>> capture_heads("rollout", {"head_fusion": "max"}), capture_heads("rollout", {"head_fusion": "importance"})
    ('all', 'all')
    >>> capture_heads(["rollout", "some-new-method"])
    'all'
    """
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names or any(name not in FUSED_METHODS for name in names):
        return "all"
    fusion = (method_options or {}).get("head_fusion", "mean")
    if fusion is None or (isinstance(fusion, str) and fusion.strip().lower() == "mean"):
        return "mean"
    return "all"


def fits(captured: Any, heads: str) -> bool:
    """Whether an existing capture holds what ``heads`` asks for: every head, or that same fusion.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> fits(SimpleNamespace(head_fusion=None), "mean"), fits(SimpleNamespace(head_fusion="mean"), "max")
    (True, False)
    """
    fusion = getattr(captured, "head_fusion", None)
    return fusion is None or fusion == heads
