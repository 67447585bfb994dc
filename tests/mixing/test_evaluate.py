"""``attnflow.evaluate(..., graphs=...)`` and ``attnflow evaluate --graph``: each method over each graph, judged.

The references are computed apart from the evaluation: the graph's scores come from
``attnflow.explain(graph=...)`` and the correlation from scipy, against the ground truth
the evaluation recorded for the example.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

import attnflow
import attnflow.evaluate
from attnflow.cli import main
from attnflow.errors import AttnflowError
from tests.tolerances import EPS64, model_float32_bound

TEXTS = ["The keys to the cabinet are on the table.", "Dogs bark loudly at night."]


def run_cli(capsys, *args):
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def judged(minilm):
    """Rollout over attention and ALTI, against blank-out, with faithfulness at 50 %."""
    return attnflow.evaluate(TEXTS, minilm, methods=["rollout"], graphs=["attention", "alti"], target="norm",
                             ground_truths=["blankout"], percents=(50,))


def test_results_are_keyed_graph_slash_method(judged, minilm):
    assert judged.methods == ["rollout", "alti/rollout"]
    assert judged.options["graphs"] == ["attention", "alti"]
    plain = attnflow.evaluate(TEXTS, minilm, methods=["rollout"], target="norm", ground_truths=["blankout"],
                              percents=(50,))
    np.testing.assert_array_equal(judged.correlation("blankout", "rollout"), plain.correlation("blankout", "rollout"))
    assert set(judged.faithfulness_summary()) == {"rollout", "alti/rollout", "random"}
    assert "graphs" not in plain.options


def test_graph_correlations_are_spearman_of_the_explained_scores(judged, minilm):
    for example in judged.examples:
        scores = attnflow.explain(example.text, minilm, methods=["rollout"], graph="alti", output="mean")
        truth = example.ground_truths["blankout"]
        content = example.content_positions
        # two float32 runs of the model; the correlations are taken of the example's own scores (float32
        # differences could swap two ranks), a float64 Pearson correlation of len(content) ranks
        np.testing.assert_allclose(example.scores["alti/rollout"], scores.scores["alti/rollout"], rtol=0,
                                   atol=model_float32_bound(minilm.model.config))
        expected = [spearmanr(layer[content], truth[content])[0] for layer in example.scores["alti/rollout"]]
        np.testing.assert_allclose(example.correlations["blankout"]["alti/rollout"], expected, rtol=0,
                                   atol=len(content) * EPS64)


def test_residual_and_gradient_methods_with_a_graph_are_refused(minilm):
    with pytest.raises(AttnflowError, match="already contains the residual stream"):
        attnflow.evaluate(TEXTS, minilm, graphs="norm", residual=0.3, target="norm")
    with pytest.raises(AttnflowError, match="runs on the attention graph only"):
        attnflow.evaluate(TEXTS, minilm, methods=["grad-rollout"], graphs="norm", target="norm")


def test_cli_evaluate_graph_writes_graph_keys(capsys, tmp_path):
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "out"
    status, stdout, err = run_cli(capsys, "evaluate", "--data", str(data), "--target", "norm", "--method", "rollout",
                                  "--graph", "norm", "--ground-truth", "blankout", "--no-faithfulness",
                                  "--out", str(out))
    assert status == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["methods"] == ["norm/rollout"] and "norm/rollout" in stdout
    assert "residual" not in results["options"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--graph", "alti", "--residual", "0.3"], "--residual weighs the residual"),
        (["--graph", "alti", "--method", "grad-rollout"], "--method grad-rollout weighs attention weights"),
        (["--graph", "alti", "--engine", "local"], "evaluates the attention graph only"),
        (["--graph", "nope"], "attention, norm, globenc, globenc-rownorm, alti, value-zeroing"),
    ],
)
def test_cli_graph_mistakes_are_usage_errors_before_any_model_loads(capsys, tmp_path, args, message):
    data = tmp_path / "texts.txt"
    data.write_text("one text\n")
    status, out, err = run_cli(capsys, "evaluate", "--data", str(data), "--model", "/nonexistent/model",
                               "--out", str(tmp_path / "out"), *args)
    assert status == 2 and "Traceback" not in out + err
    assert message in " ".join(err.split()) and not (tmp_path / "out").exists()


def test_cli_graph_mistakes_with_images_are_usage_errors(capsys, tmp_path):
    """--images takes --graph (tests/mixing/test_image.py); its attention-only options are refused alike."""
    status, _, err = run_cli(capsys, "evaluate", "--images", "digits", "--graph", "alti", "--method", "grad-rollout",
                             "--out", str(tmp_path / "o"))
    assert status == 2 and "runs on the attention graph only" in " ".join(err.split())
    assert not (tmp_path / "o").exists()
