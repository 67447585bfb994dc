"""End to end: the bundled digits-vit, the CLI with --image, the HTML report's image view, faithfulness."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attnflow
from attnflow.capture import BUNDLED_MODELS, load_model
from attnflow.cli import main
from attnflow.tasks.digits import DIGITS_MODEL_DIR, digits_test_set, pixel_values, save_digit_png

pytestmark = pytest.mark.e2e


def test_bundled_digits_vit_loads_offline_and_classifies():
    loaded = load_model("digits-vit")
    assert "digits-vit" in BUNDLED_MODELS and loaded.processor is not None and loaded.tokenizer is None
    images, labels = digits_test_set(100)
    from attnflow.capture.vision import classify

    predicted = classify(loaded, pixel_values(images, loaded.processor)).argmax(-1)
    assert (predicted == labels).mean() >= 0.9
    report = json.loads((DIGITS_MODEL_DIR / "train_report.json").read_text())
    assert report["test_accuracy"] >= 0.9 and report["n_test"] == 360


def test_explain_image_on_a_digit_png(tmp_path):
    images, labels = digits_test_set(1)
    path = save_digit_png(images[0], tmp_path / "digit.png")
    e = attnflow.explain_image(path, methods=("rollout", "flow", "grad-rollout"))
    assert e.model_name == "digits-vit" and e.image["grid"] == [4, 4] and e.tokens[0] == "[CLS]"
    assert e.target["label"] == str(labels[0])
    assert e.image["size"] == [64, 64] and e.overlay("flow").shape == (64, 64, 3)


def test_cli_image_writes_png_json_and_html(tmp_path, capsys):
    images, _ = digits_test_set(1)
    path = save_digit_png(images[0], tmp_path / "digit.png")
    code = main([
        "explain", "--image", str(path), "--method", "rollout", "--method", "grad-rollout",
        "--png", str(tmp_path / "o.png"), "--json", str(tmp_path / "o.json"), "--html", str(tmp_path / "o.html"),
    ])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "o.png").read_bytes().startswith(b"\x89PNG")
    data = json.loads((tmp_path / "o.json").read_text())
    assert data["image"]["grid"] == [4, 4]
    page = (tmp_path / "o.html").read_text()
    assert 'id="sec-image"' in page and "data:image/png;base64," in page
    from attnflow.report.data import load_report_data

    # the explain --json file gives a report too (without the picture)
    assert load_report_data(tmp_path / "o.json").tokens[0] == "[CLS]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain"], "got neither"),
        (["explain", "hello", "--image", "x.png"], "got both"),
        (["explain", "--image", "missing.png"], "does not exist"),
        (["explain", "--image", "IMG", "--model", "minilm"], "not an image model"),
        (["explain", "--image", "IMG", "--svg", "x.svg"], "--svg is for texts"),
        (["explain", "--image", "IMG", "--image-size", "big"], "HEIGHTxWIDTH"),
    ],
)
def test_cli_image_errors(tmp_path, capsys, args, message):
    images, _ = digits_test_set(1)
    path = save_digit_png(images[0], tmp_path / "digit.png")
    args = [str(path) if a == "IMG" else a for a in args]
    assert main(args) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_report_data_image_view_is_checked():
    from attnflow import AttnflowError
    from attnflow.report.data import ReportData

    scores = {"rollout": np.full((1, 1, 5), 0.2)}
    good = {"grid": [2, 2], "patch_positions": [1, 2, 3, 4], "png": "data:image/png;base64,iVBORw0KGgo="}
    assert ReportData(tokens=list("abcde"), scores=scores, outputs=[0], image=good).image["grid"] == [2, 2]
    for bad in (
        {**good, "png": "javascript:alert(1)"},
        {**good, "patch_positions": [1, 2, 3, 9]},
        {**good, "png": "data:image/png;base64,<svg>"},
    ):
        with pytest.raises(AttnflowError):
            ReportData(tokens=list("abcde"), scores=scores, outputs=[0], image=bad)


@pytest.mark.slow
def test_faithfulness_methods_beat_random_on_digits():
    from attnflow.evaluate.image_faithfulness import image_faithfulness

    images, labels = digits_test_set(12)
    result = image_faithfulness(images, methods=("rollout", "grad-rollout"), labels=labels)
    summary = result.summary()
    assert set(summary) == {"rollout", "grad-rollout", "random"}
    assert result.fractions[0] == 0 and result.fractions[-1] == 1
    for values in result.deletion_auc.values():
        assert np.all((values >= 0) & (values <= 1))
    assert summary["grad-rollout"]["deletion_auc"][0] < summary["random"]["deletion_auc"][0]
    assert json.loads(json.dumps(result.to_dict()))["n_images"] == 12
