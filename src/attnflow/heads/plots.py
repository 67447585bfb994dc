"""The L x H head-importance heatmap with role labels (matplotlib, imported only when drawing)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..plots import _new_figure

#: Short role labels written in the heatmap's cells (relation names are cut to 6 characters).
_SHORT = {"previous": "prev", "next": "next", "rare": "rare", "agreement": "agree"}


def cell_label(roles: str) -> str:
    """The text of one heatmap cell: the first role (shortened), ``+k`` when the head has ``k`` more.

    Examples
    --------
    >>> cell_label("previous"), cell_label("rare,nsubj,det"), cell_label("")
    ('prev', 'rare+2', '')
    """
    labels = [label for label in str(roles).split(",") if label]
    if not labels:
        return ""
    first = _SHORT.get(labels[0], labels[0][:6])
    return first + (f"+{len(labels) - 1}" if len(labels) > 1 else "")


def plot_head_importance(report: Any, ax: Any = None, *, title: str | None = None) -> Any:
    """Draw head importance as an ``L x H`` heatmap, each cell labelled with the head's roles (Voita et al.'s).

    Parameters
    ----------
    report
        An :class:`attnflow.heads.HeadReport` (anything with ``importance`` and ``roles``
        ``(L, H)`` arrays, ``model_name``, ``n_examples``).
    ax
        A matplotlib axes to draw into; by default a new figure (Agg canvas, no pyplot).
    title
        The title; by default the model, the target and the number of examples.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from attnflow.heads import HeadReport
    >>> z = np.zeros((2, 3))
    >>> r = HeadReport(np.arange(6.0).reshape(2, 3), z, z, z, z, z, previous_max=np.eye(2, 3), model_name="toy")
    >>> fig = plot_head_importance(r)
    >>> fig.axes[0].get_xlabel(), len(fig.axes[0].texts)
    ('head', 2)
    """
    importance = np.asarray(report.importance, dtype=np.float64)
    labels = np.asarray(report.roles, dtype=object)
    n_layers, n_heads = importance.shape
    if ax is None:

        fig = _new_figure(figsize=(max(4.0, 0.55 * n_heads + 2.0), max(3.0, 0.45 * n_layers + 1.6)), dpi=120)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    image = ax.imshow(
        importance, cmap="viridis", aspect="auto", origin="upper",
        extent=(0.5, n_heads + 0.5, n_layers + 0.5, 0.5),
    )
    top = np.nanmax(importance) if np.any(np.isfinite(importance)) else 1.0
    for layer in range(n_layers):
        for head in range(n_heads):
            label = cell_label(labels[layer, head])
            if label:
                dark = importance[layer, head] > 0.6 * top
                ax.text(head + 1, layer + 1, label, ha="center", va="center", fontsize=7,
                        color="black" if dark else "white")
    ax.set_xticks(range(1, n_heads + 1))
    ax.set_yticks(range(1, n_layers + 1))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if title is None:
        target = getattr(report, "target", {}) or {}
        spec = target.get("spec", "") if isinstance(target, dict) else str(target)
        title = f"Head importance · {getattr(report, 'model_name', '')} · target {spec} · " \
                f"{getattr(report, 'n_examples', 0)} examples"
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="importance |dS/dξ|")
    return fig


def plot_pruning_curves(sweep: Any, ax: Any = None, *, title: str | None = None) -> Any:
    """Accuracy against the number of heads kept: stochastic gates (one point per penalty) and importance ranking.

    Parameters
    ----------
    sweep
        An :class:`attnflow.heads.gates.GateSweep` (``rows`` with ``n_kept``, ``accuracy``,
        ``ranking_accuracy``, ``penalty``; ``n_layers``, ``n_heads``, ``model_name``).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> rows = [{"penalty": 0.0, "n_kept": 4, "accuracy": 1.0, "ranking_accuracy": 1.0},
    ...         {"penalty": 0.1, "n_kept": 1, "accuracy": 0.9, "ranking_accuracy": 0.6}]
    >>> fig = plot_pruning_curves(SimpleNamespace(rows=rows, n_layers=2, n_heads=2, model_name="toy"))
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['stochastic gates (L0)', 'importance ranking']
    """
    rows = sorted(sweep.rows, key=lambda r: r["n_kept"])
    if ax is None:

        fig = _new_figure(figsize=(5.2, 3.4), dpi=120)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    kept = [r["n_kept"] for r in rows]
    ax.plot(kept, [r["accuracy"] for r in rows], "o-", label="stochastic gates (L0)")
    for r in rows:
        ax.annotate(f"λ={r['penalty']:g}", (r["n_kept"], r["accuracy"]), textcoords="offset points",
                    xytext=(3, 4), fontsize=6)
    ranked = [(r["n_kept"], r["ranking_accuracy"]) for r in rows if r.get("ranking_accuracy") is not None]
    if ranked:
        ax.plot([k for k, _ in ranked], [a for _, a in ranked], "s--", label="importance ranking")
    ax.set_xlabel(f"heads kept (of {sweep.n_layers * sweep.n_heads})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or f"Head pruning · {getattr(sweep, 'model_name', '')}", fontsize=9)
    fig.tight_layout()
    return fig
