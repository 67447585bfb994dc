"""``attnflow reproduce sva``: the paper's subject-verb agreement tables, from the bundled or a retrained model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import AttnflowError
from ..evaluate.seq2seq import evaluate_seq2seq
from ..io import check_output_folder, write_folder
from ..mixing.registry import available_graphs
from ..report.stacking import StackingTable
from ..tasks.agreement import MAX_SENTENCES, reproduce_agreement, tables_markdown
from ..tasks.gate_comparison import DEFAULTS, compare, to_markdown
from ..tasks.reproduce import PAPER, PROTOCOLS, _fmt, _rate, protocols, reproduce_sva
from ..tasks.saturation import committed_saturation
from ..tasks.seq2seq_task import (
    CORRELATION_EXAMPLES,
    PLAUSIBILITY_METHODS,
    correlation_table,
    make_examples,
    plausibility,
    plausibility_table,
    train,
)
from .common import (
    check_methods,
    choice,
    console,
    error_console,
    number_range,
    progress_bar,
)
from .options import Overwrite, method_option, model_option

Model = model_option("smollm2", note="agreement only: the causal language model to judge.")
Methods = method_option("all", note="Attribution methods: agreement only.")


if TYPE_CHECKING:  # pragma: no cover
    from rich.table import Table

    from ..tasks.reproduce import Reproduction

TASKS = ("sva", "reverse", "heads-gates", "mixing-saturation", "agreement")
#: What ``--out`` receives (``model/`` too with ``--retrain``).
OUTPUT_FILES = ("results.json", "tables.md", "examples.jsonl", "examples.csv", "correlation_by_layer.png")


def reproduce(
    task: Annotated[
        str,
        typer.Argument(
            help="What to reproduce: sva (subject-verb agreement, the paper's Table 1), reverse (the bundled "
            "encoder-decoder model: how often each method puts the aligned source digit first, per layer), or "
            "heads-gates (Voita et al.'s stochastic-gate pruning on sva, the model frozen and fine-tuned), or "
            "mixing-saturation (how often top-layer flow over each context-mixing graph sits at its first-layer "
            "bound, on MiniLM and sva), or agreement (subject-verb agreement in a pretrained causal LM, "
            "--model smollm2 by default: every method judged per layer)."
        ),
    ],
    n: Annotated[
        int | None,
        typer.Option(
            "--n",
            help="Test examples to evaluate [default: 2000 for sva (as the paper), 200 for reverse, 300 for "
            "heads-gates, 200 sva sentences for mixing-saturation, 500 sentences for agreement].",
            callback=number_range(1),
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for results.json, tables.md, examples.jsonl, examples.csv, correlation_by_layer.png "
            "(and model/ with --retrain).",
        ),
    ] = None,
    retrain: Annotated[
        bool, typer.Option(help="Train the model afresh on the CPU (seeded by --seed) instead of the bundled one.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the test sentences and, with --retrain, of the training.")] = 0,
    method: Methods = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", help="mixing-saturation only: the texts MiniLM explains, one per line "
                     "(the committed run: docs/results/five-sentences.txt)."),
    ] = None,
    graph: Annotated[
        list[str] | None,
        typer.Option(
            "--graph",
            help="sva and agreement: a context-mixing graph to judge too; repeat for several (rows GRAPH/METHOD; "
            "sva: flow at its bound per graph, default methods then raw, rollout, flow; agreement: every graph "
            "the model has by default, --graph attention for the attention graph alone). Available: "
            f"{', '.join(available_graphs())}.",
            callback=choice(*available_graphs()),
        ),
    ] = None,
    model: Model = None,
    overwrite: Overwrite = False,
) -> None:
    """Reproduce the paper's tables: correlation of raw attention, rollout and flow with blank-out and gradients."""

    if task.strip().lower() not in TASKS:
        raise AttnflowError(f"Unknown task {task!r}; available: {', '.join(TASKS)}.")
    if graph and task.strip().lower() not in ("sva", "agreement"):
        raise AttnflowError(f"--graph is for sva and agreement; {task.strip().lower()} does not take it.")
    if model is not None and task.strip().lower() != "agreement":
        raise AttnflowError(f"--model is for agreement; {task.strip().lower()} runs its own bundled model.")
    if task.strip().lower() == "agreement":
        _reproduce_agreement(500 if n is None else n, out, retrain, seed, method, graph, model, overwrite)
        return
    if task.strip().lower() == "mixing-saturation":
        _reproduce_saturation(n, out, data, retrain, method, overwrite)
        return
    if data is not None:
        raise AttnflowError("--data is for mixing-saturation; the other tasks generate their own examples.")
    if task.strip().lower() == "reverse":
        _reproduce_reverse(200 if n is None else n, out, retrain, seed, method, overwrite)
        return
    if task.strip().lower() == "heads-gates":
        _reproduce_heads_gates(n, out, retrain, seed, method, overwrite)
        return
    n = 2000 if n is None else n
    check_output_folder(out, names=OUTPUT_FILES, overwrite=overwrite)
    if retrain and out is None:
        raise AttnflowError("--retrain needs --out DIR: the new model is saved in DIR/model.")
    methods = check_methods(list(method)) if method else None
    with progress_bar("reproducing") as progress:
        result = reproduce_sva(
            n,
            retrain=retrain,
            train_dir=None if out is None else out / "model",
            seed=seed,
            methods=methods,
            progress=progress,
            log=lambda line: error_console.print(line, highlight=False, markup=False),
            graphs=list(graph) if graph else None,
        )
    for table in reproduction_tables(result):
        console.print(table)
    timing = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result.seconds.items())
    console.print(f"time: {timing}", highlight=False)
    if out is not None:
        files = result.files()
        write_folder(out, files)
        console.print(f"wrote {', '.join(str(out / name) for name in files)}")


