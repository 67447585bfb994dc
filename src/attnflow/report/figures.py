"""Static figures for papers: token heatmaps (layers x tokens) and the layered attention graph.

Drawn with matplotlib, an optional dependency imported only here and only when
drawing, on the Agg canvas without pyplot (no global state, works headless).
Computing stays in :mod:`attnflow.report.data`; these functions only draw a
:class:`~attnflow.report.data.ReportData` (or an :class:`~attnflow.Explanation`)
and return the figure.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..explanation import Explanation
from ..io import write_bytes_atomic
from .data import ReportData, report_data_from_explanation

#: The report page's colour ramp (light to dark indigo) and route colour, shared so figures match it.
RAMP = ("#f8fafc", "#e0e7ff", "#a5b4fc", "#6366f1", "#4338ca", "#1e1b69")
ROUTE = "#ea580c"
METHOD_COLOURS = {"raw": "#64748b", "rollout": "#4f46e5", "flow": "#db2777"}
_EXTRA = ("#059669", "#d97706", "#0891b2", "#7c3aed")
FORMATS = ("png", "svg", "pdf")


def _matplotlib() -> tuple[Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise AttnflowError(
            "Figures need matplotlib; install it with: pip install matplotlib (or pip install 'attnflow[plot]')"
        ) from None
    return Figure, FigureCanvasAgg


def _new_figure(**kwargs: Any) -> Any:
    """A figure on the Agg canvas, made without pyplot: no global state, no GUI backend."""
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _as_data(data: ReportData | Explanation) -> ReportData:
    if isinstance(data, Explanation):
        return report_data_from_explanation(data)
    if not isinstance(data, ReportData):
        raise AttnflowError(
            f"The 'data' parameter must be a ReportData or an Explanation; got {type(data).__name__} instead."
        )
    return data


def _colour(method: str, methods: list[str]) -> str:
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    others = [m for m in methods if m not in METHOD_COLOURS]
    return _EXTRA[others.index(method) % len(_EXTRA)] if method in others else _EXTRA[0]


def _output_label(data: ReportData, output: int | str) -> str:
    if output == "answer":
        return "the generated answer (span mean)"
    return "the mean of all positions" if output == "mean" else f"token {output} “{_label(data.tokens[int(output)])}”"


#: Word marks of byte-level BPE (``Ġ``) and SentencePiece (``▁``) at a piece's start: not shown in labels.
_WORD_MARKS = "\u0120\u2581"


def _label(token: str, limit: int = 16) -> str:
    """A token as a tick label: word marks dropped, unprintable characters spelled out, at most ``limit`` characters.

    Examples
    --------
    >>> _label("\u0120world"), _label("\u2581New"), _label("\u0120"), _label("\u010a")
    ('world', 'New', '␣', '↵')
    """
    shown = token.lstrip(_WORD_MARKS).replace("\u010a", "\u21b5") or ("\u2423" if token else "")
    text = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in shown)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plot_heatmap(
    data: ReportData | Explanation,
    methods: str | list[str] | None = None,
    *,
    output: int | str | None = None,
    ignore_special: bool = True,
    axes: Any = None,
) -> Any:
    """Token heatmaps: one panel per method, layers (rows, top layer on top) x input tokens (columns).

    Parameters
    ----------
    data
        Report data, or an explanation (its one output).
    methods
        Which methods; by default every method in ``data``.
    output
        The explained output (a token index or ``"mean"``); by default ``data.output``.
    ignore_special
        Leave special tokens ([CLS], [SEP], ...) out of each panel's colour scale
        (they are drawn clipped at its maximum), so the content tokens keep their contrast.
    axes
        One matplotlib axes per method to draw into; by default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from attnflow.report.data import report_data
    >>> d = report_data(np.full((2, 1, 3, 3), 1 / 3), ["a", "b", "c"], methods=("raw", "rollout"))
    >>> [ax.get_title(loc="left") for ax in plot_heatmap(d).axes if ax.get_title(loc="left")]
    ['raw', 'rollout']
    """
    _matplotlib()
    data = _as_data(data)
    names = data.methods if methods is None else ([methods] if isinstance(methods, str) else list(methods))
    if not names:
        raise AttnflowError("Nothing to draw: this report data has no method scores (an evaluation-only file?).")
    key = data.output if output is None else output
    arrays = [data.output_scores(name, key) for name in names]
    n = data.n_tokens
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("attnflow", RAMP).with_extremes(bad="#eceef3")
    if axes is None:
        width = max(5.0, min(16.0, 1.4 + 0.42 * n))
        height = 0.9 + len(names) * (0.34 * data.n_layers + 1.25)
        fig = _new_figure(figsize=(width, height), layout="constrained")
        panels = list(fig.subplots(len(names), 1, squeeze=False)[:, 0])
    else:
        panels = list(np.atleast_1d(np.asarray(axes, dtype=object)).ravel())
        if len(panels) != len(names):
            raise AttnflowError(f"The 'axes' parameter must hold {len(names)} axes, one per method; got {len(panels)}.")
        fig = panels[0].figure
    special = set(data.special_positions)
    content = [j for j in range(n) if j not in special] if ignore_special else list(range(n))
    for ax, name, values in zip(panels, names, arrays, strict=True):
        masked = np.ma.masked_invalid(values)
        finite = values[:, content] if content else values
        vmax = float(np.nanmax(finite)) if np.any(np.isfinite(finite)) else 1.0
        # vector cells (not a raster image), so SVG and PDF figures stay sharp at any size
        image = ax.pcolormesh(np.arange(n + 1) - 0.5, np.arange(data.n_layers + 1) + 0.5, masked, cmap=cmap,
                              vmin=0.0, vmax=vmax or 1.0, edgecolors="white", linewidth=0.6)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(0.5, data.n_layers + 0.5)
        ax.set_yticks(range(1, data.n_layers + 1), [str(layer) for layer in range(1, data.n_layers + 1)], fontsize=8)
        ax.set_ylabel("layer", fontsize=9)
        ax.set_xticks(range(n), [_label(token) for token in data.tokens], rotation=60, ha="right",
                      rotation_mode="anchor", fontsize=8.5, family="monospace")
        for j, label in enumerate(ax.get_xticklabels()):
            if j in special:
                label.set_color("0.55")
                label.set_style("italic")
            if key == j:
                label.set_color(ROUTE)
                label.set_fontweight("bold")
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(name, loc="left", fontsize=10.5, fontweight="bold", color=_colour(name, names))
        bar = fig.colorbar(image, ax=ax, fraction=0.035, pad=0.01)
        bar.ax.tick_params(labelsize=7.5)
        bar.outline.set_visible(False)
    panels[0].figure.suptitle(
        f"Scores for {_output_label(data, key)}" + (f" · {data.model_name}" if data.model_name else ""),
        fontsize=10.5, x=0.01, ha="left",
    )
    return fig


def plot_attention_graph(
    data: ReportData,
    *,
    output: int | str | None = None,
    layer: int | None = None,
    threshold: float = 0.08,
    method: str | None = None,
    ax: Any = None,
) -> Any:
    """The layered attention graph, with the route into one output highlighted.

    Nodes are tokens at each layer (the input at the bottom); grey edges are
    the fused attention, width proportional to the weight, hidden below
    ``threshold``. Orange edges and nodes show how much of the output
    ``(layer, output)`` each carries (backward rollout through the
    residual-augmented graph, :meth:`attnflow.report.data.ReportData.route_shares`). Bars
    under the input row show ``method``'s scores for that output.

    Parameters
    ----------
    data
        Report data with attention (from :func:`attnflow.report.data.report_data`).
    output, layer
        The highlighted output and layer (1-based); by default ``data.output`` and ``data.layer``.
    threshold
        Grey edges with weight below this are not drawn.
    method
        Whose scores the bars show; by default flow if present, else rollout, else the first.
    ax
        A matplotlib axes to draw into; by default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from attnflow.report.data import report_data
    >>> d = report_data(np.full((2, 1, 3, 3), 1 / 3), ["a", "b", "c"], methods="rollout")
    >>> plot_attention_graph(d, output=1).axes[0].get_title(loc="left")
    'Attention graph: route into token 1 “b” at layer 2'
    """
    _matplotlib()
    capacities = data.graph_capacities()
    attention = capacities if data.attention is None else data.attention  # graph_capacities raised if None
    n, n_layers = data.n_tokens, data.n_layers
    key = data.output if output is None else output
    if key == "answer" and data.prompt_length is not None:  # a span has no one route: its first token's is drawn
        key = data.prompt_length - 1
    if key != "mean":
        key = int(key)
        if not 0 <= key < n:
            raise AttnflowError(f"The 'output' parameter must be a token index from 0 to {n - 1} or 'mean'; got {key}.")
    shown_layer = data.layer if layer is None else layer
    if shown_layer is None or not 1 <= shown_layer <= n_layers:
        raise AttnflowError(f"The 'layer' parameter must be from 1 to {n_layers}; got {shown_layer}.")
    if method is None and data.methods:
        method = next((m for m in ("flow", "rollout") if m in data.methods), data.methods[0])
    shares = data.route_shares(shown_layer, key)
    from matplotlib.collections import LineCollection

    col, row = 1.0, 1.0
    if ax is None:
        fig = _new_figure(figsize=(max(5.0, min(18.0, 1.6 + 0.55 * n)), 1.9 + 0.62 * (n_layers + 1)),
                          layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure

    def xy(level: int, i: int) -> tuple[float, float]:
        return (i * col, level * row)

    grey, grey_widths, grey_alpha = [], [], []
    for level in range(1, n_layers + 1):
        weights = attention[level - 1]
        for i, j in zip(*np.nonzero(weights >= max(threshold, 1e-12)), strict=True):
            w = float(weights[i, j])
            grey.append([xy(level - 1, j), xy(level, i)])
            grey_widths.append(0.3 + 3.2 * w)
            grey_alpha.append(0.12 + 0.55 * w)
    if grey:
        colours = [(0.545, 0.576, 0.655, a) for a in grey_alpha]
        ax.add_collection(LineCollection(grey, linewidths=grey_widths, colors=colours, capstyle="round", zorder=1))
    routes = []
    for level in range(shown_layer, 0, -1):
        carried = shares[level][:, None] * capacities[level - 1]
        for i, j in zip(*np.nonzero(carried > 0), strict=True):
            routes.append((float(carried[i, j]), level, int(i), int(j)))
    if routes:
        top = max(r[0] for r in routes)
        keep = sorted((r for r in routes if r[0] >= max(0.004, 0.03 * top)), key=lambda r: r[0])
        segments = [[xy(level - 1, j), xy(level, i)] for _, level, i, j in keep]
        widths = [0.7 + 5.0 * c / top for c, *_ in keep]
        colours = [(0.918, 0.345, 0.047, 0.35 + 0.55 * c / top) for c, *_ in keep]
        ax.add_collection(LineCollection(segments, linewidths=widths, colors=colours, capstyle="round", zorder=2))
    from matplotlib.colors import LinearSegmentedColormap

    share_map = LinearSegmentedColormap.from_list("route", ["#fff7ed", "#fed7aa", "#fb923c", "#ea580c", "#9a3412"])
    for level in range(n_layers + 1):
        xs = np.arange(n) * col
        ys = np.full(n, level * row)
        if level <= shown_layer:
            values = shares[level] / shares[level].max() if shares[level].max() > 0 else shares[level]
            ax.scatter(xs, ys, s=46, c=share_map(values), edgecolors="#c2410c", linewidths=0.7, zorder=3)
        else:
            ax.scatter(xs, ys, s=40, c="#eef0f5", edgecolors="#c8cdd9", linewidths=0.7, zorder=3)
    if key != "mean":
        ax.scatter([key * col], [shown_layer * row], s=120, facecolors="none", edgecolors="#1e2230", linewidths=1.8,
                   zorder=4)
    bar_base, bar_height = -0.95 * row, 0.6 * row
    if method is not None:
        scores = data.output_scores(method, key)[shown_layer - 1]
        if np.any(np.isfinite(scores)):
            top_score = float(np.nanmax(scores)) or 1.0
            heights = np.nan_to_num(scores) / top_score * bar_height
            ax.bar(np.arange(n) * col, heights, bottom=bar_base, width=0.42 * col,
                   color=_colour(method, data.methods), alpha=0.85, zorder=3)
        ax.text(-0.7 * col, bar_base + 0.1, method, ha="right", va="bottom", fontsize=8,
                color=_colour(method, data.methods))
    special = set(data.special_positions)
    for i, token in enumerate(data.tokens):
        label = _label(token)
        colour = ROUTE if key == i else ("0.55" if i in special else "#3d4456")
        ax.text(i * col, bar_base - 0.12, label, rotation=55, ha="right", va="top", rotation_mode="anchor",
                fontsize=8.5, family="monospace", color=colour, fontweight="bold" if key == i else "normal",
                style="italic" if i in special else "normal")
    ax.set_yticks([level * row for level in range(n_layers + 1)],
                  ["input"] + [f"layer {level}" for level in range(1, n_layers + 1)], fontsize=8.5)
    for level, label in enumerate(ax.get_yticklabels()):
        if level == shown_layer:
            label.set_fontweight("bold")
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlim(-0.8 * col, (n - 0.2) * col)
    ax.set_ylim(bar_base - 0.15, (n_layers + 0.35) * row)
    ax.set_title(f"Attention graph: route into {_output_label(data, key)} at layer {shown_layer}",
                 loc="left", fontsize=10.5)
    return fig


def figure_bytes(fig: Any, fmt: str = "png", *, dpi: int = 200) -> bytes:
    """The figure as PNG, SVG or PDF bytes (for atomic writes); SVG keeps its text as text.

    Examples
    --------
    >>> from attnflow.report.data import report_data
    >>> d = report_data(np.full((1, 1, 2, 2), 0.5), ["a", "b"], methods="raw")
    >>> figure_bytes(plot_heatmap(d), "png")[:4], figure_bytes(plot_heatmap(d), "svg")[:5]
    (b'\\x89PNG', b'<?xml')
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise AttnflowError(f"The figure format must be one of {', '.join(FORMATS)}; got {fmt!r} instead.")
    import matplotlib

    buffer = io.BytesIO()
    metadata = {"Date": None} if fmt in ("svg", "pdf") else {}
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "attnflow"}):
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata or None, facecolor="white")
    return buffer.getvalue()


