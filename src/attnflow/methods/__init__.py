"""Explanation methods. Importing this package registers every method (each module registers itself)."""

from .raw import raw_attention
from .registry import Method, available_methods, get_method, register_method
from .rollout import rollout

from .flow import attention_flow  # noqa: E402, I001  (registered after raw and rollout, to list them first)

__all__ = [
    "Method",
    "attention_flow",
    "available_methods",
    "get_method",
    "raw_attention",
    "register_method",
    "rollout",
]
