"""Explanation methods. Importing this package registers every method (each module registers itself)."""

from .raw import raw_attention
from .registry import Method, available_methods, get_method, register_method
from .rollout import rollout

__all__ = [
    "Method",
    "available_methods",
    "get_method",
    "raw_attention",
    "register_method",
    "rollout",
]
