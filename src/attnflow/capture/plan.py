"""What ``attnflow.explain`` must capture for the methods and options it is asked for.

Raw attention, rollout and flow read attention only through its head-fused
``(L, n, n)`` (:func:`attnflow.graph.fuse_heads` with ``head_fusion`` mean, max or
min), and grad-rollout only through ``mean_h max(0, dS/dA ⊙ A)``, which
:func:`attnflow.capture.gradients.weighted_attention` reduces layer by layer. For
those, capture fuses the heads while the model runs (``capture_attention(...,
heads=FUSION)``): float32 ``(L, 1, n, n)`` instead of float64 ``(L, H, n, n)``, and
never more than one layer's heads alive at a time. Everything else needs every
head: head weights (an ``(L, H)`` array, or ``head_fusion="importance"``), a method
not in :data:`FUSED_METHODS`, or a caller that asks for the heads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Methods whose scores depend on the attention only through its head-fused (or, for grad-rollout,
#: gradient-weighted and fused) layers.
FUSED_METHODS: frozenset[str] = frozenset({"raw", "rollout", "flow", "grad-rollout"})


def capture_heads(methods: Sequence[str] | str, method_options: dict[str, Any] | None = None) -> str:
    """The ``heads=`` to capture with: the fusion (``"mean"``, ``"max"``, ``"min"``) when it suffices, else ``"all"``.

    Examples
    --------
    >>> capture_heads(["raw", "rollout", "flow"])
    'mean'
    >>> capture_heads("rollout", {"head_fusion": "max"}), capture_heads("rollout", {"head_fusion": "importance"})
    ('max', 'all')
    >>> capture_heads(["rollout", "some-new-method"])
    'all'
    """
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names or any(name not in FUSED_METHODS for name in names):
        return "all"
    fusion = (method_options or {}).get("head_fusion", "mean")
    if fusion is None:
        fusion = "mean"
    if isinstance(fusion, str) and fusion.strip().lower() in ("mean", "max", "min"):
        return fusion.strip().lower()
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
