"""Faithfulness: does removing the tokens a method ranks highest change the model's output?

Definitions (DeYoung et al. 2020, ERASER; AOPC after Samek et al. 2017), for a
target value ``p`` (a class probability, or a scalar such as a cosine), an input
``x`` and the top ``k`` % of its tokens by a method's scores, ``r_k``:

- comprehensiveness ``comp_k = p(x) - p(x without r_k)``: high when the top
  tokens matter;
- sufficiency ``suff_k = p(x) - p(r_k only)``: low when the top tokens suffice;
- ``AOPC_comp = mean_k comp_k`` and ``AOPC_suff = mean_k suff_k`` over the
  percentages ``k`` (10, 20, 30, 40, 50 by default).

A random order of the tokens is the baseline a method should beat.

Everything here works on a *predict* callback, ``predict(keep) -> values`` with
``keep`` a boolean ``(B, n)`` array saying which tokens each of ``B`` inputs keeps,
so the metrics can be checked on toy functions; ``attnflow.evaluate`` passes one
that runs the model. Only *candidate* positions are ever removed (the evaluation
passes the non-special tokens); the others are always kept, in sufficiency too.
``k`` % of the ``m`` candidates is ``ceil(k * m / 100)`` tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AttnflowError

DEFAULT_PERCENTS: tuple[int, ...] = (10, 20, 30, 40, 50)

Predict = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class FaithfulnessScores:
    """Comprehensiveness and sufficiency of one ranking at each percentage, and their AOPC.

    Examples
    --------
    >>> f = FaithfulnessScores((10, 20), 1.0, np.array([0.2, 0.4]), np.array([0.5, 0.1]))
    >>> f.aopc_comprehensiveness, f.aopc_sufficiency
    (0.30000000000000004, 0.3)
    """

    percents: tuple[int, ...]
    full: float
    comprehensiveness: np.ndarray
    sufficiency: np.ndarray

    @property
    def aopc_comprehensiveness(self) -> float:
        """Mean comprehensiveness over the percentages."""
        return float(np.mean(self.comprehensiveness))

    @property
    def aopc_sufficiency(self) -> float:
        """Mean sufficiency over the percentages."""
        return float(np.mean(self.sufficiency))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: percent -> value for each metric, and both AOPCs."""
        return {
            "full": self.full,
            "comprehensiveness": {str(k): float(v) for k, v in zip(self.percents, self.comprehensiveness, strict=True)},
            "sufficiency": {str(k): float(v) for k, v in zip(self.percents, self.sufficiency, strict=True)},
            "aopc_comprehensiveness": self.aopc_comprehensiveness,
            "aopc_sufficiency": self.aopc_sufficiency,
        }


def check_percents(percents: Sequence[int]) -> tuple[int, ...]:
    """Validate percentages: integers in 1..100, at least one; returned sorted and unique."""
    try:
        values = sorted({int(p) for p in percents})
    except (TypeError, ValueError):
        raise AttnflowError(f"The 'percents' parameter must hold integers from 1 to 100; got {percents!r}.") from None
    if not values or any(not 1 <= p <= 100 for p in values) or any(
        isinstance(p, bool) or float(p) != int(p) for p in percents
    ):
        raise AttnflowError(f"The 'percents' parameter must hold integers from 1 to 100; got {percents!r}.")
    return tuple(values)


