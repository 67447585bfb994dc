"""A report's evaluation section: what it shows of an ``evaluate`` or ``reproduce`` results JSON, checked."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ..errors import AttnflowError


def evaluation_summary(data: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an evaluation results JSON a report shows, checked.

    ``correlation`` must be ``{ground_truth: {method: [[mean, sd], ...per layer]}}``
    (``null`` for undefined values); ``faithfulness``, ``target``, ``model``,
    ``n_examples``, and from ``reproduce`` the ``paper``'s reference values and
    the model's ``accuracy``, are optional.

    Examples
    --------
    >>> evaluation_summary({"correlation": {"gradient": {"raw": [[0.1, None]]}}})["correlation"]
    {'gradient': {'raw': [[0.1, None]]}}
    """
    correlation = data.get("correlation")
    problem = "The results' 'correlation' must map ground truths to {method: [[mean, sd], ...per layer]}"
    if not isinstance(correlation, Mapping) or not correlation:
        raise AttnflowError(f"{problem}; got {type(correlation).__name__}.")
    clean: dict[str, dict[str, list[list[float | None]]]] = {}
    for truth, per_method in correlation.items():
        if not isinstance(per_method, Mapping):
            raise AttnflowError(f"{problem}; {truth!r} holds {type(per_method).__name__}.")
        clean[str(truth)] = {}
        for method, rows in per_method.items():
            if not isinstance(rows, list) or not all(isinstance(r, (list, tuple)) and len(r) == 2 for r in rows):
                raise AttnflowError(f"{problem}; {truth!r} / {method!r} is not a list of [mean, sd] pairs.")
            clean[str(truth)][str(method)] = [[_number(r[0]), _number(r[1])] for r in rows]
    summary: dict[str, Any] = {"correlation": clean}
    target = data.get("target")
    if isinstance(target, Mapping):
        target = target.get("spec", target.get("description", json.dumps(target, sort_keys=True)))
    summary["target"] = None if target is None else str(target)
    summary["model"] = str(data.get("model", ""))
    summary["n_examples"] = data.get("n_examples") if isinstance(data.get("n_examples"), int) else None
    summary["output"] = None if data.get("output") is None else str(data.get("output"))
    counts = data.get("correlation_counts")
    summary["correlation_counts"] = counts if isinstance(counts, Mapping) else None
    faithfulness = data.get("faithfulness")
    summary["faithfulness"] = _faithfulness(faithfulness) if isinstance(faithfulness, Mapping) else None
    summary["paper"] = _paper(data.get("paper"))
    accuracy = data.get("accuracy")
    if isinstance(accuracy, Mapping):  # reproduce writes {"accuracy": overall, "accuracy_attractors": ...}
        accuracy = accuracy.get("accuracy", accuracy.get("overall"))
    summary["accuracy"] = _number(accuracy)
    return summary


def _faithfulness(data: Mapping[str, Any]) -> dict[str, Any] | None:
    methods = data.get("methods")
    if not isinstance(methods, Mapping) or not methods:
        return None
    clean: dict[str, Any] = {}
    for name, values in methods.items():
        if not isinstance(values, Mapping):
            continue
        clean[str(name)] = {
            key: _pair(values.get(key)) for key in ("aopc_comprehensiveness", "aopc_sufficiency")
        }
        for key in ("comprehensiveness", "sufficiency"):
            per = values.get(key)
            if isinstance(per, Mapping):
                clean[str(name)][key] = {str(k): _pair(v) for k, v in per.items()}
    layer = data.get("layer")
    return {
        "layer": layer if isinstance(layer, int) else None,
        "percents": [p for p in data.get("percents", []) if isinstance(p, (int, float))],
        "removal": None if data.get("removal") is None else str(data.get("removal")),
        "methods": clean,
    }


def _pair(value: Any) -> list[float | None]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return [_number(value[0]), _number(value[1])]
    return [_number(value), None]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _paper(value: Any) -> dict[str, Any] | None:
    """The paper's reference numbers (``reproduce``): ``{layer, source, correlation: {truth: {method: value}}}``."""
    if not isinstance(value, Mapping) or not isinstance(value.get("correlation"), Mapping):
        return None
    correlation = {
        str(truth): {str(m): _number(v) for m, v in per.items() if _number(v) is not None}
        for truth, per in value["correlation"].items()
        if isinstance(per, Mapping)
    }
    layer = value.get("layer")
    return {
        "layer": layer if isinstance(layer, int) and not isinstance(layer, bool) else None,
        "source": str(value.get("source", "")),
        "accuracy": _number(value.get("accuracy")),
        "correlation": correlation,
    }
