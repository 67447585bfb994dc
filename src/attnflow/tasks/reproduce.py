"""Reproduce the paper's subject-verb agreement tables (Abnar & Zuidema 2020, Table 1).

:func:`reproduce_sva` draws ``n`` test sentences (:mod:`attnflow.tasks.sva`), runs
:func:`attnflow.evaluate` on the bundled ``sva`` model (or one trained afresh) with the
paper's two ground truths - blank-out and input gradients - and adds what the paper did
not report:

- ``accuracy``: the model's accuracy on these examples, overall and with attractors;
- ``plausibility``: how often each method, at each layer, scores the true subject above
  every attractor (examples with at least one attractor only), next to the same rate for
  the two ground truths and for a random ranking (``1 / (attractors + 1)`` on average);
- ``saturation``: per layer, the share of raw flow values into ``[CLS]`` that sit at their
  source bound ``min(1, first-layer column sum)`` (:func:`flow_saturation`); where the share
  is 1, the flow column is the first layer's attention received, whatever the upper layers do;
- ``concentration``: how much of the blank-out mass the subject takes (:func:`blankout_concentration`).

Two Spearman protocols are reported (:data:`PROTOCOLS`): over the sentence's words only,
attnflow's rule everywhere, and over every token with ``[CLS]`` included, which the paper's
Table 1 appears to use (its layer-1 row has raw attention far above rollout and flow, which
only ``[CLS]``'s own score can cause: at layer 1 the three rank the words alike).

With ``graphs=["alti", ...]`` (CLI: ``--graph``) every method also runs over each
context-mixing graph of :mod:`attnflow.mixing`, as ``GRAPH/METHOD`` rows of every table,
and ``saturation["graphs"]`` gives each graph's share of flow at its bound.

The paper's numbers are in :data:`PAPER`; only the top layer is quoted (docs/design.md,
"Ground truth and the paper's claim").
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..capture import load_model
from ..errors import AttnflowError
from ..evaluate import evaluate
from ..explainers.text import check_graph_options
from ..io import csv_bytes
from ..methods import available_methods
from ..mixing import ATTENTION, context_mixing, get_graph, graph_names, result_key
from ..plots import figure_png
from . import sva
from .sva_train import accuracy as model_accuracy
from .sva_train import train

if TYPE_CHECKING:  # pragma: no cover
    from ..evaluate import EvaluationResult

#: The paper's ground truths, in its order, then the gradient yardsticks defined where its
#: ``gradient`` is not: on the pre-LN ``sva`` model ``|sum_d g|`` is zero by construction at the
#: first layer's input (:mod:`attnflow.capture.gradient_point`), so it is reported undefined and
#: ``saliency`` (``||g||_2``) is the default gradient yardstick, with ``grad_x_input`` beside it.
GROUND_TRUTHS: tuple[str, ...] = ("blankout", "gradient", "saliency", "grad_x_input")
#: The two Spearman protocols: name -> (title, whether special tokens are scored).
PROTOCOLS: dict[str, tuple[str, bool]] = {
    "words": ("words only ([CLS] not scored; attnflow's rule)", False),
    "with_cls": ("every token, [CLS] included", True),
}
#: A raw flow value within this of its bound counts as at the bound.
SATURATION_TOLERANCE = 1e-9
#: What the paper reports for its SVA model (top layer, 2000 test examples).
PAPER: dict[str, Any] = {
    "source": "Abnar & Zuidema (2020), 'Quantifying Attention Flow in Transformers', Table 1; "
    "Spearman correlation at the top layer (6) over 2000 test examples of Linzen et al. (2016)",
    "accuracy": 0.96,
    "layer": 6,
    "correlation": {
        "blankout": {"raw": 0.29, "rollout": 0.71, "flow": 0.70},
        "gradient": {"raw": 0.46, "rollout": 0.54, "flow": 0.61},
    },
}


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce_sva`.

    ``evaluation`` holds the correlation tables; ``accuracy`` and ``plausibility`` are
    described in the module docstring; ``seconds`` is the wall time of each stage
    (``train``, when retrained, and ``evaluate``).
    """

    evaluation: EvaluationResult
    examples: list[sva.SVAExample]
    accuracy: dict[str, float | int]
    plausibility: dict[str, Any]
    seconds: dict[str, float]
    seed: int
    saturation: dict[str, Any] = field(default_factory=dict)
    concentration: dict[str, Any] = field(default_factory=dict)
    train_report: dict[str, Any] | None = None
    model_folder: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``attnflow evaluate``'s JSON summary, plus ``task``, ``accuracy``, ``plausibility``, ``paper``, ..."""
        out = self.evaluation.to_dict()
        out.update(
            {
                "task": "sva",
                "seed": self.seed,
                "accuracy": _jsonable(self.accuracy),
                "plausibility": _jsonable(self.plausibility),
                "saturation": _jsonable(self.saturation),
                "concentration": _jsonable(self.concentration),
                "protocols": {name: title for name, (title, _) in PROTOCOLS.items()},
                "paper": PAPER,
                "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
                "model_folder": self.model_folder,
                "train_report": self.train_report,
                "settings": self.settings,
            }
        )
        return out

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON (NaN written as ``null``)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def tables_markdown(self) -> str:
        """The tables as Markdown: correlation by layer, top layer vs the paper, subject first."""
        return tables_markdown(self)

    def files(self, *, plot: bool = True) -> dict[str, bytes]:
        """Every output file's bytes: ``results.json``, ``tables.md``, ``examples.jsonl``, ``examples.csv``
        and, when matplotlib is installed and ``plot`` is true, ``correlation_by_layer.png``."""

        files = {
            "results.json": (self.to_json() + "\n").encode("utf-8"),
            "tables.md": self.tables_markdown().encode("utf-8"),
            "examples.jsonl": "".join(json.dumps(ex.to_record()) + "\n" for ex in self.examples).encode("utf-8"),
            "examples.csv": csv_bytes(self.evaluation.to_dataframe()),
        }
        if plot:
            try:

                files["correlation_by_layer.png"] = figure_png(self.evaluation.plot())
            except AttnflowError:  # matplotlib missing: the numbers are all in results.json
                pass
        return files