def reproduction_tables(result: Reproduction) -> list[Table]:
    """The terminal report: correlation by layer per ground truth and protocol, the top layer against the
    paper, the share of flow values at their bound, subject first."""

    evaluation = result.evaluation
    acc = result.accuracy
    tables: list[Table] = []
    for protocol in protocols(evaluation):
        title, special = PROTOCOLS[protocol]
        for truth in evaluation.ground_truths:
            table = StackingTable(
                title=f"Spearman ρ with {truth} · {title} · {evaluation.n_examples} examples · mean ± sd",
                title_justify="left",
                header_style="bold",
            )
            table.add_column("layer", justify="right")
            for m in evaluation.methods:
                table.add_column(m, justify="right")
            stats = {m: evaluation.correlation(truth, m, special_tokens=special) for m in evaluation.methods}
            for layer in range(evaluation.n_layers):
                table.add_row(str(layer + 1), *(_fmt(stats[m][layer]) for m in evaluation.methods))
            tables.append(table)
    top = evaluation.n_layers
    for protocol in protocols(evaluation):
        title, special = PROTOCOLS[protocol]
        table = StackingTable(
            title=f"Top layer against the paper · {title} (accuracy: ours {acc['accuracy']:.3f}, with attractors "
            f"{acc['accuracy_attractors']:.3f}; paper {PAPER['accuracy']:.2f})",
            title_justify="left",
            header_style="bold",
        )
        table.add_column("method")
        for truth in evaluation.ground_truths:
            table.add_column(f"{truth}: ours", justify="right")
            table.add_column(f"{truth}: paper", justify="right")
        for m in evaluation.methods:
            cells = []
            for truth in evaluation.ground_truths:
                cells.append(_fmt(evaluation.correlation(truth, m, special_tokens=special)[top - 1]))
                paper = PAPER["correlation"].get(truth, {}).get(m)
                cells.append("–" if paper is None else f"{paper:.2f}")
            table.add_row(m, *cells)
        tables.append(table)
    saturation = result.saturation
    if saturation.get("n_examples"):
        table = StackingTable(
            title="Raw flow into [CLS] at its source bound min(1, first-layer column sum): share of values",
            caption="where the share is 1, flow restates the first layer's attention received",
            title_justify="left",
            caption_justify="left",
            header_style="bold",
        )
        table.add_column("")
        for layer in range(len(saturation["all_tokens"])):
            table.add_column(f"L{layer + 1}", justify="right")
        table.add_row("every token", *(f"{v:.3f}" for v in saturation["all_tokens"]))
        table.add_row("words", *(f"{v:.3f}" for v in saturation["words"]))
        for name, shares in saturation.get("graphs", {}).items():
            table.add_row(f"{name}: every token", *(f"{v:.3f}" for v in shares["all_tokens"]))
            table.add_row(f"{name}: words", *(f"{v:.3f}" for v in shares["words"]))
        tables.append(table)
    plaus = result.plausibility
    references = ", ".join(f"{t} {_rate(r)}" for t, r in plaus["ground_truths"].items())
    table = StackingTable(
        title=f"Subject scored above every attractor ({plaus['n_examples']} examples with attractors)",
        caption=f"for reference: {references}; random ranking {_rate(plaus['chance'])}",
        title_justify="left",
        caption_justify="left",
        header_style="bold",
    )
    table.add_column("method")
    for layer in range(evaluation.n_layers):
        table.add_column(f"L{layer + 1}", justify="right")
    for m, rates in plaus["methods"].items():
        table.add_row(m, *(_rate(r) for r in rates))
    tables.append(table)
    return tables


