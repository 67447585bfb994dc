"""``attnflow explain``: score the tokens of one text, or the patches of one image (``--image``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import AttnflowError
from ..methods import available_methods
from .common import check_methods, console, progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from ..explanation import Explanation


def explain(
    text: Annotated[str | None, typer.Argument(help="The text to explain (or give --image).")] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image",
            help="Explain this image instead of a text (ViT-style models; default model digits-vit).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Bundled name (minilm; digits-vit for --image), local folder or cached HF id."
        ),
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
    target: Annotated[
        str | None,
        typer.Option(help="What grad-rollout explains: predicted (default), a class index or label."),
    ] = None,
    image_size: Annotated[
        str | None,
        typer.Option(
            "--image-size",
            help="With --image: resize to HEIGHTxWIDTH (multiples of the patch size) instead of the processor's size.",
        ),
    ] = None,
    trust_remote_code: Annotated[
        bool, typer.Option(help="Allow the model folder's own Python code to run.")
    ] = False,
) -> None:
    """Score every input token (or image patch) for one output, layer by layer, with each method.

    With --image, --png OUT.png writes the image with each method's heatmap over it.
    """
    from ..explain import explain as run_explain
    from ..report.terminal import explanation_table

    check_methods(method)
    options = {"residual": residual, "head_fusion": head_fusion}
    if (text is None) == (image is None):
        raise AttnflowError(
            "Give exactly one thing to explain: a TEXT argument or --image PATH"
            + ("; got both." if text is not None else "; got neither.")
        )
    if image is not None:
        _explain_image(
            image, model, method, output, layer, target, image_size, trust_remote_code,
            json_path, html_path, png_path, svg_path, options,
        )
        return
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
            target=target,
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
            captured, methods=methods, output=result.output, layer=layer, progress=progress, **_fusion(options, result)
        )
    add_explanation_scores(data, result)  # gradient-based methods: the one output explain computed
    for path in write_report_files(data, html=html_path, png=png_path, svg=svg_path):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def _parse_size(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().replace("×", "x").split("x")
    try:
        height, width = (int(part) for part in parts)
    except ValueError:
        raise AttnflowError(f"--image-size must be HEIGHTxWIDTH in pixels, e.g. 224x320; got {value!r}.") from None
    return height, width


def _explain_image(
    image: Path,
    model: str | None,
    methods: list[str],
    output: str | None,
    layer: int,
    target: str | None,
    image_size: str | None,
    trust_remote_code: bool,
    json_path: Path | None,
    html_path: Path | None,
    png_path: Path | None,
    svg_path: Path | None,
    options: dict[str, Any],
) -> None:
    """``explain --image``: the table of patch scores, and the overlay PNG / JSON / HTML report when asked."""
    from ..report.terminal import explanation_table
    from ..vision import explain_image

    if svg_path is not None:
        raise AttnflowError("--svg is for texts; for an image, --png OUT.png writes the heatmap over the image.")
    for path in (json_path, html_path, png_path):
        if path is not None and (path.is_dir() or not (path.parent if str(path.parent) else Path(".")).is_dir()):
            raise AttnflowError(f"Cannot write {str(path)!r}: give a file name in an existing folder.")
    size = _parse_size(image_size)
    with progress_bar("explaining") as progress:
        result = explain_image(
            image,
            model,
            methods=method_list(methods),
            output="cls" if output is None else output,
            target=target,
            size=size,
            trust_remote_code=trust_remote_code,
            progress=progress,
            **options,
        )
    console.print(explanation_table(result, layer=layer))
    rows, cols = result.image["grid"]
    console.print(
        f"patch grid {rows}x{cols}; special tokens: "
        f"{', '.join(result.tokens[p] for p in result.special_positions) or 'none'}",
        highlight=False,
    )
    if png_path is not None:
        console.print(f"wrote {result.to_png(png_path, layer=layer)}", highlight=False, soft_wrap=True)
    if json_path is not None:
        result.to_json(json_path)
        console.print(f"wrote {json_path}", highlight=False, soft_wrap=True)
    if html_path is not None:
        from ..report.html import write_html

        data = image_report_data(result, layer=layer, **options)
        console.print(f"wrote {write_html(data, html_path)}", highlight=False, soft_wrap=True)


def method_list(methods: list[str]) -> list[str]:
    return list(dict.fromkeys(methods))


def image_report_data(result: Any, *, layer: int = -1, **options: Any) -> Any:
    """Report data for an :class:`attnflow.vision.ImageExplanation`: every output, and the image view."""
    from ..report.data import add_explanation_scores, report_data
    from ..report.image import image_view

    captured = result.captured
    data = report_data(
        captured.attentions,
        captured.tokens,
        methods=[m for m in result.methods],
        output=result.output,
        layer=layer,
        special_positions=captured.special_positions,
        model_name=captured.model_name,
        text=captured.source,
        **options,
    )
    add_explanation_scores(data, result)
    view = image_view(result.picture(), captured.grid, captured.patch_positions, source=captured.source)
    return dataclasses.replace(data, image=view)  # replace() checks the view


def _fusion(options: dict[str, Any], result: Explanation) -> dict[str, Any]:
    """``head_fusion="importance"`` becomes the head weights ``explain`` computed, so the report shows the same maps."""
    if options.get("head_fusion") == "importance" and "head_importance" in result.options:
        return {**options, "head_fusion": result.options["head_importance"]}
    return options
