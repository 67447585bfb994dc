"""Make the documentation's tables of results from the committed results files, or check them.

Every table of accuracies, correlations or AUCs in README.md and docs/*.md is made
from a results file committed in the repository (``docs/results/*.json``, or a
bundled model's ``train_report.json``) and is preceded by a marker naming it::

    <!-- table: sva-paper-words -->
    | method | ... |

The table is the block of lines starting with ``|`` right after the marker.

    python scripts/doc_tables.py           # rewrite every marked table from its results file
    python scripts/doc_tables.py --check   # exit 1, listing them, when a table differs

``make reproduce`` reruns the experiments that write the results files and then
this script; ``tests/test_doc_tables.py`` runs the check. Timing figures are not
tables of results: they name their command and date instead (docs/design.md §10).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
BUNDLED = ROOT / "src" / "attnflow" / "tasks" / "bundled"
#: The files whose tables are checked.
DOCUMENTS = ("README.md", "docs/*.md")
MARKER = re.compile(r"^<!-- table: ([a-z0-9_-]+) -->\s*$")

#: Results files, by short name, relative to the repository root.
SOURCES: dict[str, str] = {
    "sva": "docs/results/sva.json",
    "sva-train": "src/attnflow/tasks/bundled/sva/train_report.json",
    "digits-faithfulness": "docs/results/digits-faithfulness.json",
    "digits-train": "src/attnflow/tasks/bundled/digits-vit/train_report.json",
    "evaluation-minilm": "docs/results/evaluation-minilm.json",
    "mixing-minilm": "docs/results/mixing-minilm.json",
    "mixing-sva": "docs/results/mixing-sva.json",
    "baselines-minilm": "docs/results/baselines-minilm.json",
    "baselines-sva": "docs/results/sva-baselines.json",
    "mixing-saturation": "docs/results/mixing-saturation.json",
    "mixing-digits": "docs/results/mixing-digits.json",
    "seq2seq-reverse": "docs/results/seq2seq-reverse.json",
    "reverse-train": "src/attnflow/tasks/bundled/reverse/train_report.json",
    "heads-gates-sva": "docs/results/heads-gates-sva.json",
    "heads-sva": "docs/results/heads-sva.json",
    "heads-minilm": "docs/results/heads-minilm.json",
    "heads-smollm2": "docs/results/heads-smollm2.json",
    "agreement-blanks": "docs/results/agreement-blanks.json",
    "heads-smollm2-sva": "docs/results/heads-smollm2-sva.json",
    "capture-precision": "docs/results/capture-precision.json",
    "image-precision": "docs/results/image-precision.json",
    "capture-benchmark": "docs/results/capture-benchmark.json",
    "capture-timing": "docs/results/capture-timing.json",
    "capture-long": "docs/results/capture-long.json",
    "flow-benchmark": "docs/results/flow-benchmark.json",
    "capture-smollm2": "docs/results/capture-smollm2.json",
    "flow-long": "docs/results/flow-long.json",
    "flow-smollm2": "docs/results/flow-smollm2.json",
    "agreement-smollm2": "docs/results/agreement-smollm2.json",
}

_TRUTH = {"blankout": "blank-out", "gradient": "input gradients", "saliency": "saliency ‖g‖",
          "grad_x_input": "gradient × input"}
_SPECIAL = {"words": "correlation", "with_cls": "correlation_with_special_tokens"}


def _pair(pair: Any) -> str:
    """``0.50 ± 0.23`` from ``[mean, sd]`` (``–`` when undefined), as ``attnflow reproduce`` writes it."""
    mean, sd = (float("nan") if v is None else float(v) for v in pair)
    if mean != mean:
        return "–"
    return f"{mean:.2f} ± {sd:.2f}" if sd == sd else f"{mean:.2f}"


def _rate(value: Any) -> str:
    value = float("nan") if value is None else float(value)
    return "–" if value != value else f"{value:.2f}"


def _paper(results: dict[str, Any], truth: str, method: str) -> str:
    value = results["paper"]["correlation"].get(truth, {}).get(method)
    return "–" if value is None else f"{value:.2f}"


def sva_by_layer(truth: str, protocol: str) -> Callable[[dict[str, Any]], str]:
    """Correlation with ``truth`` per layer and method, for one protocol (``words`` or ``with_cls``)."""

    def render(results: dict[str, Any]) -> str:
        table = results[_SPECIAL[protocol]][truth]
        methods = results["methods"]
        rows = ["| layer | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
        for layer in range(results["n_layers"]):
            rows.append(f"| {layer + 1} | " + " | ".join(_pair(table[m][layer]) for m in methods) + " |")
        return "\n".join(rows)

    return render


def sva_paper(protocol: str) -> Callable[[dict[str, Any]], str]:
    """The top layer against the paper, one row per method, for one protocol (``words`` or ``with_cls``).

    Blank-out beside the paper's; the paper's input-gradient column beside ours where that
    measure is defined on the model, else marked undefined; then our other gradient
    yardsticks, which the paper did not report. A file made before the yardsticks moved to
    the first layer's input shows blank-out only (:func:`_sva_truths`).
    """

    def render(results: dict[str, Any]) -> str:
        table, top = results[_SPECIAL[protocol]], results["n_layers"] - 1
        truths = _sva_truths(results)
        others = [t for t in truths if t not in ("blankout", "gradient")]
        header = "| method | blank-out: ours | paper |"
        if "gradient" in truths:
            header += " input gradients: ours | paper |"
        header += "".join(f" {_TRUTH[t]}: ours |" for t in others)
        columns = 2 + (2 if "gradient" in truths else 0) + len(others)
        rows = [header, "|---|" + "---:|" * columns]
        defined = ((results.get("options") or {}).get("yardsticks") or {}).get("gradient_defined", True)
        for m in results["methods"]:
            cells = [_pair(table["blankout"][m][top]), _paper(results, "blankout", m)]
            if "gradient" in truths:
                cells += [_pair(table["gradient"][m][top]) if defined else "undefined", _paper(results, "gradient", m)]
            cells += [_pair(table[t][m][top]) for t in others]
            rows.append(f"| {m} | " + " | ".join(cells) + " |")
        return "\n".join(rows)

    return render


def _sva_truths(results: dict[str, Any]) -> list[str]:
    """The ground truths of an sva results file worth showing: a file made before the gradient yardsticks
    moved to the first layer's input (no ``options.yardsticks``) has a ``gradient`` that is float32 round-off."""
    if (results.get("options") or {}).get("yardsticks"):
        return list(results["ground_truths"])
    return [t for t in results["ground_truths"] if t == "blankout"]