def _reproduce_reverse(
    n: int, out: Path | None, retrain: bool, seed: int, method: list[str] | None, overwrite: bool
) -> None:
    """``attnflow reproduce reverse``: plausibility per decoder layer on held-out reversals (docs/seq2seq.md)."""
    import json


    check_output_folder(out, names=("results.json",), overwrite=overwrite)
    if retrain and out is None:
        raise AttnflowError("--retrain needs --out DIR: the new model is saved in DIR/model.")
    methods = list(dict.fromkeys(method)) if method else list(PLAUSIBILITY_METHODS)
    wrong = [m for m in methods if m not in PLAUSIBILITY_METHODS]
    if wrong:
        raise AttnflowError(
            f"--method {wrong[0]} does not run on encoder-decoder models; available: {', '.join(PLAUSIBILITY_METHODS)}."
        )
    model: Any = "reverse"
    if retrain:
        assert out is not None
        error_console.print(f"training the reversal model into {out / 'model'} (seed {seed})", highlight=False)
        report = train(out / "model", seed=seed)
        error_console.print(f"exact match {report.exact_match:.3f} on {report.test_examples} held-out sources")
        model = out / "model"
    with progress_bar("explaining reversals") as progress:
        result = plausibility(model, count=n, seed=20_000 + seed, methods=methods, progress=progress)
    console.print(plausibility_table(result))

    pairs = [(e.source_text, e.target_text) for e in make_examples(min(n, CORRELATION_EXAMPLES), 20_000 + seed)]
    with progress_bar("blank-out and input gradients") as progress:
        result["correlation"] = evaluate_seq2seq(pairs, model, methods, progress=progress)
    console.print(correlation_table(result["correlation"]))
    if out is not None:
        write_folder(out, {"results.json": (json.dumps(result, indent=2) + "\n").encode()})
        console.print(f"wrote {out / 'results.json'}", highlight=False, soft_wrap=True)


def _reproduce_heads_gates(
    n: int | None, out: Path | None, retrain: bool, seed: int, method: list[str] | None, overwrite: bool
) -> None:
    """``attnflow reproduce heads-gates``: gates frozen against fine-tuned on sva (docs/heads.md)."""
    import json


    if retrain or method:
        raise AttnflowError(
            f"{'--retrain' if retrain else '--method'} is not for heads-gates: it prunes the bundled sva model's heads."
        )
    check_output_folder(out, names=("results.json", "tables.md"), overwrite=overwrite)
    error_console.print("head analysis (the roles and the ranking), then the gate sweeps; a few minutes",
                        highlight=False)
    result = compare(n_eval=DEFAULTS["n_eval"] if n is None else n, seed=seed)
    result["command"] = "attnflow reproduce heads-gates --out DIR (docs/results/heads-gates-sva.json: DIR/results.json)"
    table = to_markdown(result)
    console.print(table, highlight=False, markup=False, soft_wrap=True)
    if out is not None:
        write_folder(out, {
            "results.json": (json.dumps(result, indent=1, allow_nan=False) + "\n").encode(),
            "tables.md": (table + "\n").encode(),
        })
        console.print(f"wrote {out / 'results.json'}, {out / 'tables.md'}", highlight=False, soft_wrap=True)


