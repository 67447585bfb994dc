"""Explanation methods. Importing this package registers every method (each module registers itself)."""

from .raw import raw_attention  # noqa: I001  (registration order: raw, rollout, flow, grad-rollout)
from .registry import Method, available_methods, get_method, register_method
from .rollout import node_shares, rollout

from .flow import attention_flow  # noqa: E402, I001  (registered after raw and rollout, to list them first)
from .grad_rollout import grad_rollout  # noqa: E402, I001  (registered last: raw, rollout, flow, grad-rollout)

__all__ = [
    "Method",
    "attention_flow",
    "available_methods",
    "get_method",
    "grad_rollout",
    "node_shares",
    "raw_attention",
    "register_method",
    "rollout",
]