def figure_paths(path: str | os.PathLike[str], *, graph: bool = True) -> dict[str, Path]:
    """Where :func:`write_figures` writes: ``NAME-heatmap.EXT`` and ``NAME-graph.EXT`` beside ``path``.

    Examples
    --------
    >>> {k: str(v) for k, v in figure_paths("out/fig.svg").items()}
    {'heatmap': 'out/fig-heatmap.svg', 'graph': 'out/fig-graph.svg'}
    """
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise AttnflowError(
            f"Cannot tell the figure format from {os.fspath(path)!r}: the name must end in "
            f"{', '.join('.' + f for f in FORMATS)}."
        )
    paths = {"heatmap": target.with_name(f"{target.stem}-heatmap{target.suffix}")}
    if graph:
        paths["graph"] = target.with_name(f"{target.stem}-graph{target.suffix}")
    return paths


def render_figures(data: ReportData | Explanation, fmt: str = "png", **options: Any) -> dict[str, bytes]:
    """Both figures' bytes (the graph only when the data has attention), computed before anything is written.

    ``options`` (``output``, ``layer``, ``threshold``, ``method``) go to
    :func:`plot_attention_graph`; ``output`` to :func:`plot_heatmap` as well.
    """
    data = _as_data(data)
    figures = {"heatmap": figure_bytes(plot_heatmap(data, output=options.get("output")), fmt)}
    if data.attention is not None:
        figures["graph"] = figure_bytes(plot_attention_graph(data, **options), fmt)
    return figures


def write_figures(data: ReportData | Explanation, path: str | os.PathLike[str], **options: Any) -> list[Path]:
    """Draw the heatmap and the attention graph and write them beside ``path`` (see :func:`figure_paths`).

    The format comes from the suffix of ``path`` (``.png``, ``.svg`` or ``.pdf``);
    each file is written atomically, after both are drawn. Data without attention
    (an ``explain --json`` file) gives the heatmap only.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from attnflow.report.data import report_data
    >>> d = report_data(np.full((2, 1, 3, 3), 1 / 3), ["a", "b", "c"], methods="rollout")
    >>> [p.name for p in write_figures(d, pathlib.Path(tempfile.mkdtemp()) / "fig.png")]
    ['fig-heatmap.png', 'fig-graph.png']
    """

    data = _as_data(data)
    paths = figure_paths(path, graph=data.attention is not None)
    rendered = render_figures(data, Path(path).suffix, **options)
    return [write_bytes_atomic(paths[name], content) for name, content in rendered.items()]
