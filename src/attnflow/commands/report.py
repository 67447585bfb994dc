"""``attnflow report``: turn a results JSON (explain --json, evaluate, reproduce) into an HTML report and figures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import AttnflowError
from ..io import check_input_file, check_output_file, write_bytes_atomic
from ..report.data import load_report_data
from ..report.figures import figure_paths, render_figures
from ..report.heads_panel import heads_panel
from ..report.html import render_html
from .common import console, error_console
from .options import Overwrite

if TYPE_CHECKING:  # pragma: no cover
    from ..report.data import ReportData


def report(
    results: Annotated[
        Path,
        typer.Argument(
            help="A results JSON: from `attnflow explain --json`, `attnflow evaluate` (its results.json) "
            "or `attnflow reproduce`."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The HTML report to write (one self-contained file, .html)."),
    ] = None,
    png: Annotated[
        Path | None,
        typer.Option(
            "--png",
            help="Also write static figures beside this path: NAME-heatmap.png, and NAME-graph.png when the "
            "results hold attention (not an explain --json file).",
        ),
    ] = None,
    svg: Annotated[
        Path | None,
        typer.Option(
            "--svg",
            help="Also write static figures beside this path: NAME-heatmap.svg, and NAME-graph.svg when the "
            "results hold attention (not an explain --json file).",
        ),
    ] = None,
    layer: Annotated[int, typer.Option(help="Layer shown first (1-based; -1 = top).")] = -1,
    title: Annotated[str | None, typer.Option(help="The page's title [default: the explained text].")] = None,
    heads: Annotated[
        Path | None,
        typer.Option(
            "--heads",
            help="Add a heads panel (each head's roles and importance) from the heads.json `attnflow heads` wrote.",
        ),
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Make a self-contained HTML report (token heatmaps, attention graph, evaluation) from a results JSON."""

    if out is None and png is None and svg is None:
        raise AttnflowError("Nothing to write: give --out/-o FILE.html, --png FILE.png or --svg FILE.svg.")

    check_input_file(results, "results")
    check_input_file(heads, "--heads")
    if heads is not None and out is None:
        raise AttnflowError("--heads adds a panel to the HTML report: give --out FILE.html too.")
    check_report_paths(out, png, svg, inputs=[results, heads], overwrite=overwrite)
    data = load_report_data(results, layer=layer)
    if heads is not None:

        add_heads_panel(data, heads_panel(heads))
    if data.attention is None and (png is not None or svg is not None) and data.methods:
        error_console.print(
            "note: no attention graph figure: these results hold scores only (explain --json); "
            "`attnflow explain TEXT --png FILE` draws both.",
            highlight=False,
        )
    for path in write_report_files(data, html=out, png=png, svg=svg, title=title):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def add_heads_panel(data: ReportData, panel: dict) -> None:
    """Attach a heads panel (:func:`attnflow.report.heads_panel.heads_panel`) to report data, checked.

    Examples
    --------
    >>> import numpy as np
    >>> from attnflow.report.data import report_data
    >>> d = report_data(np.full((1, 1, 2, 2), 0.5))
    >>> add_heads_panel(d, {"n_layers": 2, "n_heads": 1, "roles": [[[]], [[]]]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The heads panel has 2 layers and this report 1: ... of another model.
    """
    import dataclasses

    checked = dataclasses.replace(data, heads=panel)  # runs the checks, the layer count against the report's
    data.heads = checked.heads


def write_report_files(
    data: ReportData,
    *,
    html: Path | None = None,
    png: Path | None = None,
    svg: Path | None = None,
    title: str | None = None,
) -> list[Path]:
    """Render everything asked for first, then write each file atomically; returns the paths written.

    Figures need tokens: an evaluation-only file gives the HTML report only
    (asking it for figures is an error, raised before anything is written).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from attnflow.report.data import report_data
    >>> folder = Path(tempfile.mkdtemp())
    >>> paths = write_report_files(report_data(np.full((1, 1, 2, 2), 0.5)), html=folder / "r.html")
    >>> [p.name for p in paths]
    ['r.html']
    """

    check_report_paths(html, png, svg)
    rendered: dict[Path, bytes] = {}
    figure_targets = [p for p in (png, svg) if p is not None]
    if figure_targets and not data.methods:
        raise AttnflowError(
            "Figures (--png/--svg) show token scores, and this results file has none (an evaluation summary); "
            "use --out for the HTML report."
        )
    if html is not None:

        rendered[html] = render_html(data, title=title).encode("utf-8")
    for target in figure_targets:

        paths = figure_paths(target, graph=data.attention is not None)
        figures = render_figures(data, target.suffix)
        rendered.update({paths[name]: content for name, content in figures.items()})
    return [write_bytes_atomic(path, content) for path, content in rendered.items()]


def check_report_paths(
    html: Path | None,
    png: Path | None,
    svg: Path | None,
    *,
    inputs: list[Path | None] | None = None,
    html_option: str = "--out",
    overwrite: bool = True,
) -> None:
    """Fail early, before any work, on output paths that cannot be right (the rules of :mod:`attnflow.io`).

    The commands pass ``overwrite=False`` (unless ``--overwrite``): existing files attnflow
    did not write are then refused too.

    Examples
    --------
    >>> check_report_paths(None, Path("fig.svg"), None)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: --png needs a file name ending in .png; got 'fig.svg'.
    """

    sources = inputs or []
    check_output_file(html, html_option, (".html", ".htm"), inputs=sources, overwrite=overwrite)
    for target, fmt in ((png, "png"), (svg, "svg")):
        if target is not None:  # the figures land beside it as NAME-heatmap.EXT and NAME-graph.EXT
            also = [target.with_name(f"{target.stem}-{kind}{target.suffix}") for kind in ("heatmap", "graph")]
            check_output_file(target, f"--{fmt}", (f".{fmt}",), inputs=sources, also=also, overwrite=overwrite)