#: The README's short version of the top-layer table: the words-only protocol.
readme_sva = sva_paper("words")


def sva_gradients(results: dict[str, Any]) -> str:
    """``attnflow evaluate`` on sva: the top layer's gradient yardsticks beside the paper's gradient column.

    ``gradient`` (the paper's ``|sum_d g|``) is undefined on this pre-LN model; the others are not its measure.
    """
    top = results["n_layers"] - 1
    truths = [t for t in ("gradient", "saliency", "grad_x_input", "integrated_gradients")
              if t in results["correlation"]]
    names = {"gradient": "input gradients", "saliency": "saliency ‖g‖", "grad_x_input": "gradient × input",
             "integrated_gradients": "integrated gradients"}
    inputs = results["options"].get("input_methods") or {}
    methods = [m for m in results["methods"] if m not in inputs]
    rows = ["| method | paper's input gradients | " + " | ".join(f"{names[t]}: ours" for t in truths) + " |",
            "|---|---:|" + "---:|" * len(truths)]
    for m in methods:
        paper = PAPER_GRADIENT.get(m)
        cells = ["–" if paper is None else f"{paper:.2f}"]
        cells += ["undefined" if t == "gradient" and not results["options"]["yardsticks"]["gradient_defined"]
                  else _pair(results["correlation"][t][m][top]) for t in truths]
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


#: The paper's gradient column (Table 1, top layer), for results files that do not carry ``paper``.
PAPER_GRADIENT = {"raw": 0.46, "rollout": 0.54, "flow": 0.61}


def sva_paper_only(results: dict[str, Any]) -> str:
    """The paper's own top-layer numbers (``attnflow.tasks.reproduce.PAPER``, copied into the results)."""
    names = {"raw": "raw attention", "rollout": "rollout", "flow": "flow"}
    rows = ["| | blank-out | input gradients |", "|---|---:|---:|"]
    for m, name in names.items():
        rows.append(f"| {name} | {_paper(results, 'blankout', m)} | {_paper(results, 'gradient', m)} |")
    return "\n".join(rows)


def sva_saturation(results: dict[str, Any]) -> str:
    """Per layer, the share of raw flow values into [CLS] at their source bound."""
    sat = results["saturation"]
    n = len(sat["all_tokens"])
    rows = [
        "| share at the bound | " + " | ".join(f"L{layer + 1}" for layer in range(n)) + " |",
        "|---|" + "---:|" * n,
        "| every token | " + " | ".join(f"{v:.3f}" for v in sat["all_tokens"]) + " |",
        "| words | " + " | ".join(f"{v:.3f}" for v in sat["words"]) + " |",
        "| sentences with every word at the bound | "
        + " | ".join(f"{v:.3f}" for v in sat["examples_all_words"])
        + " |",
    ]
    return "\n".join(rows)


def sva_subject_first(results: dict[str, Any]) -> str:
    """How often each method scores the subject above every attractor, per layer."""
    plaus = results["plausibility"]
    n = results["n_layers"]
    rows = ["| method | " + " | ".join(f"L{layer + 1}" for layer in range(n)) + " |", "|---|" + "---:|" * n]
    for m, rates in plaus["methods"].items():
        rows.append(f"| {m} | " + " | ".join(_rate(r) for r in rates) + " |")
    return "\n".join(rows)


