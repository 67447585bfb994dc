"""Gradient-weighted rollout (Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability")."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..graph import WeightedAttention, as_attention_array
from ..outputs import select_output
from .registry import register_method


def grad_rollout(attentions: Any, gradients: Any) -> np.ndarray:
    """Roll out attention weighted by its gradient for a target: class-specific rollout.

    ``Abar[l] = mean_h max(0, dy/dA[l, h] * A[l, h])``; ``R = I``; then for each
    layer ``R = R + Abar[l] @ R``. Unlike :func:`attnflow.rollout`, the result
    depends on the target ``y`` whose gradient is given: ask about another class
    and the map changes.

    Parameters
    ----------
    attentions
        ``(L, H, n, n)`` attention weights (or a list of per-layer ``(H, n, n)``
        arrays); numpy or torch. Rows must sum to 1.
    gradients
        ``(L, H, n, n)``: ``dy/dA`` for the target ``y``, same layout
        (:func:`attnflow.capture.gradients.target_gradients` computes it); or a
        :class:`WeightedAttention`, ``Abar`` already reduced layer by layer
        (:func:`attnflow.capture.gradients.weighted_attention`), for which
        ``attentions`` only needs the same ``L`` and ``n`` (any ``H``).

    Returns
    -------
    ndarray ``(L, n, n)``
        ``[l-1, t, j]``: relevance of input token ``j`` for position ``t`` after
        layer ``l`` (the ``R`` after ``l`` updates).

    Notes
    -----
    Not normalised, as in Chefer et al.: entries are non-negative, ``R[t, t] >= 1``
    (the identity is the residual stream) and the rows sum to ``1 +`` the
    relevance that arrived through attention, which may be tiny or large
    depending on the gradient's scale. Only the relative sizes within a row
    mean anything: the evaluation uses ranks (Spearman) and the terminal table
    scales each method's bars to its maximum. Divide a row by its sum to compare
    its shape with rollout's.

    Raises
    ------
    AttnflowError
        For malformed attention, or gradients of another shape or not finite.

    References
    ----------
    Chefer, H., Gur, S., Wolf, L. (2021). Generic Attention-model Explainability for
    Interpreting Bi-Modal and Encoder-Decoder Transformers. ICCV 2021, eq. (5)-(6).

    Examples
    --------
    One layer, one head, two tokens; the target gains from token 0 attending to token 1:

    >>> a = np.array([[[[0.5, 0.5], [0.0, 1.0]]]])
    >>> g = np.array([[[[-1.0, 2.0], [0.0, 3.0]]]])
    >>> grad_rollout(a, g)[0]
    array([[1., 1.],
           [0., 4.]])
    """
    array = as_attention_array(attentions)
    if isinstance(gradients, WeightedAttention):
        if gradients.shape != (array.shape[0], *array.shape[2:]):
            raise AttnflowError(
                f"The weighted attention has shape {gradients.shape}; the attentions {array.shape} need "
                f"{(array.shape[0], *array.shape[2:])} (L, n, n)."
            )
        return _roll(gradients.values)
    return _roll(weigh(array, gradients))


def weigh(array: np.ndarray, gradients: Any, name: str = "gradients") -> np.ndarray:
    """``Abar = mean_h max(0, dy/dA ⊙ A)``, ``(L, n, n)``, from validated attention ``(L, H, n, n)`` and its gradient.

    ``name`` is the parameter the error messages name.

    Examples
    --------
    >>> weigh(np.array([[[[0.5, 0.5], [0.0, 1.0]]]]), np.array([[[[-1.0, 2.0], [0.0, 3.0]]]]))[0].tolist()
    [[0.0, 1.0], [0.0, 3.0]]
    """
    grads = np.asarray(
        gradients.detach().cpu().double().numpy() if hasattr(gradients, "detach") else gradients, dtype=np.float64
    )
    if isinstance(gradients, (list, tuple)) and grads.ndim == 3 and array.shape[1] == 1:
        grads = grads[:, None]
    if grads.shape != array.shape:
        raise AttnflowError(
            f"The '{name}' parameter must have the shape of the attentions {array.shape} (L, H, n, n); "
            f"got {grads.shape} instead."
        )
    if not np.all(np.isfinite(grads)):
        raise AttnflowError(f"The '{name}' parameter contains NaN or infinite values.")
    return np.maximum(grads * array, 0.0).mean(axis=1)


def _roll(fused: np.ndarray) -> np.ndarray:
    """``R = I``, then ``R = R + Abar[l] @ R`` for each layer; every layer's ``R``, ``(L, n, n)``."""
    n_layers, n = fused.shape[0], fused.shape[-1]
    result = np.empty((n_layers, n, n))
    relevance = np.eye(n)
    for layer in range(n_layers):
        relevance = relevance + fused[layer] @ relevance
        result[layer] = relevance
    return result


@register_method(
    "grad-rollout",
    "gradient-weighted rollout for a target: R += mean_h max(0, dy/dA * A) @ R (Chefer et al. 2021)",
    needs_gradients=True,
)
def grad_rollout_scores(
    attentions: np.ndarray, output: int | str, *, gradients: np.ndarray, **options: Any
) -> np.ndarray:
    """Gradient-weighted rollout scores of every input token for one output: ``(L, n)``, unnormalised."""
    return select_output(grad_rollout(attentions, gradients), output)