def _reproduce_saturation(
    n: int | None, out: Path | None, data: Path | None, retrain: bool, method: list[str] | None, overwrite: bool
) -> None:
    """``attnflow reproduce mixing-saturation``: flow at its first-layer bound per graph (docs/mixing.md)."""
    import json


    if retrain or method:
        raise AttnflowError(
            f"{'--retrain' if retrain else '--method'} is not for mixing-saturation: it runs flow over every graph "
            "of the bundled minilm and sva."
        )
    if data is None:
        raise AttnflowError("mixing-saturation needs --data FILE: MiniLM's texts, one per line "
                            "(the committed run: docs/results/five-sentences.txt).")
    if not data.is_file():
        raise AttnflowError(f"--data {str(data)!r} is not a file.")
    texts = [line for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise AttnflowError(f"--data {str(data)!r} holds no text.")
    check_output_folder(out, names=("results.json",), overwrite=overwrite)
    with progress_bar("flow over every graph") as progress:
        result = committed_saturation(texts, data.as_posix(), 200 if n is None else n, progress=progress)
    for model, run in result["models"].items():
        for output, found in run["outputs"].items():
            shares = ", ".join(f"{graph} {row['all_tokens']:.2f}" for graph, row in found["graphs"].items())
            console.print(f"{model}, output {output}: share of top-layer flow at its bound: {shares}",
                          highlight=False, soft_wrap=True)
    if out is not None:
        write_folder(out, {"results.json": (json.dumps(result, indent=2) + "\n").encode()})
        console.print(f"wrote {out / 'results.json'}", highlight=False, soft_wrap=True)


def _reproduce_agreement(n: int, out: Path | None, retrain: bool, seed: int, method: list[str] | None,
                         graph: list[str] | None, model: str | None, overwrite: bool) -> None:
    """``attnflow reproduce agreement``: subject-verb agreement in a causal LM, every method per layer
    (docs/agreement.md)."""
    import json


    if retrain:
        raise AttnflowError("--retrain is not for agreement: it judges a pretrained language model as it is.")
    if n > MAX_SENTENCES:
        raise AttnflowError(f"--n {n} is more sentences than agreement runs ({MAX_SENTENCES} at most).")
    methods = check_methods(list(method)) if method else None
    check_output_folder(out, names=("results.json", "tables.md"), overwrite=overwrite)
    with progress_bar("agreement sentences") as progress:
        result = reproduce_agreement(n, model="smollm2" if model is None else model, seed=seed, methods=methods,
                                     graphs=list(graph) if graph else None, progress=progress)
    found = result.to_dict()
    found["command"] = (f"attnflow reproduce agreement --n {n} --seed {seed}"
                        + ("" if model is None else f" --model {model}")
                        + "".join(f" --method {name}" for name in method or ())
                        + "".join(f" --graph {name}" for name in graph or ()) + " --out DIR")
    tables = tables_markdown(found)
    console.print(tables, highlight=False, markup=False, soft_wrap=True)
    timing = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in result.seconds.items())
    console.print(f"time: {timing}", highlight=False)
    if out is not None:
        write_folder(out, {
            "results.json": (json.dumps(found, indent=1, allow_nan=False) + "\n").encode(),
            "tables.md": tables.encode(),
        })
        console.print(f"wrote {out / 'results.json'}, {out / 'tables.md'}", highlight=False, soft_wrap=True)
