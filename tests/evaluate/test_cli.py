"""``attnflow evaluate`` on the command line: outputs, the bundled model end to end, and all-or-nothing errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import typer

from attnflow import cli
from attnflow.commands.evaluate import evaluate as evaluate_command
from attnflow.errors import AttnflowError
from attnflow.io import write_folder
from tests.tiny_models import save_tiny_model

FIVE = [
    "The keys to the cabinet are on the table.",
    "A cat sat on the warm mat.",
    "I really loved this film.",
    "Dogs bark loudly at night.",
    "She reads a new book every week.",
]


def _flat(text: str) -> str:
    """Messages as one line: rich wraps long ones (temporary paths) at the terminal width."""
    return " ".join(text.split())


@pytest.fixture
def run(monkeypatch, capsys):
    """Run ``attnflow ARGS`` through ``attnflow.cli.main``; returns (status, stdout, stderr)."""
    registered = any(
        c.name == "evaluate" or getattr(c.callback, "__name__", "") == "evaluate" for c in cli.app.registered_commands
    )
    if not registered:  # until cli.py wires the command: the same main() around an app that has it
        app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
        app.callback()(lambda: None)
        app.command()(evaluate_command)
        monkeypatch.setattr(cli, "app", app)

    def invoke(*args: str) -> tuple[int, str, str]:
        status = cli.main(["evaluate", *map(str, args)])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return invoke


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory):
    return save_tiny_model("bert", tmp_path_factory.mktemp("cls") / "bert-cls", head="classification")


@pytest.mark.e2e
@pytest.mark.slow
def test_bundled_model_five_sentences(run, tmp_path):
    data = tmp_path / "five.txt"
    data.write_text("\n".join(FIVE) + "\n")
    out = tmp_path / "results" / "run1"  # the parent is created too
    status, stdout, stderr = run("--data", data, "--out", out, "--target", "cosine:A sentence about animals.")
    assert status == 0, stderr
    results = json.loads((out / "results.json").read_text())
    assert results["n_examples"] == 5 and results["model"] == "minilm"
    assert results["target"]["spec"] == "cosine:A sentence about animals."
    methods = results["methods"]
    assert {"raw", "rollout"} <= set(methods)
    for truth in ("blankout", "gradient", "saliency", "grad_x_input", "integrated_gradients"):
        for method in methods:
            layers = results["correlation"][truth][method]
            assert len(layers) == 6 and all(len(pair) == 2 for pair in layers)
            assert all(pair[0] is None or -1 <= pair[0] <= 1 for pair in layers)
    assert set(results["faithfulness"]["methods"]) == {*methods, "random"}
    frame = pd.read_csv(out / "examples.csv")
    assert len(frame) == 5 * len(methods) * 6
    assert set(frame["example"]) == set(range(5))
    assert (out / "correlation.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in out.iterdir()) == ["correlation.png", "examples.csv", "results.json"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    assert "Spearman ρ with blankout" in stdout and "Faithfulness at layer 6" in stdout
    assert "model minilm" in stdout and "5 examples" in stdout


def _bad_inputs(tmp_path, classifier_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("sentence,label\nhello,1\n")
    bad_label = tmp_path / "labels.jsonl"
    bad_label.write_text('{"text": "Fine.", "label": "LABEL_1"}\n{"text": "Odd.", "label": "banana"}\n')
    good = tmp_path / "good.txt"
    good.write_text("A text.\n")
    return [
        (["--data", empty], "holds no examples"),
        (["--data", tmp_path / "missing.txt"], "Cannot read the data file"),
        (["--data", no_text], "no 'text' column"),
        (["--data", bad_label, "--model", classifier_path], "label 'banana' does not exist"),
        (["--data", good, "--model", classifier_path, "--target", "neutral"], "label 'neutral' does not exist"),
        (["--data", good, "--model", classifier_path, "--target", "7"], "class 7 does not exist"),
        (["--data", good, "--model", classifier_path, "--method", "nope"], "Unknown method"),
    ]


def test_bad_input_one_error_nothing_written(run, tmp_path, classifier_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("untouched")
    for args, message in _bad_inputs(tmp_path, classifier_path):
        for out in (tmp_path / "new", existing):
            status, stdout, stderr = run(*args, "--out", out)
            assert status == 2, (args, stderr)
            assert message in _flat(stderr), (message, stderr)
            assert stderr.count("error:") == 1 and "Traceback" not in stderr
            assert not (tmp_path / "new").exists()
            assert [p.name for p in existing.iterdir()] == ["keep.txt"]
            assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_target_the_model_cannot_give(run, tmp_path, tiny_bert_path):
    data = tmp_path / "d.txt"
    data.write_text("A text.\n")
    status, _, stderr = run("--data", data, "--model", tiny_bert_path, "--target", "predicted", "--out", tmp_path / "o")
    assert status == 2 and "bare encoder" in _flat(stderr) and not (tmp_path / "o").exists()


def test_out_must_not_be_a_file(run, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("A text.\n")
    (tmp_path / "file").write_text("x")
    status, _, stderr = run("--data", data, "--out", tmp_path / "file")
    assert status == 2 and "is a file" in _flat(stderr)


def test_small_run_on_a_tiny_classifier_into_an_existing_folder(run, tmp_path, classifier_path):
    data = tmp_path / "d.csv"
    data.write_text("text,label\nThe quick brown fox.,LABEL_1\nHello world!,LABEL_0\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    status, stdout, stderr = run(
        "--data", data, "--model", classifier_path, "--target", "gold", "--method", "rollout",
        "--ground-truth", "blankout", "--percent", "50", "--out", out,
    )
    assert status == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ["correlation.png", "examples.csv", "notes.txt", "results.json"]
    results = json.loads((out / "results.json").read_text())
    assert results["target"]["spec"] == "gold" and list(results["correlation"]) == ["blankout"]
    assert results["faithfulness"]["percents"] == [50]
    assert pd.read_csv(out / "examples.csv")["target_class"].tolist() == [1, 1, 0, 0]


def test_write_folder_leaves_nothing_on_failure(tmp_path, monkeypatch):
    import os

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "rename", broken)
    with pytest.raises(AttnflowError, match="No space left"):
        write_folder(tmp_path / "out", {"a.txt": b"1", "b.txt": b"2"})
    assert list(tmp_path.iterdir()) == []
