"""``attnflow explain``: score the tokens of one text, or the patches of one image (``--image``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..capture import load_model
from ..capture.image import DEFAULT_IMAGE_MODEL
from ..capture.models import DEVICES, DTYPES
from ..capture.plan import capture_planned, heads_to_capture
from ..capture.seq2seq import capture_seq2seq, is_seq2seq_model, require_seq2seq
from ..capture.targets import resolve_target
from ..core import FLOW_ALL_OUTPUTS_BUDGET, graph_conflicts
from ..errors import AttnflowError
from ..explainers.image import explain_image
from ..explainers.text import TARGET_IGNORED, target_needed
from ..explainers.text import explain as run_explain
from ..generation import check_generator, explain_generation
from ..heads import analyze_heads
from ..image_maps import image_view
from ..io import check_input_file, check_output_file
from ..methods.attribution import check_attribution_options, split_methods
from ..methods.flow import EXACT_SECONDS, estimate_flow_seconds
from ..mixing.registry import context_mixing
from ..report.data import mark_report, report_data, report_data_from_capture
from ..report.graphs import report_with_graphs
from ..report.heads_panel import heads_panel
from ..report.seq2seq import seq2seq_report_data
from ..report.terminal import explanation_table
from .common import (
    check_layer,
    check_layer_option,
    choice,
    console,
    error_console,
    model_depth,
    number_range,
    progress_bar,
)
from .options import (
    Graphs,
    HeadFusion,
    OutputPosition,
    Overwrite,
    Residual,
    Truncate,
    TrustRemoteCode,
    method_option,
    model_option,
    target_option,
)
from .report import add_heads_panel, check_report_paths, write_report_files

Model = model_option("minilm; digits-vit for --image")
Methods = method_option("raw, rollout")
Target = target_option("What grad-rollout and the attribution methods explain", encoder_decoder=True)


if TYPE_CHECKING:  # pragma: no cover
    from ..explanation import Explanation


def _check_size_option(value: str | None) -> str | None:
    _parse_size(value, usage=True)
    return value


def explain(
    text: Annotated[
        str | None, typer.Argument(help="The text to explain (or give --image); an encoder-decoder model's source.")
    ] = None,
    decoder_text: Annotated[
        str | None,
        typer.Option(
            "--decoder-text",
            help="Encoder-decoder models (T5, BART, Marian): the target the decoder reads; --output picks the "
            "decoder position to explain [default: the one predicting the last target token].",
        ),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image",
            help="Explain this image instead of a text (ViT-style models; default model digits-vit).",
        ),
    ] = None,
    model: Model = None,
    method: Methods = ["raw", "rollout"],  # noqa: B006  (typer reads the default list, never mutates it)
    graph: Graphs = ["attention"],  # noqa: B006
    output: OutputPosition = None,
    layer: Annotated[
        int, typer.Option(help="Layer to show (1-based; -1 = top).", callback=check_layer_option)
    ] = -1,
    residual: Residual = None,
    head_fusion: HeadFusion = "mean",
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
    truncate: Truncate = False,
    target: Target = None,
    image_size: Annotated[
        str | None,
        typer.Option(
            "--image-size",
            help="With --image: resize to HEIGHTxWIDTH (multiples of the patch size) instead of the processor's size.",
            callback=_check_size_option,
        ),
    ] = None,
    trust_remote_code: TrustRemoteCode = False,
    max_flow_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-flow-seconds",
            help="Refuse, before starting, a flow computation estimated to take longer than this.",
            callback=number_range(0, None, low_open=True),
        ),
    ] = None,
    flow_tolerance: Annotated[
        float | None,
        typer.Option(
            "--flow-tolerance",
            help="Flow as certified intervals at most this wide (a fraction of the output's capacity); 0: exact. "
            "[default: exact when its estimate fits --flow-seconds, else 0.001]",
            callback=number_range(0, 1, high_open=True),
        ),
    ] = None,
    flow_seconds: Annotated[
        float | None,
        typer.Option(
            "--flow-seconds",
            help="Time budget of certified flow: when it runs out, the intervals proven so far are shown, with a "
            "note. [default: 60 for the choice of exact flow, no limit on intervals]",
            callback=number_range(0, None, low_open=True),
        ),
    ] = None,
    overwrite: Overwrite = False,
    generate: Annotated[
        int | None,
        typer.Option(
            "--generate",
            help="Generate N tokens greedily, then explain them (decoder-only: continue the prompt; "
            "encoder–decoder: generate the target).",
            callback=number_range(1, None),
        ),
    ] = None,
    answer: Annotated[
        str,
        typer.Option(
            "--answer",
            help="With --generate: explain the answer span together (span), or each generated token (each).",
            callback=choice("span", "each"),
        ),
    ] = "span",
    words: Annotated[
        bool,
        typer.Option(
            "--words",
            help="Sum subword scores to words (pieces no whitespace separates) in the table, JSON and report.",
        ),
    ] = False,
    dtype: Annotated[
        str | None,
        typer.Option(
            "--dtype",
            help="Load the model in bfloat16, float16 or float32 [default: as saved]; half-precision rows are "
            "renormalised in float64 (a note gives the correction).",
            callback=choice(*DTYPES),
        ),
    ] = None,
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="Run the model on cuda, cpu, or auto (cuda when torch sees a GPU); only the head-fused "
            "attention comes back to the CPU.",
            callback=choice(*DEVICES),
        ),
    ] = "auto",
    heads: Annotated[
        bool,
        typer.Option(
            "--heads",
            help="With --html: add the heads panel, each head's roles (Voita et al.), importance, relevance and "
            "confidence, computed for this text and --target.",
        ),
    ] = False,
    chat: Annotated[
        bool,
        typer.Option(
            "--chat",
            help="Wrap the text in the tokenizer's chat template (a user turn, then the assistant's prompt), as "
            "instruct models are prompted; the template's tokens are scored too and shown as special tokens.",
        ),
    ] = False,
    heads_file: Annotated[
        Path | None,
        typer.Option(
            "--heads-file",
            help="With --html: the heads panel from a heads.json `attnflow heads` wrote, instead of computing it.",
        ),
    ] = None,
    ig_steps: Annotated[int, typer.Option(help="Integration steps of --method integrated-gradients.")] = 50,
    lime_samples: Annotated[int, typer.Option(help="Samples of --method lime.")] = 200,
    max_passes: Annotated[
        int, typer.Option(help="Most model passes --method occlusion or lime may run on the text.")
    ] = 1000,
) -> None:
    """Score every input token (or image patch) for one output, layer by layer, with each method.

    With --image, --png OUT.png writes the image with each method's heatmap over it.
    """

    attention_methods, attribution_methods = split_methods(method)
    check_attribution_options(attribution_methods, ig_steps=ig_steps, lime_samples=lime_samples,
                              max_passes=max_passes)
    if attribution_methods:
        if image is not None:
            raise AttnflowError(f"--method {attribution_methods[0]} scores a text's tokens (terminal table, --json, "
                                "--html, --generate, --decoder-text); it does not take --image yet.")
    options: dict[str, Any] = {"residual": 0.5 if residual is None else residual, "head_fusion": head_fusion}
    graphs = check_graphs(graph, attention_methods, residual, image=image is not None, generate=generate is not None,
                          head_fusion=head_fusion)
    if context_mixing(graphs):
        del options["residual"]  # the context-mixing graphs contain the residual; attention takes the default
    if flow_tolerance is not None or flow_seconds is not None:
        given = "--flow-tolerance" if flow_tolerance is not None else "--flow-seconds"
        if image is not None or generate is not None or decoder_text is not None or "flow" not in method:
            raise AttnflowError(f"{given} is for --method flow on a text (not --image, --generate or --decoder-text).")
        options.update({key: value for key, value in (("flow_tolerance", flow_tolerance),
                                                     ("flow_seconds", flow_seconds)) if value is not None})
    if (text is None) == (image is None):
        raise AttnflowError(
            "Give exactly one thing to explain: a TEXT argument or --image PATH"
            + ("; got both." if text is not None else "; got neither.")
        )
    sources = [image, heads_file]  # no output may be written over one of them
    check_output_file(json_path, "--json", (".json",), inputs=sources, overwrite=overwrite)
    if image is not None and (generate is not None or words or decoder_text is not None or chat):
        given = "--generate" if generate is not None else "--words" if words else "--chat" if chat else "--decoder-text"
        raise AttnflowError(f"{given} is for texts, not --image.")
    if chat and decoder_text is not None:
        raise AttnflowError("--chat is for decoder-only chat models; an encoder-decoder model's --decoder-text has "
                            "no chat template.")
    check_heads_options(heads, heads_file, html_path, image)
    if generate is None and answer != "span":
        raise AttnflowError("--answer chooses how a generated answer is explained; give --generate N too.")
    if image is not None:
        if target is not None and not target_needed(method, options):
            error_console.print(f"note: {TARGET_IGNORED}", highlight=False, markup=False)
        if head_fusion == "importance":
            raise AttnflowError("--head-fusion importance is for texts; for an image give mean, max or min.")
        if svg_path is not None:
            raise AttnflowError("--svg is for texts; for an image, --png OUT.png writes the heatmap over the image.")
        check_output_file(html_path, "--html", (".html", ".htm"), inputs=sources, overwrite=overwrite)
        check_output_file(png_path, "--png", (".png",), inputs=sources, overwrite=overwrite)
        try:  # before loading a model; load_image checks the rest
            what = "is a folder; give an image file" if image.is_dir() else None
            what = what or (None if image.exists() else "the file does not exist")
            what = what or (None if image.is_file() else "it is not a regular file (a device or a pipe)")
        except OSError as exc:
            what = exc.strerror or str(exc)
        if what:
            raise AttnflowError(f"Cannot read the image {str(image)!r}: {what}.")

        loaded = load_model(  # in --dtype: half-precision rows are renormalised in float64, with a note
            DEFAULT_IMAGE_MODEL if model is None else model, trust_remote_code=trust_remote_code, dtype=dtype,
            device=device,
        )
        _check_depth(layer, loaded)
        _explain_image(
            image, loaded, method, output, layer, target, image_size, trust_remote_code,
            json_path, html_path, png_path, svg_path, options,
        )
        return
    wants_report = any(path is not None for path in (html_path, png_path, svg_path))
    if wants_report:

        check_report_paths(html_path, png_path, svg_path, inputs=sources, html_option="--html", overwrite=overwrite)
    # once: explain and the report share it
    model = load_model(model, trust_remote_code=trust_remote_code, dtype=dtype, device=device, chat=chat)

    if decoder_text is not None or is_seq2seq_model(model):
        if context_mixing(graphs):
            raise AttnflowError("--graph with a context-mixing graph is for encoder or decoder-only models, not "
                                "encoder-decoder.")
        if heads or heads_file is not None:
            raise AttnflowError("--heads and --heads-file are for encoder or decoder-only models, not encoder-decoder.")
        explain_seq2seq_command(
            text, model, decoder_text=decoder_text, generate=generate, methods=method, output=output, target=target,
            layer=layer, truncate=truncate, max_flow_seconds=max_flow_seconds, json_path=json_path,
            html_path=html_path, png_path=png_path, svg_path=svg_path, answer=answer, words=words, options=options,
            attribution={"ig_steps": ig_steps, "lime_samples": lime_samples, "max_passes": max_passes}
            if attribution_methods else None,
        )
        return
    if generate is not None and (output is not None or target is not None):
        given = " and ".join(name for name, value in (("--output", output), ("--target", target)) if value is not None)
        raise AttnflowError(
            f"{given} cannot be given with --generate: each generated token is explained at the position that "
            "predicted it, for that token."
        )
    _check_depth(layer, model)
    if generate is not None and (heads or heads_file is not None):
        raise AttnflowError("--heads and --heads-file are for an explained text, not --generate.")
    if generate is not None:
        _explain_generated(
            text, model, generate, answer, words, method, layer, truncate, max_flow_seconds,
            json_path, html_path, png_path, svg_path, options,
            attribution={"ig_steps": ig_steps, "lime_samples": lime_samples, "max_passes": max_passes}
            if attribution_methods else None,
        )
        return
    planned = captured = None
    if context_mixing(graphs) or wants_report or "flow" in method:  # captured once: explain scores it, the

        wants_target = target_needed(attention_methods, options) or bool(attribution_methods)
        planned = capture_planned(  # one pass: the attention, the graphs' tensors, the target
            text, model, heads=heads_to_capture(attention_methods, options),
            mixing=bool(context_mixing(graphs) and attention_methods),
            target=resolve_target(target, model) if wants_target else None, truncate=truncate,
        )
        captured = planned.captured
    if "flow" in method:
        _check_flow_time(captured.attentions.shape, wants_report, max_flow_seconds, outputs=len(graphs),
                         tolerance=flow_tolerance, budget=flow_seconds)
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
            captured=planned,
            every_output="auto" if wants_report else None,  # the report shows what explain computed
            words=words,
            graph=graphs,
            **({"ig_steps": ig_steps, "lime_samples": lime_samples, "max_passes": max_passes}
               if attribution_methods else {}),
            **options,
        )
    console.print(explanation_table(result, layer=layer, words=words))

    def report() -> Any:
        panel = heads_panel_for(text, model, target, truncate, heads, heads_file)
        return _report_data(captured, result, method, layer, options, heads=panel, graphs=graphs)

    write_outputs(result, json_path, html_path=html_path, png_path=png_path, svg_path=svg_path, report=report)


def check_heads_options(heads: bool, heads_file: Path | None, html_path: Path | None, image: Path | None) -> None:
    """``--heads`` / ``--heads-file`` against the other options, before any model loads.

    Examples
    --------
    >>> check_heads_options(True, None, None, None)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: --heads adds the heads panel to a text's HTML report: give --html FILE.html too.
    """
    if not heads and heads_file is None:
        return
    flag = "--heads-file" if heads_file is not None else "--heads"
    if image is not None:
        raise AttnflowError(f"{flag} adds the heads panel to a text's HTML report; it is for texts, not --image.")
    if html_path is None:
        raise AttnflowError(f"{flag} adds the heads panel to a text's HTML report: give --html FILE.html too.")
    if heads and heads_file is not None:
        raise AttnflowError("Give --heads (computed for this text) or --heads-file FILE (read), not both.")
    if heads_file is not None:

        check_input_file(heads_file, "--heads-file")


def heads_panel_for(
    text: str, model: Any, target: str | None, truncate: bool, compute: bool, heads_file: Path | None
) -> dict[str, Any] | None:
    """The report's heads panel: read from ``heads_file``, computed for ``text`` when ``compute``, else ``None``.

    Computed, it is :func:`attnflow.heads.analyze_heads` on this one text for ``target``
    (the model's default when ``None``): importance, relevance, confidence and the
    positional roles. The rare-word role is left out (one text has no word frequencies:
    every word ties) and syntactic roles need parses; ``attnflow heads`` over a data set
    gives both, and ``--heads-file`` shows its heads.json.
    """

    if heads_file is not None:
        return heads_panel(heads_file)
    if not compute:
        return None

    with progress_bar("analysing the heads") as progress:
        report = analyze_heads([text], model, target, truncate=truncate, progress=progress)
    panel = heads_panel(report)
    # one text gives no word frequencies (its words tie), so "the least frequent token" would be its first
    panel["roles"] = [[[label for label in cell if label != "rare"] for cell in row] for row in panel["roles"]]
    panel["source"] = ("computed for this text (no rare-word role: one text has no word frequencies; "
                       "attnflow heads --frequencies gives them)")
    return panel


def check_graphs(
    graphs: list[str], methods: list[str], residual: float | None, *, image: bool = False, generate: bool = False,
    head_fusion: str = "mean",
) -> list[str]:
    """``--graph`` against the other options, before any model loads: the graphs, duplicates dropped.

    ``--residual`` weighs the residual added to attention weights, so it is refused with a
    context-mixing graph (which contains the residual stream); so are gradient methods
    (they weigh attention weights), ``--image`` and ``--generate``; so is a
    ``--head-fusion`` other than mean when no graph is attention (the others sum
    every head).

    Examples
    --------
    >>> check_graphs(["alti", "attention", "alti"], ["rollout"], None)
    ['alti', 'attention']
    """
    chosen = list(dict.fromkeys(graphs or ["attention"]))
    found = graph_conflicts(chosen, methods, residual=residual is not None, head_fusion=head_fusion)
    if not found.others:
        return chosen
    named = f"--graph {' --graph '.join(found.others)}"
    if found.residual:
        raise AttnflowError(
            f"--residual weighs the residual added to attention weights; {named} already contains the residual "
            "stream: leave --residual out, or use --graph attention only."
        )
    if found.gradient_method:
        raise AttnflowError(
            f"--method {found.gradient_method} weighs attention weights by their gradients and runs on the attention "
            f"graph only; drop {named} or the method."
        )
    if image or generate:
        raise AttnflowError(
            f"{named} is for a text's own tokens; {'--image' if image else '--generate'} runs on the attention "
            "graph only."
        )
    if found.head_fusion:  # no graph is the attention weights
        raise AttnflowError(
            f"--head-fusion {head_fusion} combines attention heads; {named} sums every head: leave --head-fusion "
            "out, or add --graph attention."
        )
    return chosen


def _explain_generated(
    text: str,
    model: Any,
    count: int,
    answer: str,
    words: bool,
    methods: list[str],
    layer: int,
    truncate: bool,
    max_flow_seconds: float | None,
    json_path: Path | None,
    html_path: Path | None,
    png_path: Path | None,
    svg_path: Path | None,
    options: dict[str, Any],
    attribution: dict[str, Any] | None = None,
) -> None:
    """``explain --generate N``: continue the prompt, then the table(s), JSON and report of the answer."""

    check_generator(model)
    if "flow" in methods:
        depth = model_depth(model) or 1
        prompt = len(model.tokenizer(text)["input_ids"])
        _check_flow_time((depth, 1, prompt + count, prompt + count), False, max_flow_seconds, outputs=count)
    with progress_bar("generating and explaining") as progress:
        found = explain_generation(  # with a report, every output's scores from the same core calls
            text, model, count, methods, truncate=truncate, progress=progress, words=words, attribution=attribution,
            every_output="auto" if any(path is not None for path in (html_path, png_path, svg_path)) else None,
            **options,
        )
    generation, result = found.generation, found.explanation
    stop = "its end-of-sequence token" if generation.stopped == "eos" else f"{len(generation.answer_ids)} tokens"
    console.print(
        f"answer ({stop}, greedy): {generation.answer!r}", highlight=False, markup=False, soft_wrap=True
    )
    if answer == "each":
        for k in range(len(generation.answer_ids)):
            console.print(explanation_table(result.answer_token(k), layer=layer, words=words))
    else:
        console.print(explanation_table(result, layer=layer, words=words))

    def report() -> Any:
        first = result.answer_token(0)
        first.every_output = result.every_output  # computed with the first answer token
        return _report_data(found.captured, first, methods, layer, options, explanation=result,
                            open_on_answer=answer == "span")

    write_outputs(result, json_path, html_path=html_path, png_path=png_path, svg_path=svg_path, report=report)


def _check_flow_time(
    shape: tuple[int, ...], wants_report: bool, limit: float | None, *, outputs: int = 1,
    tolerance: float | None = None, budget: float | None = None,
) -> None:
    """Say how long flow will take when that is long, and refuse past ``--max-flow-seconds``.

    Certified intervals (``--flow-tolerance`` above 0) have their own budget, ``--flow-seconds``.
    """

    n_layers, n = int(shape[0]), int(shape[-1])
    every_output = wants_report and float(n_layers) ** 2 * float(n) ** 4 <= FLOW_ALL_OUTPUTS_BUDGET
    seconds = estimate_flow_seconds(n_layers, n, outputs=n if every_output else outputs)
    if tolerance or (tolerance is None and estimate_flow_seconds(n_layers, n) > (budget or EXACT_SECONDS)):
        return  # certified intervals: flow_annotated says so in a note
    ways_out = "--method rollout (instant), a shorter text, or a larger --max-flow-seconds"
    if limit is not None and seconds > limit:
        raise AttnflowError(
            f"Attention flow for {n} tokens and {n_layers} layers is estimated at {_duration(seconds)}, "
            f"more than --max-flow-seconds {limit:g}: use {ways_out}."
        )
    if seconds > 60:
        error_console.print(
            f"note: attention flow for {n} tokens and {n_layers} layers will take about {_duration(seconds)} "
            "(an estimate); progress is shown, Ctrl-C stops cleanly, and --method rollout is instant.",
            highlight=False,
            markup=False,
        )


def _duration(seconds: float) -> str:
    """A time estimate as people read it; under 10 s with two significant digits, never "0 s".

    Examples
    --------
    >>> _duration(0.0213), _duration(42.4), _duration(600)
    ('0.021 s', '42 s', '10 min')
    """
    if seconds < 10:
        return f"{seconds:.2g} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def write_outputs(
    result: Any,
    json_path: Path | None,
    *,
    html_path: Path | None = None,
    png_path: Path | None = None,
    svg_path: Path | None = None,
    report: Callable[[], Any] | None = None,
    image_png: Callable[[Path], Path] | None = None,
) -> None:
    """The one writer of explain's files, for every input kind: a text, a generated answer, an image, an
    encoder-decoder pair.

    The JSON is the explanation's own (``result.to_json``); the page and the figures render the
    report data ``report()`` makes, which is called only when one of them is asked for; an image's
    ``--png`` is its heatmap over the image (``image_png``). Every file is written atomically and
    named on the terminal as soon as it is written, so a later failure leaves the earlier files whole.
    """

    def wrote(path: Path) -> None:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)

    if image_png is not None and png_path is not None:
        wrote(image_png(png_path))
        png_path = None
    if json_path is not None:
        result.to_json(json_path)
        wrote(json_path)
    if report is not None and any(path is not None for path in (html_path, png_path, svg_path)):
        for path in write_report_files(report(), html=html_path, png=png_path, svg=svg_path):
            wrote(path)


def _report_data(
    captured: Any,
    result: Explanation,
    methods: list[str],
    layer: int,
    options: dict[str, Any],
    *,
    explanation: Explanation | None = None,
    heads: dict[str, Any] | None = None,
    graphs: list[str] | None = None,
    open_on_answer: bool = True,
) -> Any:
    """The HTML report's data for every output token, from explain's capture and scores.

    The page shows what the explain core computed for every output
    (``explain(..., every_output="auto")``); with context-mixing ``graphs`` each graph's
    methods join it as ``GRAPH/METHOD`` (:func:`attnflow.report.graphs.report_with_graphs`).
    For a generated
    answer, ``explanation`` is the whole answer's (``result`` its first token's): the
    report marks the prompt and the answer, and shows every answer token's scores and
    the span's (opening on the span when ``open_on_answer``, as the terminal printed it).
    ``heads`` is the heads panel (:func:`heads_panel_for`), or ``None``.
    """

    with progress_bar("preparing the report") as progress:
        if graphs and context_mixing(graphs):

            data = report_with_graphs(captured, graphs, methods, result, layer=layer, **_fusion(options, result))
        else:
            data = report_data_from_capture(
                captured, methods=methods, output=result.output, layer=layer, progress=progress,
                explanation=result, computed=result.every_output.get("attention"), **_fusion(options, result),
            )
    if explanation is not None or result.words is not None:

        data = mark_report(data, explanation if explanation is not None else result, open_on_answer=open_on_answer)
    if getattr(captured, "head_fusion", None) is not None:  # fused while the model ran: say how many heads it has
        data = dataclasses.replace(data, n_heads=captured.model_heads)
    if heads is not None:

        add_heads_panel(data, heads)
    return data


def _check_depth(layer: int, loaded: Any) -> None:
    depth = model_depth(loaded)
    if depth is not None:
        check_layer(layer, depth)


def _parse_size(value: str | None, usage: bool = False) -> tuple[int, int] | None:
    if value is None:
        return None
    parts = value.lower().replace("×", "x").split("x")
    try:
        height, width = (int(part) for part in parts)
        if height < 1 or width < 1:
            raise ValueError
    except ValueError:
        if usage:
            raise typer.BadParameter(f"must be HEIGHTxWIDTH in pixels, e.g. 224x320; got {value!r}.") from None
        raise AttnflowError(f"--image-size must be HEIGHTxWIDTH in pixels, e.g. 224x320; got {value!r}.") from None
    return height, width


def _explain_image(
    image: Path,
    model: Any,
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
        f"{', '.join(result.tokens[p] for p in result.special_positions) or 'none'} (scored, no bar)",
        highlight=False,
    )
    line = prediction_line(getattr(result.captured, "prediction", None), result.target)
    if line:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    write_outputs(result, json_path, html_path=html_path, png_path=png_path,
                  report=lambda: image_report_data(result, layer=layer, **options),
                  image_png=lambda path: result.to_png(path, layer=layer))


def prediction_line(prediction: dict[str, Any] | None, target: Any) -> str | None:
    """What an image classifier predicted, and the class grad-rollout explains when that is another one.

    Examples
    --------
    >>> prediction_line({"class": 7, "label": "7", "probability": 0.9561}, None)
    'predicted class 7 (probability 0.956)'
    >>> prediction_line({"class": 1, "label": "cat", "probability": 0.5}, {"class": 0, "label": "dog"})
    "predicted class 1 'cat' (probability 0.500); grad-rollout explains class 0 'dog'"
    """
    if not prediction:
        return None

    def named(index: Any, label: Any) -> str:
        return f"class {index}" + ("" if str(label) == str(index) else f" {str(label)!r}")

    line = f"predicted {named(prediction['class'], prediction['label'])} (probability {prediction['probability']:.3f})"
    if isinstance(target, dict) and "class" in target and target["class"] != prediction["class"]:
        line += f"; grad-rollout explains {named(target['class'], target.get('label', target['class']))}"
    return line


def method_list(methods: list[str]) -> list[str]:
    return list(dict.fromkeys(methods))


def image_report_data(result: Any, *, layer: int = -1, **options: Any) -> Any:
    """Report data for an :class:`attnflow.explainers.image.ImageExplanation`: every output, and the image view."""

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
        explanation=result,
        **options,
    )
    view = image_view(result.picture(), captured.grid, captured.patch_positions, source=captured.source)
    return dataclasses.replace(data, image=view)  # replace() checks the view


def _fusion(options: dict[str, Any], result: Explanation) -> dict[str, Any]:
    """``head_fusion="importance"`` becomes the head weights ``explain`` computed, so the report shows the same maps.

    The flow options stay with explain: the report takes its flow from the explanation.
    """
    options = {key: value for key, value in options.items() if key not in ("flow_tolerance", "flow_seconds")}
    if options.get("head_fusion") == "importance" and "head_importance" in result.options:
        return {**options, "head_fusion": result.options["head_importance"]}
    return options


def explain_seq2seq_command(
    text: str,
    model: Any,
    *,
    decoder_text: str | None,
    generate: int | None,
    methods: list[str],
    output: str | None,
    target: str | None,
    layer: int,
    truncate: bool,
    max_flow_seconds: float | None,
    json_path: Path | None,
    html_path: Path | None,
    png_path: Path | None,
    svg_path: Path | None,
    answer: str,
    words: bool,
    options: dict[str, Any],
    attribution: dict[str, Any] | None = None,
) -> None:
    """``explain --decoder-text TARGET`` / ``--generate N`` on an encoder–decoder model: the table, JSON, report.

    ``TEXT`` is the source. ``--output`` is a decoder position (default: the one that
    predicts the last target token), ``--layer`` a decoder layer, ``--target`` what
    grad-rollout explains (``next``, ``predicted`` or a vocabulary token).
    """

    require_seq2seq(model, "--decoder-text" if decoder_text is not None else "--generate")
    if decoder_text is None and generate is None:
        raise AttnflowError(
            f"The model {model.name!r} is an encoder-decoder model: give the target with --decoder-text TEXT, or let "
            "it write one with --generate N."
        )
    if decoder_text is not None and generate is not None:
        raise AttnflowError("Give one of --decoder-text (the target to read) and --generate N, not both.")
    refused = [name for name, on in (("--answer each", answer != "span"), ("--words", words),
                                     ("--png", png_path is not None), ("--svg", svg_path is not None)) if on]
    if refused:
        raise AttnflowError(
            f"{refused[0]} is not available for encoder-decoder models; --output picks the decoder position, "
            "--json and --html write the explanation."
        )
    if options.get("head_fusion") == "importance":
        raise AttnflowError(
            "--head-fusion importance is not available for encoder-decoder models; use mean, max or min."
        )
    captured = capture_seq2seq(text, model, decoder_text=decoder_text, generate=generate, truncate=truncate)
    check_layer(layer, captured.n_decoder_layers)
    if "flow" in methods:
        depth = captured.n_encoder_layers + 2 * captured.n_decoder_layers  # the layered graph's layers
        nodes = captured.n_source + captured.n_target
        _check_flow_time((depth, 1, nodes, nodes), False, max_flow_seconds)
    with progress_bar("explaining") as progress:
        result = run_explain(
            text, model, methods=methods, output=output, target=target, decoder_text=decoder_text, generate=generate,
            truncate=truncate, progress=progress, captured=captured,  # the report shows what the core computed
            every_output="auto" if html_path is not None else None, **(attribution or {}), **options,
        )
    if captured.generated:
        console.print(
            f"target ({captured.n_target - 1} tokens, greedy): {captured.target_text!r}",
            highlight=False, markup=False, soft_wrap=True,
        )
    console.print(explanation_table(result, layer=layer))

    write_outputs(result, json_path, html_path=html_path,
                  report=lambda: seq2seq_report_data(result, captured, layer=layer))
