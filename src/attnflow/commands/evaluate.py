"""``attnflow evaluate``: judge methods against blank-out and gradients, and by faithfulness, on a data file."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..batch import evaluation_result, run_batch
from ..capture import load_model
from ..capture.models import quiet_transformers
from ..capture.seq2seq import is_seq2seq_model
from ..core import graph_conflicts
from ..data import image_files, read_dataset, screen_examples
from ..errors import AttnflowError
from ..evaluate import default_methods, read_examples
from ..evaluate import evaluate as run_evaluate
from ..evaluate.image_faithfulness import DEFAULT_METHODS, image_faithfulness
from ..evaluate.runner import IntegratedGradientsWarning
from ..evaluate.seq2seq import evaluate_seq2seq
from ..io import check_input_file, check_output_folder, csv_bytes, write_folder
from ..methods import get_method
from ..methods.attribution import check_attribution_options, split_methods
from ..mixing.registry import context_mixing
from ..plots import figure_png
from ..report.stacking import StackingTable
from ..tasks.digits import digits_test_set
from ..tasks.seq2seq_task import correlation_table
from .common import (
    check_layer_option,
    check_methods,
    check_output_option,
    choice,
    console,
    given_options,
    number_range,
    progress_bar,
    usage_error,
)
from .options import (
    Graphs,
    HeadFusion,
    Overwrite,
    Residual,
    Truncate,
    TrustRemoteCode,
    method_option,
    model_option,
    target_option,
)

Model = model_option("minilm; digits-vit for --images")
Methods = method_option("raw, rollout and flow")
Target = target_option("What the output is measured by")


if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

    from ..evaluate import EvaluationResult

_GROUND_TRUTHS = ("blankout", "gradient", "saliency", "grad_x_input", "integrated_gradients")
OUTPUT_FILES = ("results.json", "examples.csv", "correlation.png")


def evaluate(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for results.json, examples.csv and correlation.png.")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", help="Examples: .txt (a text a line), .jsonl or .csv (a 'text' column, optional 'label')."
        ),
    ] = None,
    images: Annotated[
        str | None,
        typer.Option(
            "--images",
            help="Instead of --data: image faithfulness (deletion and insertion AUCs) on a folder of images, or "
            "'digits' (the digits-vit test set).",
        ),
    ] = None,
    model: Model = None,
    method: Methods = None,
    graph: Graphs = None,
    target: Target = None,
    ground_truth: Annotated[
        list[str] | None,
        typer.Option(
            "--ground-truth",
            help="Ground truth to compare with; repeat for several. "
            f"Available: {', '.join(_GROUND_TRUTHS)} (default: all).",
            callback=choice(*_GROUND_TRUTHS),
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            help="Output the methods explain: cls, last, mean or an index (default: by model and target).",
            callback=check_output_option,
        ),
    ] = None,
    blank: Annotated[str, typer.Option(help="Token that blanks a token out: unk, mask, pad or a token.")] = "unk",
    faithfulness: Annotated[
        bool, typer.Option(help="Compute comprehensiveness, sufficiency and AOPC (with a random baseline).")
    ] = True,
    percent: Annotated[
        list[int] | None,
        typer.Option(
            "--percent",
            help="Top-k % removed for faithfulness; repeat (default: 10..50).",
            callback=number_range(1, 100),
        ),
    ] = None,
    faithfulness_layer: Annotated[
        int,
        typer.Option(help="Layer whose scores rank tokens for faithfulness (-1 = top).", callback=check_layer_option),
    ] = -1,
    removal: Annotated[
        str,
        typer.Option(
            help="delete removed tokens, or blank them (replace by --blank).", callback=choice("delete", "blank")
        ),
    ] = "delete",
    ig_steps: Annotated[
        int,
        typer.Option(help="Integration steps of integrated gradients; a warning names examples whose "
                     "convergence delta exceeds 5 %.", callback=number_range(1)),
    ] = 50,  # attnflow.evaluate.runner.IG_STEPS (a test keeps them equal; importing it here is slow)
    seed: Annotated[int, typer.Option(help="Seed of the random baseline.")] = 0,
    lime_samples: Annotated[
        int, typer.Option(help="Samples LIME draws per example (--method lime).")
    ] = 200,  # attnflow.methods.attribution.LIME_SAMPLES
    max_passes: Annotated[
        int, typer.Option(help="Most model passes occlusion or LIME may run on one example.")
    ] = 1000,  # attnflow.methods.attribution.MAX_PASSES
    batch_size: Annotated[
        int | None,
        typer.Option(help="Sequences per forward pass (default: as many as memory allows).", callback=number_range(1)),
    ] = None,
    residual: Residual = 0.5,
    head_fusion: HeadFusion = "mean",
    truncate: Truncate = False,
    trust_remote_code: TrustRemoteCode = False,
    n: Annotated[
        int | None,
        typer.Option("--n", help="With --images: the first N images [default: 200 digits; every image of a folder].",
                     callback=number_range(1)),
    ] = None,
    fill: Annotated[
        str, typer.Option(help="With --images: what a blanked patch becomes: black or mean.",
                          callback=choice("black", "mean"))
    ] = "black",
    engine: Annotated[
        str | None,
        typer.Option(
            help="Run in resumable shards under --out (manifest.json, scores/): local worker processes or ray "
            "[default: one process, no shards].",
            callback=choice("local", "ray"),
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="With --engine: workers, each loading the model once [default: one per core].",
                                 callback=number_range(1))
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="With --engine: torch and numba threads per worker [default: cores / workers].",
                                 callback=number_range(1))
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="With --engine ray: the cluster (HOST:PORT, auto, ray://...) [default: a local "
                                 "Ray].")
    ] = None,
    shard_size: Annotated[
        int, typer.Option(help="With --engine: examples per shard, the unit written at once and resumed.",
                          callback=number_range(1))
    ] = 16,
    overwrite: Overwrite = False,
) -> None:
    """Compare methods with blank-out and gradient importance (Spearman, per layer) and measure faithfulness."""

    given = given_options(ctx)

    attention_methods, attribution_methods = split_methods(method or [])
    check_attribution_options(attribution_methods, ig_steps=ig_steps, lime_samples=lime_samples,
                              max_passes=max_passes)
    if attribution_methods and images is not None:
        _usage(ctx, f"--method {attribution_methods[0]} is a text attribution method; for --images use raw, "
               "rollout or flow.")
    if attribution_methods and engine is not None:
        _usage(ctx, f"--method {attribution_methods[0]} is not in sharded runs yet; leave out --engine.")
    if (data is None) == (images is None):
        _usage(ctx, "Give exactly one of --data (texts) and --images (a folder of images, or digits).")
    if images is not None:
        wrong = sorted(given & _TEXT_ONLY)
        if wrong:
            _usage(ctx, f"{', '.join(_flag(name) for name in wrong)}: for texts (--data), not for --images.")
        evaluate_images(images, out, model, method, n, fill, faithfulness_layer, seed, residual, head_fusion,
                        overwrite, _checked_graphs(ctx, graph, given, method, engine))
        return
    wrong = sorted(given & {"n", "fill"})
    if wrong:
        _usage(ctx, f"{', '.join(_flag(name) for name in wrong)}: for --images, not for --data.")
    if engine is None:
        wrong = sorted(given & {"workers", "threads", "address", "shard_size"})
        if wrong:
            _usage(ctx, f"{', '.join(_flag(name) for name in wrong)}: for a sharded run; add --engine local or ray.")
    elif address is not None and engine != "ray":
        _usage(ctx, "--address is for --engine ray.")
    graphs = _checked_graphs(ctx, graph, given, method, engine)
    others = context_mixing(graphs)
    check_input_file(data, "--data")
    if engine is not None:
        methods = check_methods(list(method)) if method else list(default_methods())
        accepted = set().union(*(get_method(name).options for name in methods))
        options = {k: v for k, v in (("residual", residual), ("head_fusion", head_fusion)) if k in accepted}
        evaluation = {
            "ground_truths": list(ground_truth) if ground_truth else list(_GROUND_TRUTHS), "blank": blank,
            "faithfulness": faithfulness, "percents": list(percent) if percent else [10, 20, 30, 40, 50],
            "faithfulness_layer": faithfulness_layer, "removal": removal, "ig_steps": ig_steps, "seed": seed,
            "batch_size": batch_size,
        }
        evaluate_sharded(data, out, model, methods, target, output, truncate, trust_remote_code, engine, workers,
                         threads, address, shard_size, overwrite, evaluation, options)
        return
    check_output_folder(out, inputs=[data], names=OUTPUT_FILES, overwrite=overwrite)
    examples = read_examples(data)
    methods = check_methods(list(method)) if method else list(default_methods())

    with quiet_transformers():
        model = load_model(model, trust_remote_code=trust_remote_code)  # once: screened here, evaluated below

    if is_seq2seq_model(model):
        evaluate_seq2seq_data(ctx, data, out, model, methods, given, attribution={
            "ig_steps": ig_steps, "lime_samples": lime_samples, "max_passes": max_passes, "seed": seed})
        return
    examples = screen_examples(examples, model, truncate=truncate)  # the rows batch skips, counted alike
    accepted = set().union(*(get_method(name).options for name in split_methods(methods)[0]))
    options = {key: value for key, value in (("residual", residual), ("head_fusion", head_fusion)) if key in accepted}
    if others:  # the context-mixing graphs contain the residual; the attention graph takes the default
        options.pop("residual", None)
    with progress_bar("evaluating") as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IntegratedGradientsWarning)
        result = run_evaluate(
            examples,
            model,
            methods=methods,
            target=target,
            ground_truths=list(ground_truth) if ground_truth else _GROUND_TRUTHS,
            output=output,
            blank=blank,
            faithfulness=faithfulness,
            percents=list(percent) if percent else (10, 20, 30, 40, 50),
            faithfulness_layer=faithfulness_layer,
            removal=removal,
            ig_steps=ig_steps,
            batch_size=batch_size,
            seed=seed,
            truncate=truncate,
            trust_remote_code=trust_remote_code,
            progress=progress,
            graphs=graphs,
            lime_samples=lime_samples,
            max_passes=max_passes,
            **options,
        )
    files = render_outputs(result)
    write_folder(out, files)
    report_evaluation(result, out, files, sum(issubclass(w.category, IntegratedGradientsWarning) for w in caught))
    report_skipped(examples.skipped)


def report_skipped(skipped: list[dict[str, Any]]) -> None:
    """One line per reason: how many rows of the data file were skipped, and which (as ``attnflow batch`` counts).

    Examples
    --------
    >>> report_skipped([{"example": 3, "reason": "empty text"}])
    skipped 1 row(s) of the data file: empty text (rows 3, from 0)
    """
    reasons: dict[str, list[int]] = {}
    for item in skipped:
        reasons.setdefault(item["reason"], []).append(int(item["example"]))
    for reason, rows in reasons.items():
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        console.print(f"skipped {len(rows)} row(s) of the data file: {reason} (rows {shown}, from 0)",
                      highlight=False, markup=False)


def _checked_graphs(
    ctx: typer.Context, graph: list[str] | None, given: set[str], method: list[str] | None, engine: str | None
) -> list[str]:
    """The ``--graph`` list (default ``["attention"]``), refusing what only the attention graph takes."""
    graphs = list(dict.fromkeys(graph or ["attention"]))
    found = graph_conflicts(graphs, method or [], residual="residual" in given)
    if found.others:
        named = "--graph " + " --graph ".join(found.others)
        if engine is not None:
            _usage(ctx, f"{named}: a sharded run (--engine) evaluates the attention graph only.")
        if found.residual:
            _usage(ctx, f"--residual weighs the residual added to attention weights; {named} already contains the "
                   "residual stream: leave --residual out, or use --graph attention only.")
        if found.gradient_method:
            _usage(ctx, f"--method {found.gradient_method} weighs attention weights by their gradients and runs on "
                   f"the attention graph only; drop {named} or the method.")
    return graphs


#: Options of texts only (not for --images), by parameter name.
_TEXT_ONLY = frozenset({
    "target", "ground_truth", "output", "blank", "faithfulness", "percent", "removal", "ig_steps",
    "batch_size", "truncate", "trust_remote_code", "engine", "workers", "threads", "address", "shard_size",
})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _usage(ctx: typer.Context, message: str) -> None:
    raise usage_error(ctx, message)


def report_evaluation(result: EvaluationResult, out: Path, files: dict[str, bytes], n_warned: int) -> None:
    """Print the header, the tables and the integrated-gradients line; then what was written."""
    from rich.columns import Columns

    console.print(evaluation_header(result), highlight=False)
    tables = evaluation_tables(result)
    console.print(Columns(tables[: len(result.ground_truths)]))  # side by side where the terminal is wide enough
    for table in tables[len(result.ground_truths) :]:
        console.print(table)
    line = ig_delta_line(result, n_warned)
    if line:
        console.print(line, highlight=False)
    console.print(f"wrote {', '.join(str(out / name) for name in files)}")


def evaluate_sharded(
    data: Path, out: Path, model: str | None, methods: list[str], target: str | None, output: str | None,
    truncate: bool, trust_remote_code: bool, engine: str, workers: int | None, threads: int | None,
    address: str | None, shard_size: int, overwrite: bool, evaluation: dict[str, Any], options: dict[str, Any],
) -> None:
    """``attnflow evaluate --engine``: :func:`attnflow.batch.run_batch` with evaluation, then the usual outputs.

    Shards, manifest and resume are the batch runner's (``OUT/manifest.json``, ``OUT/scores/``,
    ``OUT/summary.json``); ``results.json``, ``examples.csv`` and ``correlation.png`` are made from
    the finished rows (:func:`attnflow.batch.evaluation_result`).
    """

    check_output_folder(out, inputs=[data], names=OUTPUT_FILES, overwrite=True)  # a file, or the data inside
    with progress_bar("evaluating") as progress:
        batch = run_batch(
            data, out, model, methods, output=output, target=target, truncate=truncate, shard_size=shard_size,
            engine=engine, workers=workers, threads=threads, address=address, overwrite=overwrite,
            evaluation=evaluation, trust_remote_code=trust_remote_code, progress=progress, **options,
        )
    result = evaluation_result(out)
    files = render_outputs(result)
    write_folder(out, files)
    summary, run = batch.summary, batch.summary["last_run"]
    rate = f", {run['examples_per_second']:.2f} examples/s" if run["examples_per_second"] else ""
    console.print(
        f"{summary['n_examples']} examples evaluated ({run['examples']} in this run on {run['workers']} "
        f"{run['engine']} worker(s){rate}), {summary['n_skipped']} skipped",
        highlight=False,
    )
    for reason, count in summary["skipped_reasons"].items():
        console.print(f"  skipped {count}: {reason}", highlight=False, markup=False)
    n_warned = (result.to_dict().get("ig_delta") or {}).get("n_above_warning", 0)
    report_evaluation(result, out, {**files, "summary.json": b"", "scores/": b""}, n_warned)


def evaluate_images(
    images: str, out: Path, model: str | None, method: list[str] | None, n: int | None, fill: str,
    layer: int, seed: int, residual: float, head_fusion: str, overwrite: bool, graphs: list[str] | None = None,
) -> None:
    """``attnflow evaluate --images``: deletion and insertion AUCs against a random order, into ``results.json``.

    With a context-mixing ``--graph`` the default methods are those that run on any graph (not grad-rollout)."""
    import json


    graphs = graphs or ["attention"]
    others = context_mixing(graphs)
    defaults = [name for name in DEFAULT_METHODS if not (others and get_method(name).needs_gradients)]
    methods = check_methods(list(method)) if method else defaults
    accepted = set().union(*(get_method(name).options for name in methods))
    options = {k: v for k, v in (("residual", residual), ("head_fusion", head_fusion)) if k in accepted}
    if others:  # the context-mixing graphs contain the residual; the attention graph takes the default
        options.pop("residual", None)
    labels = None
    if images.strip().lower() == "digits":

        chosen, labels = digits_test_set(200 if n is None else n)
        items: list[Any] = list(chosen)
        source = f"the first {len(items)} digits-vit test images"
    else:

        items = list(image_files(images))[:n]
        source = f"{len(items)} images of {images}"
    check_output_folder(out, names=("results.json",), overwrite=overwrite)
    with progress_bar("evaluating") as progress:
        result = image_faithfulness(
            items, model or "digits-vit", methods, layer=layer, fill=fill, seed=seed, labels=labels,
            progress=progress, graphs=graphs, **options,
        )
    payload = dict(result.to_dict(), images=source)
    write_folder(out, {"results.json": (json.dumps(payload, indent=2) + "\n").encode("utf-8")})
    accuracy = "" if result.accuracy is None else f" · accuracy {result.accuracy:.3f}"
    console.print(
        f"model {result.model} · {source}{accuracy} · layer {result.layer} · fill {result.fill} · seed {result.seed}",
        highlight=False, markup=False,
    )
    console.print(result.table(), highlight=False, markup=False)
    console.print(f"wrote {out / 'results.json'}", highlight=False)


def render_outputs(result: EvaluationResult) -> dict[str, bytes]:
    """Every output file's bytes, computed before anything is written."""

    return {
        "results.json": (result.to_json() + "\n").encode("utf-8"),
        "examples.csv": csv_bytes(result.to_dataframe()),
        "correlation.png": figure_png(result.plot()),
    }


