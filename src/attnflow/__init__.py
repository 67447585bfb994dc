"""attnflow: where does a transformer's output draw its information from?

Attention rollout and exact attention flow (Abnar & Zuidema 2020) for any
Hugging Face model, or for attention arrays you already have.

Examples
--------
>>> import numpy as np, attnflow
>>> a = np.full((2, 4, 3, 3), 1 / 3)          # 2 layers, 4 heads, 3 tokens
>>> attnflow.rollout(a).shape
(2, 3, 3)
"""

from __future__ import annotations

from . import evaluate
from ._version import __version__
from .errors import AttnflowError
from .explainers.image import explain_image
from .explainers.text import explain, explain_attentions
from .explanation import Explanation
from .graph import AttentionGraph
from .methods import available_methods, get_method, raw_attention, register_method, rollout
from .methods.flow import FlowSolution, attention_flow, solve_flow, verify_flow
from .methods.flow_bounds import FlowBounds, solve_flow_bounds
from .methods.grad_rollout import grad_rollout
from .outputs import resolve_output, select_output

__all__ = [
    "AttentionGraph",
    "AttnflowError",
    "Explanation",
    "FlowBounds",
    "FlowSolution",
    "__version__",
    "attention_flow",
    "available_methods",
    "evaluate",
    "explain",
    "explain_attentions",
    "explain_image",
    "get_method",
    "grad_rollout",
    "raw_attention",
    "register_method",
    "resolve_output",
    "rollout",
    "select_output",
    "solve_flow",
    "solve_flow_bounds",
    "verify_flow",
]
