"""``attnflow evaluate``: judge methods against blank-out and gradients, and by faithfulness, on a data file."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..io import check_input_file, check_output_folder, write_folder
from ..methods import available_methods, get_method
from .common import (
    CLI_HEAD_FUSIONS,
    HEAD_FUSION_HELP,
    OVERWRITE_HELP,
    check_layer_option,
    check_method_option,
    check_methods,
    check_output_option,
    choice,
    console,
    number_range,
    progress_bar,
)

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

    from ..evaluate import EvaluationResult

_GROUND_TRUTHS = ("blankout", "gradient", "grad_x_input", "integrated_gradients")
OUTPUT_FILES = ("results.json", "examples.csv", "correlation.png")


def evaluate(
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help="Examples: .txt (a text a line), .jsonl or .csv (a 'text' column, optional 'label')."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for results.json, examples.csv and correlation.png.")
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Bundled name (minilm), local folder or cached HF id."),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help=f"Method to judge; repeat for several. Available: {', '.join(available_methods())} "
            "(default: raw, rollout and flow).",
            callback=check_method_option,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="What the output is measured by: predicted, a class index, a label name, gold (each example's "
            "label), 'cosine:REFERENCE TEXT' or norm (default: predicted; norm for bare encoders).",
        ),
    ] = None,
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
    batch_size: Annotated[
        int | None,
        typer.Option(help="Sequences per forward pass (default: as many as memory allows).", callback=number_range(1)),
    ] = None,
    residual: Annotated[
        float, typer.Option(help="Residual weight r in (1-r)*A + r*I.", callback=number_range(0, 1))
    ] = 0.5,
    head_fusion: Annotated[
        str, typer.Option(help=HEAD_FUSION_HELP, callback=choice(*CLI_HEAD_FUSIONS))
    ] = "mean",
    truncate: Annotated[bool, typer.Option(help="Cut texts longer than the model's maximum.")] = False,
    trust_remote_code: Annotated[
        bool, typer.Option(help="Allow the model folder's own Python code to run.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help=OVERWRITE_HELP)] = False,
) -> None:
    """Compare methods with blank-out and gradient importance (Spearman, per layer) and measure faithfulness."""
    from ..evaluate import default_methods, read_examples
    from ..evaluate import evaluate as run_evaluate
    from ..evaluate.runner import IntegratedGradientsWarning

    check_input_file(data, "--data")
    check_output_folder(out, inputs=[data], names=OUTPUT_FILES, overwrite=overwrite)
    examples = read_examples(data)
    methods = check_methods(list(method)) if method else list(default_methods())
    accepted = set().union(*(get_method(name).options for name in methods))
    options = {key: value for key, value in (("residual", residual), ("head_fusion", head_fusion)) if key in accepted}
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
            **options,
        )
    files = render_outputs(result)
    write_folder(out, files)
    from rich.columns import Columns

    console.print(evaluation_header(result), highlight=False)
    tables = evaluation_tables(result)
    correlation_tables = tables[: len(result.ground_truths)]
    console.print(Columns(correlation_tables))  # side by side where the terminal is wide enough
    for table in tables[len(result.ground_truths) :]:
        console.print(table)
    line = ig_delta_line(result, sum(issubclass(w.category, IntegratedGradientsWarning) for w in caught))
    if line:
        console.print(line, highlight=False)
    console.print(f"wrote {', '.join(str(out / name) for name in files)}")


def render_outputs(result: EvaluationResult) -> dict[str, bytes]:
    """Every output file's bytes, computed before anything is written."""
    from ..report.plots import figure_png

    return {
        "results.json": (result.to_json() + "\n").encode("utf-8"),
        "examples.csv": result.to_dataframe().to_csv(index=False).encode("utf-8"),
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
    from rich.table import Table

    tables = []
    for truth in result.ground_truths:
        table = Table(title=f"Spearman ρ with {truth}", title_justify="left", header_style="bold")
        table.add_column("layer", justify="right")
        stats = {m: result.correlation(truth, m) for m in result.methods}
        for method in result.methods:
            table.add_column(method, justify="right")
        for layer in range(result.n_layers):
            table.add_row(str(layer + 1), *(_cell(stats[m][layer]) for m in result.methods))
        tables.append(table)
    if result.faithfulness_layer is not None:
        summary = result.faithfulness_summary()
        table = Table(
            title=f"Faithfulness at layer {result.faithfulness_layer}",
            caption=f"top {', '.join(map(str, result.percents))} % of tokens removed "
            f"({result.options.get('removal')}); "
            "comprehensiveness: higher is better; sufficiency: lower is better",
            title_justify="left",
            caption_justify="left",
            header_style="bold",
        )
        table.add_column("method")
        table.add_column("AOPC comprehensiveness", justify="right")
        table.add_column("AOPC sufficiency", justify="right")
        for name, values in summary.items():
            table.add_row(
                name,
                _cell(_nan_pair(values["aopc_comprehensiveness"])),
                _cell(_nan_pair(values["aopc_sufficiency"])),
                style="dim" if name == "random" else "",
            )
        tables.append(table)
    return tables


def _nan_pair(pair: list[float | None]) -> list[float]:
    return [float("nan") if v is None else v for v in pair]
