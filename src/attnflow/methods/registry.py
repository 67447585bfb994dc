"""Methods registered by name: the one list the API, the CLI and the tests read.

A method turns captured attention into scores of the input tokens for one
output position, layer by layer: ``scores(attentions, output, **options) -> (L, n)``
with ``attentions`` validated float64 ``(L, H, n, n)`` and ``output`` a
position or ``"mean"``.

A method registered with ``needs_gradients=True`` explains a *target* and is
called as ``scores(attentions, output, *, gradients, **options)``, where
``gradients`` is float64 ``(L, H, n, n)``: the target's gradient with respect to
each attention weight (:func:`attnflow.capture.gradients.target_gradients`).
:func:`attnflow.explain` and :func:`attnflow.evaluate` compute it for the
target they are given whenever a chosen method needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import AttnflowError

ScoreFunction = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Method:
    """A registered explanation method.

    ``needs_gradients``: ``scores`` takes the keyword ``gradients`` (``(L, H, n, n)``,
    the target's gradient with respect to the attention weights) besides the attentions.
    """

    name: str
    summary: str
    scores: ScoreFunction
    options: frozenset[str] = field(default_factory=frozenset)
    needs_gradients: bool = False


_REGISTRY: dict[str, Method] = {}


def register_method(
    name: str,
    summary: str,
    *,
    options: tuple[str, ...] = (),
    needs_gradients: bool = False,
) -> Callable[[ScoreFunction], ScoreFunction]:
    """Register ``scores`` under ``name``; used as a decorator by each method module."""

    def decorate(scores: ScoreFunction) -> ScoreFunction:
        if name in _REGISTRY:
            raise RuntimeError(f"method {name!r} is registered twice")
        _REGISTRY[name] = Method(name, summary, scores, frozenset(options), needs_gradients)
        return scores

    return decorate


def available_methods() -> tuple[str, ...]:
    """Names of every registered method, in registration order.

    Examples
    --------
    >>> "rollout" in available_methods()
    True
    """
    return tuple(_REGISTRY)


def get_method(name: str) -> Method:
    """Look a method up by name, with an error that lists the alternatives."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AttnflowError(
            f"Unknown method {name!r}; available: {', '.join(available_methods())}."
        ) from None
