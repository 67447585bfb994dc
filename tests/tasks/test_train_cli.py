"""``attnflow train`` and ``attnflow samples``: the bundled models' training and test inputs from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from attnflow import cli
from attnflow.capture import load_model
from attnflow.tasks.digits import digits_test_set


def run(capsys, *args: object) -> tuple[int, str, str]:
    status = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, " ".join(captured.err.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "bert", "OUT"], "Invalid value for 'MODEL': must be one of sva, digits-vit, reverse; got 'bert'."),
        (["train", "reverse", "OUT", "--epochs", "2"], "reverse trains for --steps"),
        (["train", "sva", "OUT", "--steps", "2"], "--steps is for reverse"),
        (["train", "digits-vit", "OUT", "--n-train", "5"], "--n-train is for sva"),
        (["train", "sva", "OUT", "--max-seconds", "5"], "--max-seconds is for digits-vit"),
        (["train", "sva", "OUT", "--epochs", "0"], "Invalid value for '--epochs'"),
        (["train", "sva"], "Missing argument 'OUT'"),
        (["samples", "sva", "OUT"], "Invalid value for 'TASK': must be one of digits; got 'sva'."),
        (["samples", "digits", "OUT", "--n", "0"], "Invalid value for '--n'"),
    ],
)
def test_usage_mistakes_get_the_usage_line_and_write_nothing(capsys, tmp_path, args, message):
    args = [str(tmp_path / a) if a == "OUT" else a for a in args]
    status, _, err = run(capsys, *args)
    assert status == 2 and err.startswith("Usage: attnflow ") and message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_samples_writes_the_test_digits_as_png(capsys, tmp_path):
    status, out, _ = run(capsys, "samples", "digits", tmp_path / "digits", "--n", 3, "--scale", 2)
    assert status == 0, out
    images, labels = digits_test_set(3)
    names = [f"test{i:03d}-label{int(label)}.png" for i, label in enumerate(labels)]
    assert sorted(p.name for p in (tmp_path / "digits").iterdir()) == names
    for image, name in zip(images, names, strict=True):
        picture = np.asarray(Image.open(tmp_path / "digits" / name).convert("L"))
        np.testing.assert_array_equal(picture[::2, ::2], image)  # each digit pixel, enlarged twice
        assert name in out


@pytest.mark.slow
def test_train_digits_writes_a_model_folder_that_loads(capsys, tmp_path):
    status, out, err = run(capsys, "train", "digits-vit", tmp_path / "model", "--epochs", 1, "--seed", 3)
    assert status == 0, err
    report = json.loads((tmp_path / "model" / "train_report.json").read_text())
    assert report["epochs"] == 1 and report["seed"] == 3 and report["threads"] == 1
    assert f"test accuracy {report['test_accuracy']:.4f}" in out
    assert load_model(tmp_path / "model").model.config.num_hidden_layers == 4


@pytest.mark.slow
def test_train_sva_writes_a_model_folder_that_loads(capsys, tmp_path):
    status, out, err = run(capsys, "train", "sva", tmp_path / "model", "--n-train", 64, "--epochs", 1,
                           "--threads", 1)
    assert status == 0, err
    report = json.loads((tmp_path / "model" / "train_report.json").read_text())
    assert report["n_train"] == 64 and report["epochs"] == 1 and report["seed"] == 0
    assert f"test accuracy {report['test_accuracy']:.4f}" in out
    assert load_model(tmp_path / "model").model.config.num_labels == 2
    # a model folder is not replaced without --overwrite (its weights are not a file attnflow can recognise)
    again = ["train", "sva", tmp_path / "model", "--n-train", 64, "--epochs", 1, "--threads", 1]
    status, _, err = run(capsys, *again)
    assert status == 2 and "pass --overwrite to replace it" in err
    assert run(capsys, *again, "--overwrite")[0] == 0


@pytest.mark.slow
def test_train_reverse_writes_an_encoder_decoder_folder_that_loads_and_explains(capsys, tmp_path):
    status, out, err = run(capsys, "train", "reverse", tmp_path / "model", "--steps", 30, "--seed", 2,
                           "--threads", 1)
    assert status == 0, err
    report = json.loads((tmp_path / "model" / "train_report.json").read_text())
    assert report["steps"] == 30 and report["seed"] == 2
    assert f"exact match {report['exact_match']:.4f}" in out
    loaded = load_model(tmp_path / "model")
    assert loaded.model.config.is_encoder_decoder
    status, out, err = run(capsys, "explain", "--model", tmp_path / "model", "1 2 3", "--decoder-text", "3 2 1",
                           "--method", "rollout")
    assert status == 0, err
