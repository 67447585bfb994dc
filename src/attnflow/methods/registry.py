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

A method whose scores for every output come out of one computation (raw
attention, rollout: a matrix product) registers that too, as ``every_output``:
``every_output(attentions, **options) -> (L, n, n)``, ``[l-1, t, j]`` the score
``scores(attentions, t, **options)`` gives token ``j`` after layer ``l``. The
report (:func:`attnflow.report.data.report_data`) uses it to offer every output
without one call per output; :meth:`Method.scores_for_outputs` calls whichever the method has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AttnflowError

ScoreFunction = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Method:
    """A registered explanation method.

    ``needs_gradients``: ``scores`` takes the keyword ``gradients`` (``(L, H, n, n)``,
    the target's gradient with respect to the attention weights) besides the attentions.
    ``every_output``: the scores of every output at once, ``(L, n, n)``, or ``None``
    when the method computes one output at a time.
    ``annotated``: ``annotated(attentions, output, **options) -> (scores, notes,
    token_labels, solution)``, the scores with what a reader should know about them (see
    :class:`attnflow.Explanation`) and what later views can reuse (flow: its
    :class:`~attnflow.methods.flow.FlowSolution`, whose cuts the HTML report draws; or
    ``None``), from the same computation; or ``None``.
    """

    name: str
    summary: str
    scores: ScoreFunction
    options: frozenset[str] = field(default_factory=frozenset)
    needs_gradients: bool = False
    every_output: ScoreFunction | None = None
    annotated: Callable[..., tuple[np.ndarray, list[str], dict[str, list[str]], Any]] | None = None

    def scores_for_outputs(
        self,
        attentions: np.ndarray,
        outputs: Sequence[int | str],
        *,
        progress: Callable[[int, int], None] | None = None,
        **options: Any,
    ) -> np.ndarray:
        """``(L, K, n)``: the scores for each of ``outputs`` (positions or ``"mean"``), ``[l-1, k, j]``.

        One ``every_output`` call when the method has one (and one ``scores`` call
        for ``"mean"``, which for flow is a super-sink, not a mean of rows),
        else one ``scores`` call per output, with ``progress(done, total)`` added
        up over the calls. Options the method does not take are left out, as
        :func:`attnflow.explain_attentions` does. ``attentions`` as for ``scores``
        (validated float64 ``(L, H, n, n)``); gradient methods also need ``gradients=``.

        Examples
        --------
        >>> from attnflow.methods import get_method
        >>> a = np.full((2, 1, 3, 3), 1 / 3)
        >>> get_method("rollout").scores_for_outputs(a, [0, "mean"], residual=0.5)[-1].round(3).tolist()
        [[0.5, 0.25, 0.25], [0.333, 0.333, 0.333]]
        """
        kept = {key: value for key, value in options.items() if key in self.options or key == "gradients"}
        if not len(outputs):
            return np.empty((attentions.shape[0], 0, attentions.shape[-1]))
        if self.every_output is not None:
            singles = [t for t in outputs if t != "mean"]
            every = self.every_output(attentions, **kept) if singles else None
            return np.stack(
                [self.scores(attentions, t, **kept) if t == "mean" else every[:, t, :] for t in outputs], axis=1
            )
        if progress is not None and "progress" in self.options:
            count, done_before = len(outputs), [0]

            def add_up(done: int, total: int) -> None:
                progress(done_before[0] * total + done, count * total)

            kept["progress"] = add_up
        rows = []
        for index, t in enumerate(outputs):
            if "progress" in kept:
                done_before[0] = index
            rows.append(self.scores(attentions, t, **kept))
        return np.stack(rows, axis=1)


_REGISTRY: dict[str, Method] = {}


def register_method(
    name: str,
    summary: str,
    *,
    options: tuple[str, ...] = (),
    needs_gradients: bool = False,
    every_output: ScoreFunction | None = None,
    annotated: Callable[..., tuple[np.ndarray, list[str], dict[str, list[str]], Any]] | None = None,
) -> Callable[[ScoreFunction], ScoreFunction]:
    """Register ``scores`` under ``name``; used as a decorator by each method module.

    ``every_output(attentions, **options) -> (L, n, n)``, when given, must give for
    every output ``t`` the row ``scores(attentions, t, **options)`` gives.
    """

    def decorate(scores: ScoreFunction) -> ScoreFunction:
        if name in _REGISTRY:
            raise RuntimeError(f"method {name!r} is registered twice")
        _REGISTRY[name] = Method(
            name, summary, scores, frozenset(options), needs_gradients, every_output, annotated
        )
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
