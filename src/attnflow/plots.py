"""Figures drawn with matplotlib (an optional dependency, imported only when drawing)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import AttnflowError

_COLOURS = ("tab:cyan", "tab:purple", "tab:green", "tab:orange", "tab:blue", "tab:red")


def _new_figure(**kwargs: Any) -> Any:
    """A figure on the Agg canvas, made without pyplot: no global state, no GUI backend, nothing to close."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise AttnflowError(
            "Plots need matplotlib; install it with: pip install matplotlib (or pip install 'attnflow[plot]')"
        ) from None
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def plot_correlation(
    correlation: Mapping[str, Mapping[str, Any]],
    *,
    title: str | None = None,
    axes: Any = None,
) -> Any:
    """Spearman correlation by layer: one panel per ground truth, a line (mean ± sd band) per method.

    Parameters
    ----------
    correlation
        ``{ground_truth: {method: array (L, 2)}}`` with ``[:, 0]`` the mean and
        ``[:, 1]`` the sd per layer (NaN allowed), as :meth:`EvaluationResult.correlation` gives.
    title
        The figure's title.
    axes
        A matplotlib axes, or a sequence of one per ground truth, to draw into;
        by default a new figure is made.

    Returns
    -------
    matplotlib.figure.Figure
        Made on the Agg canvas without pyplot (so it works headless and leaves
        pyplot's state alone); in a notebook, display it by leaving it last in a cell.

    Examples
    --------
    >>> fig = plot_correlation({"blankout": {"rollout": np.array([[0.2, 0.1], [0.5, 0.2]])}})
    >>> [ax.get_title() for ax in fig.axes]
    ['blankout']
    """
    truths = list(correlation)
    if not truths:
        raise AttnflowError("Nothing to plot: the correlation table has no ground truth.")
    if axes is None:
        fig = _new_figure(figsize=(4.2 * len(truths), 3.6), layout="constrained")
        panels = list(fig.subplots(1, len(truths), squeeze=False, sharey=True)[0])
    else:
        panels = list(np.atleast_1d(np.asarray(axes, dtype=object)).ravel())
        if len(panels) != len(truths):
            raise AttnflowError(
                f"The 'axes' parameter must hold {len(truths)} axes, one per ground truth; got {len(panels)}."
            )
        fig = panels[0].figure
    for ax, truth in zip(panels, truths, strict=True):
        for index, (method, values) in enumerate(correlation[truth].items()):
            array = np.asarray(values, dtype=np.float64).reshape(-1, 2)
            layers = np.arange(1, array.shape[0] + 1)
            mean, sd = array[:, 0], np.nan_to_num(array[:, 1])
            colour = _COLOURS[index % len(_COLOURS)]
            ax.plot(layers, mean, marker="o", color=colour, label=method)
            ax.fill_between(layers, mean - sd, mean + sd, color=colour, alpha=0.15, linewidth=0)
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.set_title(truth)
        ax.set_xlabel("layer")
        ax.set_xticks(layers)
        ax.set_ylim(-1.05, 1.05)
        ax.grid(alpha=0.3)
    panels[0].set_ylabel("Spearman correlation (mean ± sd)")
    panels[-1].legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def figure_png(fig: Any, *, dpi: int = 120) -> bytes:
    """The figure as PNG bytes, for atomic writes.

    Examples
    --------
    >>> figure_png(plot_correlation({"blankout": {"raw": np.zeros((2, 2))}}))[:4]
    b'\\x89PNG'
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
