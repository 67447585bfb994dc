"""Stochastic-gate pruning on the bundled SVA model, the model frozen against fine-tuned with the gates.

The experiment behind ``docs/results/heads-gates-sva.json`` and the table in
``docs/heads.md`` (a few minutes on two CPU cores)::

    attnflow reproduce heads-gates --out DIR    # DIR/results.json is docs/results/heads-gates-sva.json

Both runs see the same training and held-out sentences, penalties, steps, batches and
gate noise (one seed); they differ only in whether the model's weights learn with the
gates (:func:`attnflow.heads.gate_pruning`, ``fine_tune``). The head roles and the
importance ranking come from :func:`attnflow.heads.analyze_heads` on the training
sentences with the generator's dependency arcs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..heads.analysis import analyze_heads
from ..heads.gates import gate_pruning
from . import sva

FORMAT = "attnflow.head_gates_comparison"

#: The protocol of the committed run (kept small enough for a few minutes on a CPU).
DEFAULTS: dict[str, Any] = {
    "n_train": 300, "n_eval": 300, "penalties": (0.01, 0.1, 0.3), "steps": 60, "batch_size": 16,
    "model_learning_rate": 1e-4, "seed": 0,
}


def compare(
    *,
    n_train: int = DEFAULTS["n_train"],
    n_eval: int = DEFAULTS["n_eval"],
    penalties: Sequence[float] = DEFAULTS["penalties"],
    steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"],
    model_learning_rate: float = DEFAULTS["model_learning_rate"],
    seed: int = DEFAULTS["seed"],
    model: str = "sva",
) -> dict[str, Any]:
    """Run the gate sweep on the SVA task with the model frozen and fine-tuned; one JSON-ready dict.

    Examples
    --------
    >>> result = compare(n_train=4, n_eval=4, penalties=(0.0,), steps=1, batch_size=4)
    >>> result["format"], [row["n_kept"] for row in result["frozen"]["rows"]]
    ('attnflow.head_gates_comparison', [48])
    """

    train = sva.generate(n_train, split="train", seed=1)
    held_out = sva.generate(n_eval, split="test", seed=2)
    train_examples = [(e.text, e.label) for e in train]
    eval_examples = [(e.text, e.label) for e in held_out]
    started = time.perf_counter()
    report = analyze_heads(train_examples, model, "gold", dependencies=train)
    analysis_s = time.perf_counter() - started
    runs: dict[str, Any] = {}
    seconds: dict[str, float] = {"analysis": round(analysis_s, 1)}
    for name, fine_tune in (("frozen", False), ("fine_tuned", True)):
        started = time.perf_counter()
        sweep = gate_pruning(
            train_examples, eval_examples, model, penalties=tuple(penalties), steps=steps, batch_size=batch_size,
            seed=seed, importance=report, fine_tune=fine_tune, model_learning_rate=model_learning_rate,
        )
        seconds[name] = round(time.perf_counter() - started, 1)
        runs[name] = sweep.to_dict()
    return {
        "format": FORMAT,
        "version": 1,
        "model": model,
        "task": "sva: train split seed 1, test split seed 2; target gold",
        "n_train": n_train,
        "n_eval": n_eval,
        "roles": report.role_lists(),
        "seconds": seconds,
        **runs,
    }


def to_markdown(result: dict[str, Any]) -> str:
    """The docs' table: per penalty, heads kept and accuracy frozen and fine-tuned, and the fine-tuned survivors.

    Examples
    --------
    >>> row = {"penalty": 0.1, "n_kept": 1, "accuracy": 0.9, "ranking_accuracy": 0.5, "kept": [[True, False]]}
    >>> run = {"n_layers": 1, "n_heads": 2, "unpruned_accuracy": 1.0, "rows": [row]}
    >>> tuned = {**run, "rows": [{**row, "all_heads_accuracy": 1.0}]}
    >>> print(to_markdown({"frozen": run, "fine_tuned": tuned, "roles": [[["previous"], []]]}).splitlines()[-1])
    | 0.1 | 1 / 2 | 0.900 | 0.500 | 1 / 2 | 0.900 | 1.000 | L1H1 (previous) |
    """
    frozen, tuned = result["frozen"], result["fine_tuned"]
    total = frozen["n_layers"] * frozen["n_heads"]
    lines = [
        "| lambda | frozen: heads kept | frozen: accuracy | importance ranking, as many heads: accuracy | "
        "fine-tuned: heads kept | fine-tuned: accuracy | fine-tuned, every head kept: accuracy | "
        "heads the fine-tuned gates keep (roles) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for still, moved in zip(frozen["rows"], tuned["rows"], strict=True):
        kept = [
            f"L{layer + 1}H{head + 1} ({', '.join(result['roles'][layer][head]) or 'none'})"
            for layer, flags in enumerate(moved["kept"]) for head, flag in enumerate(flags) if flag
        ]
        listed = ", ".join(kept) if len(kept) <= 8 else ", ".join(kept[:8]) + f", … (+{len(kept) - 8})"
        ranking = "–" if still.get("ranking_accuracy") is None else f"{still['ranking_accuracy']:.3f}"
        lines.append(
            f"| {still['penalty']:g} | {still['n_kept']} / {total} | {still['accuracy']:.3f} | {ranking} | "
            f"{moved['n_kept']} / {total} | {moved['accuracy']:.3f} | {moved['all_heads_accuracy']:.3f} | "
            f"{listed or '–'} |"
        )
    return "\n".join(lines)