def sva_train(report: dict[str, Any]) -> str:
    """The bundled SVA model's accuracies (its train_report.json)."""
    history = ", ".join(f"{v:.4f}".rstrip("0").rstrip(".") if v != 1 else "1.000" for v in report["history"])
    return "\n".join(
        [
            "| | ours | paper |",
            "|---|---:|---:|",
            f"| test accuracy | {report['test_accuracy']:.3f} ({report['n_test']} sentences) | 0.96 |",
            f"| with attractors | {report['test_accuracy_attractors']:.3f} "
            f"({report['test_attractor_examples']} sentences) | – |",
            f"| validation accuracy after each epoch | {history} | – |",
            f"| training time | {report['train_seconds']:.0f} s wall, {report['train_cpu_seconds']:.0f} s CPU | – |",
        ]
    )


def digits_faithfulness(results: dict[str, Any]) -> str:
    """Deletion and insertion AUC per method, mean ± sd over images."""
    rows = ["| method | deletion AUC ↓ | insertion AUC ↑ |", "|---|---|---|"]
    for name, values in results["summary"].items():
        d, i = values["deletion_auc"], values["insertion_auc"]
        rows.append(f"| {name} | {d[0]:.3f} ± {d[1]:.3f} | {i[0]:.3f} ± {i[1]:.3f} |")
    return "\n".join(rows)


def digits_train(report: dict[str, Any]) -> str:
    """The bundled digits-vit's accuracies (its train_report.json)."""
    return "\n".join(
        [
            "| | |",
            "|---|---|",
            f"| test accuracy ({report['n_test']} images) | **{report['test_accuracy']:.3f}** |",
            f"| training accuracy | {report['train_accuracy']:.3f} |",
            f"| training time | {report['seconds']:.0f} s, one torch thread, on a 2-core machine shared with "
            "other jobs (load average about 5) |",
        ]
    )


def _signed(pair: Any) -> str:
    """``+0.04 ± 0.32``, as ``attnflow evaluate`` prints it."""
    mean, sd = (float("nan") if v is None else float(v) for v in pair)
    if mean != mean:
        return "–"
    return f"{mean:+.2f} ± {sd:.2f}" if sd == sd else f"{mean:+.2f}"


