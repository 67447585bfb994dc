"""Head analysis: which heads matter for a target, and what they do (Voita et al. 2019; Michel et al. 2019).

- :func:`analyze_heads`: over a set of examples, per layer and head, importance
  (gradient of the target with respect to a head mask), confidence and roles by Voita
  et al.'s definitions (positional, rare-word, syntactic per dependency relation), plus
  attention shares -> :class:`HeadReport`;
- :mod:`.roles`: the role scores from attention arrays alone;
- :mod:`.syntax`: dependency parses (the SVA generator, CoNLL-U, spaCy) and syntactic scores;
- :func:`gate_pruning`: prune with stochastic Hard Concrete gates and a relaxed L0
  penalty, swept over the penalty -> :class:`GateSweep`;
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

from ..graph import fusion_weights
from . import roles, syntax
from .analysis import HeadReport, analyze_heads
from .gates import GateSweep, gate_pruning
from .masking import PruningResult, prune_order, pruning_experiment

__all__ = [
    "GateSweep",
    "HeadReport",
    "PruningResult",
    "analyze_heads",
    "fusion_weights",
    "gate_pruning",
    "prune_order",
    "pruning_experiment",
    "roles",
    "syntax",
]