def reproduce_sva(
    n: int = 2000,
    *,
    model: Any = "sva",
    retrain: bool = False,
    train_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    methods: Sequence[str] | None = None,
    train_options: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    graphs: Sequence[str] | str | None = None,
) -> Reproduction:
    """Run the paper's SVA evaluation: correlation tables, accuracy and subject-first rates.

    Parameters
    ----------
    n
        Test sentences (the paper: 2000), drawn with :func:`attnflow.tasks.sva.generate`
        (``split="test"``, ``seed``); with the default seed they are the first ``n`` of the
        test split the bundled model was measured on.
    model
        The model to judge: ``"sva"`` (bundled) or anything
        :func:`attnflow.capture.load_model` accepts whose tokenizer maps each word to one
        token after ``[CLS]``. Ignored with ``retrain=True``.
    retrain
        Train a model afresh (:func:`attnflow.tasks.sva_train.train`, CPU, seeded by
        ``seed``) into ``train_dir`` and judge that one.
    train_dir
        Where the retrained model is saved; required with ``retrain=True``.
    seed
        Seed of the test sentences and, with ``retrain``, of the training.
    methods
        Registered methods to judge; default every registered method.
    train_options
        Extra keyword arguments for :func:`attnflow.tasks.sva_train.train`.
    progress
        Called as ``progress(done, total)`` after each example.
    log
        Called with a line of progress for training.
    graphs
        Context-mixing graphs (:mod:`attnflow.mixing`: ``norm``, ``alti``, ...) to judge
        too: every method also runs over each graph, as ``GRAPH/METHOD`` rows
        (``alti/rollout``) in every table, correlated exactly as the attention rows, and
        ``saturation["graphs"]`` holds each graph's share of flow values at their bound.
        With graphs the default methods are raw, rollout and flow (gradient methods are
        for the attention graph only). A graph not defined for the model (GlobEnc on
        the pre-LN ``sva``) is an :class:`AttnflowError` before any example runs.

    Returns
    -------
    Reproduction

    Examples
    --------
    >>> r = reproduce_sva(4, methods=["raw", "rollout"])
    >>> r.evaluation.n_examples, r.evaluation.ground_truths, sorted(r.plausibility["methods"])
    (4, ['blankout', 'gradient', 'saliency', 'grad_x_input'], ['raw', 'rollout'])
    """

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise AttnflowError(f"The 'n' parameter must be a positive integer; got {n!r} instead.")

    others = [] if graphs is None else context_mixing(graph_names(graphs))
    if methods is None:  # the paper's three first, in its order, then any other registered method
        paper_order = [m for m in ("raw", "rollout", "flow") if m in available_methods()]
        names = paper_order + ([] if others else [m for m in available_methods() if m not in paper_order])
    else:
        names = list(methods)
    if others:

        check_graph_options(others, names, {})
    seconds: dict[str, float] = {}
    train_report: dict[str, Any] | None = None
    folder: Path | None = None
    if retrain:
        if train_dir is None:
            raise AttnflowError("reproduce_sva(retrain=True) needs train_dir: the folder to save the new model in.")

        start = time.perf_counter()
        options = {"seed": seed, "log": log, **(train_options or {})}
        _, _, report = train(train_dir, **options)
        seconds["train"] = time.perf_counter() - start
        train_report = json.loads(report.to_json())
        model = folder = Path(train_dir)
    loaded = load_model(model)
    for name in others:  # before any example: GlobEnc on a pre-LN model is refused here, naming why
        get_graph(name).check_model(loaded)
    if folder is None and loaded.path is not None and (loaded.path / "train_report.json").is_file():
        train_report = json.loads((loaded.path / "train_report.json").read_text(encoding="utf-8"))
    examples = sva.generate(n, split="test", seed=seed)
    start = time.perf_counter()
    result = evaluate(
        [{"text": ex.text, "label": ex.label_name} for ex in examples],
        loaded,
        methods=names,
        ground_truths=list(GROUND_TRUTHS),
        faithfulness=False,
        progress=progress,
        with_special_tokens=True,
        graphs=[ATTENTION, *others] if others else None,
        flow_details="flow" in names,  # the saturation below reads evaluate's flow: nothing solved twice
    )
    seconds["evaluate"] = time.perf_counter() - start
    saturation = flow_saturation(result) if "flow" in names else {}
    if saturation and others:
        saturation["graphs"] = graph_saturation(result, others)
    acc = model_accuracy(loaded.model, loaded.tokenizer, examples)
    return Reproduction(
        evaluation=result,
        examples=examples,
        accuracy=acc,
        plausibility=subject_first(result, examples),
        seconds=seconds,
        seed=seed,
        saturation=saturation,
        concentration=blankout_concentration(result, examples),
        train_report=train_report,
        model_folder=str(loaded.path) if loaded.path is not None else None,
        settings={"n": n, "split": "test", "target": "predicted", "blank": "unk", "output": "cls"},
    )