def n_removed(percent: int, n_candidates: int) -> int:
    """How many of ``n_candidates`` tokens ``percent`` % is: ``ceil(percent * n / 100)``, exactly.

    Examples
    --------
    >>> [n_removed(k, 10) for k in (10, 20, 30, 40, 50)], n_removed(10, 4)
    ([1, 2, 3, 4, 5], 1)
    """
    return -(-int(percent) * int(n_candidates) // 100)


def removal_order(scores: Any, candidates: Sequence[int]) -> np.ndarray:
    """Candidate positions from highest to lowest score; ties keep the earlier position first, NaN last.

    Examples
    --------
    >>> removal_order([0.1, 0.5, 0.5, 0.9], [1, 2, 3])
    array([3, 1, 2])
    """
    values = np.asarray(scores, dtype=np.float64)
    index = np.asarray(list(candidates), dtype=int)
    keyed = np.where(np.isnan(values[index]), -np.inf, values[index])
    return index[np.argsort(-keyed, kind="stable")]


def removal_masks(order: Sequence[int], n_tokens: int, percents: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Keep-masks ``(K, n)`` for comprehensiveness (drop the top k %) and sufficiency (keep only them).

    ``order`` lists the removable positions, most important first; positions not
    in it are kept in every mask.

    Examples
    --------
    >>> comp, suff = removal_masks([2, 1], 4, [50])
    >>> comp.astype(int).tolist(), suff.astype(int).tolist()
    ([[1, 1, 0, 1]], [[1, 0, 1, 1]])
    """
    order = np.asarray(list(order), dtype=int)
    fixed = np.ones(n_tokens, dtype=bool)
    fixed[order] = False
    comp = np.ones((len(percents), n_tokens), dtype=bool)
    suff = np.tile(fixed, (len(percents), 1))
    for row, percent in enumerate(percents):
        top = order[: n_removed(percent, len(order))]
        comp[row, top] = False
        suff[row, top] = True
    return comp, suff


def faithfulness(
    scores: Any,
    predict: Predict,
    *,
    candidates: Sequence[int] | None = None,
    percents: Sequence[int] = DEFAULT_PERCENTS,
) -> FaithfulnessScores:
    """Comprehensiveness, sufficiency and AOPC of one method's token scores.

    Parameters
    ----------
    scores
        ``(n,)``, higher means more important.
    predict
        ``predict(keep)`` with ``keep`` a boolean ``(B, n)`` array returns the
        target's value for each of the ``B`` inputs that keep those tokens.
    candidates
        Positions that may be removed (default: all); the rest are always kept.
    percents
        Percentages of the candidates to remove.

    Examples
    --------
    A toy "model" whose output is the summed weight of the tokens it keeps:

    >>> weights = np.array([0.0, 0.5, 0.3, 0.2])
    >>> f = faithfulness([0.0, 3.0, 2.0, 1.0], lambda keep: keep @ weights, candidates=[1, 2, 3], percents=[30, 60])
    >>> f.comprehensiveness.round(6).tolist(), f.sufficiency.round(6).tolist(), round(f.aopc_comprehensiveness, 6)
    ([0.5, 0.8], [0.5, 0.2], 0.65)
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise AttnflowError(f"The 'scores' parameter must be a vector (n,); got shape {values.shape}.")
    chosen = range(values.shape[0]) if candidates is None else candidates
    return faithfulness_many({"method": values}, predict, candidates=chosen, percents=percents, random_repeats=0)[
        "method"
    ]


def faithfulness_many(
    method_scores: Mapping[str, Any],
    predict: Predict,
    *,
    candidates: Sequence[int],
    percents: Sequence[int] = DEFAULT_PERCENTS,
    rng: np.random.Generator | int | None = 0,
    random_repeats: int = 1,
    n_tokens: int | None = None,
) -> dict[str, FaithfulnessScores]:
    """Faithfulness of several methods on one input, plus a ``"random"`` baseline, in one ``predict`` call.

    The baseline removes tokens in a random order drawn from ``rng`` (a generator
    or a seed); with ``random_repeats > 1`` its metrics are averaged over that many
    orders; ``random_repeats=0`` leaves it out. ``n_tokens`` is the input's length,
    needed only when ``method_scores`` is empty (the baseline alone).

    Examples
    --------
    >>> weights = np.array([0.6, 0.3, 0.1])
    >>> out = faithfulness_many({"good": [3, 2, 1], "bad": [1, 2, 3]}, lambda keep: keep @ weights,
    ...                         candidates=[0, 1, 2], percents=[33])
    >>> sorted(out), out["good"].comprehensiveness.round(6).tolist(), out["bad"].comprehensiveness.round(6).tolist()
    (['bad', 'good', 'random'], [0.6], [0.1])
    """
    percents = check_percents(percents)
    candidates = [int(c) for c in candidates]
    if not method_scores and random_repeats == 0:
        return {}
    lengths = {np.asarray(s).shape for s in method_scores.values()}
    if len(lengths) > 1:
        raise AttnflowError(f"All methods' scores must have the same shape (n,); got {sorted(lengths)}.")
    if lengths:
        n = next(iter(lengths))[0]
        if n_tokens is not None and n_tokens != n:
            raise AttnflowError(f"The scores have {n} entries but 'n_tokens' is {n_tokens}.")
    elif n_tokens is None:
        raise AttnflowError("Give 'n_tokens' when there are no method scores (the random baseline alone).")
    else:
        n = int(n_tokens)
    if any(not 0 <= c < n for c in candidates):
        raise AttnflowError(f"Candidate positions must lie in 0..{n - 1}; got {candidates}.")
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    orders: dict[str, list[np.ndarray]] = {
        name: [removal_order(scores, candidates)] for name, scores in method_scores.items()
    }
    if random_repeats:
        orders["random"] = [generator.permutation(candidates) for _ in range(int(random_repeats))]
    blocks = [np.ones((1, n), dtype=bool)]
    for runs in orders.values():
        for order in runs:
            blocks.extend(removal_masks(order, n, percents))
    values = np.asarray(predict(np.concatenate(blocks)), dtype=np.float64).ravel()
    expected = 1 + 2 * len(percents) * sum(len(runs) for runs in orders.values())
    if values.shape[0] != expected:
        raise AttnflowError(f"predict returned {values.shape[0]} values for {expected} inputs.")
    full = float(values[0])
    out: dict[str, FaithfulnessScores] = {}
    cursor, k = 1, len(percents)
    for name, runs in orders.items():
        comp, suff = [], []
        for _ in runs:
            comp.append(full - values[cursor : cursor + k])
            suff.append(full - values[cursor + k : cursor + 2 * k])
            cursor += 2 * k
        out[name] = FaithfulnessScores(percents, full, np.mean(comp, axis=0), np.mean(suff, axis=0))
    return out
