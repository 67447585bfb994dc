"""Judge the methods on an encoder–decoder model: agreement with blank-out and input gradients of the source.

For each (source, target) pair and each explained decoder position, the scalar is
the log-probability of the target token predicted there (teacher forcing). The
ground truths score the *source* tokens (:func:`attnflow.capture.seq2seq.seq2seq_blankout`,
:func:`attnflow.capture.seq2seq.seq2seq_input_gradients`); each method's scores
over the same source tokens, after every decoder layer, are compared with them by
Spearman correlation over the non-special source tokens (the rule of
:mod:`attnflow.evaluate.runner`), and summarised as mean ± sd over the predictions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..capture import load_model
from ..capture.seq2seq import capture_seq2seq, require_seq2seq, seq2seq_blankout, seq2seq_input_gradients
from ..core import check_seq2seq_methods, method_names
from ..errors import AttnflowError
from ..explainers.seq2seq import seq2seq_scores
from ..methods.attribution import check_attribution_options
from .correlation import layer_correlations, mean_sd

#: The ground truths of an encoder–decoder evaluation, in table order.
SEQ2SEQ_GROUND_TRUTHS: tuple[str, ...] = ("blankout", "gradient")
SEQ2SEQ_SUMMARIES: dict[str, str] = {
    "blankout": "|change of the target token's log-probability| when the source token is replaced by the blank token",
    "gradient": "|sum over the embedding axis of the gradient of the target token's log-probability| (input gradients)",
}


def _pairs(pairs: Any) -> list[tuple[str, str]]:
    if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence) or not pairs:
        raise AttnflowError("The 'pairs' parameter must be a non-empty list of (source, target) text pairs.")
    out = []
    for index, pair in enumerate(pairs):
        if (
            not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(text, str) and text.strip() for text in pair)
        ):
            raise AttnflowError(f"Pair {index} must be (source, target), two non-empty strings; got {pair!r:.80}.")
        out.append((pair[0], pair[1]))
    return out


def evaluate_seq2seq(
    pairs: Sequence[tuple[str, str]],
    model: Any = "reverse",
    methods: Sequence[str] = ("raw", "rollout", "flow"),
    *,
    positions: str = "each",
    progress: Callable[[int, int], None] | None = None,
    attribution: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Spearman correlation of each method's source scores with blank-out and input gradients, per decoder layer.

    ``positions``: ``"each"`` explains every target token (at the position that
    predicts it), ``"last"`` only the last one. Attribution methods (``saliency``, ...) score
    the source and the target prefix for the same log-probability
    (:func:`attnflow.explainers.seq2seq.seq2seq_scores`, with ``attribution`` their options);
    none computes a ground truth here (``gradient`` is ``|sum_d g|``, which no attribution
    method is), so each is correlated with both. Returns a JSON-ready dict:
    ``{"correlation": {truth: {method: [[mean, sd] per decoder layer]}}, "predictions", ...}``.

    Examples
    --------
    >>> r = evaluate_seq2seq([("7 2 9", "9 2 7")], "reverse", ["rollout"], positions="last")
    >>> r["predictions"], len(r["correlation"]["blankout"]["rollout"])
    (1, 2)
    """

    items = _pairs(pairs)
    inputs = check_seq2seq_methods(methods)[1]
    names = list(dict.fromkeys(method_names(methods)))  # in the order given
    check_attribution_options(inputs, **{key: value for key, value in (attribution or {}).items()
                                         if key in ("ig_steps", "lime_samples", "max_passes")})
    if positions not in ("each", "last"):
        raise AttnflowError(f"The 'positions' parameter must be 'each' or 'last'; got {positions!r}.")
    loaded = load_model(model)
    require_seq2seq(loaded)
    rows: dict[str, dict[str, list[np.ndarray]]] = {t: {m: [] for m in names} for t in SEQ2SEQ_GROUND_TRUTHS}
    n_layers = 0
    for index, (source, target) in enumerate(items):
        captured = capture_seq2seq(source, loaded, decoder_text=target)
        n_layers = captured.n_decoder_layers
        content = [j for j in range(captured.n_source) if j not in set(captured.source_special)]
        chosen = range(captured.n_target - 1) if positions == "each" else [captured.predicted_position]
        for position in chosen:
            truths = {
                "blankout": seq2seq_blankout(captured, loaded, position),
                "gradient": seq2seq_input_gradients(captured, loaded, position),
            }
            drawn = {**(attribution or {}), "index": len(rows["blankout"][names[0]])}  # random: one draw per prediction
            scores = seq2seq_scores(captured, names, position, model=loaded, attribution=drawn).explanation.scores
            for truth, values in truths.items():
                for method in names:
                    source_scores = scores[method][:, : captured.n_source]
                    rows[truth][method].append(layer_correlations(source_scores, values, content))
        if progress is not None:
            progress(index + 1, len(items))
    count = len(next(iter(rows["blankout"].values())))
    return {
        "format": "attnflow.seq2seq-evaluation",
        "version": 1,
        "model": str(loaded.name),
        "examples": len(items),
        "predictions": count,
        "positions": positions,
        "decoder_layers": n_layers,
        "methods": names,
        "ground_truths": list(SEQ2SEQ_GROUND_TRUTHS),
        "summaries": dict(SEQ2SEQ_SUMMARIES),
        "correlation": {
            truth: {m: [[_round(v) for v in pair] for pair in mean_sd(np.array(rows[truth][m]))] for m in names}
            for truth in SEQ2SEQ_GROUND_TRUTHS
        },
    }


def _round(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 4)
