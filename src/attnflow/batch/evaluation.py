"""An evaluating batch folder read back as one :class:`attnflow.evaluate.EvaluationResult`.

``run_batch(..., evaluation=...)`` evaluates every row alone, as example number
``example`` of the whole data set (the same random baseline as one
:func:`attnflow.evaluate` run over every row), and writes its numbers as Parquet rows.
:func:`evaluation_result` turns the finished folder into the result ``attnflow
evaluate`` reports: per-example scores, ground truths, correlations and faithfulness,
in the order of the data set; skipped rows (empty, too long, failed) are left out and
listed in ``summary.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..evaluate.faithfulness import FaithfulnessScores
from ..evaluate.runner import EvaluationResult, ExampleResult
from .runner import SCORES, _read_manifest, _shard_metadata, _shard_name, _shard_state, read_results, run_fingerprint


def evaluation_result(out: str | os.PathLike[str]) -> Any:
    """The :class:`attnflow.evaluate.EvaluationResult` of a finished evaluating batch folder.

    Raises :class:`AttnflowError` for a folder without a manifest, one made without
    evaluation, or one with shards still to run.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from attnflow.batch import run_batch
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "d.txt").write_text("The cat sat.\\nDogs bark loudly.\\n")
    >>> _ = run_batch(folder / "d.txt", folder / "out", methods="rollout", target="norm", workers=1,
    ...               evaluation={"ground_truths": ["blankout"], "faithfulness": False})
    >>> r = evaluation_result(folder / "out")
    >>> r.n_examples, r.correlation("blankout", "rollout").shape
    (2, (6, 2))
    """

    folder = Path(out)
    manifest = _read_manifest(folder)
    if manifest is None:
        raise AttnflowError(f"{str(folder)!r} is not an attnflow batch folder (it has no manifest.json).")
    if manifest["options"].get("evaluation") is None:
        raise AttnflowError(f"The batch run in {str(folder)!r} was made without evaluation (--evaluate).")
    run = run_fingerprint(manifest)
    missing = [s["shard"] for s in manifest["shards"] if _shard_state(folder / SCORES, s, run, read=False) is not None]
    if missing:
        raise AttnflowError(
            f"The batch run in {str(folder)!r} has {len(missing)} shard(s) still to run; rerun its command to finish."
        )
    settings = None
    for entry in manifest["shards"]:
        settings = _shard_metadata(folder / SCORES / _shard_name(entry["shard"])).get("evaluation") or settings
    frame = read_results(folder)
    methods = list(manifest["options"]["methods"])
    if settings is None:  # every row skipped
        raise AttnflowError(f"No row of the batch run in {str(folder)!r} could be evaluated; see its summary.json.")
    truths, percents = list(settings["ground_truths"]), tuple(int(k) for k in settings["percents"])
    layer = settings["faithfulness_layer"]
    examples = []
    for example, rows in frame.groupby("example", sort=True):
        rows = rows.set_index(["method", "layer"])
        first = rows.iloc[0]
        target = json.loads(first["target"]) if isinstance(first["target"], str) else {}
        scores = {m: np.stack([np.asarray(rows.loc[(m, k), "scores"], dtype=np.float64)
                               for k in range(1, settings["n_layers"] + 1)]) for m in methods}
        ground = {t: np.asarray([np.nan if v is None else v for v in first[f"ground_truth_{t}"]], dtype=np.float64)
                  for t in truths}
        correlations = {
            t: {m: np.asarray([rows.loc[(m, k), f"spearman_{t}"] for k in range(1, settings["n_layers"] + 1)],
                              dtype=np.float64) for m in methods}
            for t in truths
        }
        faithfulness: dict[str, FaithfulnessScores] = {}
        if layer is not None:
            for m in methods:
                row = rows.loc[(m, layer)]
                if not np.isfinite(_number(row.get("faithfulness_full"))):
                    continue  # fewer than two tokens to remove: no faithfulness for this example
                faithfulness[m] = FaithfulnessScores(
                    percents, float(row["faithfulness_full"]),
                    np.array([row[f"comprehensiveness_{k}"] for k in percents], dtype=np.float64),
                    np.array([row[f"sufficiency_{k}"] for k in percents], dtype=np.float64),
                )
                faithfulness.setdefault("random", FaithfulnessScores(
                    percents, float(row["faithfulness_full"]),
                    np.array([row[f"random_comprehensiveness_{k}"] for k in percents], dtype=np.float64),
                    np.array([row[f"random_sufficiency_{k}"] for k in percents], dtype=np.float64),
                ))
        label = first["label"]
        examples.append(ExampleResult(
            index=int(example),
            text=str(first["text"]),
            label=None if _is_missing(label) else (int(label) if isinstance(label, (int, np.integer)) else label),
            tokens=[str(t) for t in first["tokens"]],
            special_positions=tuple(int(i) for i in first["special_positions"]),
            target=target,
            scores=scores,
            ground_truths=ground,
            correlations=correlations,
            faithfulness=faithfulness,
            ig_delta=_optional(first.get("ig_delta")),
            ig_relative_delta=_optional(first.get("ig_relative_delta")),
        ))
    output = settings["output"]
    return EvaluationResult(
        model_name=str(manifest["model"]["name"]),
        target=dict(settings["target"]),
        methods=methods,
        ground_truths=truths,
        n_layers=int(settings["n_layers"]),
        output=int(output) if isinstance(output, int) else output,
        percents=percents,
        faithfulness_layer=layer,
        options=dict(settings["options"]),
        examples=examples,
    )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _number(value: Any) -> float:
    return float("nan") if _is_missing(value) else float(value)


def _optional(value: Any) -> float | None:
    return None if _is_missing(value) else float(value)
