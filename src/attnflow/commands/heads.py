"""``attnflow heads``: importance, confidence and roles (Voita et al. 2019) of every head over a data file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import AttnflowError
from ..evaluate import read_examples
from ..heads import analyze_heads, gate_pruning, pruning_experiment
from ..heads.gates import DEFAULT_PENALTIES
from ..io import check_input_file, check_output_folder, write_folder
from ..plots import figure_png
from ..report.stacking import StackingTable
from .common import console, number_range, progress_bar
from .options import Overwrite, Truncate, TrustRemoteCode, model_option, target_option

Model = model_option("minilm")
Target = target_option("What importance is measured for")


if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

    from ..heads import HeadReport

OUTPUT_FILES = ("heads.json", "heads.png", "pruning.json", "gates.json", "pruning.png")


def heads(
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help="Examples: .txt (a text a line), .jsonl or .csv (a 'text' column, optional 'label')."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for heads.json and heads.png.")],
    model: Model = None,
    target: Target = None,
    frequencies: Annotated[
        Path | None,
        typer.Option(
            "--frequencies",
            help="A text corpus whose token counts define rare words (default: count over --data itself).",
        ),
    ] = None,
    top: Annotated[
        int, typer.Option(help="How many of the most important heads to print.", callback=number_range(0))
    ] = 10,
    dependencies: Annotated[
        str | None,
        typer.Option(
            "--dependencies",
            help="Dependency arcs for syntactic roles: 'data' (the 'arcs' field of a .jsonl --data file, as "
            "sva.write_jsonl(..., arcs=True) writes them), a .conllu file (a sentence per example), or "
            "'spacy[:PIPELINE]' (an installed spaCy pipeline).",
        ),
    ] = None,
    relation: Annotated[
        list[str] | None,
        typer.Option("--relation", "-r", help="A dependency relation to score (repeat; default: all found)."),
    ] = None,
    positional_threshold: Annotated[
        float,
        typer.Option(
            help="Share of queries whose maximum attention is on one adjacent token (0-1].",
            callback=number_range(0, 1, low_open=True),
        ),
    ] = 0.9,
    rare_threshold: Annotated[
        float,
        typer.Option(
            help="Share of queries whose maximum attention is on the rarest token (0-1].",
            callback=number_range(0, 1, low_open=True),
        ),
    ] = 0.5,
    syntactic_margin: Annotated[
        float,
        typer.Option(
            help="Accuracy a syntactic head needs above its relation's baseline [0-1].", callback=number_range(0, 1)
        ),
    ] = 0.1,
    share_threshold: Annotated[
        float,
        typer.Option(
            help="Mean attention share a share-based role (share_roles in heads.json) needs (0-1].",
            callback=number_range(0, 1, low_open=True),
        ),
    ] = 0.5,
    truncate: Truncate = False,
    trust_remote_code: TrustRemoteCode = False,
    prune: Annotated[
        bool,
        typer.Option(
            help="Also prune heads by importance ranking (least / most important first, random) and measure the "
            "target on --eval-data: pruning.json.",
        ),
    ] = False,
    gates: Annotated[
        bool,
        typer.Option(
            help="Also prune with stochastic L0 gates (classifiers only; the model stays frozen unless "
            "--fine-tune), one run per "
            "--penalty, trained on --data and measured on --eval-data, beside importance ranking: gates.json, "
            "pruning.png.",
        ),
    ] = False,
    eval_data: Annotated[
        Path | None,
        typer.Option("--eval-data", help="Held-out examples the pruned models are measured on (default: --data)."),
    ] = None,
    penalty: Annotated[
        list[float] | None,
        typer.Option(
            "--penalty", help="A gate penalty lambda (repeat; default 0, 0.003, 0.01, 0.03, 0.1, 0.3).",
            callback=number_range(0, float("inf"), high_open=True),
        ),
    ] = None,
    gate_steps: Annotated[
        int, typer.Option(help="Training steps of the gates per penalty.", callback=number_range(1))
    ] = 150,
    fine_tune: Annotated[
        bool,
        typer.Option(
            "--fine-tune",
            help="With --gates: train the model's weights together with the gates, as Voita et al. do "
            "(default: the model stays frozen, only the gates learn).",
        ),
    ] = False,
    model_learning_rate: Annotated[
        float,
        typer.Option(
            help="With --fine-tune: Adam's step size for the model's weights.",
            callback=number_range(0, low_open=True),
        ),
    ] = 1e-4,
    overwrite: Overwrite = False,
) -> None:
    """Score every head: importance for a target, confidence, and roles (positional, rare-word, syntactic)."""

    dependency_file = None if dependencies in (None, "data") or dependencies.startswith("spacy") else Path(dependencies)
    for source, option in ((data, "--data"), (frequencies, "--frequencies"), (eval_data, "--eval-data")):
        check_input_file(source, option)
    check_output_folder(
        out, inputs=[data, frequencies, dependency_file, eval_data], names=OUTPUT_FILES, overwrite=overwrite
    )
    if penalty and any(p < 0 for p in penalty):
        raise AttnflowError(f"--penalty must be >= 0; got {', '.join(f'{p:g}' for p in penalty)}.")
    if (eval_data is not None or penalty) and not (prune or gates):
        raise AttnflowError("--eval-data and --penalty need --prune or --gates.")
    if fine_tune and not gates:
        raise AttnflowError("--fine-tune trains the model with the head gates: it needs --gates.")
    if top < 0:
        raise AttnflowError(f"The --top option must be >= 0; got {top}.")
    if frequencies is not None and not frequencies.is_file():
        raise AttnflowError(f"The --frequencies corpus {str(frequencies)!r} is not a file.")
    parses: str | Path | None = dependencies
    if dependencies == "data":
        if data.suffix.lower() != ".jsonl":
            raise AttnflowError(f"--dependencies data needs a .jsonl --data file with 'arcs'; got {str(data)!r}.")
        parses = data
    elif dependencies is not None and not (dependencies == "spacy" or dependencies.startswith("spacy:")):
        parses = Path(dependencies)
        if not parses.is_file():
            raise AttnflowError(f"The --dependencies file {dependencies!r} is not a file.")
    examples = read_examples(data)
    held_out = read_examples(eval_data) if eval_data is not None else examples
    with progress_bar("analysing heads") as progress:
        report = analyze_heads(
            examples,
            model,
            target,
            frequencies=frequencies,
            dependencies=parses,
            relations=relation or None,
            positional_threshold=positional_threshold,
            rare_threshold=rare_threshold,
            syntactic_margin=syntactic_margin,
            share_threshold=share_threshold,
            truncate=truncate,
            trust_remote_code=trust_remote_code,
            progress=progress,
        )
    files = {
        "heads.json": (report.to_json() + "\n").encode("utf-8"),
        "heads.png": figure_png(report.plot()),
    }
    ranking = sweep = None
    if prune:

        with progress_bar("pruning by importance") as progress:
            ranking = pruning_experiment(
                held_out, model, target, importance=report, fractions=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9),
                truncate=truncate, trust_remote_code=trust_remote_code, progress=progress,
            )
        files["pruning.json"] = (json.dumps(ranking.to_dict(), indent=2, allow_nan=False) + "\n").encode("utf-8")
    if gates:

        with progress_bar("training head gates") as progress:
            sweep = gate_pruning(
                examples, held_out, model, penalties=tuple(penalty or DEFAULT_PENALTIES), steps=gate_steps,
                importance=report, fine_tune=fine_tune, model_learning_rate=model_learning_rate,
                trust_remote_code=trust_remote_code, progress=progress,
            )
        files["gates.json"] = (json.dumps(sweep.to_dict(), indent=2, allow_nan=False) + "\n").encode("utf-8")
        files["pruning.png"] = figure_png(sweep.plot())
    write_folder(out, files)
    console.print(
        f"model {report.model_name} · target {report.target.get('spec', '')} · {report.n_examples} examples · "
        f"rare-word frequencies {report.frequency_source}",
        highlight=False,
        soft_wrap=True,
    )
    if report.dependency_source:
        console.print(f"dependencies: {report.dependency_source}", highlight=False, soft_wrap=True)
    if top:
        console.print(top_heads_table(report, top))
    if report.syntactic:
        console.print(syntactic_table(report))
    if ranking is not None:
        console.print("Pruning by importance ranking (value of the target; accuracy):", highlight=False)
        console.print(ranking.to_markdown(), highlight=False, soft_wrap=True, markup=False)
    if sweep is not None:
        how = "model fine-tuned with the gates" if sweep.fine_tune else "model frozen"
        console.print(f"Pruning with stochastic gates ({sweep.labels}; {how}):", highlight=False)
        console.print(sweep.to_markdown(), highlight=False, soft_wrap=True, markup=False)
    console.print(f"wrote {', '.join(str(out / name) for name in files)}", highlight=False, soft_wrap=True)


def top_heads_table(report: HeadReport, k: int = 10) -> Table:
    """The ``k`` most important heads: layer, head, role and every score (layers and heads from 1).

    Examples
    --------
    >>> import numpy as np
    >>> from attnflow.heads import HeadReport
    >>> z = np.zeros((1, 2))
    >>> top_heads_table(HeadReport(np.array([[0.1, 0.9]]), z, z, z, z, z), 1).row_count
    1
    """

    table = StackingTable(
        title=f"Top {k} heads by importance (prev/next/rare: share of queries whose maximum attention is there)",
        title_justify="left", header_style="bold", keys=2,
    )
    columns = ("layer", "head", "roles", "importance", "relevance", "confidence", "prev", "next", "rare", "sink share")
    for name in columns:
        table.add_column(name, justify="left" if name == "roles" else "right")
    for entry in report.top(k):
        keys = ("importance", "relevance", "confidence", "previous_max", "next_max", "rare_max", "sink_share")
        values = [entry[key] for key in keys]
        table.add_row(
            str(entry["layer"]),
            str(entry["head"]),
            entry["role"] or "–",
            *("–" if v is None else (f"{v:.3g}" if i == 0 else f"{v:.2f}") for i, v in enumerate(values)),
        )
    return table


def syntactic_table(report: HeadReport) -> Table:
    """Per relation: arcs, the baseline and the best head's accuracy in each direction, and the syntactic heads.

    Examples
    --------
    >>> import numpy as np
    >>> from attnflow.heads import HeadReport
    >>> from attnflow.heads.syntax import RelationScores
    >>> z = np.zeros((1, 2)); d = ("dependent->head", "head->dependent")
    >>> rel = RelationScores("det", 4, {k: np.array([[0.9, 0.1]]) for k in d}, {k: 0.5 for k in d}, {k: 1 for k in d})
    >>> syntactic_table(HeadReport(z, z, z, z, z, z, syntactic={"det": rel})).row_count
    1
    """
    import numpy as np


    table = StackingTable(
        title=f"Syntactic heads (accuracy of the maximum-attention pointer; margin {report.syntactic_margin:.2f} "
        "over the relation's most-frequent-offset baseline)",
        title_justify="left", header_style="bold",
    )
    for name in ("relation", "arcs", "dep→head: baseline / best", "head→dep: baseline / best", "syntactic heads"):
        table.add_column(name, justify="left" if name in ("relation", "syntactic heads") else "right")
    for name, scores in report.syntactic.items():
        cells = []
        for direction in ("dependent->head", "head->dependent"):
            accuracy = scores.accuracy[direction]
            if not np.isfinite(scores.baseline[direction]):
                cells.append("– (not scored)")
                continue
            layer, head = np.unravel_index(int(np.argmax(accuracy)), accuracy.shape)
            cells.append(f"{scores.baseline[direction]:.2f} / {accuracy.max():.2f} (L{layer + 1}H{head + 1})")
        heads = report.syntactic_heads(name)
        listed = ", ".join(f"L{layer}H{head}" for layer, head in heads[:6])
        if len(heads) > 6:
            listed += f" (+{len(heads) - 6})"
        table.add_row(name, str(scores.n_arcs), *cells, listed or "–")
    return table