def evaluation_by_layer(truth: str, only: tuple[str, ...] | None = None) -> Callable[[dict[str, Any]], str]:
    """An ``attnflow evaluate`` results file: correlation with ``truth`` per layer and method (``only`` these)."""

    def render(results: dict[str, Any]) -> str:
        methods = [m for m in results["methods"] if only is None or m in only]
        rows = ["| layer | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
        for layer in range(results["n_layers"]):
            cells = [_signed(results["correlation"][truth][m][layer]) for m in methods]
            rows.append(f"| {layer + 1} | " + " | ".join(cells) + " |")
        return "\n".join(rows)

    return render


def evaluation_faithfulness(results: dict[str, Any]) -> str:
    """An ``attnflow evaluate`` results file: AOPC comprehensiveness and sufficiency per method and random."""
    rows = ["| method | AOPC comprehensiveness | AOPC sufficiency |", "|---|---:|---:|"]
    for name, values in results["faithfulness"]["methods"].items():
        rows.append(
            f"| {name} | {_signed(values['aopc_comprehensiveness'])} | {_signed(values['aopc_sufficiency'])} |"
        )
    return "\n".join(rows)


def heads_gates(results: dict[str, Any]) -> str:
    """Stochastic-gate pruning on SVA, the model frozen against fine-tuned with the gates.

    ``attnflow reproduce heads-gates --out DIR`` wrote the results and prints this table too.
    """
    from attnflow.tasks.gate_comparison import to_markdown

    return to_markdown(results)


def heads_top(results: dict[str, Any], count: int = 8) -> str:
    """An ``attnflow heads`` heads.json: the most important heads with their roles and role scores."""
    scores = results["scores"]
    order = sorted(
        ((layer, head) for layer in range(results["n_layers"]) for head in range(results["n_heads"])),
        key=lambda lh: -scores["importance"][lh[0]][lh[1]],
    )
    rows = [
        "| rank | head | roles | importance | relevance | confidence | previous_max | next_max | rare_max |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for rank, (layer, head) in enumerate(order[:count], start=1):
        roles = ", ".join(results["roles"][layer][head]) or "–"
        cells = [f"{scores['importance'][layer][head]:.3g}"] + [
            _rate(scores[name][layer][head]) for name in ("relevance", "confidence", "previous_max", "next_max",
                                                          "rare_max")
        ]
        rows.append(f"| {rank} | L{layer + 1}H{head + 1} | {roles} | " + " | ".join(cells) + " |")
    ranks = [rank for rank, (layer, head) in enumerate(order, start=1) if results["roles"][layer][head]]
    total = results["n_layers"] * results["n_heads"]
    rows.append(
        f"| | {len(ranks)} of {total} heads have a role; their importance ranks: "
        f"{', '.join(map(str, ranks)) or 'none'} | | | | | | | |"
    )
    return "\n".join(rows)


def heads_roles(results: dict[str, Any]) -> str:
    """An ``attnflow heads`` heads.json: every head with a role, in importance order, with its scores.

    On a model with hundreds of heads the specialised ones rarely reach :func:`heads_top`'s rows; this
    table lists them all, with their importance rank among every head. A syntactic role shows the
    head's accuracy on that relation against the relation's positional baseline (best direction).
    """
    scores = results["scores"]
    heads = [(layer, head) for layer in range(results["n_layers"]) for head in range(results["n_heads"])]
    rank = {lh: r for r, lh in enumerate(sorted(heads, key=lambda lh: -scores["importance"][lh[0]][lh[1]]), 1)}
    syntactic = results.get("syntactic") or {}

    def relation_cell(relation: str, layer: int, head: int) -> str:
        found = syntactic[relation]
        accuracy = {d: values[layer][head] for d, values in found["accuracy"].items()
                    if values[layer][head] is not None}
        direction = max(accuracy, key=accuracy.get)
        return (f"{relation} {accuracy[direction]:.2f} "
                f"(baseline {found['baseline'][direction]:.2f})")

    rows = ["| head | roles | importance rank | previous_max | rare_max | syntactic accuracy |",
            "|---|---|---:|---:|---:|---|"]
    for layer, head in sorted((lh for lh in heads if results["roles"][lh[0]][lh[1]]), key=rank.get):
        roles = results["roles"][layer][head]
        relations = "; ".join(relation_cell(r, layer, head) for r in roles if r in syntactic) or "–"
        rows.append(f"| L{layer + 1}H{head + 1} | {', '.join(roles)} | {rank[(layer, head)]} of {len(heads)} | "
                    f"{_rate(scores['previous_max'][layer][head])} | {_rate(scores['rare_max'][layer][head])} | "
                    f"{relations} |")
    if len(rows) == 2:
        rows.append("| none | | | | | |")
    return "\n".join(rows)


def seq2seq_plausibility(results: dict[str, Any]) -> str:
    """``attnflow reproduce reverse``: how often each method ranks the aligned source digit first, per layer."""
    n = results["decoder_layers"]
    rows = ["| method | " + " | ".join(f"decoder layer {layer + 1}" for layer in range(n)) + " |",
            "|---|" + "---:|" * n]
    for m, rates in results["methods"].items():
        rows.append(f"| {m} | " + " | ".join(_rate(r) for r in rates) + " |")
    rows.append("| random ranking | " + " | ".join(_rate(results["chance"]) for _ in range(n)) + " |")
    return "\n".join(rows)


def seq2seq_correlation(results: dict[str, Any]) -> str:
    """``attnflow reproduce reverse``: Spearman with blank-out and input gradients, per decoder layer and method."""
    found = results["correlation"]
    n = found["decoder_layers"]
    truths = found["ground_truths"]
    header = "| method | " + " | ".join(f"{_TRUTH[t]}: layer {layer + 1}" for t in truths for layer in range(n))
    rows = [header + " |", "|---|" + "---:|" * (n * len(truths))]
    for m in found["methods"]:
        cells = [_pair(found["correlation"][t][m][layer]) for t in truths for layer in range(n)]
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def reverse_train(report: dict[str, Any]) -> str:
    """The bundled reverse model's accuracy (its train_report.json)."""
    return "\n".join(
        [
            "| | |",
            "|---|---|",
            f"| exact match, greedy decoding ({report['test_examples']} held-out sources) | "
            f"**{report['exact_match']:.3f}** |",
            f"| token accuracy | {report['token_accuracy']:.3f} |",
            f"| training | {report['steps']} steps of {report['batch_size']} examples, {report['seconds']:.0f} s on "
            "the CPU |",
        ]
    )


_TRUTH_SHORT = {"blankout": "blank-out", "gradient": "gradient", "saliency": "saliency", "grad_x_input": "grad × input",
                "integrated_gradients": "integrated gradients"}


def _shown_truths(results: dict[str, Any]) -> list[str]:
    """Every ground truth, but ``gradient`` only from a file made with the gradients at the first layer's input.

    Older files (no ``options.yardsticks``) took ``|sum_d g|`` at the word embedding, where a LayerNorm
    makes it float32 round-off; on a model where it is zero by construction (``gradient_defined`` false) it
    is undefined in every row, and the column is left out (the text says so).
    """
    yardsticks = (results.get("options") or {}).get("yardsticks")
    if yardsticks and yardsticks.get("gradient_defined", True):
        return list(results["ground_truths"])
    return [t for t in results["ground_truths"] if t != "gradient"]


def mixing_top(results: dict[str, Any]) -> str:
    """An ``attnflow evaluate --graph ...`` results file: per GRAPH/METHOD, the top layer's correlations and AOPCs."""
    top, truths = results["n_layers"] - 1, _shown_truths(results)
    faith = results["faithfulness"]["methods"]
    header = "| graph | method | " + " | ".join(f"ρ {_TRUTH_SHORT[t]}" for t in truths)
    header += " | AOPC comp. ↑ | AOPC suff. ↓ |" if faith else " |"
    rows = [header, "|---|---|" + "---:|" * (len(truths) + (2 if faith else 0))]
    for key in results["methods"]:
        graph, _, method = key.rpartition("/")
        cells = [_signed(results["correlation"][t][key][top]) for t in truths]
        if faith:
            cells += [_signed(faith[key]["aopc_comprehensiveness"]), _signed(faith[key]["aopc_sufficiency"])]
        rows.append(f"| {graph or 'attention'} | {method} | " + " | ".join(cells) + " |")
    if faith and "random" in faith:
        blank = " | ".join("" for _ in truths)
        rows.append(f"| random | | {blank} | {_signed(faith['random']['aopc_comprehensiveness'])} | "
                    f"{_signed(faith['random']['aopc_sufficiency'])} |")
    return "\n".join(rows)


def baselines_top(results: dict[str, Any]) -> str:
    """Attention and attribution methods side by side: top-layer correlations and AOPCs, ranked by comprehensiveness.

    An attribution method's own yardstick is ``own`` (never correlated with it).
    """
    top, truths = results["n_layers"] - 1, _shown_truths(results)
    faith = results["faithfulness"]["methods"]
    inputs = results["options"].get("input_methods") or {}
    header = "| rank | method | layer | " + " | ".join(f"ρ {_TRUTH_SHORT[t]}" for t in truths)
    rows = [header + " | AOPC comp. ↑ | AOPC suff. ↓ |", "|---:|---|---|" + "---:|" * (len(truths) + 2)]

    def comprehensiveness(name: str) -> float:
        mean = faith[name]["aopc_comprehensiveness"][0]
        return -float("inf") if mean is None else float(mean)

    for rank, name in enumerate(sorted(faith, key=comprehensiveness, reverse=True), start=1):
        own = (inputs.get(name) or {}).get("not_correlated_with")
        if name in results["correlation"][truths[0]]:
            cells = ["own" if t == own else _signed(results["correlation"][t][name][top]) for t in truths]
        else:  # the random baseline of faithfulness only
            cells = ["" for _ in truths]
        layer = "input" if name in inputs else ("" if name == "random" else str(top + 1))
        cells += [_signed(faith[name]["aopc_comprehensiveness"]), _signed(faith[name]["aopc_sufficiency"])]
        rows.append(f"| {rank} | {name} | {layer} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def mixing_saturation(results: dict[str, Any]) -> str:
    """``docs/results/mixing-saturation.json``: per graph, the share of top-layer flow values at their source bound."""
    runs = [(model, output, found) for model, entry in results["models"].items()
            for output, found in entry["outputs"].items()]
    graphs = list(dict.fromkeys(name for _, _, found in runs for name in found["graphs"]))
    rows = ["| graph | " + " | ".join(f"{model}, {output}: words (every token)" for model, output, _ in runs) + " |",
            "|---|" + "---:|" * len(runs)]
    for name in graphs:
        cells = []
        for _, _, found in runs:
            share = found["graphs"].get(name)
            cells.append("not defined" if share is None else f"{share['words']:.2f} ({share['all_tokens']:.2f})")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


#: Every table: marker name -> (results file, renderer).
_PRECISION_METHODS = ("raw", "rollout", "flow", "grad-rollout")


def capture_precision(results: dict[str, Any]) -> str:
    """``benchmarks/capture.py --precision``: half precision against float32 on MiniLM (docs/capture.md)."""
    rows = [
        "| dtype | largest row correction | raw | rollout | flow | grad-rollout | least Spearman per layer |",
        "|---|---|---|---|---|---|---|",
    ]
    for dtype in ("bfloat16", "float16"):
        found = results[dtype]["methods"]
        cells = [f"{100 * found[m]['max_relative_difference']:.3f} %" for m in _PRECISION_METHODS]
        least = min(found[m]["min_spearman"] for m in _PRECISION_METHODS)
        correction = results[dtype]["max_row_correction"]
        rows.append(f"| {dtype} | {correction:.1e} | " + " | ".join(cells) + f" | {least:.3f} |")
    return "\n".join(rows)


def image_precision(results: dict[str, Any]) -> str:
    """``benchmarks/image_precision.py``: half precision against float32 on digits-vit (docs/vision.md)."""
    rows = [
        "| dtype | largest row correction | raw | rollout | flow | grad-rollout | least Spearman per layer | "
        "same class |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        cells = [f"{100 * row['relative'][m]:.3f} %" for m in _PRECISION_METHODS]
        rows.append(
            f"| {row['dtype']} | {row['row_correction']:.1e} | " + " | ".join(cells)
            + f" | {row['least_spearman']:.3f} | {row['same_prediction']} of {row['digits']} |"
        )
    return "\n".join(rows)


def _cell(row: dict[str, Any], key: str, unit: str, digits: int = 2) -> str:
    return f"{row[key]:.{digits}f} {unit}" if key in row else "-"


def capture_table(rows: list[dict[str, Any]]) -> str:
    """Every job of ``benchmarks/capture.py`` per length (docs/capture.md); a job not run shows as ``-``."""
    lines = [
        "| tokens | plain forward | streamed capture | time ratio | streamed memory | target | "
        "output_attentions=True | its memory | rollout | explain raw+rollout | explain grad-rollout | "
        "8 B shape: streamed / returned |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        big = row["extrapolated_8b"]
        ratio = "-"
        if "ratio_forward_s" in row:  # the timing job: both alternately in one process
            ratio = f"{row['ratio_streamed_s'] / row['ratio_forward_s']:.2f}"
        elif "forward_s" in row and "streamed_s" in row:  # two processes, one after the other
            ratio = f"{row['streamed_s'] / row['forward_s']:.2f}"
        lines.append(
            f"| {row['tokens']} | {_cell(row, 'forward_s', 's')} | {_cell(row, 'streamed_s', 's')} | {ratio} | "
            f"{_cell(row, 'streamed_mb', 'MB', 0)} | ≤ {row['memory_target_mb']:.0f} MB | "
            f"{_cell(row, 'returned_s', 's')} | {_cell(row, 'returned_mb', 'MB', 0)} | "
            f"{_cell(row, 'rollout_s', 's')} | "
            f"{_cell(row, 'explain_s', 's')}, {_cell(row, 'explain_mb', 'MB', 0)} | "
            f"{_cell(row, 'grad_s', 's')}, {_cell(row, 'grad_mb', 'MB', 0)} | "
            f"{big['streamed_gb']:.1f} GB / {big['returned_gb']:.0f} GB |"
        )
    return "\n".join(lines)


def capture_benchmark(results: dict[str, Any]) -> str:
    """``benchmarks/capture.py --json``: the full table of one run."""
    return capture_table(results["rows"])


def capture_memory(results: dict[str, Any]) -> str:
    """The README's memory table from the same run: fused against every head, and the 8 B shape."""
    lines = [
        "| tokens | memory beyond the model: heads fused while the model runs | target | plain eager forward, "
        "nothing kept | every head, `output_attentions=True` | 8 B shape (32 × 32 heads): fused / every head |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["rows"]:
        big = row["extrapolated_8b"]
        lines.append(
            f"| {row['tokens']} | {_cell(row, 'streamed_mb', 'MB', 0)} | ≤ {row['memory_target_mb']:.0f} MB | "
            f"{_cell(row, 'forward_mb', 'MB', 0)} | {_cell(row, 'returned_mb', 'MB', 0)} | "
            f"{big['streamed_gb']:.1f} GB / {big['returned_gb']:.0f} GB |"
        )
    return "\n".join(lines)


def capture_timing(results: dict[str, Any]) -> str:
    """``benchmarks/capture.py --jobs timing``: plain forward and streamed capture alternately, their ratio."""
    lines = ["| tokens | plain eager forward | streamed capture | ratio |", "|---|---:|---:|---:|"]
    for row in results["rows"]:
        forward, streamed = row["ratio_forward_s"], row["ratio_streamed_s"]
        lines.append(f"| {row['tokens']} | {forward:.2f} s | {streamed:.2f} s | {streamed / forward:.2f} |")
    return "\n".join(lines)


def capture_smollm2(results: dict[str, Any]) -> str:
    """``benchmarks/capture.py --smollm2``: the real LM's fused capture and last-position rollout, or why not."""
    lines = [
        "| tokens | fused capture (float32) | capture time | its memory beyond the model | rollout of the last "
        "position | its memory beyond the capture | load average before / after |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in results["rows"]:
        load = f"{row['load_average_before'][0]:.1f} / {row['load_average_after'][0]:.1f}"
        if "skipped" in row:
            lines.append(f"| {row['tokens']} | {row['fused_mb']:.0f} MB | {row['skipped']} | | | | {load} |")
            continue
        lines.append(
            f"| {row['tokens']} | {row['capture_array_mb']:.0f} MB | {duration(row['streamed_s'])} | "
            f"{row['streamed_mb']:.0f} MB | {duration(row['rollout_s'])} | {row['rollout_mb']:.0f} MB | {load} |"
        )
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """A time in ms, s, min or h, as the flow table and ``benchmarks/flow.py`` print it."""
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


FLOW_JOBS = {"top": "[CLS], top layer", "layers": "[CLS], every layer", "all": "every output, every layer"}


def _ratios(entry: dict[str, Any], column: str) -> str:
    """``12× / 19×``: the worst and the median ratio over a case's inputs."""

    def one(value: float) -> str:
        return f"{value:,.0f}×" if value >= 10 else f"{value:.1f}×"

    return f"{one(entry[column]['worst'])} / {one(entry[column]['median'])}"


def flow_benchmark(results: Any) -> str:
    """``benchmarks/flow.py --json``: attnflow against scipy (integer) and igraph, worst / median over the inputs."""
    lines = [
        "| attention | job | inputs | attnflow (median) | on 1 thread | vs scipy (integer) | on 1 thread | "
        "vs igraph | on 1 thread | largest error vs igraph |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in results["summary"]:
        lines.append(
            f"| {entry['case']} | {FLOW_JOBS[entry['job']]} | {entry['inputs']} | {duration(entry['attnflow_s'])} | "
            f"{duration(entry['attnflow_1thread_s'])} | {_ratios(entry, 'scipy_ratio')} | "
            f"{_ratios(entry, 'scipy_ratio_1thread')} | {_ratios(entry, 'igraph_ratio')} | "
            f"{_ratios(entry, 'igraph_ratio_1thread')} | {entry['max_error_vs_igraph']:.0e} |"
        )
    return "\n".join(lines)


def flow_smollm2(results: Any) -> str:
    """``benchmarks/flow.py --models smollm2 --json``: the 30-layer LM, at its last position (docs/flow.md)."""
    return flow_benchmark(results).replace("[CLS]", "last position")


def flow_long(results: Any) -> str:
    """``benchmarks/flow_long.py --json``: certified flow intervals on long prompts (docs/flow.md)."""
    lines = [
        "| model | layers | tokens | tolerance | solver (wall) | CPU | rounds | arcs: first / last sparse graph, "
        "full graph | widest interval | complete | exact solver's estimate | load |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|",
    ]
    for row in results:
        arcs = f"{row['arcs_first']:,} / {row['arcs_last']:,}, {row['arcs_full']:,}"
        lines.append(
            f"| {row['model']} | {row['layers']} | {row['tokens']:,} | {row['tolerance']:g} | "
            f"{duration(row['solver_s'])} | {duration(row['cpu_s'])} | {row['rounds']} | {arcs} | "
            f"{row['widest']:.1e} | {'yes' if row['complete'] else 'no (budget)'} | "
            f"{duration(row['exact_estimate_s'])} | {row['load']:.1f} |"
        )
    return "\n".join(lines)


def agreement_top(results: dict[str, Any]) -> str:
    """Each method at the agreement run's top layer: ρ with every yardstick, and subject above attractors."""
    layer = results["n_layers"]
    truths = results["ground_truths"]
    plausible = results["plausibility"]["methods"]
    lines = ["| method | " + " | ".join(f"ρ with {_TRUTH.get(t, t)}" for t in truths) + " | subject first |",
             "|---|" + "---:|" * (len(truths) + 1)]
    for method in results["methods"]:
        cells = [_signed(results["correlation"][t][method][layer - 1]) for t in truths]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {_rate(plausible[method]['top_layer'])} |")
    return "\n".join(lines)


def agreement_blanks(results: dict[str, Any]) -> str:
    """``scripts/agreement_blanks.py``: the study's top-layer correlations with blank-out under each replacement."""
    blanks = results["blanks"]
    methods = list(results["per_blank"][blanks[0]]["top_layer_correlation"])
    lines = ["| blank-out replacement | " + " | ".join(f"{m}: ρ with blank-out" for m in methods)
             + " | blank-out: subject first |",
             "|---|" + "---:|" * (len(methods) + 1)]
    for blank in blanks:
        found = results["per_blank"][blank]
        cells = [_signed(found["top_layer_correlation"][m]) for m in methods]
        shown = blank.replace("|", "\\|")  # a pipe inside a table cell must be escaped, code span or not
        lines.append(f"| `{shown}` | " + " | ".join(cells) + f" | {_rate(found['subject_first'])} |")
    between = results["blankout_between_blanks"]
    lines.append(f"| ρ between the two blank-outs, per sentence | {between['mean']:.2f} ± {between['sd']:.2f} |"
                 + " |" * len(methods))
    return "\n".join(lines)


def agreement_accuracy(results: dict[str, Any]) -> str:
    from attnflow.tasks.agreement import accuracy_table

    return accuracy_table(results)


def agreement_cuts(results: dict[str, Any]) -> str:
    from attnflow.tasks.agreement import cut_table

    layers = sorted({1, 2, 5, 10, 15, 20, 25, results["n_layers"]})
    return cut_table(results, layers)


TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "sva-paper-only": ("sva", sva_paper_only),
    "sva-train": ("sva-train", sva_train),
    "sva-blankout-words": ("sva", sva_by_layer("blankout", "words")),
    "sva-blankout-with_cls": ("sva", sva_by_layer("blankout", "with_cls")),
    "sva-paper-words": ("sva", sva_paper("words")),
    "sva-paper-with_cls": ("sva", sva_paper("with_cls")),
    "sva-saturation": ("sva", sva_saturation),
    "sva-subject-first": ("sva", sva_subject_first),
    "readme-sva": ("sva", readme_sva),
    "digits-faithfulness": ("digits-faithfulness", digits_faithfulness),
    "mixing-digits": ("mixing-digits", digits_faithfulness),
    "digits-train": ("digits-train", digits_train),
    "minilm-blankout": ("evaluation-minilm", evaluation_by_layer("blankout")),
    "minilm-gradient": ("evaluation-minilm", evaluation_by_layer("gradient")),
    "minilm-grad_x_input": ("evaluation-minilm", evaluation_by_layer("grad_x_input")),
    "minilm-saliency": ("evaluation-minilm", evaluation_by_layer("saliency")),
    "baselines-minilm": ("baselines-minilm", baselines_top),
    "baselines-sva": ("baselines-sva", baselines_top),
    "sva-gradients": ("baselines-sva", sva_gradients),
    "minilm-integrated_gradients": ("evaluation-minilm", evaluation_by_layer("integrated_gradients")),
    "minilm-faithfulness": ("evaluation-minilm", evaluation_faithfulness),
    "mixing-minilm": ("mixing-minilm", mixing_top),
    "mixing-sva": ("mixing-sva", mixing_top),
    "mixing-saturation": ("mixing-saturation", mixing_saturation),
    "heads-gates-sva": ("heads-gates-sva", heads_gates),
    "seq2seq-reverse": ("seq2seq-reverse", seq2seq_plausibility),
    "seq2seq-reverse-correlation": ("seq2seq-reverse", seq2seq_correlation),
    "reverse-train": ("reverse-train", reverse_train),
    "heads-top-sva": ("heads-sva", heads_top),
    "heads-top-minilm": ("heads-minilm", heads_top),
    "heads-top-smollm2": ("heads-smollm2", heads_top),
    "heads-roles-smollm2": ("heads-smollm2", heads_roles),
    "heads-top-smollm2-sva": ("heads-smollm2-sva", heads_top),
    "heads-roles-smollm2-sva": ("heads-smollm2-sva", heads_roles),
    "capture-precision": ("capture-precision", capture_precision),
    "image-precision": ("image-precision", image_precision),
    "capture-benchmark": ("capture-benchmark", capture_benchmark),
    "capture-memory": ("capture-benchmark", capture_memory),
    "capture-timing": ("capture-timing", capture_timing),
    "capture-long": ("capture-long", capture_benchmark),
    "flow-benchmark": ("flow-benchmark", flow_benchmark),
    "capture-smollm2": ("capture-smollm2", capture_smollm2),
    "flow-long": ("flow-long", flow_long),
    "flow-smollm2": ("flow-smollm2", flow_smollm2),
    "agreement-accuracy": ("agreement-smollm2", agreement_accuracy),
    "agreement-top": ("agreement-smollm2", agreement_top),
    "agreement-cuts": ("agreement-smollm2", agreement_cuts),
    "agreement-blanks": ("agreement-blanks", agreement_blanks),
}


def load(source: str, root: Path = ROOT) -> dict[str, Any]:
    """A results file by its short name in :data:`SOURCES`."""
    return json.loads((root / SOURCES[source]).read_text(encoding="utf-8"))


def render(name: str, root: Path = ROOT, cache: dict[str, Any] | None = None) -> str:
    """The table ``name`` as its results file gives it."""
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES)}")
    source, renderer = TABLES[name]
    cache = {} if cache is None else cache
    if source not in cache:
        cache[source] = load(source, root)
    return renderer(cache[source])


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and docs/*.md."""
    out: list[Path] = []
    for pattern in DOCUMENTS:
        out.extend(sorted(root.glob(pattern)))
    return out


def marked_tables(text: str) -> list[tuple[str, int, int]]:
    """``(name, first line, end line)`` of every marked table in a document (line indices, end exclusive)."""
    lines = text.split("\n")
    found = []
    for index, line in enumerate(lines):
        match = MARKER.match(line)
        if not match:
            continue
        start = index + 1
        end = start
        while end < len(lines) and lines[end].startswith("|"):
            end += 1
        found.append((match.group(1), start, end))
    return found


def update(text: str, root: Path = ROOT, cache: dict[str, Any] | None = None) -> str:
    """The document with every marked table replaced by its rendering."""
    lines = text.split("\n")
    for name, start, end in reversed(marked_tables(text)):
        lines[start:end] = render(name, root, cache).split("\n")
    return "\n".join(lines)


def check(root: Path = ROOT) -> list[str]:
    """One line per marked table that differs from its results file (empty when all agree)."""
    problems = []
    cache: dict[str, Any] = {}
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        for name, start, end in marked_tables(text):
            try:
                expected = render(name, root, cache)
            except KeyError as exc:
                problems.append(f"{path.relative_to(root)}:{start}: {exc}")
                continue
            except FileNotFoundError:
                problems.append(f"{path.relative_to(root)}:{start}: table {name!r}: no {SOURCES[TABLES[name][0]]}")
                continue
            if "\n".join(lines[start:end]) != expected:
                problems.append(
                    f"{path.relative_to(root)}:{start}: table {name!r} differs from {SOURCES[TABLES[name][0]]}"
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/doc_tables.py", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when a table differs")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for line in problems:
            print(line)
        return 1 if problems else 0
    cache: dict[str, Any] = {}
    for path in documents():
        text = path.read_text(encoding="utf-8")
        new = update(text, ROOT, cache)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
