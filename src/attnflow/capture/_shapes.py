"""Sizes read off an ``(L, H, n, n)`` attention array, shared by every capture result."""

from __future__ import annotations

import numpy as np


class AttentionShape:
    """Mixin for dataclasses with an ``attentions`` array laid out ``(L, H, n, n)``.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Toy(AttentionShape):
    ...     attentions: np.ndarray
    >>> t = Toy(np.zeros((6, 12, 5, 5)))
    >>> t.n_layers, t.n_heads, t.n_tokens
    (6, 12, 5)
    """

    attentions: np.ndarray

    @property
    def n_layers(self) -> int:
        """``L``, the number of layers."""
        return int(self.attentions.shape[0])

    @property
    def n_heads(self) -> int:
        """``H``, the number of heads per layer."""
        return int(self.attentions.shape[1])

    @property
    def n_tokens(self) -> int:
        """``n``, the number of tokens, special tokens included."""
        return int(self.attentions.shape[-1])