def subject_first(result: EvaluationResult, examples: Sequence[sva.SVAExample]) -> dict[str, Any]:
    """How often each method (per layer) and each ground truth scores the subject above every attractor.

    Only examples with at least one attractor count; a tie counts as not above. An
    example whose tokens are not ``[CLS]`` followed by its words is skipped (another
    tokenizer). ``chance`` is the rate of a random ranking, the mean of
    ``1 / (attractors + 1)``.

    Returns
    -------
    dict
        ``{"n_examples": k, "methods": {method: [rate per layer]}, "ground_truths":
        {name: rate}, "chance": rate, "skipped": m}``.
    """
    if len(examples) != result.n_examples:
        raise AttnflowError(
            f"subject_first needs one example per evaluated example; got {len(examples)} for {result.n_examples}."
        )
    hits: dict[str, list[np.ndarray]] = {m: [] for m in result.methods}
    truth_hits: dict[str, list[bool]] = {t: [] for t in result.ground_truths}
    chance: list[float] = []
    skipped = 0
    for example, item in zip(examples, result.examples, strict=True):
        if not example.has_attractor:
            continue
        if [t.lower() for t in item.tokens[1:]] != list(example.words):
            skipped += 1
            continue
        subject, attractors = example.token_positions()
        atts = list(attractors)
        for method in result.methods:
            scores = np.asarray(item.scores[method], dtype=float)
            hits[method].append(scores[:, subject] > scores[:, atts].max(axis=1))
        for truth in result.ground_truths:
            values = np.asarray(item.ground_truths[truth], dtype=float)
            if np.isfinite(values[[subject, *atts]]).any():  # an undefined yardstick has no rate
                truth_hits[truth].append(bool(values[subject] > np.nanmax(values[atts])))
        chance.append(1.0 / (len(atts) + 1))
    count = len(chance)
    return {
        "n_examples": count,
        "methods": {
            m: (np.mean(np.stack(v), axis=0).tolist() if v else [float("nan")] * result.n_layers)
            for m, v in hits.items()
        },
        "ground_truths": {t: (float(np.mean(v)) if v else float("nan")) for t, v in truth_hits.items()},
        "chance": float(np.mean(chance)) if chance else float("nan"),
        "skipped": skipped,
    }


