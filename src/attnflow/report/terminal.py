"""Terminal tables drawn with rich."""

from __future__ import annotations

import numpy as np
from rich.bar import Bar
from rich.table import Table
from rich.text import Text

from ..explanation import Explanation

_BAR_WIDTH = 10
_COLOURS = ("cyan", "magenta", "green", "yellow", "blue")


def _output_label(explanation: Explanation) -> str:
    if explanation.output == "mean":
        return "the mean of all positions"
    position = int(explanation.output)
    return f"token {position} ({explanation.tokens[position]})"


def explanation_table(explanation: Explanation, layer: int = -1) -> Table:
    """One row per token; per method its score at ``layer`` and a bar scaled to that method's maximum.

    Examples
    --------
    >>> e = Explanation(tokens=["a", "b"], scores={"rollout": np.array([[0.7, 0.3]])}, output=0)
    >>> explanation_table(e).row_count
    2
    """
    n_layers = explanation.n_layers
    shown = layer if layer > 0 else n_layers + 1 + layer
    title = f"Scores for {_output_label(explanation)} after layer {shown} of {n_layers}"
    if explanation.model_name:
        title += f" · {explanation.model_name}"
    caption = "\n".join(f"note: {note}" for note in explanation.notes) or None
    table = Table(title=title, title_justify="left", header_style="bold", caption=caption, caption_justify="left")
    table.add_column("#", justify="right", style="dim", no_wrap=True, min_width=2)
    table.add_column("token", no_wrap=True, max_width=24, overflow="ellipsis")
    columns = []
    for index, method in enumerate(explanation.methods):
        values = explanation.layer_scores(method, layer)
        columns.append((values, np.nanmax(values) if np.any(np.isfinite(values)) else 1.0))
        colour = _COLOURS[index % len(_COLOURS)]
        table.add_column(method, justify="right", style=colour, no_wrap=True, min_width=5)
        table.add_column("", width=_BAR_WIDTH, no_wrap=True)
    labels = explanation.token_labels if shown == n_layers else {}
    for name in labels:
        table.add_column(name, no_wrap=True, style="dim")
    for position, token in enumerate(explanation.tokens):
        style = "dim" if position in explanation.special_positions else ""
        cells: list = [str(position), Text(token, style=style)]
        for index, (values, top) in enumerate(columns):
            value = values[position]
            colour = _COLOURS[index % len(_COLOURS)]
            if np.isnan(value):
                cells += ["–", ""]
                continue
            cells.append(f"{value:.3f}")
            cells.append(Bar(size=top or 1.0, begin=0, end=value, width=_BAR_WIDTH, color=colour))
        cells += [column[position] for column in labels.values()]
        table.add_row(*cells)
    return table
