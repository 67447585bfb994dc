"""The terminal table of an encoder–decoder explanation: a source section, a target section, their shares."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.bar import Bar
from rich.table import Table
from rich.text import Text

from .stacking import StackingTable
from .terminal import add_key_columns, add_score_columns, column_largest, score_text, visible

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
    target = explanation.target
    inputs = explanation.options.get("input_methods") or {}  # attribution methods: the input, not a layer
    if isinstance(target, dict) and "token" in target:
        explaining = [method for method in explanation.methods
                      if method == "grad-rollout" or (method in inputs and method != "random")]
        lines.append(f"{', '.join(explaining)} explain{'s' if len(explaining) == 1 else ''} the log-probability of "
                     f"{target['token']} ({target.get('kind', '')})")
    table = StackingTable(
        title=title, title_justify="left", header_style="bold", caption="\n".join(lines), caption_justify="left",
        keys=3,
    )
    add_key_columns(table, part=True)
    columns = []
    for index, method in enumerate(explanation.methods):
        values = explanation.layer_scores(method, layer)
        columns.append((values, np.nanmax(values) if np.any(np.isfinite(values)) else 1.0, column_largest(values)))
        add_score_columns(table, method, _COLOURS[index % len(_COLOURS)],
                          title=f"{method} (input)" if method in inputs else None)
    for index, name in enumerate(explanation.tokens):
        if index == ns:
            table.add_section()
        source = index < ns
        style = "dim" if index in explanation.special_positions else ""
        if index == explanation.output:
            style = (style + " bold").strip()
        part = "source" if source else ("target ▸" if index == explanation.output else "target")
        cells: list[Any] = [str(index if source else index - ns), Text(visible(name), style=style), part]
        for number, (values, top, largest) in enumerate(columns):
            value = values[index]
            if np.isnan(value):
                cells += ["–", ""]
                continue
            colour = _COLOURS[number % len(_COLOURS)]
            bar = Bar(size=top or 1.0, begin=0, end=value, width=_BAR_WIDTH, color=colour)
            cells += [score_text(value, largest), bar]
        table.add_row(*cells)
    return table


def _number(value: float) -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:.1e}" if 0 < abs(value) < 0.005 else f"{value:.2f}"  # a tiny share is not 0.00


def layer_names(n_encoder_layers: int, n_decoder_layers: int) -> list[str]:
    """Names of the layered encoder–decoder graph's layers: encoder layers, then each decoder layer's sublayers.

    Examples
    --------
    >>> layer_names(1, 2)
    ['enc 1', 'dec 1 self', 'dec 1 cross', 'dec 2 self', 'dec 2 cross']
    """
    names = [f"enc {layer}" for layer in range(1, n_encoder_layers + 1)]
    for layer in range(1, n_decoder_layers + 1):
        names += [f"dec {layer} self", f"dec {layer} cross"]
    return names


#: The note the HTML report of an encoder–decoder model carries.
GRAPH_NOTE = (
    "Encoder-decoder model: the graph's layers are the encoder's layers, then each decoder layer's self-attention "
    "and cross-attention sublayers; the source tokens (left) are carried up through the decoder by identity edges, "
    "the decoder positions (right) up through the encoder, and the residual is inside the edges. Teal edges are "
    "cross-attention. Scores at a decoder layer are the explanation's (after its cross-attention sublayer); "
    "rollout and flow are also shown at the other layers; raw and grad-rollout only at the decoder layers."
)


def seq2seq_report_data(explanation: Any, captured: Any, *, layer: int = -1) -> Any:
    """Report data for an encoder–decoder explanation: the layered graph, the two sequences, every target output.

    ``explanation`` is what ``attnflow.explain(..., decoder_text=..., every_output="auto")``
    computed: its :attr:`~attnflow.Explanation.every_output` holds every decoder
    position's scores from the explain core (:func:`attnflow.core.score_seq2seq`), which
    the page shows as they are: rollout (and flow, within
    :data:`attnflow.core.FLOW_ALL_OUTPUTS_BUDGET`) at every graph layer, raw at the
    decoder layers, grad-rollout for the explained position only. ``captured`` (the
    :class:`~attnflow.capture.seq2seq.Seq2SeqAttention` explained) gives the page its graph,
    :class:`attnflow.methods.seq2seq.Seq2SeqGraph` laid out with the explanation's
    ``residual`` and ``head_fusion`` (residual inside the edges, so the report's own
    residual is 0); its tokens are the source then the decoder positions
    (``source_length`` marks them) and its outputs every decoder position.

    Examples
    --------
    >>> from attnflow.capture.seq2seq import capture_seq2seq
    >>> from attnflow.explainers.seq2seq import explain_seq2seq
    >>> cap = capture_seq2seq("7 2 9", "reverse", decoder_text="9 2 7")
    >>> e = explain_seq2seq("7 2 9", "reverse", ["rollout"], captured=cap, decoder_text="9 2 7", every_output="auto")
    >>> data = seq2seq_report_data(e, cap)
    >>> data.n_layers, data.source_length, data.layer_names[-1], data.outputs
    (6, 4, 'dec 2 cross', [4, 5, 6, 7])
    """
    from ..errors import AttnflowError
    from ..methods.seq2seq import Seq2SeqGraph
    from ..mixing import ATTENTION
    from .data import ReportData

    computed = explanation.every_output.get(ATTENTION)
    if computed is None:
        raise AttnflowError(
            "The explanation holds no scores for every decoder position: explain with every_output='auto' for a report."
        )
    residual = explanation.options.get("residual")
    residual = 0.5 if residual is None else residual
    head_fusion = explanation.options.get("head_fusion") or "mean"
    graph = Seq2SeqGraph.from_attentions(
        captured.encoder, captured.decoder, captured.cross, residual=residual, head_fusion=head_fusion
    )
    decoder = graph.decoder_layers
    shown = decoder[(layer if layer > 0 else len(decoder) + 1 + layer) - 1]
    return ReportData(
        tokens=list(explanation.tokens),
        scores={method: computed.scores[method] for method in explanation.methods},
        outputs=list(computed.outputs),
        output=int(explanation.output),
        layer=shown,
        attention=graph.capacities,
        residual=0.0,
        head_fusion=head_fusion,
        special_positions=tuple(explanation.special_positions),
        model_name=explanation.model_name,
        text=f"{captured.source_text} → {captured.target_text}",
        notes=[GRAPH_NOTE, *explanation.notes, *computed.notes],
        source="attnflow explain (encoder-decoder)",
        source_length=graph.n_source,
        layer_names=layer_names(graph.n_encoder_layers, graph.n_decoder_layers),
        run_residual=residual,
    )
