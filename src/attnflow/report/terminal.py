"""Terminal tables drawn with rich."""

from __future__ import annotations

import numpy as np
from rich.bar import Bar
from rich.table import Table
from rich.text import Text

from ..explanation import Explanation
from .stacking import StackingTable

_BAR_WIDTH = 10
_COLOURS = ("cyan", "magenta", "green", "yellow", "blue")


def _output_label(explanation: Explanation) -> str:
    if explanation.output == "mean":
        return "the mean of all positions"
    generation = explanation.generation
    if explanation.output == "answer" and generation is not None:
        count = len(generation.get("answer_ids") or [])
        return f"the answer {_quoted(generation.get('answer', ''))} (mean over its {count} tokens)"
    position = int(explanation.output)
    if generation is not None and explanation.prompt_length is not None and position + 1 < len(explanation.tokens):
        k = position + 1 - explanation.prompt_length
        if k >= 0:
            count = len(generation.get("answer_ids") or [])
            return (
                f"answer token {k + 1} of {count} (token {position + 1}, {explanation.tokens[position + 1]}), "
                f"predicted at token {position} ({explanation.tokens[position]})"
            )
    return f"token {position} ({explanation.tokens[position]})"


def add_key_columns(table: Table, *, part: bool) -> None:
    """The columns every stacked part repeats: ``#``, the token (folded, never cut) and, when asked, ``part``."""
    table.add_column("#", justify="right", style="dim", no_wrap=True, min_width=2)
    table.add_column("token", max_width=24, overflow="fold")
    if part:
        table.add_column("part", no_wrap=True, style="dim")


def add_score_columns(table: Table, method: str, colour: str, title: str | None = None) -> None:
    """A method's score and bar columns, one block (a ``GRAPH/METHOD`` method's block is in that graph's group)."""
    block = {"block": method, "group": _graph(method)} if isinstance(table, StackingTable) else {}
    table.add_column(method if title is None else title, justify="right", style=colour, no_wrap=True, min_width=5,
                     **block)
    table.add_column("", width=_BAR_WIDTH, no_wrap=True, **block)


def _graph(method: str) -> str:
    return method.split("/", 1)[0] if "/" in method else "attention"


def _label_block(name: str, methods: list[str]) -> dict[str, str]:
    """A per-token label column stacks with the method it names first (``flow cut``, ``alti/flow cut``: flow)."""
    named = [method for method in methods if name.startswith(method + " ")]
    if not named:
        return {"group": _graph(name)}
    method = max(named, key=len)
    return {"block": method, "group": _graph(method)}


#: Below this fraction of its column's largest magnitude a score is float64 round-off (n * eps64 is about 1e-13
#: for n <= 1000 tokens), and prints as 0.000 rather than as a number that means nothing.
ROUND_OFF = 1e-12


def score_text(value: float, largest: float = 0.0) -> str:
    """A score as the tables print it: 3 decimals, or 2 significant digits where those would show 0.000.

    Gradient-weighted scores of a generated target can be 1e-5 to 5e-4; printed
    as ``0.000`` their ranking would be invisible. ``largest`` is the largest
    magnitude in the score's column: a value under ``ROUND_OFF`` times it is
    round-off and prints as ``0.000``.

    Examples
    --------
    >>> score_text(0.41234), score_text(0.0), score_text(2.345e-05), score_text(-0.0004)
    ('0.412', '0.000', '2.3e-05', '-4.0e-04')
    >>> score_text(7.1e-16, largest=0.3)
    '0.000'
    """
    if value != 0 and abs(value) < 5e-4 and abs(value) >= ROUND_OFF * largest:
        return f"{value:.1e}"
    return f"{value:.3f}"


