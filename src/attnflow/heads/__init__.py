"""Head analysis: which heads matter for a target, and what they do (Voita et al. 2019; Michel et al. 2019).

- :func:`analyze_heads`: over a set of examples, per layer and head, importance
  (gradient of the target with respect to a head mask), confidence and role scores
  (positional, rare-word, sink) -> :class:`HeadReport`;
- :mod:`.roles`: the role scores from attention arrays alone;
- :func:`pruning_experiment`: mask the least / most important heads and measure the
  target's value and accuracy -> :class:`PruningResult`;
- :func:`fusion_weights`: importance as ``head_fusion`` weights for rollout and flow.

Examples
--------
>>> import numpy as np
>>> from attnflow.heads import roles
>>> roles.previous_token_share(np.array([[[[1.0, 0.0], [1.0, 0.0]]]]))
array([[1.]])
"""

from __future__ import annotations

from . import roles
from .analysis import HeadReport, analyze_heads, fusion_weights
from .masking import PruningResult, prune_order, pruning_experiment

__all__ = [
    "HeadReport",
    "PruningResult",
    "analyze_heads",
    "fusion_weights",
    "prune_order",
    "pruning_experiment",
    "roles",
]