def flow_saturation(result: EvaluationResult) -> dict[str, Any]:
    """Per layer, the share of raw flow values into ``[CLS]`` that sit at their source bound.

    For each example, raw flow from every input token ``j`` to ``[CLS]`` at layer ``l``
    is compared with its bound ``min(1, sum_i Ahat[1][i, j])`` (the source's out-capacity,
    from :class:`attnflow.graph.AttentionGraph`; the sink takes in at most 1). A value
    within :data:`SATURATION_TOLERANCE` of it is *at the bound*. Where every value is, the
    flow scores are the first layer's column sums, whatever the upper layers do.

    ``result``: an evaluation explaining ``[CLS]`` with ``flow``, run with
    ``flow_details=True``; its flow is read, not solved again.

    Returns
    -------
    dict
        ``{"n_examples": k, "tolerance": t, "all_tokens": [share per layer],
        "words": [share per layer, [CLS] left out], "examples_all_words": [share of examples
        whose every word is at the bound, per layer]}``.
    """
    at_bound = _at_bound(result, "flow")  # per example: (L, n) booleans
    if not at_bound:
        return {"n_examples": 0, "tolerance": SATURATION_TOLERANCE, "all_tokens": [], "words": [],
                "examples_all_words": []}
    return {"n_examples": len(at_bound), "tolerance": SATURATION_TOLERANCE, **_bound_shares(at_bound)}


def graph_saturation(result: EvaluationResult, graphs: Sequence[str]) -> dict[str, Any]:
    """:func:`flow_saturation` over context-mixing graphs: per graph and layer, the share at the bound.

    The graphs contain the residual stream, so their flow runs with residual weight 0 and
    the bound is ``min(1, sum_i M_1[i, j])``, the first layer's column sum of the graph's
    own matrix. Read from ``result``'s ``GRAPH/flow`` (``evaluate(..., graphs=...,
    flow_details=True)``), not solved again.

    Returns
    -------
    dict
        ``{graph: {"all_tokens": [...], "words": [...], "examples_all_words": [...]}}``,
        each list one share per layer, as in :func:`flow_saturation`.
    """

    out: dict[str, Any] = {}
    for name in graphs:
        found = _at_bound(result, result_key(name, "flow"))
        if found:
            out[name] = _bound_shares(found)
    return out


def _at_bound(result: EvaluationResult, key: str) -> list[np.ndarray]:
    """Per example, ``(L, n)``: which raw flow values of result ``key`` lie at their source bound."""
    if result.output not in ("cls", 0):
        raise AttnflowError(f"Flow saturation is measured into [CLS]; this evaluation explains {result.output!r}.")
    return [example.details_of(key).at_bound(SATURATION_TOLERANCE) for example in result.examples]


def _bound_shares(at_bound: list[np.ndarray]) -> dict[str, Any]:
    """Per layer: the share at the bound of every token, of the words ([CLS] left out), and of sentences' words."""
    return {
        "all_tokens": np.concatenate(at_bound, axis=1).mean(axis=1).tolist(),
        "words": np.concatenate([b[:, 1:] for b in at_bound], axis=1).mean(axis=1).tolist(),
        "examples_all_words": np.mean([b[:, 1:].all(axis=1) for b in at_bound], axis=0).tolist(),
    }