def column_largest(values: np.ndarray) -> float:
    """The largest finite magnitude of a score column (0 when it has none), for :func:`score_text`."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


def visible(label: str) -> str:
    r"""``label`` safe to print: control and format characters (a terminal escape, a NUL) as Python escapes.

    Words and tokens come from the user's text; an escape sequence in it would
    otherwise recolour or move the terminal's cursor. Combining marks are kept.

    Examples
    --------
    >>> print(visible("x\x1b[31mRED"))
    x\x1b[31mRED
    """
    return "".join(char if char.isprintable() or char == " " else repr(char)[1:-1] for char in str(label))


def _quoted(text: str, limit: int = 40) -> str:
    flat = " ".join(str(text).split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


def explanation_table(explanation: Explanation, layer: int = -1, *, words: bool = False) -> Table:
    """One row per token; per method its score at ``layer`` and a bar scaled to that method's maximum.

    For a generated answer (``explanation.generation``) a ``part`` column marks the
    prompt and the answer (``answer ▸`` on the token being explained). With
    ``words=True`` (the explanation must have word groups) a row is a word, its
    score the sum of its pieces' scores and ``#`` its token positions.

    Examples
    --------
    >>> e = Explanation(tokens=["a", "b"], scores={"rollout": np.array([[0.7, 0.3]])}, output=0)
    >>> explanation_table(e).row_count
    2
    >>> e = Explanation(tokens=["a", "##b"], scores={"rollout": np.array([[0.7, 0.3]])}, output=0,
    ...                 words={"labels": ["ab"], "groups": [[0, 1]]})
    >>> explanation_table(e, words=True).row_count
    1
    """
    if getattr(explanation, "seq2seq", None) is not None:  # encoder-decoder: source and target sections
        from .seq2seq import seq2seq_table

        return seq2seq_table(explanation, layer)
    if words and explanation.words is None:
        from ..errors import AttnflowError

        raise AttnflowError("This explanation has no word groups; explain with words=True (CLI: --words).")
    n_layers = explanation.n_layers
    shown = layer if layer > 0 else n_layers + 1 + layer
    title = f"Scores for {_output_label(explanation)} after layer {shown} of {n_layers}"
    if explanation.model_name:
        title += f" · {explanation.model_name}"
    lines = [f"note: {note}" for note in explanation.notes]
    graphs = (explanation.options or {}).get("graph")
    if graphs:
        lines.insert(0, f"graphs: {', '.join(map(str, graphs))} (a column GRAPH/METHOD runs METHOD over GRAPH; "
                     "plain names run over attention)")
    if words:
        lines.append(f"words: {explanation.words.rule}")
    if explanation.generation is not None and explanation.output == "answer":
        lines.append(f"answer: {explanation.generation.get('rule', '')}")
    caption = "\n".join(lines) or None
    prompt_length = explanation.prompt_length
    table = StackingTable(title=title, title_justify="left", header_style="bold", caption=caption,
                          caption_justify="left", keys=2 if prompt_length is None else 3)
    add_key_columns(table, part=prompt_length is not None)
    rows = [[p] for p in range(len(explanation.tokens))] if not words else explanation.words.groups
    names = list(explanation.tokens) if not words else list(explanation.words.labels)
    # an image's bars compare its patches: [CLS] and the other prefix tokens get none (their score still shows)
    unbarred = set(explanation.special_positions) if getattr(explanation, "image", None) else set()
    barred = [p for p in range(len(rows)) if rows[p][0] not in unbarred]
    columns = []
    for index, method in enumerate(explanation.methods):
        values = explanation.layer_scores(method, layer)
        if words:
            values = explanation.words.sum_scores(values)
        scaled = values[barred]
        columns.append((values, np.nanmax(scaled) if np.any(np.isfinite(scaled)) else 1.0, column_largest(values)))
        inputs = explanation.options.get("input_methods") or {}  # attribution methods: the input, not a layer
        add_score_columns(table, method, _COLOURS[index % len(_COLOURS)],
                          title=f"{method} (input)" if method in inputs else None)
    labels = explanation.token_labels if shown == n_layers and not words else {}
    for name in labels:
        table.add_column(name, no_wrap=True, style="dim", **_label_block(name, explanation.methods))
    explained = None
    if prompt_length is not None and isinstance(explanation.output, int):
        explained = explanation.output + 1
    for position, (group, token) in enumerate(zip(rows, names, strict=True)):
        first = group[0]
        style = "dim" if first in explanation.special_positions else ""
        answer = prompt_length is not None and first >= prompt_length
        if answer:
            style = (style + " bold").strip()
        index_text = str(first) if len(group) == 1 else f"{first}-{group[-1]}"
        cells: list = [index_text, Text(visible(token), style=style)]
        if prompt_length is not None:
            cells.append("answer ▸" if explained in group else ("answer" if answer else "prompt"))
        for index, (values, top, largest) in enumerate(columns):
            value = values[position]
            colour = _COLOURS[index % len(_COLOURS)]
            if np.isnan(value):
                cells += ["–", ""]
                continue
            cells.append(score_text(value, largest))
            cells.append(Bar(size=top or 1.0, begin=0, end=value, width=_BAR_WIDTH, color=colour)
                         if first not in unbarred else "")
        cells += [column[position] for column in labels.values()]
        table.add_row(*cells)
    return table
