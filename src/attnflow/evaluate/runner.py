"""``attnflow.evaluate``: how well do a method's scores agree with what the model really uses?

For each example: capture the attention, score the tokens with every method at
every layer, compute the ground truths (blank-out, input gradients, gradient x
input, integrated gradients) for one target, and compare (Spearman, per layer);
then remove the top tokens by each method and by a random order (faithfulness).
Means ± standard deviations over the examples make the paper's Tables 1-2.

The special-token rule, the same in every metric: special tokens ([CLS], [SEP],
<s>, ...) are never scored, compared or removed. Correlations are computed over
the non-special tokens only; blank-out blanks only those; faithfulness removes
only those (special tokens stay in every perturbed input, in sufficiency too);
integrated gradients start from a baseline where only those are blanked.
With ``with_special_tokens=True`` the ground truths are also computed at the
special tokens and a second set of correlations is kept over every token, special
ones included (the protocol the paper's Table 1 appears to use); the first set and
faithfulness are unchanged.

Integrated gradients report their convergence delta per example, absolute and
relative to ``|S(x) - S(baseline)|``; a relative delta above
:data:`IG_DELTA_WARNING` (5 %) raises an :class:`IntegratedGradientsWarning`
saying to raise ``ig_steps``.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..capture import load_model, perturb
from ..capture.gradient_point import SHIFT_TOLERANCE, gradient_point, probe_shift_ratio
from ..capture.perturb import blank_token_id
from ..capture.plan import capture_planned
from ..capture.targets import resolve_target
from ..core import check_graph_options, score_capture
from ..data import Example, as_examples
from ..errors import AttnflowError
from ..explainers.text import target_inputs, target_needed
from ..io import to_jsonable, write_text_atomic
from ..methods import available_methods, get_method
from ..methods.attribution import (
    INPUT_LAYER,
    LIME_SAMPLES,
    MAX_PASSES,
    AttributionInputs,
    available_attributions,
    check_attribution_model,
    check_attribution_options,
    get_attribution,
    is_attribution,
    split_methods,
)
from ..methods.flow import FlowSolution
from ..methods.flow_bounds import FlowBounds
from ..mixing import context_mixing, graph_names, result_key
from ..plots import plot_correlation
from .correlation import layer_correlations, mean_sd
from .faithfulness import DEFAULT_PERCENTS, FaithfulnessScores, check_percents, faithfulness_many

FORMAT_VERSION = 1

#: Every ground truth, in the order tables show them.
GROUND_TRUTHS: tuple[str, ...] = ("blankout", "gradient", "saliency", "grad_x_input", "integrated_gradients")
#: What each ground truth is, for tables and the docs.
GROUND_TRUTH_SUMMARIES: dict[str, str] = {
    "blankout": "|change of the target value| when the token is replaced by the blank token",
    "gradient": "|sum over the hidden axis of the target score's gradient at the first layer's input| "
    "(the paper's input gradients; undefined where that input is read only through LayerNorms)",
    "saliency": "Euclidean norm of the target score's gradient at the first layer's input",
    "grad_x_input": "|sum over the hidden axis of gradient x the first layer's input|",
    "integrated_gradients": "|sum over the hidden axis of Captum's integrated gradients| at the first layer's input, "
    "from the blanked input's value there",
}
REMOVALS: tuple[str, ...] = ("delete", "blank")

#: Default integration steps of integrated gradients (Gauss-Legendre). On the bundled
#: ``sva`` model the median convergence delta is 14 % of ``S(x) - S(baseline)`` at 20
#: steps and 0.5 % at 50 (docs/evaluation.md has the command and the figures).
IG_STEPS = 50
#: A relative convergence delta above this raises :class:`IntegratedGradientsWarning`.
IG_DELTA_WARNING = 0.05


class IntegratedGradientsWarning(UserWarning):
    """Integrated gradients did not converge: raise ``ig_steps`` (CLI: ``--ig-steps``)."""


SPECIAL_TOKEN_RULE = (
    "special tokens are never scored, compared or removed: correlations use the non-special tokens only, "
    "and faithfulness removes only non-special tokens (special tokens stay in every perturbed input)"
)


def default_methods() -> tuple[str, ...]:
    """``raw`` and ``rollout``, and ``flow`` when it is registered.

    Examples
    --------
    >>> default_methods()[:2]
    ('raw', 'rollout')
    """
    names = available_methods()
    return tuple(name for name in ("raw", "rollout", "flow") if name in names)


@dataclass
class ExampleResult:
    """Everything computed for one example.

    ``scores[method]`` is ``(L, n)``; ``ground_truths[name]`` is ``(n,)`` (NaN at
    special tokens); ``correlations[ground_truth][method]`` is ``(L,)``;
    ``faithfulness[method]`` (and ``["random"]``) at the faithfulness layer.
    With ``with_special_tokens``: ``ground_truths_all[name]`` ``(n,)`` has values at
    every token and ``correlations_all`` is over every token. ``ig_delta`` is
    integrated gradients' convergence delta ``sum(IG) - (S(x) - S(baseline))``,
    ``ig_relative_delta`` the same divided by ``|S(x) - S(baseline)|``.
    With ``flow_details``: ``flow_details[key]`` for every exactly solved flow result
    (``flow``, ``alti/flow``, ...) is a :class:`attnflow.methods.flow.FlowDetails` of the
    explained output: raw values ``(L, n)``, cut kinds, source bounds (not in the JSON).
    """

    index: int
    text: str
    label: str | int | None
    tokens: list[str]
    special_positions: tuple[int, ...]
    target: dict[str, Any]
    scores: dict[str, np.ndarray]
    ground_truths: dict[str, np.ndarray]
    correlations: dict[str, dict[str, np.ndarray]]
    faithfulness: dict[str, FaithfulnessScores] = field(default_factory=dict)
    ig_delta: float | None = None
    ig_relative_delta: float | None = None
    ground_truths_all: dict[str, np.ndarray] | None = None
    correlations_all: dict[str, dict[str, np.ndarray]] | None = None
    flow_details: dict[str, Any] | None = None

    @property
    def content_positions(self) -> list[int]:
        """Positions of the non-special tokens, the ones every metric uses."""
        special = set(self.special_positions)
        return [i for i in range(len(self.tokens)) if i not in special]

    def details_of(self, key: str = "flow") -> Any:
        """The :class:`~attnflow.methods.flow.FlowDetails` kept of flow result ``key`` (``"alti/flow"``, ...)."""
        found = (self.flow_details or {}).get(key)
        if found is None:
            raise AttnflowError(
                f"Example {self.index} has no exact {key!r} flow details: evaluate it with flow_details=True and "
                "exact flow (flow_tolerance=0)."
            )
        return found


@dataclass
class EvaluationResult:
    """The outcome of :func:`evaluate`: per-example results and their summaries.

    Attributes
    ----------
    model_name, target
        The model and the target's description (also in every output).
    methods, ground_truths
        What was compared.
    n_layers
        ``L``; correlations are per layer 1..L.
    output
        The explained output position (``"cls"``, ``"last"``, ``"mean"`` or an index).
    percents, faithfulness_layer
        The faithfulness settings; ``faithfulness_layer`` is 1-based, ``None`` when
        faithfulness was not computed.
    options
        Everything else that shaped the numbers (blank token, removal, seed, ...).
    examples
        One :class:`ExampleResult` per example.

    Examples
    --------
    >>> r = EvaluationResult("toy", {"spec": "norm"}, ["rollout"], ["blankout"], 2, "mean", (10,), None, {}, [])
    >>> r.n_examples, r.to_dict()["correlation"]
    (0, {'blankout': {'rollout': [[None, None], [None, None]]}})
    """

    model_name: str
    target: dict[str, Any]
    methods: list[str]
    ground_truths: list[str]
    n_layers: int
    output: int | str
    percents: tuple[int, ...]
    faithfulness_layer: int | None
    options: dict[str, Any]
    examples: list[ExampleResult]

    @property
    def n_examples(self) -> int:
        return len(self.examples)

    @property
    def has_special_protocol(self) -> bool:
        """Whether correlations over every token, special tokens included, were computed too."""
        return bool(self.examples) and all(e.correlations_all is not None for e in self.examples)

    def correlation(self, ground_truth: str, method: str, *, special_tokens: bool = False) -> np.ndarray:
        """``(L, 2)``: mean and sd over examples of the Spearman correlation at each layer.

        Examples whose correlation is undefined (constant scores, fewer than two
        tokens) are left out of that layer's mean; see :meth:`correlation_counts`.
        ``special_tokens=True`` gives the correlation over every token, special
        tokens included (needs ``evaluate(..., with_special_tokens=True)``).
        """
        values = self._correlations(ground_truth, method, special_tokens)
        if values is None:
            return np.full((self.n_layers, 2), np.nan)
        return mean_sd(values, axis=0)

    def correlation_counts(self, ground_truth: str, method: str, *, special_tokens: bool = False) -> np.ndarray:
        """``(L,)``: how many examples have a defined correlation at each layer."""
        values = self._correlations(ground_truth, method, special_tokens)
        if values is None:
            return np.zeros(self.n_layers, dtype=int)
        return np.isfinite(values).sum(axis=0)

    def ig_deltas(self) -> np.ndarray:
        """``(examples, 2)``: integrated gradients' absolute and relative convergence delta (NaN when not computed)."""
        return np.array(
            [
                [np.nan if e.ig_delta is None else e.ig_delta,
                 np.nan if e.ig_relative_delta is None else e.ig_relative_delta]
                for e in self.examples
            ],
            dtype=np.float64,
        ).reshape(len(self.examples), 2)

    def _correlations(self, ground_truth: str, method: str, special_tokens: bool) -> np.ndarray | None:
        self._check(ground_truth, method)
        if not self.examples:
            return None
        if special_tokens:
            if not self.has_special_protocol:
                raise AttnflowError(
                    "This evaluation has no correlations over special tokens; "
                    "run evaluate(..., with_special_tokens=True)."
                )
            return np.stack([e.correlations_all[ground_truth][method] for e in self.examples])  # type: ignore[index]
        return np.stack([e.correlations[ground_truth][method] for e in self.examples])

    def faithfulness_summary(self) -> dict[str, dict[str, Any]]:
        """Per method and ``"random"``: mean ± sd over examples of every faithfulness metric.

        ``{"comprehensiveness": {"10": [mean, sd], ...}, "sufficiency": {...},
        "aopc_comprehensiveness": [mean, sd], "aopc_sufficiency": [mean, sd]}``.
        """
        names = list(dict.fromkeys([*self.methods, "random"])) if self.faithfulness_layer is not None else []
        summary: dict[str, dict[str, Any]] = {}
        for name in names:
            rows = [e.faithfulness[name] for e in self.examples if name in e.faithfulness]
            comp = np.array([r.comprehensiveness for r in rows]).reshape(len(rows), len(self.percents))
            suff = np.array([r.sufficiency for r in rows]).reshape(len(rows), len(self.percents))
            comp_stats, suff_stats = mean_sd(comp, axis=0), mean_sd(suff, axis=0)
            summary[name] = {
                "comprehensiveness": {str(k): _pair(comp_stats[i]) for i, k in enumerate(self.percents)},
                "sufficiency": {str(k): _pair(suff_stats[i]) for i, k in enumerate(self.percents)},
                "aopc_comprehensiveness": _pair(mean_sd(comp.mean(axis=1) if rows else np.zeros(0))),
                "aopc_sufficiency": _pair(mean_sd(suff.mean(axis=1) if rows else np.zeros(0))),
                "n_examples": len(rows),
            }
        return summary

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (NaN as ``null``); per-example numbers are in :meth:`to_dataframe`."""
        return {
            "format": "attnflow.evaluation",
            "version": FORMAT_VERSION,
            "model": self.model_name,
            "target": to_jsonable(self.target),
            "n_examples": self.n_examples,
            "n_layers": self.n_layers,
            "output": self.output,
            "methods": list(self.methods),
            "ground_truths": list(self.ground_truths),
            "special_tokens": SPECIAL_TOKEN_RULE,
            "correlation": {
                truth: {method: [_pair(row) for row in self.correlation(truth, method)] for method in self.methods}
                for truth in self.ground_truths
            },
            "correlation_counts": {
                truth: {method: self.correlation_counts(truth, method).tolist() for method in self.methods}
                for truth in self.ground_truths
            },
            **self._special_dict(),
            "ig_delta": self._ig_delta_summary(),
            "faithfulness": {
                "layer": self.faithfulness_layer,
                "percents": list(self.percents),
                "removal": self.options.get("removal"),
                "methods": self.faithfulness_summary(),
            },
            "options": to_jsonable(self.options),
        }

    def _special_dict(self) -> dict[str, Any]:
        if not self.has_special_protocol:
            return {}
        return {
            "correlation_with_special_tokens": {
                truth: {
                    method: [_pair(row) for row in self.correlation(truth, method, special_tokens=True)]
                    for method in self.methods
                }
                for truth in self.ground_truths
            },
            "correlation_counts_with_special_tokens": {
                truth: {
                    method: self.correlation_counts(truth, method, special_tokens=True).tolist()
                    for method in self.methods
                }
                for truth in self.ground_truths
            },
        }

    def _ig_delta_summary(self) -> dict[str, Any] | None:
        """Median and largest relative convergence delta of integrated gradients, and how many exceed 5 %."""
        relative = np.abs(self.ig_deltas()[:, 1])
        relative = relative[np.isfinite(relative)]
        if relative.size == 0:
            return None
        return {
            "n_examples": int(relative.size),
            "relative_median": float(np.median(relative)),
            "relative_max": float(relative.max()),
            "n_above_warning": int((relative > IG_DELTA_WARNING).sum()),
            "warning_threshold": IG_DELTA_WARNING,
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The :meth:`to_dict` summary as JSON text; also written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:

            write_text_atomic(path, text + "\n")
        return text

    def to_dataframe(self) -> Any:
        """Per-example numbers, one row per example, method and layer (a pandas DataFrame).

        Columns: ``example, text, label, target_class, target_label, target_value,
        method, layer, n_tokens, n_scored``, ``spearman_<ground truth>`` for each
        ground truth, ``ig_delta``, ``ig_relative_delta``, and at the faithfulness layer only
        ``comprehensiveness_<k>``, ``sufficiency_<k>``, ``aopc_comprehensiveness``,
        ``aopc_sufficiency``, ``random_aopc_comprehensiveness``, ``random_aopc_sufficiency``.
        """
        import pandas as pd

        rows = []
        for e in self.examples:
            base = {
                "example": e.index,
                "text": e.text,
                "label": e.label,
                "target_class": e.target.get("class", e.target.get("token_id")),
                "target_label": e.target.get("label"),
                "target_value": e.target.get("value"),
            }
            for method in self.methods:
                for layer in range(1, self.n_layers + 1):
                    row = dict(base, method=method, layer=layer, n_tokens=len(e.tokens))
                    row["n_scored"] = len(e.content_positions)
                    for truth in self.ground_truths:
                        row[f"spearman_{truth}"] = e.correlations[truth][method][layer - 1]
                    row["ig_delta"] = e.ig_delta
                    row["ig_relative_delta"] = e.ig_relative_delta
                    row.update(self._faithfulness_cells(e, method, layer))
                    rows.append(row)
        return pd.DataFrame(rows)

    def _faithfulness_cells(self, e: ExampleResult, method: str, layer: int) -> dict[str, float]:
        if self.faithfulness_layer is None:
            return {}
        cells: dict[str, float] = {}
        here = layer == self.faithfulness_layer and method in e.faithfulness
        scores = e.faithfulness.get(method)
        for i, k in enumerate(self.percents):
            cells[f"comprehensiveness_{k}"] = float(scores.comprehensiveness[i]) if here and scores else np.nan
        for i, k in enumerate(self.percents):
            cells[f"sufficiency_{k}"] = float(scores.sufficiency[i]) if here and scores else np.nan
        for name, prefix in ((method, ""), ("random", "random_")):
            found = e.faithfulness.get(name) if here else None
            cells[f"{prefix}aopc_comprehensiveness"] = found.aopc_comprehensiveness if found else np.nan
            cells[f"{prefix}aopc_sufficiency"] = found.aopc_sufficiency if found else np.nan
        return cells

    def plot(self, ax: Any = None) -> Any:
        """Correlation by layer, one panel per ground truth, a line per method (needs matplotlib)."""

        return plot_correlation(
            {truth: {m: self.correlation(truth, m) for m in self.methods} for truth in self.ground_truths},
            title=f"{self.model_name} · target {self.target.get('spec')} · {self.n_examples} examples",
            axes=ax,
        )

    def _check(self, ground_truth: str, method: str) -> None:
        if ground_truth not in self.ground_truths:
            raise AttnflowError(f"No ground truth {ground_truth!r} in this evaluation; it has {self.ground_truths}.")
        if method not in self.methods:
            raise AttnflowError(f"No method {method!r} in this evaluation; it has {self.methods}.")


def evaluate(
    examples: Any,
    model: Any = None,
    methods: Sequence[str] | str | None = None,
    target: Any = None,
    *,
    tokenizer: Any = None,
    ground_truths: Sequence[str] | str = GROUND_TRUTHS,
    output: int | str | None = None,
    blank: str = "unk",
    faithfulness: bool = True,
    percents: Sequence[int] = DEFAULT_PERCENTS,
    faithfulness_layer: int = -1,
    removal: str = "delete",
    random_repeats: int = 1,
    ig_steps: int = IG_STEPS,
    batch_size: int | None = None,
    seed: int = 0,
    truncate: bool = False,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
    with_special_tokens: bool = False,
    first_index: int = 0,
    graphs: Sequence[str] | str | None = None,
    lime_samples: int = LIME_SAMPLES,
    max_passes: int = MAX_PASSES,
    flow_details: bool = False,
    graph_methods: Mapping[str, Sequence[str]] | None = None,
    **method_options: Any,
) -> EvaluationResult:
    """Judge explanation methods against ground-truth importance and by faithfulness, layer by layer.

    Parameters
    ----------
    examples
        Texts: a list of strings, ``(text, label)`` pairs, dicts with ``"text"``
        (and ``"label"``), a pandas DataFrame, or a path to a ``.txt``/``.jsonl``/``.csv``
        file (see :func:`attnflow.data.as_examples`).
    model
        Anything :func:`attnflow.capture.load_model` accepts; ``None`` is the bundled MiniLM.
    methods
        Registered method names; default :func:`default_methods` (raw, rollout, flow). Attribution
        methods (:mod:`attnflow.methods.attribution`: ``saliency``, ``grad-x-input``,
        ``integrated-gradients``, ``occlusion``, ``gradient-shap``, ``lime``, ``random``) have no
        layers: their ``(n,)`` scores fill every layer's row, ``options["input_methods"]`` lists them,
        and none is correlated with the yardstick it computes (NaN there).
    target
        What the model's output is measured by (see :mod:`attnflow.capture.targets`):
        ``"predicted"`` (default for classifiers and causal LMs), a class index, a label
        name, ``"gold"`` (each example's label), ``"cosine:REFERENCE TEXT"``, or ``"norm"``
        (default for bare encoders).
    ground_truths
        Any of ``blankout``, ``gradient``, ``saliency``, ``grad_x_input``, ``integrated_gradients``
        (all by default). Gradients are taken at the first layer's input
        (:mod:`attnflow.capture.gradient_point`); where ``|sum_d g|`` is zero by construction
        there (pre-LN models) ``gradient`` is NaN and ``options["yardsticks"]`` says so.
    output
        The output position the methods explain; default ``"last"`` for decoders,
        ``"mean"`` for pooled targets (cosine, norm), else ``"cls"``.
    blank
        The token that blanks a token out (blank-out, integrated gradients' baseline,
        ``removal="blank"``): ``"unk"`` (the paper), ``"mask"``, ``"pad"`` or a token.
    faithfulness
        Compute comprehensiveness, sufficiency and AOPC (with a random baseline).
    percents
        The top-k percentages removed for faithfulness.
    faithfulness_layer
        The layer (1-based; negative counts from the top) whose scores rank the tokens.
    removal
        ``"delete"`` the removed tokens (ERASER) or replace them by the ``blank`` token.
    random_repeats
        Random orders averaged for the baseline, per example.
    ig_steps
        Integration steps of integrated gradients (default :data:`IG_STEPS`). Each
        example's convergence delta is kept; one above :data:`IG_DELTA_WARNING`
        of ``|S(x) - S(baseline)|`` raises an :class:`IntegratedGradientsWarning`.
    batch_size
        Sequences per forward pass; ``None`` fits as many as :data:`attnflow.capture.perturb.MAX_BATCH_TOKENS`
        tokens allow, halving on an out-of-memory error.
    seed
        Seed of the random baseline (example ``i`` uses ``default_rng([seed, i])``; the
        examples of a data file, :class:`attnflow.data.Examples`, are numbered by their
        row in the file, skipped rows included, as the sharded engines number them).
    truncate, trust_remote_code, tokenizer
        As in :func:`attnflow.explain`.
    progress
        Called as ``progress(done, total)`` after each example.
    with_special_tokens
        Also compute the ground truths at the special tokens and the correlations over
        every token, special ones included (:meth:`EvaluationResult.correlation` with
        ``special_tokens=True``). The default correlations and faithfulness are unchanged.
    first_index
        The number of the first example: example ``i`` is numbered ``first_index + i``
        and its random baseline seeded by ``default_rng([seed, first_index + i])``, so a
        slice of a data set evaluates exactly as those rows of the whole (``attnflow
        batch --evaluate`` and ``attnflow evaluate --engine`` rely on it).
    graphs
        The token-to-token graph(s) the methods run over (:mod:`attnflow.mixing`; default
        ``"attention"``). Each method over a context-mixing graph is judged as its own
        entry, named ``GRAPH/METHOD`` (``"alti/rollout"``) in ``methods`` and every table;
        over attention methods keep their names. ``residual`` and gradient methods are
        for the attention graph only, as in :func:`attnflow.explain`.
    lime_samples, max_passes
        LIME's samples per example, and the most model passes occlusion or LIME may run on
        one example (checked before any model loads, occlusion's before it runs).
    flow_details
        Keep, per example, what the flow solve found beyond the scores: for every flow result
        solved exactly (``flow``, ``alti/flow``, ...), ``ExampleResult.flow_details[key]``, a
        :class:`attnflow.methods.flow.FlowDetails` of the explained output (raw values, the kind
        of each value's minimum cut, the source bounds), so a task reads them instead of
        capturing and solving again (:mod:`attnflow.tasks`). Not written to the JSON.
    graph_methods
        The methods of a context-mixing graph in ``graphs``, when they are not ``methods``
        (``{"alti": ["rollout", "flow"]}`` beside ``methods=["raw", "grad-rollout", ...]`` over
        attention): one evaluation, one pass per example and one set of yardsticks for all.
    **method_options
        ``residual``, ``head_fusion``, ... for the methods that accept them.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    AttnflowError
        Before any model run, for empty examples, unknown methods or ground truths,
        a target the model cannot give, a label the model does not have, or bad options.

    Examples
    --------
    >>> r = evaluate(["The cat sat on the mat.", "Dogs bark loudly."], methods=["rollout"],
    ...              ground_truths=["blankout"], target="norm", faithfulness=False)
    >>> r.n_examples, r.correlation("blankout", "rollout").shape
    (2, (6, 2))
    """

    items = as_examples(examples)
    names = _check_methods(methods)
    truths = _check_ground_truths(ground_truths)
    percents = check_percents(percents)
    if removal not in REMOVALS:
        raise AttnflowError(f"The 'removal' parameter must be one of {', '.join(REMOVALS)}; got {removal!r}.")
    _check_int("random_repeats", random_repeats, minimum=1)
    _check_int("ig_steps", ig_steps, minimum=1)
    _check_int("seed", seed, minimum=0)
    _check_int("faithfulness_layer", faithfulness_layer, minimum=None)
    _check_int("first_index", first_index, minimum=0)
    for flag, value in (("with_special_tokens", with_special_tokens), ("flow_details", flow_details)):
        if not isinstance(value, (bool, np.bool_)):
            raise AttnflowError(f"The '{flag}' parameter must be True or False; got {value!r}.")
    attention, inputs = split_methods(names)
    _check_method_options(attention, method_options)
    check_attribution_options(inputs, ig_steps=ig_steps, lime_samples=lime_samples, max_passes=max_passes)

    graph_list = graph_names(graphs)
    per_graph = _check_graph_methods(graph_methods, graph_list)
    for group, chosen in [([g for g in graph_list if g not in per_graph], attention), *(
            ([g], ms) for g, ms in per_graph.items())]:
        if context_mixing(group):
            check_graph_options(group, chosen, method_options)
    keys = [result_key(graph, name) for graph in graph_list for name in per_graph.get(graph, attention)] + inputs

    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code)
    check_attribution_model(inputs, loaded)
    resolved = resolve_target(target, loaded)
    blank_id = blank_token_id(loaded, blank)
    if resolved.uses_gold or (resolved.kind == "class" and any(e.label is not None for e in items)):
        for index, example in enumerate(items):
            if example.label is None and not resolved.uses_gold:
                continue
            try:
                resolved.resolve_label(example.label)
            except AttnflowError as exc:
                raise AttnflowError(f"Example {index} ({example.text[:40]!r}): {exc}") from None
    if not truncate:
        _check_lengths(loaded, items)
    if output is None:
        output = "last" if loaded.is_decoder else ("mean" if resolved.pooled else "cls")
    yardsticks, point, sum_defined = _yardsticks(loaded, truths)

    settings = _Settings(
        methods=names,
        truths=truths,
        output=output,
        blank_id=blank_id,
        faithfulness=bool(faithfulness),
        percents=percents,
        faithfulness_layer=faithfulness_layer,
        removal=removal,
        random_repeats=random_repeats,
        ig_steps=ig_steps,
        batch_size=batch_size,
        seed=seed,
        method_options=method_options,
        with_special_tokens=bool(with_special_tokens),
        graphs=graph_list,
        graph_methods=per_graph,
        keys=keys,
        point=point,
        sum_defined=sum_defined,
        lime_samples=lime_samples,
        max_passes=max_passes,
        flow_details=bool(flow_details),
    )
    results: list[ExampleResult] = []
    n_layers = 0
    rows = getattr(items, "rows", None)  # a data file's examples keep their row: the sharded run's numbers
    mixing = bool(attention or per_graph) and bool(context_mixing(graph_list))
    for position, example in enumerate(items):
        # one pass per example: its attention, the graphs' tensors and the target's class and value
        planned = capture_planned(example.text, loaded, mixing=mixing, target=resolved,
                                  label=example.label if resolved.uses_gold else None, truncate=truncate)
        n_layers = planned.captured.n_layers
        if faithfulness:
            _resolve_layer(faithfulness_layer, n_layers)  # fail before the perturbation passes
        index = first_index + (position if rows is None else rows[position])
        results.append(_evaluate_one(index, example, planned, loaded, settings))
        if progress is not None:
            progress(len(results), len(items))
    layer = _resolve_layer(faithfulness_layer, n_layers) if faithfulness else None
    options = {
        "blank": blank,
        "blank_token_id": blank_id,
        "removal": removal,
        "random_repeats": random_repeats,
        "seed": seed,
        "ig_steps": ig_steps,
        "truncate": truncate,
        "with_special_tokens": bool(with_special_tokens),
        **method_options,
    }
    if yardsticks:
        options["yardsticks"] = yardsticks
    if inputs:
        options["input_methods"] = {
            name: {"layer": INPUT_LAYER, "not_correlated_with": get_attribution(name).yardstick} for name in inputs
        }
        options["lime_samples"], options["max_passes"] = lime_samples, max_passes
    if context_mixing(graph_list):
        options["graphs"] = list(graph_list)
    if per_graph:
        options["graph_methods"] = per_graph
    return EvaluationResult(
        model_name=loaded.name,
        target=resolved.describe(),
        methods=keys,
        ground_truths=truths,
        n_layers=n_layers,
        output=output,
        percents=percents,
        faithfulness_layer=layer,
        options=options,
        examples=results,
    )


def _yardsticks(loaded: Any, truths: Sequence[str]) -> tuple[dict[str, Any], Any, bool]:
    """Where the gradient yardsticks are taken, whether ``|sum_d g|`` is defined there, and the default one."""
    if not {"gradient", "saliency", "grad_x_input", "integrated_gradients"} & set(truths):
        return {}, None, True

    point = gradient_point(loaded)
    ratio = probe_shift_ratio(loaded, point)
    defined = bool(ratio >= SHIFT_TOLERANCE)
    return (
        {
            "point": point.where,
            "gradient_defined": defined,
            "shift_ratio": ratio,
            "default": default_gradient_truth(defined),
        },
        point,
        defined,
    )


def default_gradient_truth(sum_defined: bool) -> str:
    """The gradient yardstick tables lead with: the paper's ``gradient`` where defined, else ``saliency``.

    Examples
    --------
    >>> default_gradient_truth(True), default_gradient_truth(False)
    ('gradient', 'saliency')
    """
    return "gradient" if sum_defined else "saliency"


@dataclass
class _Settings:
    methods: list[str]
    truths: list[str]
    output: int | str
    blank_id: int
    faithfulness: bool
    percents: tuple[int, ...]
    faithfulness_layer: int
    removal: str
    random_repeats: int
    ig_steps: int
    batch_size: int | None
    seed: int
    method_options: dict[str, Any]
    with_special_tokens: bool = False
    graphs: list[str] = field(default_factory=lambda: ["attention"])
    #: A context-mixing graph's own methods (evaluate's ``graph_methods``); the other graphs run ``methods``.
    graph_methods: dict[str, list[str]] = field(default_factory=dict)
    #: Where gradients are taken (the first layer's input) and whether |sum_d g| is defined there.
    point: Any = None
    sum_defined: bool = True
    lime_samples: int = LIME_SAMPLES
    max_passes: int = MAX_PASSES
    #: The result names, ``GRAPH/METHOD`` off the attention graph (``methods`` when it is the only one).
    keys: list[str] = field(default_factory=list)
    #: Keep each flow result's FlowDetails of the explained output (evaluate's ``flow_details``).
    flow_details: bool = False

    def __post_init__(self) -> None:
        self.keys = self.keys or list(self.methods)


def _evaluate_one(index: int, example: Example, planned: Any, loaded: Any, settings: _Settings) -> ExampleResult:

    capture, mixing, bound = planned.captured, planned.mixing, planned.bound
    ids = list(capture.input_ids)
    content = list(capture.content_positions)
    gradients, options = None, settings.method_options
    attention, inputs = split_methods(settings.methods)
    if target_needed(attention, options):  # grad-rollout, head_fusion="importance": this example's target
        gradients, options = target_inputs(loaded, bound, ids, attention, options)
    model_pass = None
    if inputs:  # attribution methods: (n,) at the input, the same row at every layer
        model_pass = AttributionInputs(loaded, bound, ids, settings.blank_id, ig_steps=settings.ig_steps,
                                       lime_samples=settings.lime_samples, seed=settings.seed, index=index,
                                       point=settings.point, max_passes=settings.max_passes)
    per_graph = settings.graph_methods
    explanation = score_capture(capture, attention + inputs, graphs=[g for g in settings.graphs if g not in per_graph],
                                output=settings.output, mixing=mixing, gradients=gradients, model_pass=model_pass,
                                **options).explanation
    for graph, methods in per_graph.items():  # the same capture and mixing tensors, this graph's own methods
        _merge(explanation, score_capture(capture, list(methods), graphs=[graph], output=settings.output,
                                          mixing=mixing, **options).explanation)
    scores = explanation.scores
    details = _flow_details(explanation) if settings.flow_details else None
    n = len(ids)
    every = list(range(n))
    truths: dict[str, np.ndarray] = {}
    truths_all: dict[str, np.ndarray] = {}  # every position, special tokens included
    ig_delta = ig_relative = None
    if "blankout" in settings.truths:
        blanked = every if settings.with_special_tokens else content
        truths_all["blankout"] = perturb.blankout(
            loaded, bound, ids, blanked, blank_id=settings.blank_id, batch_size=settings.batch_size
        )
        truths["blankout"] = _only(truths_all["blankout"], content, n)
    if {"gradient", "saliency", "grad_x_input"} & set(settings.truths):
        gradient, inputs = perturb.input_gradients(loaded, bound, ids, settings.point)
        found = perturb.gradient_importance(gradient, inputs, sum_defined=settings.sum_defined)
        for name, values in found.items():
            if name in settings.truths:
                truths_all[name] = values
                truths[name] = _only(values, content, n)
    if "integrated_gradients" in settings.truths:
        baseline = list(ids)
        for position in content:
            baseline[position] = settings.blank_id
        values, ig_delta, ig_relative = perturb.integrated_gradients(
            loaded, bound, ids, baseline, n_steps=settings.ig_steps, batch_size=settings.batch_size,
            point=settings.point,
        )
        truths_all["integrated_gradients"] = values
        truths["integrated_gradients"] = _only(values, content, n)
        if np.isfinite(ig_relative) and abs(ig_relative) > IG_DELTA_WARNING:
            warnings.warn(
                f"Integrated gradients of example {index} did not converge: the convergence delta is "
                f"{abs(ig_relative):.1%} of S(x) - S(baseline) (over {IG_DELTA_WARNING:.0%}) with "
                f"{settings.ig_steps} steps; raise ig_steps (CLI: --ig-steps).",
                IntegratedGradientsWarning,
                stacklevel=3,
            )
    correlations = {
        truth: {method: _correlate(method, truth, scores[method], truths[truth], content) for method in settings.keys}
        for truth in settings.truths
    }
    correlations_all = None
    if settings.with_special_tokens:
        correlations_all = {
            truth: {method: _correlate(method, truth, scores[method], truths_all[truth], every)
                    for method in settings.keys}
            for truth in settings.truths
        }
    faith: dict[str, FaithfulnessScores] = {}
    if settings.faithfulness and len(content) >= 2:
        layer = _resolve_layer(settings.faithfulness_layer, capture.n_layers)

        def predict(keep: np.ndarray) -> np.ndarray:
            sequences = [_kept_sequence(ids, row, settings) for row in keep]
            return perturb.score_sequences(loaded, bound, sequences, kind="value", batch_size=settings.batch_size)

        faith = faithfulness_many(  # the random method is the random baseline's own ranking: not twice
            {method: scores[method][layer - 1] for method in settings.keys if method != "random"},
            predict,
            candidates=content,
            percents=settings.percents,
            rng=np.random.default_rng([settings.seed, index]),
            random_repeats=settings.random_repeats,
        )
    return ExampleResult(
        index=index,
        text=example.text,
        label=example.label,
        tokens=list(capture.tokens),
        special_positions=tuple(capture.special_positions),
        target=bound.describe(),
        scores=scores,
        ground_truths=truths,
        correlations=correlations,
        faithfulness=faith,
        ig_delta=ig_delta,
        ig_relative_delta=ig_relative,
        ground_truths_all=truths_all if settings.with_special_tokens else None,
        correlations_all=correlations_all,
        flow_details=details,
    )


def _merge(explanation: Any, other: Any) -> None:
    """Add ``other``'s results (another graph's, of the same capture and output) to ``explanation``."""
    explanation.scores.update(other.scores)
    explanation.solutions.update(other.solutions)
    explanation.bounds.update(other.bounds)
    explanation.token_labels.update(other.token_labels)
    explanation.notes.extend(other.notes)


def _check_graph_methods(graph_methods: Any, graphs: list[str]) -> dict[str, list[str]]:
    """``graph_methods`` checked: context-mixing graphs of ``graphs``, each with registered attention methods."""
    if graph_methods is None:
        return {}

    if not isinstance(graph_methods, Mapping):
        raise AttnflowError(f"The 'graph_methods' parameter must map graph names to methods; got {graph_methods!r}.")
    checked = {}
    for graph, methods in graph_methods.items():
        if graph not in context_mixing(graphs):
            raise AttnflowError(
                f"The 'graph_methods' parameter names {graph!r}, which is not a context-mixing graph of 'graphs' "
                f"({', '.join(graphs)}); the attention graph runs 'methods'."
            )
        names = _check_methods(methods)
        if split_methods(names)[1]:
            raise AttnflowError(f"The 'graph_methods' of {graph!r} must be graph methods; attribution methods score "
                                "the input: give them in 'methods'.")
        checked[graph] = names
    return checked


def _flow_details(explanation: Any) -> dict[str, Any]:
    """Each exactly solved flow result's :class:`~attnflow.methods.flow.FlowDetails` of the explained output.

    Certified intervals (flow too large to solve exactly) have no exact values: left out.
    """

    return {key: solution.details(explanation.output) for key, solution in explanation.solutions.items()
            if isinstance(solution, FlowSolution) and not isinstance(solution, FlowBounds)}


def _correlate(method: str, truth: str, scores: np.ndarray, truth_values: np.ndarray, positions: list[int]) -> Any:
    """Spearman per layer, NaN where the method computes this very yardstick (an attribution method's own)."""
    if is_attribution(method) and get_attribution(method).yardstick == truth:
        return np.full(scores.shape[0], np.nan)
    return layer_correlations(scores, truth_values, positions)


def _check_lengths(loaded: Any, items: list[Example]) -> None:
    """Fail before any model run when a text is longer than the model accepts (capture would, later)."""
    limit = loaded.max_length
    if limit is None:
        return
    for index, example in enumerate(items):
        try:
            n_tokens = len(loaded.tokenizer(example.text, add_special_tokens=True)["input_ids"])
        except Exception:  # capture reports tokenizer failures with its own message
            continue
        if n_tokens > limit:
            raise AttnflowError(
                f"Example {index} ({example.text[:40]!r}) has {n_tokens} tokens but the model {loaded.name!r} "
                f"accepts at most {limit}; pass truncate=True (CLI: --truncate) or shorten it."
            )


def _kept_sequence(ids: list[int], keep: np.ndarray, settings: _Settings) -> list[int]:
    if settings.removal == "blank":
        return [token if kept else settings.blank_id for token, kept in zip(ids, keep, strict=True)]
    kept = [token for token, flag in zip(ids, keep, strict=True) if flag]
    return kept or [settings.blank_id]  # every token removed: score a single blank token


def _only(values: np.ndarray, positions: list[int], n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    out[positions] = values[positions]
    return out


def _resolve_layer(layer: int, n_layers: int) -> int:
    value = layer + n_layers + 1 if layer < 0 else layer
    if not 1 <= value <= n_layers:
        raise AttnflowError(
            f"The 'faithfulness_layer' parameter must be from 1 to {n_layers} (or negative from the top); "
            f"got {layer} instead."
        )
    return value


def _check_methods(methods: Sequence[str] | str | None) -> list[str]:
    if methods is None:
        return list(default_methods())
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise AttnflowError("The 'methods' parameter must name at least one method.")
    out = []
    for name in names:
        if not is_attribution(name):
            _known_method(name)  # unknown names fail here, listing both kinds of method
        if name not in out:
            out.append(name)
    return out


def _known_method(name: str) -> None:
    try:
        get_method(name)
    except AttnflowError:
        raise AttnflowError(
            f"Unknown method {name!r}; attention methods: {', '.join(available_methods())}; attribution methods: "
            f"{', '.join(available_attributions())}."
        ) from None


def _check_ground_truths(ground_truths: Sequence[str] | str) -> list[str]:
    names = [ground_truths] if isinstance(ground_truths, str) else list(ground_truths)
    if not names:
        raise AttnflowError("The 'ground_truths' parameter must name at least one ground truth.")
    unknown = [name for name in names if name not in GROUND_TRUTHS]
    if unknown:
        raise AttnflowError(
            f"Unknown ground truth(s) {unknown}; available: {', '.join(GROUND_TRUTHS)}."
        )
    return [name for name in GROUND_TRUTHS if name in names]


def _check_method_options(names: list[str], options: dict[str, Any]) -> None:
    known = set().union(*(get_method(name).options for name in names)) - {"progress"}
    unknown = set(options) - known
    if unknown:
        raise AttnflowError(
            f"Unknown option(s) {sorted(unknown)} for methods {names}; they accept {sorted(known)}."
        )


def _check_int(name: str, value: Any, *, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (minimum is not None and value < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise AttnflowError(f"The '{name}' parameter must be an integer{bound}; got {value!r} instead.")


def _pair(values: Any) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
