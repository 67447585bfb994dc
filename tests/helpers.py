"""Random attention for array-level tests, independent of the library's own code."""

from __future__ import annotations

import numpy as np


def random_attention(
    rng: np.random.Generator,
    n_layers: int,
    n_heads: int,
    n_tokens: int,
    *,
    temperature: float = 1.0,
    causal: bool = False,
) -> np.ndarray:
    """Softmax of Gaussian logits, ``(L, H, n, n)``; ``causal`` masks keys after the query."""
    logits = rng.normal(size=(n_layers, n_heads, n_tokens, n_tokens)) / temperature
    if causal:
        logits = np.where(np.tril(np.ones((n_tokens, n_tokens), bool)), logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def patch_everywhere(monkeypatch, module, name: str, replacement) -> None:
    """Replace ``module.name`` and every binding of the same object in attnflow's loaded modules.

    attnflow imports its own functions at the top of each file (``from ..capture import load_model``),
    so a caller holds its own reference: a spy or a counter must replace each one.
    """
    import sys

    real = getattr(module, name)
    monkeypatch.setattr(module, name, replacement)
    for loaded_name, loaded in list(sys.modules.items()):
        if loaded_name.startswith("attnflow") and loaded is not module:
            for attribute, value in list(vars(loaded).items()):
                if value is real:
                    monkeypatch.setattr(loaded, attribute, replacement)
