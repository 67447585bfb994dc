"""``attnflow explain``: score the tokens of one text."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..methods import available_methods
from .common import check_methods, console, progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from ..explanation import Explanation


def explain(
    text: Annotated[str, typer.Argument(help="The text to explain.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Bundled name (minilm), local folder or cached HF id."),
    ] = None,
    method: Annotated[
        list[str],
        typer.Option(
            "--method",
            help=f"Method to run; repeat for several. Available: {', '.join(available_methods())}.",
        ),
    ] = ["raw", "rollout"],  # noqa: B006  (typer reads the default list, never mutates it)
    output: Annotated[
        str | None,
        typer.Option(help="Output to explain: cls, last, mean or a token index [default: cls, last for decoders]."),
    ] = None,
    layer: Annotated[int, typer.Option(help="Layer to show (1-based; -1 = top).")] = -1,
    residual: Annotated[float, typer.Option(help="Residual weight r in (1-r)*A + r*I.")] = 0.5,
    head_fusion: Annotated[str, typer.Option(help="How heads are combined: mean, max or min.")] = "mean",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the full explanation (all layers) as JSON.")
    ] = None,
    html_path: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write a self-contained HTML report: heatmaps, the attention graph, every output token.",
        ),
    ] = None,
    png_path: Annotated[
        Path | None,
        typer.Option("--png", help="Write figures NAME-heatmap.png and NAME-graph.png beside this path."),
    ] = None,
    svg_path: Annotated[
        Path | None,
        typer.Option("--svg", help="Write figures NAME-heatmap.svg and NAME-graph.svg beside this path."),
    ] = None,
    truncate: Annotated[bool, typer.Option(help="Cut texts longer than the model's maximum.")] = False,
    trust_remote_code: Annotated[
        bool, typer.Option(help="Allow the model folder's own Python code to run.")
    ] = False,
) -> None:
    """Score every input token for one output, layer by layer, with each method."""
    from ..explain import explain as run_explain
    from ..report.terminal import explanation_table

    check_methods(method)
    options = {"residual": residual, "head_fusion": head_fusion}
    wants_report = any(path is not None for path in (html_path, png_path, svg_path))
    if wants_report:  # load once: the report captures the same text again, with the same model
        from ..capture import load_model
        from .report import check_report_paths

        check_report_paths(html_path, png_path, svg_path)

        model = load_model(model, trust_remote_code=trust_remote_code)
    with progress_bar("explaining") as progress:
        result = run_explain(
            text,
            model,
            methods=method,
            output=output,
            truncate=truncate,
            trust_remote_code=trust_remote_code,
            progress=progress,
            **options,
        )
    console.print(explanation_table(result, layer=layer))
    if json_path is not None:
        result.to_json(json_path)
        console.print(f"wrote {json_path}")
    if wants_report:
        _write_report(text, model, result, method, layer, truncate, html_path, png_path, svg_path, options)


def _write_report(
    text: str,
    loaded: Any,
    result: Explanation,
    methods: list[str],
    layer: int,
    truncate: bool,
    html_path: Path | None,
    png_path: Path | None,
    svg_path: Path | None,
    options: dict[str, Any],
) -> None:
    """Capture the text's attention and write the HTML report and figures for every output token."""
    from ..capture import capture_attention
    from ..report.data import add_explanation_scores, report_data_from_capture
    from .report import write_report_files

    captured = capture_attention(text, loaded, truncate=truncate)
    with progress_bar("preparing the report") as progress:
        data = report_data_from_capture(
            captured, methods=methods, output=result.output, layer=layer, progress=progress, **options
        )
    add_explanation_scores(data, result)  # gradient-based methods: the one output explain computed
    for path in write_report_files(data, html=html_path, png=png_path, svg=svg_path):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
