"""``attnflow batch``: explain every row of a data set into resumable Parquet shards, locally or on Ray."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ..batch import run_batch
from ..batch.engines import ENGINES
from ..errors import AttnflowError
from ..io import check_input_file
from ..methods import get_method
from ..methods.attribution import split_methods
from ..mixing.registry import context_mixing
from .common import (
    check_methods,
    choice,
    console,
    error_console,
    number_range,
)
from .explain import check_graphs
from .options import (
    Graphs,
    HeadFusion,
    OutputPosition,
    Residual,
    TrustRemoteCode,
    method_option,
    model_option,
    target_option,
)

Model = model_option("minilm; digits-vit for --images")
Methods = method_option("raw, rollout")
Target = target_option("What grad-rollout and the attribution methods explain")



def batch(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for manifest.json, scores/part-*.parquet and summary.json.")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d",
            help="Data set: .jsonl, .csv, .parquet, .txt, or a folder saved by datasets' save_to_disk.",
        ),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="Instead of --data: a folder of images (.png, .jpg, ...), explained with an image model "
            "[default model: digits-vit]; one row per image x method x layer.",
        ),
    ] = None,
    method: Methods = ["raw", "rollout"],  # noqa: B006  (typer reads the default list, never mutates it)
    graph: Graphs = ["attention"],  # noqa: B006
    model: Model = None,
    text_column: Annotated[str, typer.Option(help="Column holding the texts.")] = "text",
    label_column: Annotated[str, typer.Option(help="Column holding gold labels (used when present).")] = "label",
    target_column: Annotated[
        str | None, typer.Option(help="Column holding each row's target (a class index or label).")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split of a datasets folder (DatasetDict).")] = None,
    decoder_column: Annotated[
        str | None,
        typer.Option(
            help="For an encoder-decoder model (T5, BART, Marian, reverse): the column of each row's target, read by "
            "the decoder; the text column is the source. One row per example x method x decoder layer.",
        ),
    ] = None,
    output: OutputPosition = None,
    target: Target = None,
    residual: Residual = None,
    head_fusion: HeadFusion = "mean",
    words: Annotated[
        bool,
        typer.Option(
            "--words",
            help="Also sum each row's scores to words (pieces no whitespace separates): columns words, word_scores.",
        ),
    ] = False,
    truncate: Annotated[
        bool, typer.Option(help="Cut texts longer than the model's maximum (else they are skipped).")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.", callback=number_range(1))] = 16,
    shard_size: Annotated[
        int, typer.Option(help="Rows per shard: the unit written at once and resumed.", callback=number_range(1))
    ] = 64,
    engine: Annotated[
        str, typer.Option(help="local (worker processes on this machine) or ray.", callback=choice(*ENGINES))
    ] = "local",
    workers: Annotated[
        int | None, typer.Option(help="Workers, each loading the model once [default: one per core / per cluster CPU].")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="torch and numba threads per worker [default: cores / workers].")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(help="With --engine ray: the cluster (HOST:PORT, auto, ray://...) [default: a local Ray]."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a run in --out made with other options, model or data.")
    ] = False,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate",
            help="Also judge each row as attnflow evaluate does: ground truths, Spearman per layer, faithfulness.",
        ),
    ] = False,
    ground_truth: Annotated[
        list[str] | None,
        typer.Option(
            "--ground-truth",
            help="With --evaluate: blankout, gradient, saliency, grad_x_input or integrated_gradients; "
            "repeat (default: all).",
        ),
    ] = None,
    faithfulness: Annotated[
        bool, typer.Option(help="With --evaluate: comprehensiveness, sufficiency and AOPC.")
    ] = True,
    blank: Annotated[str, typer.Option(help="With --evaluate: the blank token (unk, mask, pad or a token).")] = "unk",
    ig_steps: Annotated[
        int | None, typer.Option(help="Integrated-gradients steps (--evaluate's yardstick, --method "
                                 "integrated-gradients and gradient-shap).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random baseline (--evaluate, --method random, lime).")] = 0,
    lime_samples: Annotated[int, typer.Option(help="Samples of --method lime.")] = 200,
    max_passes: Annotated[
        int, typer.Option(help="Most model passes --method occlusion or lime may run on one row.")
    ] = 1000,
    trust_remote_code: TrustRemoteCode = False,
) -> None:
    """Explain every row of a data set, one Parquet row per example x method x layer; rerun to resume."""

    check_input_file(data, "--data")
    check_methods(method)
    attention_methods, attribution_methods = split_methods(method)
    attribution = None
    if attribution_methods:  # they run the model on each row at its first layer's input (layer 0 in the rows)
        if evaluate:
            raise AttnflowError(f"--method {attribution_methods[0]} is an attribution method; attnflow batch "
                                "--evaluate does not judge them yet: use attnflow evaluate.")
        attribution = {"ig_steps": 50 if ig_steps is None else ig_steps, "lime_samples": lime_samples,
                       "max_passes": max_passes, "seed": seed}
        ig_steps = None  # given to the methods, not to --evaluate
    graphs = check_graphs(graph, attention_methods, residual)  # run_batch refuses --images with them
    options: dict[str, object] = {"head_fusion": head_fusion}
    if not context_mixing(graphs):  # the context-mixing graphs contain the residual
        options["residual"] = 0.5 if residual is None else residual

    accepted = set().union(*(get_method(name).options for name in attention_methods))
    evaluation = None
    if evaluate:
        evaluation = {"faithfulness": faithfulness, "blank": blank, "seed": seed}
        if ground_truth:
            evaluation["ground_truths"] = list(ground_truth)
        if ig_steps is not None:
            evaluation["ig_steps"] = ig_steps
    elif ground_truth or ig_steps is not None:

        raise AttnflowError("--ground-truth and --ig-steps are for --evaluate; add --evaluate or leave them out.")
    if (data is None) == (images is None):

        raise AttnflowError("Give --data FILE (texts) or --images FOLDER, exactly one of them.")
    with progress_bar() as progress:
        result = run_batch(
            data, out, model, method, images=images, graphs=graphs, decoder_column=decoder_column,
            words=words, output=output, target=target, text_column=text_column, label_column=label_column,
            target_column=target_column, split=split, truncate=truncate, batch_size=batch_size,
            shard_size=shard_size, engine=engine, workers=workers, threads=threads, address=address,
            overwrite=overwrite, evaluation=evaluation, trust_remote_code=trust_remote_code, progress=progress,
            attribution=attribution,
            log=lambda line: error_console.print(line, highlight=False, soft_wrap=True),
            **{key: value for key, value in options.items() if key in accepted},
        )
    summary = result.summary
    run = summary["last_run"]
    rate = f", {run['examples_per_second']:.1f} examples/s" if run["examples_per_second"] else ""
    console.print(
        f"{summary['n_examples']} examples explained ({run['examples']} in this run on {run['workers']} "
        f"{run['engine']} worker(s){rate}), {summary['n_skipped']} skipped; {summary['rows']} rows",
        highlight=False,
    )
    for reason, count in summary["skipped_reasons"].items():
        console.print(f"  skipped {count}: {reason}", highlight=False)
    for truth, methods in summary.get("evaluation", {}).get("correlation", {}).items():
        top = ", ".join(
            f"{name} {layers[-1]['mean']:+.2f}" if layers and layers[-1]["mean"] is not None else f"{name} –"
            for name, layers in methods.items()
        )
        console.print(f"  Spearman with {truth} at the top layer (mean over rows): {top}", highlight=False)
    console.print(f"wrote {out / 'scores'}/, {out / 'summary.json'}", highlight=False, soft_wrap=True)


@contextmanager
def progress_bar() -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar of examples: done / total, examples per second and time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("explaining"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=error_console,
        transient=True,
    )
    task = bar.add_task("explaining", total=None, rate="")

    def update(done: int, total: int) -> None:
        speed = bar.tasks[0].speed
        bar.update(task, completed=done, total=total, rate=f"{speed:.1f} ex/s" if speed else "")

    with bar:
        yield update