def blankout_concentration(result: EvaluationResult, examples: Sequence[sva.SVAExample]) -> dict[str, Any]:
    """How much of each sentence's blank-out mass the subject takes, and how large the rest is.

    Per example, over the words: the subject's share of the summed blank-out values, and
    the second-largest blank-out value (an absolute change in the probability of the
    predicted class). Medians over the examples; examples whose tokens are not ``[CLS]``
    followed by the words are skipped.

    Returns
    -------
    dict
        ``{"n_examples": k, "subject_share_median": s, "second_largest_median": v,
        "subject_first": rate}`` (``subject_first``: share of examples whose largest
        blank-out value is the subject's), or ``{}`` without blank-out.
    """
    if "blankout" not in result.ground_truths:
        return {}
    shares, seconds, first = [], [], []
    for example, item in zip(examples, result.examples, strict=True):
        if [t.lower() for t in item.tokens[1:]] != list(example.words):
            continue
        subject, _ = example.token_positions()
        values = np.asarray(item.ground_truths["blankout"], dtype=float)[1:]
        total = float(np.nansum(values))
        ranked = np.sort(values[np.isfinite(values)])[::-1]
        shares.append(values[subject - 1] / total if total > 0 else float("nan"))
        seconds.append(float(ranked[1]) if ranked.size > 1 else float("nan"))
        first.append(bool(ranked.size and values[subject - 1] == ranked[0]))
    if not shares:
        return {"n_examples": 0}
    return {
        "n_examples": len(shares),
        "subject_share_median": float(np.nanmedian(shares)),
        "second_largest_median": float(np.nanmedian(seconds)),
        "subject_first": float(np.mean(first)),
    }


def _fmt(pair: Any) -> str:
    mean, sd = (float("nan") if v is None else float(v) for v in pair)
    if mean != mean:
        return "–"
    return f"{mean:.2f} ± {sd:.2f}" if sd == sd else f"{mean:.2f}"


_TRUTH_NAMES = {
    "blankout": "blank-out",
    "gradient": "input gradients",
    "saliency": "saliency ||g||",
    "grad_x_input": "gradient × input",
}


def tables_markdown(repro: Reproduction) -> str:
    """The reproduction's tables as Markdown text.

    Three parts: Spearman correlation by layer for each ground truth (mean ± sd), the
    top layer next to the paper's numbers, and the subject-first rates.
    """
    result = repro.evaluation
    lines: list[str] = []
    acc = repro.accuracy
    lines.append(
        f"Model `{result.model_name}` on {result.n_examples} generated test sentences (seed {repro.seed}); "
        f"target: the predicted class; output: [CLS]; blank token: [UNK].\n"
    )
    lines.append(
        f"Accuracy on these sentences: {acc['accuracy']:.3f} overall, {acc['accuracy_attractors']:.3f} on the "
        f"{acc['n_attractors']} with attractors (paper: {PAPER['accuracy']:.2f} overall).\n"
    )
    yardsticks = result.options.get("yardsticks") or {}
    if yardsticks and not yardsticks.get("gradient_defined", True):
        lines.append(
            f"Input gradients `|Σ_d g|` are undefined on this model: at the {yardsticks['point']} every read "
            f"goes through a LayerNorm, so the sum is zero by construction (measured ratio to `||g||`: "
            f"{yardsticks['shift_ratio']:.0e}). The gradient yardstick here is `{yardsticks['default']}`, "
            "which is not the paper's measure: its column is not comparable with the paper's.\n"
        )
    for protocol in protocols(result):
        for truth in result.ground_truths:
            lines.append(f"### Spearman correlation with {_TRUTH_NAMES.get(truth, truth)}: {PROTOCOLS[protocol][0]}\n")
            lines.append(correlation_table(result, truth, protocol))
            lines.append("")
    top = result.n_layers
    for protocol in protocols(result):
        lines.append(f"### Top layer ({top}) against the paper (layer {PAPER['layer']}): {PROTOCOLS[protocol][0]}\n")
        lines.append(paper_table(result, protocol))
        lines.append("")
    if repro.saturation.get("n_examples"):
        lines.append(
            f"### Raw flow into [CLS] at its source bound min(1, first-layer column sum) "
            f"({repro.saturation['n_examples']} examples)\n"
        )
        lines.append(saturation_table(repro.saturation))
        lines.append("")
    conc = repro.concentration
    if conc.get("n_examples"):
        lines.append(
            f"Blank-out on {conc['n_examples']} sentences: the subject takes a median "
            f"{conc['subject_share_median']:.2%} of the blank-out mass, the second-largest change in "
            f"probability is {conc['second_largest_median']:.1e} (median), and the subject has the "
            f"largest change in {conc['subject_first']:.2f} of them.\n"
        )
    plaus = repro.plausibility
    lines.append(
        f"### Subject ranked above every attractor ({plaus['n_examples']} examples with attractors)\n"
    )
    lines.append("| method | " + " | ".join(f"L{layer + 1}" for layer in range(result.n_layers)) + " |")
    lines.append("|---|" + "---:|" * result.n_layers)
    for method, rates in plaus["methods"].items():
        lines.append(f"| {method} | " + " | ".join(_rate(r) for r in rates) + " |")
    lines.append("")
    references = ", ".join(
        f"{_TRUTH_NAMES.get(t, t)} {_rate(r)}" for t, r in plaus["ground_truths"].items()
    )
    lines.append(f"For reference: {references}; a random ranking {_rate(plaus['chance'])}.\n")
    return "\n".join(lines)


