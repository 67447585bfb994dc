"""The terminal table of an encoder–decoder explanation: a source section, a target section, their shares."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.bar import Bar
from rich.table import Table
from rich.text import Text

_BAR_WIDTH = 10
_COLOURS = ("cyan", "magenta", "green", "yellow", "blue")


def _shown_layer(layer: int, n_layers: int) -> int:
    return layer if layer > 0 else n_layers + 1 + layer


def seq2seq_table(explanation: Any, layer: int = -1) -> Table:
    """One row per source token, then one per decoder position; per method its score after decoder ``layer``.

    ``explanation`` is a :class:`attnflow.explainers.seq2seq.Seq2SeqExplanation`. The
    ``#`` column counts within each sequence (a decoder position is what
    ``--output`` takes), ``part`` says ``source`` or ``target`` (``target ▸`` on the
    explained position), and the caption gives each method's source share: the part
    of its row total on the source tokens.

    Examples
    --------
    >>> from attnflow.explainers.seq2seq import Seq2SeqExplanation
    >>> e = Seq2SeqExplanation(tokens=["a", "</s>", "<pad>", "b"], scores={"raw": [[0.4, 0.1, 0.5, 0.0]]},
    ...                        output=2, seq2seq={"source_length": 2, "position": 0, "predicts": "b"})
    >>> table = seq2seq_table(e)
    >>> table.row_count, table.columns[2].header
    (4, 'part')
    """
    record = explanation.seq2seq or {}
    ns = explanation.source_length
    n_layers = explanation.n_layers
    shown = _shown_layer(layer, n_layers)
    position = int(explanation.output) - ns
    token = explanation.tokens[explanation.output]
    predicts = record.get("predicts")
    what = f"target position {position} ({token})"
    if predicts is not None:
        what += f", which predicts {predicts}"
    title = f"Scores for {what}, after decoder layer {shown} of {n_layers}"
    if explanation.model_name:
        title += f" · {explanation.model_name}"
    lines = [f"note: {note}" for note in explanation.notes]
    shares = ", ".join(
        f"{method} {_number(explanation.source_share(method)[shown - 1])}" for method in explanation.methods
    )
    lines.append(f"source share (the part of each method's total on the source tokens): {shares}")
    log_p = record.get("log_probability")
    if predicts is not None and isinstance(log_p, (int, float)):
        lines.append(f"the model gives {predicts} probability {float(np.exp(log_p)):.3f} there")
    if record.get("generated"):
        lines.append(f"target generated greedily by the model: {record.get('target_text', '')!r}")
    target = explanation.target
    if isinstance(target, dict) and "token" in target:
        lines.append(f"grad-rollout explains the log-probability of {target['token']} ({target.get('kind', '')})")
    table = Table(
        title=title, title_justify="left", header_style="bold", caption="\n".join(lines), caption_justify="left"
    )
    table.add_column("#", justify="right", style="dim", no_wrap=True, min_width=2)
    table.add_column("token", no_wrap=True, max_width=24, overflow="ellipsis")
    table.add_column("part", no_wrap=True, style="dim")
    columns = []
    for index, method in enumerate(explanation.methods):
        values = explanation.layer_scores(method, layer)
        columns.append((values, np.nanmax(values) if np.any(np.isfinite(values)) else 1.0))
        table.add_column(method, justify="right", style=_COLOURS[index % len(_COLOURS)], no_wrap=True, min_width=5)
        table.add_column("", width=_BAR_WIDTH, no_wrap=True)
    for index, name in enumerate(explanation.tokens):
        if index == ns:
            table.add_section()
        source = index < ns
        style = "dim" if index in explanation.special_positions else ""
        if index == explanation.output:
            style = (style + " bold").strip()
        part = "source" if source else ("target ▸" if index == explanation.output else "target")
        cells: list[Any] = [str(index if source else index - ns), Text(name, style=style), part]
        for number, (values, top) in enumerate(columns):
            value = values[index]
            if np.isnan(value):
                cells += ["–", ""]
                continue
            colour = _COLOURS[number % len(_COLOURS)]
            cells += [f"{value:.3f}", Bar(size=top or 1.0, begin=0, end=value, width=_BAR_WIDTH, color=colour)]
        table.add_row(*cells)
    return table


def _number(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.2f}"