def ig_delta_line(result: EvaluationResult, n_warned: int) -> str:
    """One line on integrated gradients' convergence: median and largest relative delta, and a warning.

    Empty when integrated gradients were not computed.

    Examples
    --------
    >>> from attnflow.evaluate import EvaluationResult
    >>> ig_delta_line(EvaluationResult("toy", {"spec": "norm"}, [], [], 2, "mean", (10,), None, {}, []), 0)
    ''
    """
    summary = result.to_dict().get("ig_delta")
    if not summary:
        return ""
    line = (
        f"integrated gradients ({result.options.get('ig_steps')} steps): convergence delta "
        f"{summary['relative_median']:.1%} of S(x) - S(baseline) (median), {summary['relative_max']:.1%} at most"
    )
    if n_warned:
        line += (
            f"; warning: {n_warned} of {summary['n_examples']} examples over "
            f"{summary['warning_threshold']:.0%}, raise --ig-steps"
        )
    return line


def evaluation_header(result: EvaluationResult) -> str:
    """One line: model, target, number of examples and the explained output.

    Examples
    --------
    >>> from attnflow.evaluate import EvaluationResult
    >>> evaluation_header(EvaluationResult("toy", {"spec": "norm"}, [], [], 2, "mean", (10,), None, {}, []))
    'model toy · target norm · 0 examples · output mean · special tokens excluded'
    """
    return (
        f"model {result.model_name} · target {result.target.get('spec', '')} · {result.n_examples} examples · "
        f"output {result.output} · special tokens excluded"
    )


