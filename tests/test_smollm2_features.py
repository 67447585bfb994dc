"""Every decoder feature on a real LM, the bundled SmolLM2-135M-Instruct (30 layers, 9 query / 3 key-value heads).

References: facts of the mathematics (docs/design.md) that hold on any weights: a rollout
row is a probability row; in a causal model the first token attends only to itself, so
rollout's mass on it never decreases from one layer to the next; one layer's flow is the
arc's capacity, i.e. the first layer's rollout row; raw attention at the top layer is the
captured head mean.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import attnflow
from attnflow.capture import capture_attention
from attnflow.cli import main
from attnflow.generation import explain_generation
from tests.tolerances import EPS32, EPS64

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("smollm2")]

PROMPT = "The keys to the cabinet"
SENTENCES = ["The keys to the cabinet are on the table.", "The book that the boys read is old.",
             "She said that the dogs were hungry."]


@pytest.fixture(scope="module")
def explained(smollm2):
    return attnflow.explain(PROMPT, smollm2, methods=["raw", "rollout", "flow", "grad-rollout"])


def test_every_method_at_the_last_position(smollm2, explained):
    n = len(explained.tokens)
    assert explained.output == n - 1 and explained.tokens[-1] == "Ġcabinet"
    for method in ("raw", "rollout", "flow", "grad-rollout"):
        scores = np.asarray(explained.scores[method])
        assert scores.shape == (30, n) and np.isfinite(scores).all() and (scores >= 0).all()
    rollout = np.asarray(explained.scores["rollout"])
    # float32 rows each within n * eps32 of 1, multiplied through L layers
    tolerance = 30 * n * EPS32
    np.testing.assert_allclose(rollout.sum(axis=1), 1.0, atol=tolerance)
    assert (np.diff(rollout[:, 0]) >= -tolerance).all()  # token 0 is absorbing: its share never falls
    np.testing.assert_allclose(np.asarray(explained.scores["flow"])[0], rollout[0], atol=n * EPS32)
    fused = capture_attention(PROMPT, smollm2, heads="mean").attentions
    np.testing.assert_allclose(np.asarray(explained.scores["raw"])[-1], fused[-1, 0, n - 1], atol=EPS32)


def test_a_generated_answer_each_token_and_words(smollm2):
    result = explain_generation(PROMPT, smollm2, 2, methods=["rollout", "grad-rollout"], words=True)
    generation, e = result.generation, result.explanation
    assert generation.answer.startswith(" are") and generation.prompt_length == 5
    assert e.words.labels[:5] == ["The", "keys", "to", "the", "cabinet"]
    first, second = e.answer_token(0), e.answer_token(1)
    assert first.output == 4 and second.output == 5
    span = np.asarray(e.scores["rollout"])
    np.testing.assert_allclose(
        span, (np.asarray(first.scores["rollout"]) + np.asarray(second.scores["rollout"])) / 2, rtol=0,
        atol=2 * EPS64,  # the mean of two float64 numbers at most 1
    )


def test_context_mixing_graphs_on_rmsnorm_blocks(smollm2):
    e = attnflow.explain("The keys are", smollm2, methods=["rollout"], graph=["norm", "alti", "value-zeroing"])
    n = len(e.tokens)
    for graph in ("norm", "alti", "value-zeroing"):
        scores = np.asarray(e.scores[f"{graph}/rollout"])
        assert scores.shape == (30, n) and np.isfinite(scores).all() and (scores >= -n * EPS32).all()
        np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=30 * n * EPS32)
        assert (np.diff(scores[:, 0]) >= -30 * n * EPS32).all()  # causal: token 0 absorbs on every graph


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("smollm2-data") / "sentences.txt"
    path.write_text("\n".join(SENTENCES) + "\n")
    return path


def test_html_report(smollm2, tmp_path, capsys):
    page = tmp_path / "keys.html"
    assert main(["explain", PROMPT, "--model", "smollm2", "--method", "rollout", "--method", "flow",
                 "--html", str(page)]) == 0, capsys.readouterr().err
    text = page.read_text()
    assert "Ġcabinet" in text and "smollm2" in text


def test_heads_over_a_data_file(smollm2, data_file, tmp_path, capsys):
    out = tmp_path / "heads"
    assert main(["heads", "--model", "smollm2", "--data", str(data_file), "--out", str(out)]) == 0, (
        capsys.readouterr().err)
    report = json.loads((out / "heads.json").read_text())
    assert (report["n_layers"], report["n_heads"], report["n_examples"]) == (30, 9, 3)
    assert len(report["roles"]) == 30 and all(len(row) == 9 for row in report["roles"])


def test_batch_over_a_data_file(smollm2, data_file, tmp_path, capsys):
    out = tmp_path / "batch"
    assert main(["batch", "--model", "smollm2", "--data", str(data_file), "--out", str(out), "--method", "rollout",
                 "--method", "flow"]) == 0, capsys.readouterr().err
    rows = pd.read_parquet(out / "scores")
    assert len(rows) == 3 * 2 * 30 and set(rows["method"]) == {"rollout", "flow"}
    one = rows[(rows["example"] == 0) & (rows["method"] == "rollout")].sort_values("layer")
    np.testing.assert_allclose(np.stack(one["scores"].to_numpy()).sum(axis=1), 1.0, atol=30 * 12 * EPS32)


def test_evaluate_against_blank_out(smollm2, data_file, tmp_path, capsys):
    out = tmp_path / "evaluate"
    assert main(["evaluate", "--model", "smollm2", "--data", str(data_file), "--out", str(out), "--method", "raw",
                 "--method", "rollout", "--ground-truth", "blankout", "--no-faithfulness"]) == 0, (
        capsys.readouterr().err)
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "smollm2" and results["n_examples"] == 3
