"""``attnflow explain``: score the tokens of one text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..methods import available_methods
from .common import check_methods, console, progress_bar


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
