"""``attnflow train`` and ``attnflow samples``: retrain a bundled model; write a bundled task's test inputs as files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..io import check_output_folder, write_folder
from ..tasks.digits import digit_png, digits_test_set
from ..tasks.digits import train as train_digits
from ..tasks.seq2seq_task import train as train_reverse
from ..tasks.sva_train import train as train_sva
from .common import console, error_console, number_range, usage_error
from .options import Overwrite

#: What ``attnflow train`` can train: the bundled models made by attnflow.
TRAINABLE = ("sva", "digits-vit", "reverse")
#: The defaults of each model's training (those the bundled folders were made with).
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "sva": {"epochs": 4, "threads": 2, "seed": 0, "n_train": 60_000},
    "digits-vit": {"epochs": 150, "threads": 1, "seed": 0, "max_seconds": 540.0},
    "reverse": {"threads": 2, "seed": 0, "steps": 2500},
}
#: Files a training run writes into its folder (an existing one is refused unless ``--overwrite``).
TRAIN_FILES: dict[str, tuple[str, ...]] = {
    "sva": ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "train_report.json"),
    "digits-vit": ("config.json", "model.safetensors", "preprocessor_config.json", "train_report.json"),
    "reverse": (
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "train_report.json",
    ),
}
SAMPLE_TASKS = ("digits",)


def _usage(ctx: typer.Context, message: str) -> None:
    raise usage_error(ctx, message)


def train(
    ctx: typer.Context,
    model: Annotated[
        str, typer.Argument(metavar="MODEL",
                            help="The model to train: sva (subject-verb agreement), digits-vit (8x8 digits ViT) "
                            "or reverse (digit-reversal encoder-decoder).")
    ],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Folder to save the model in (created; a Hugging Face "
                                        "model folder).")],
    seed: Annotated[int | None, typer.Option(help="Seed of data, weights and batch order [default: 0].",
                                             callback=number_range(0))] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Training epochs [default: 4 for sva, 150 for digits-vit].",
                                 callback=number_range(1))
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="torch threads [default: 2 for sva and reverse, 1 for digits-vit].",
                                 callback=number_range(1))
    ] = None,
    n_train: Annotated[
        int | None, typer.Option(help="sva only: training sentences [default: 60000].", callback=number_range(1))
    ] = None,
    max_seconds: Annotated[
        float | None, typer.Option(help="digits-vit only: stop after this many seconds [default: 540].",
                                   callback=number_range(0, low_open=True))
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="reverse only: optimiser steps on fresh random digit strings [default: 2500].",
                                 callback=number_range(1))
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Train a bundled model afresh on the CPU, seeded, into a model folder (with train_report.json)."""

    name = model.strip().lower()
    if name == "digits":
        name = "digits-vit"
    if name not in TRAINABLE:
        _usage(ctx, f"Invalid value for 'MODEL': must be one of {', '.join(TRAINABLE)}; got {model!r}.")
    if name == "sva" and max_seconds is not None:
        _usage(ctx, "--max-seconds is for digits-vit; sva trains for --epochs.")
    if name == "digits-vit" and n_train is not None:
        _usage(ctx, "--n-train is for sva; digits-vit trains on the 1,437 training digits.")
    if name == "reverse" and (epochs, n_train, max_seconds) != (None, None, None):
        _usage(ctx, "reverse trains for --steps on fresh random digit strings; --epochs, --n-train and "
               "--max-seconds are for sva and digits-vit.")
    if name != "reverse" and steps is not None:
        _usage(ctx, f"--steps is for reverse; {name} trains for --epochs.")
    check_output_folder(out, "OUT", names=TRAIN_FILES[name], overwrite=overwrite)
    chosen = {key: value for key, value in TRAIN_DEFAULTS[name].items()}
    given = {
        "seed": seed, "epochs": epochs, "threads": threads, "n_train": n_train, "max_seconds": max_seconds,
        "steps": steps,
    }
    chosen.update({key: value for key, value in given.items() if value is not None})

    def log(line: str) -> None:
        error_console.print(line, highlight=False, markup=False)

    if name == "sva":

        _, _, report = train_sva(out, log=log, **chosen)
        accuracy, seconds = report.test_accuracy, report.train_seconds
    elif name == "reverse":
        import torch


        torch.set_num_threads(chosen["threads"])
        reverse_report = train_reverse(out, seed=chosen["seed"], steps=chosen["steps"])
        accuracy, seconds = reverse_report.exact_match, reverse_report.seconds
    else:

        summary = train_digits(out, log=log, **chosen)
        accuracy, seconds = summary["test_accuracy"], summary["seconds"]
    measure = "exact match" if name == "reverse" else "test accuracy"
    console.print(f"{name}: {measure} {accuracy:.4f} after {seconds:.0f} s", highlight=False)
    console.print(f"wrote {out} (model and train_report.json)", highlight=False, soft_wrap=True)


def samples(
    ctx: typer.Context,
    task: Annotated[str, typer.Argument(metavar="TASK", help="The task: digits (test digits of digits-vit, as PNG "
                                        "files).")],
    out: Annotated[Path, typer.Argument(metavar="OUT", help="Folder for the files (created).")],
    n: Annotated[int, typer.Option("--n", help="How many test inputs.", callback=number_range(1, 360))] = 10,
    scale: Annotated[int, typer.Option(help="digits: pixels per digit pixel.", callback=number_range(1, 64))] = 8,
    overwrite: Overwrite = False,
) -> None:
    """Write a bundled task's first test inputs as files, to explain them (digits: PNGs for explain --image)."""

    if task.strip().lower() not in SAMPLE_TASKS:
        _usage(ctx, f"Invalid value for 'TASK': must be one of {', '.join(SAMPLE_TASKS)}; got {task!r}.")

    images, labels = digits_test_set(n)
    files = {
        f"test{index:03d}-label{int(label)}.png": digit_png(image, scale)
        for index, (image, label) in enumerate(zip(images, labels, strict=True))
    }
    check_output_folder(out, "OUT", names=list(files), overwrite=overwrite)
    write_folder(out, files)
    for name in files:
        console.print(str(out / name), highlight=False, soft_wrap=True)