def _cell(pair: Any) -> str:
    mean, sd = float(pair[0]), float(pair[1])
    if mean != mean:
        return "–"
    return f"{mean:+.2f} ± {sd:.2f}" if sd == sd else f"{mean:+.2f}"


def evaluation_tables(result: EvaluationResult) -> list[Table]:
    """The terminal report: a correlation table per ground truth (rows are layers), then faithfulness.

    Cells are mean ± sd over the examples; :func:`evaluation_header` says what was measured.

    Examples
    --------
    >>> from attnflow.evaluate import EvaluationResult
    >>> r = EvaluationResult("toy", {"spec": "norm"}, ["rollout"], ["blankout"], 2, "mean", (10,), None, {}, [])
    >>> [t.row_count for t in evaluation_tables(r)]
    [2]
    """

    tables = []
    for truth in result.ground_truths:
        table = StackingTable(title=f"Spearman ρ with {truth}", title_justify="left", header_style="bold")
        table.add_column("layer", justify="right")
        stats = {m: result.correlation(truth, m) for m in result.methods}
        inputs = result.options.get("input_methods") or {}
        for method in result.methods:  # attribution methods have no layers: their column repeats
            table.add_column(f"{method} (input)" if method in inputs else method, justify="right")
        for layer in range(result.n_layers):
            table.add_row(str(layer + 1), *(_cell(stats[m][layer]) for m in result.methods))
        tables.append(table)
    if result.faithfulness_layer is not None:
        summary = result.faithfulness_summary()
        table = StackingTable(
            title=f"Faithfulness at layer {result.faithfulness_layer}",
            caption=f"top {', '.join(map(str, result.percents))} % of tokens removed "
            f"({result.options.get('removal')}); "
            "comprehensiveness: higher is better; sufficiency: lower is better; ranked by comprehensiveness; "
            "attribution methods score the input, not a layer",
            title_justify="left",
            caption_justify="left",
            header_style="bold",
        )
        table.add_column("rank", justify="right")
        table.add_column("method")
        table.add_column("AOPC comprehensiveness", justify="right")
        table.add_column("AOPC sufficiency", justify="right")
        for rank, (name, values) in enumerate(ranked_faithfulness(summary), start=1):
            table.add_row(
                str(rank),
                name,
                _cell(_nan_pair(values["aopc_comprehensiveness"])),
                _cell(_nan_pair(values["aopc_sufficiency"])),
                style="dim" if name == "random" else "",
            )
        tables.append(table)
    return tables