def protocols(result: EvaluationResult) -> list[str]:
    """The protocols an evaluation has: ``["words"]``, plus ``"with_cls"`` when special tokens were scored too."""
    return ["words", "with_cls"] if result.has_special_protocol else ["words"]


def correlation_table(result: EvaluationResult, truth: str, protocol: str = "words") -> str:
    """Markdown: mean ± sd Spearman correlation with ``truth`` per layer (rows) and method (columns)."""
    special = PROTOCOLS[protocol][1]
    rows = ["| layer | " + " | ".join(result.methods) + " |", "|---:|" + "---:|" * len(result.methods)]
    stats = {m: result.correlation(truth, m, special_tokens=special) for m in result.methods}
    for layer in range(result.n_layers):
        rows.append(f"| {layer + 1} | " + " | ".join(_fmt(stats[m][layer]) for m in result.methods) + " |")
    return "\n".join(rows)


def paper_table(result: EvaluationResult, protocol: str = "words") -> str:
    """Markdown: the top layer's correlations next to the paper's, one row per method."""
    special = PROTOCOLS[protocol][1]
    top = result.n_layers
    header = "| method | " + " | ".join(
        f"{_TRUTH_NAMES.get(t, t)}: ours | {_TRUTH_NAMES.get(t, t)}: paper" for t in result.ground_truths
    )
    rows = [header + " |", "|---|" + "---:|---:|" * len(result.ground_truths)]
    for method in result.methods:
        cells = []
        for truth in result.ground_truths:
            cells.append(_fmt(result.correlation(truth, method, special_tokens=special)[top - 1]))
            paper = PAPER["correlation"].get(truth, {}).get(method)
            cells.append("–" if paper is None else f"{paper:.2f}")
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def saturation_table(saturation: dict[str, Any]) -> str:
    """Markdown: per layer, the share of raw flow values into [CLS] at their source bound."""
    n_layers = len(saturation["all_tokens"])
    rows = [
        "| | " + " | ".join(f"L{layer + 1}" for layer in range(n_layers)) + " |",
        "|---|" + "---:|" * n_layers,
        "| every token | " + " | ".join(f"{v:.3f}" for v in saturation["all_tokens"]) + " |",
        "| words | " + " | ".join(f"{v:.3f}" for v in saturation["words"]) + " |",
        "| sentences with every word at the bound | "
        + " | ".join(f"{v:.3f}" for v in saturation["examples_all_words"]) + " |",
    ]
    for graph, shares in saturation.get("graphs", {}).items():
        rows.append(f"| {graph}: every token | " + " | ".join(f"{v:.3f}" for v in shares["all_tokens"]) + " |")
        rows.append(f"| {graph}: words | " + " | ".join(f"{v:.3f}" for v in shares["words"]) + " |")
    return "\n".join(rows)


def _rate(value: Any) -> str:
    value = float("nan") if value is None else float(value)
    return "–" if value != value else f"{value:.2f}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if value != value else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
