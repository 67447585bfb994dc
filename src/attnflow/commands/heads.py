"""``attnflow heads``: importance, confidence and roles of every head over a data file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import AttnflowError
from .common import console, number_range, progress_bar

if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

    from ..heads import HeadReport

OUTPUT_FILES = ("heads.json", "heads.png")


def heads(
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help="Examples: .txt (a text a line), .jsonl or .csv (a 'text' column, optional 'label')."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for heads.json and heads.png.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Bundled name (minilm), local folder or cached HF id."),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help="What importance is measured for: predicted, a class index, a label name, gold, "
            "'cosine:REFERENCE TEXT' or norm (default: predicted; norm for bare encoders).",
        ),
    ] = None,
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
    role_threshold: Annotated[
        float,
        typer.Option(
            help="Share of attention a role needs to label a head (0-1].", callback=number_range(0, 1, low_open=True)
        ),
    ] = 0.5,
    truncate: Annotated[bool, typer.Option(help="Cut texts longer than the model's maximum.")] = False,
    trust_remote_code: Annotated[
        bool, typer.Option(help="Allow the model folder's own Python code to run.")
    ] = False,
) -> None:
    """Score every head: importance for a target, confidence, and roles (positional, rare-word, sink)."""
    from ..evaluate import read_examples
    from ..heads import analyze_heads
    from ..io import check_output_folder, write_folder
    from ..report.plots import figure_png

    check_output_folder(out, inputs=[data, frequencies], names=OUTPUT_FILES)
    if top < 0:
        raise AttnflowError(f"The --top option must be >= 0; got {top}.")
    if frequencies is not None and not frequencies.is_file():
        raise AttnflowError(f"The --frequencies corpus {str(frequencies)!r} is not a file.")
    examples = read_examples(data)
    with progress_bar("analysing heads") as progress:
        report = analyze_heads(
            examples,
            model,
            target,
            frequencies=frequencies,
            role_threshold=role_threshold,
            truncate=truncate,
            trust_remote_code=trust_remote_code,
            progress=progress,
        )
    files = {
        "heads.json": (report.to_json() + "\n").encode("utf-8"),
        "heads.png": figure_png(report.plot()),
    }
    write_folder(out, files)
    console.print(
        f"model {report.model_name} · target {report.target.get('spec', '')} · {report.n_examples} examples · "
        f"rare-word frequencies {report.frequency_source}",
        highlight=False,
        soft_wrap=True,
    )
    if top:
        console.print(top_heads_table(report, top))
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
    from rich.table import Table

    table = Table(title=f"Top {k} heads by importance", title_justify="left", header_style="bold")
    for name in ("layer", "head", "role", "importance", "confidence", "prev", "next", "rare", "sink"):
        table.add_column(name, justify="left" if name == "role" else "right")
    for entry in report.top(k):
        values = [entry[key] for key in ("importance", "confidence", "previous_token", "next_token", "rare", "sink")]
        table.add_row(
            str(entry["layer"]),
            str(entry["head"]),
            entry["role"] or "–",
            *("–" if v is None else (f"{v:.3g}" if i == 0 else f"{v:.2f}") for i, v in enumerate(values)),
        )
    return table
