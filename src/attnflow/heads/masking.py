"""Prune heads and watch the output: do the important heads matter more? (Michel et al. 2019; Voita et al. 2019)

For growing fractions of the ``L x H`` heads, mask (set to 0) the least important,
the most important, or randomly chosen heads with :func:`attnflow.capture.gradients.head_mask`,
and measure on every example:

- the target's value (the probability of the class or token fixed on the unpruned
  input, or the cosine / norm), as a mean and as the mean absolute change from the
  unpruned model;
- for classifiers and causal LMs, accuracy: against each example's gold label when
  every example has one, else agreement with the unpruned model's prediction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..capture import load_model
from ..capture.gradients import count_heads, head_mask
from ..capture.perturb import _device
from ..capture.targets import _head_logits, resolve_target, run_model
from ..capture.text import _encode
from ..data import as_examples
from ..errors import AttnflowError
from .analysis import HeadReport, analyze_heads

ORDERS: tuple[str, ...] = ("least", "most", "random")
DEFAULT_FRACTIONS: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 0.75)


@dataclass
class PruningResult:
    """The outcome of :func:`pruning_experiment`: one row per (order, fraction).

    Each row: ``order`` (``"least"``, ``"most"`` or ``"random"`` important first),
    ``fraction``, ``n_pruned``, ``value`` (mean target value), ``value_change``
    (mean ``|value - unpruned value|``) and ``accuracy`` (``None`` for pooled targets).

    Examples
    --------
    >>> r = PruningResult("toy", {"spec": "norm"}, 2, 4, None, "given", [
    ...     {"order": "least", "fraction": 0.0, "n_pruned": 0, "value": 1.0, "value_change": 0.0, "accuracy": None}])
    >>> print(r.to_markdown().splitlines()[2])
    | 0 % (0) | 1.000 (0.000) |
    """

    model_name: str
    target: dict[str, Any]
    n_examples: int
    n_heads: int
    accuracy_measure: str | None
    importance_source: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def row(self, order: str, fraction: float) -> dict[str, Any]:
        """The row of one order and fraction."""
        for row in self.rows:
            if row["order"] == order and math.isclose(row["fraction"], fraction):
                return row
        raise AttnflowError(f"No row for order {order!r} and fraction {fraction}.")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "attnflow.head_pruning",
            "version": 1,
            "model": self.model_name,
            "target": self.target,
            "n_examples": self.n_examples,
            "n_heads": self.n_heads,
            "accuracy_measure": self.accuracy_measure,
            "importance_source": self.importance_source,
            "rows": self.rows,
        }

    def to_markdown(self) -> str:
        """A table: a row per fraction; per order the mean value (and the mean |change| from unpruned), accuracy."""
        orders = [o for o in ORDERS if any(r["order"] == o for r in self.rows)]
        fractions = sorted({r["fraction"] for r in self.rows})
        names = {"least": "least important first", "most": "most important first", "random": "random order"}
        head = ["heads pruned"]
        for order in orders:
            head.append(f"{names[order]}: value (mean \\|Δ\\|)")  # pipes escaped for Markdown
        if self.accuracy_measure is not None:
            head += [f"{names[order]}: accuracy" for order in orders]
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for fraction in fractions:
            cells = []
            chosen = [self.row(o, fraction) for o in orders]
            cells.append(f"{round(fraction * 100)} % ({chosen[0]['n_pruned']})")
            cells += [f"{r['value']:.3f} ({r['value_change']:.3f})" for r in chosen]
            if self.accuracy_measure is not None:
                cells += ["–" if r["accuracy"] is None else f"{r['accuracy']:.3f}" for r in chosen]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def prune_order(importance: Any, order: str, seed: int = 0) -> np.ndarray:
    """Flat head indices ``l * H + h`` in the order heads are pruned.

    Examples
    --------
    >>> prune_order(np.array([[0.3, 0.1], [0.2, 0.9]]), "least").tolist()
    [1, 2, 0, 3]
    """
    values = np.nan_to_num(np.asarray(importance, dtype=np.float64), nan=0.0).ravel()
    if order == "least":
        return np.argsort(values, kind="stable")
    if order == "most":
        return np.argsort(-values, kind="stable")
    if order == "random":
        return np.random.default_rng(seed).permutation(values.size)
    raise AttnflowError(f"The 'order' parameter must be one of {', '.join(ORDERS)}; got {order!r} instead.")


def pruning_experiment(
    examples: Any,
    model: Any = None,
    target: Any = None,
    *,
    importance: Any = None,
    importance_examples: Any = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    orders: Sequence[str] = ORDERS,
    seed: int = 0,
    tokenizer: Any = None,
    truncate: bool = False,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> PruningResult:
    """Mask the least / most important (or random) heads and measure the target and accuracy.

    Parameters
    ----------
    examples
        The examples the pruned model is measured on (as :func:`attnflow.evaluate`).
    model, target, tokenizer, truncate, trust_remote_code
        As in :func:`attnflow.heads.analyze_heads`.
    importance
        ``(L, H)`` head importance, or a :class:`HeadReport`. ``None`` computes it with
        :func:`analyze_heads` on ``importance_examples`` (a separate set, as Michel et
        al. do), or on ``examples`` when that is ``None`` too.
    fractions
        Fractions of all ``L x H`` heads to prune (rounded to the nearest count).
    orders
        Any of ``"least"``, ``"most"``, ``"random"`` (seeded by ``seed``).

    Returns
    -------
    PruningResult
    """
    import torch


    items = as_examples(examples)
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code)
    resolved = resolve_target(target, loaded)
    for order in orders:
        prune_order(np.zeros(1), order)
    checked = []
    for fraction in fractions:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise AttnflowError(f"The 'fractions' parameter must hold numbers in [0, 1]; got {fraction!r}.")
        checked.append(float(fraction))
    if importance is None:
        source = "importance_examples" if importance_examples is not None else "examples"
        report = analyze_heads(
            importance_examples if importance_examples is not None else items, loaded, target,
            truncate=truncate,
        )
        importance = report.importance
        source = f"analyze_heads on the {source} ({report.n_examples})"
    elif isinstance(importance, HeadReport):
        source = f"given HeadReport ({importance.n_examples} examples)"
        importance = importance.importance
    else:
        source = "given array"
    weights = np.asarray(importance, dtype=np.float64)
    n_layers, n_heads = weights.shape if weights.ndim == 2 else (0, 0)
    if weights.ndim != 2 or n_heads != count_heads(loaded.model):
        raise AttnflowError(
            f"The 'importance' parameter must be an (L, H) array with H = {count_heads(loaded.model)}; "
            f"got shape {weights.shape}."
        )
    encoded = [_encode(loaded, item.text, truncate, index) for index, item in enumerate(items)]

    def run(enc: Any) -> tuple[Any, Any]:
        ids = torch.tensor([enc.input_ids], dtype=torch.long, device=_device(loaded.model))
        attention_mask = torch.ones_like(ids)
        return run_model(loaded.model, resolved, input_ids=ids, attention_mask=attention_mask), attention_mask

    unpruned = np.ones((n_layers, n_heads))
    bounds = []
    with head_mask(loaded.model, unpruned), torch.no_grad():  # the unpruned pass binds the target: the baseline
        for item, enc in zip(items, encoded, strict=True):
            bounds.append(resolved.bind_outputs(*run(enc), item.label if resolved.uses_gold else None))
    gold = None
    measure = None
    if resolved.kind in ("class", "next_token"):
        if resolved.kind == "class" and all(item.label is not None for item in items):
            gold = [resolved.resolve_label(item.label) for item in items]
            measure = "accuracy against the gold labels"
        else:
            measure = "agreement with the unpruned model's prediction"
    expected = gold if gold is not None else [b.predicted for b in bounds]

    def measure_all(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, hits = np.empty(len(items)), np.zeros(len(items))
        with head_mask(loaded.model, mask), torch.no_grad():
            for i, (enc, bound) in enumerate(zip(encoded, bounds, strict=True)):
                outputs, attention_mask = run(enc)
                values[i] = float(bound.from_outputs(outputs, attention_mask, "value")[0])
                logits = _head_logits(resolved, outputs, attention_mask)
                if logits is not None:
                    hits[i] = float(int(logits[0].argmax()) == expected[i])
        return values, hits

    total = n_layers * n_heads
    plan = [(order, fraction) for order in orders for fraction in checked]
    baseline = np.array([bound.value for bound in bounds])  # what measure_all(unpruned) gives, from the bind
    rows = []
    hits = np.array([float(b.predicted == e) if b.predicted is not None else 0.0 for b, e in zip(bounds, expected,
                                                                                                  strict=True)])
    cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {(): (baseline, hits)}  # nothing pruned
    for step, (order, fraction) in enumerate(plan):
        count = int(round(fraction * total))
        pruned = prune_order(weights, order, seed)[:count]
        key = tuple(sorted(int(i) for i in pruned))
        if key not in cache:
            mask = np.ones(total)
            mask[list(key)] = 0.0
            cache[key] = measure_all(mask.reshape(n_layers, n_heads))
        values, hits = cache[key]
        rows.append(
            {
                "order": order,
                "fraction": fraction,
                "n_pruned": count,
                "value": float(values.mean()),
                "value_change": float(np.abs(values - baseline).mean()),
                "accuracy": None if measure is None else float(hits.mean()),
            }
        )
        if progress is not None:
            progress(step + 1, len(plan))
    return PruningResult(
        model_name=loaded.name,
        target=resolved.describe(),
        n_examples=len(items),
        n_heads=total,
        accuracy_measure=measure,
        importance_source=source,
        rows=rows,
    )