def ranked_faithfulness(summary: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The faithfulness summary's methods, highest AOPC comprehensiveness first (undefined last).

    Examples
    --------
    >>> s = {"raw": {"aopc_comprehensiveness": [0.1, 0.0]}, "flow": {"aopc_comprehensiveness": [0.3, 0.0]},
    ...      "random": {"aopc_comprehensiveness": [None, None]}}
    >>> [name for name, _ in ranked_faithfulness(s)]
    ['flow', 'raw', 'random']
    """
    def key(item: tuple[str, dict[str, Any]]) -> float:
        mean = item[1]["aopc_comprehensiveness"][0]
        return float("inf") if mean is None or mean != mean else -float(mean)

    return sorted(summary.items(), key=key)


def _nan_pair(pair: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in pair]


#: The options an encoder-decoder evaluation takes (the others are refused in one line).
_SEQ2SEQ_OPTIONS = frozenset({"data", "out", "model", "method", "overwrite", "trust_remote_code", "ig_steps",
                              "lime_samples", "max_passes", "seed"})


def evaluate_seq2seq_data(
    ctx: typer.Context, data: Path, out: Path, model: Any, methods: list[str], given: set[str],
    attribution: dict[str, Any] | None = None,
) -> None:
    """``attnflow evaluate --data PAIRS --model ENCODER-DECODER``: Spearman with blank-out and input gradients.

    The data's ``text`` column is the source and its ``target`` column the target
    text; every target token is explained at the position that predicts it, its
    log-probability the scalar (:func:`attnflow.evaluate.seq2seq.evaluate_seq2seq`; ``attribution``: the
    attribution methods' options).
    Writes ``results.json`` into ``--out``.
    """
    import json


    wrong = sorted(given - _SEQ2SEQ_OPTIONS)
    if wrong:
        _usage(ctx, f"{', '.join(_flag(name) for name in wrong)}: not available for an encoder-decoder model, whose "
               "evaluation takes --data (text and target columns), --method and --out (and --ig-steps, --lime-samples, "
               "--max-passes and --seed for attribution methods).")

    dataset = read_dataset(data, target_column="target")  # the target texts: a missing column is one line
    pairs = [(r.text, r.target) for r in dataset.records if r.text and r.target]
    if not pairs:
        raise AttnflowError(f"No row of {dataset.source!r} has both a text and a target.")
    skipped = len(dataset.records) - len(pairs)
    with progress_bar("evaluating") as progress:
        result = evaluate_seq2seq(pairs, model, methods, progress=progress, attribution=attribution)
    result["skipped_rows"] = skipped
    write_folder(out, {"results.json": (json.dumps(result, indent=2) + "\n").encode()})
    console.print(correlation_table(result))
    if skipped:
        console.print(f"skipped {skipped} rows without a text or a target", highlight=False)
    console.print(f"wrote {out / 'results.json'}", highlight=False, soft_wrap=True)
