"""``attnflow evaluate --images``: the image faithfulness table from the CLI, the same numbers as the library."""

from __future__ import annotations

import json

import pytest

from attnflow import cli
from attnflow.evaluate.image_faithfulness import image_faithfulness
from attnflow.tasks.digits import digits_test_set, save_digit_png


def run(capsys, *args: object) -> tuple[int, str, str]:
    status = cli.main(["evaluate", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, " ".join(captured.err.split())


@pytest.mark.slow
def test_digits_give_the_library_numbers(capsys, tmp_path):
    status, out, err = run(capsys, "--images", "digits", "--n", 3, "--method", "rollout", "--seed", 2,
                           "--out", tmp_path)
    assert status == 0, err
    images, labels = digits_test_set(3)
    expected = image_faithfulness(images, methods=("rollout",), labels=labels, seed=2)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["summary"] == json.loads(json.dumps(expected.to_dict()))["summary"]
    assert written["n_images"] == 3 and written["accuracy"] == expected.accuracy
    assert expected.table() in out and "the first 3 digits-vit test images" in out


@pytest.mark.slow
def test_a_folder_of_images_in_name_order(capsys, tmp_path):
    images, _ = digits_test_set(3)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name, image in zip(("b.png", "a.png", "c.png"), images, strict=True):
        save_digit_png(image, folder / name)
    (folder / "notes.txt").write_text("not an image")
    status, _, err = run(capsys, "--images", folder, "--n", 2, "--method", "rollout", "--out", tmp_path / "out")
    assert status == 0, err
    expected = image_faithfulness([folder / "a.png", folder / "b.png"], methods=("rollout",))
    assert json.loads((tmp_path / "out" / "results.json").read_text())["summary"] == json.loads(
        json.dumps(expected.to_dict()))["summary"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Give exactly one of --data (texts) and --images"),
        (["--images", "digits", "--data", "x.txt"], "Give exactly one of --data (texts) and --images"),
        (["--images", "digits", "--target", "norm", "--percent", "10"], "--percent, --target: for texts (--data)"),
        (["--images", "digits", "--engine", "local"], "--engine: for texts (--data)"),
        (["--data", "x.txt", "--fill", "mean"], "--fill: for --images, not for --data."),
        (["--data", "x.txt", "--workers", "2"], "--workers: for a sharded run; add --engine local or ray."),
        (["--data", "x.txt", "--engine", "local", "--address", "127.0.0.1:1"], "--address is for --engine ray."),
        (["--data", "x.txt", "--engine", "spark"], "Invalid value for '--engine'"),
        (["--images", "digits", "--fill", "white"], "Invalid value for '--fill'"),
    ],
)
def test_usage_mistakes_get_the_usage_line_before_any_model_loads(capsys, tmp_path, args, message):
    status, _, err = run(capsys, *args, "--out", tmp_path / "out")
    assert status == 2 and err.startswith("Usage: attnflow evaluate") and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "holds no images"),
    ],
)
def test_a_folder_without_images_is_one_line(capsys, tmp_path, make, message):
    status, _, err = run(capsys, "--images", make(tmp_path), "--out", tmp_path / "out")
    assert status == 2 and err.startswith("error:") and message in err
