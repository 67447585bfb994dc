"""End to end: the bundled digits-vit, the CLI with --image, the HTML report's image view, faithfulness."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import attnflow
from attnflow.capture import BUNDLED_MODELS, load_model
from attnflow.cli import main
from attnflow.tasks.digits import DIGITS_MODEL_DIR, digits_test_set, pixel_values, save_digit_png

pytestmark = pytest.mark.e2e


#: docs/vision.md and the README claim test accuracy 0.994 (358 of the 360 test images).
CLAIMED_ACCURACY = 0.994
#: What the test allows below the claim: about 3 more errors in 360 images.
MARGIN = 0.01


def test_bundled_digits_vit_classifies_the_held_out_digits_as_claimed():
    """On the model itself: all 360 held-out test digits, at the claimed accuracy minus the margin,
    and exactly what the committed train_report.json (the docs' source) records."""
    loaded = load_model("digits-vit")
    assert "digits-vit" in BUNDLED_MODELS and loaded.processor is not None and loaded.tokenizer is None
    images, labels = digits_test_set()
    assert len(labels) == 360
    from attnflow.capture.image import classify

    predicted = classify(loaded, pixel_values(images, loaded.processor)).argmax(-1)
    measured = float((predicted == labels).mean())
    assert measured >= CLAIMED_ACCURACY - MARGIN, measured
    report = json.loads((DIGITS_MODEL_DIR / "train_report.json").read_text())
    assert report["n_test"] == 360
    # counts of 360 correct answers: equal, not close
    assert round(report["test_accuracy"] * 360) == round(measured * 360), (report["test_accuracy"], measured)


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
def test_faithfulness_every_method_beats_random_on_both_curves():
    """The README's claim (docs/vision.md: 200 images), on the first 100 test digits, seed 0: every
    method's mean deletion AUC is below the random order's and its insertion AUC above; and, as
    docs/vision.md says, flow is the weakest of the three. `make reproduce` runs it on all 200."""
    from attnflow.evaluate.image_faithfulness import DEFAULT_METHODS, image_faithfulness

    n = int(os.environ.get("ATTNFLOW_IMAGE_N", "100"))  # `make reproduce` sets 200, the docs' run
    images, labels = digits_test_set(n)
    result = image_faithfulness(images, methods=DEFAULT_METHODS, labels=labels, seed=0)
    summary = result.summary()
    assert set(summary) == {*DEFAULT_METHODS, "random"}
    assert result.fractions[0] == 0 and result.fractions[-1] == 1
    for values in result.deletion_auc.values():
        assert np.all((values >= 0) & (values <= 1))
    deletion = {name: values["deletion_auc"][0] for name, values in summary.items()}
    insertion = {name: values["insertion_auc"][0] for name, values in summary.items()}
    for method in DEFAULT_METHODS:
        assert deletion[method] < deletion["random"], (method, deletion)
        assert insertion[method] > insertion["random"], (method, insertion)
    for method in ("rollout", "grad-rollout"):
        assert deletion[method] < deletion["flow"] and insertion[method] > insertion["flow"], (deletion, insertion)
    assert json.loads(json.dumps(result.to_dict()))["n_images"] == n
