"""The bundled reverse model still shows the plausibility docs/seq2seq.md reports, on a seeded subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnflow.cli import main
from attnflow.tasks.seq2seq_task import make_examples, plausibility

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "seq2seq-reverse.json"


@pytest.fixture(scope="module")
def subset():
    # the committed run's first 12 held-out examples (same seed, so the same sources)
    return plausibility(count=12, seed=20_000)


def test_the_subset_agrees_with_the_committed_results(subset):
    committed = json.loads(RESULTS.read_text())
    assert committed["seed"] == subset["seed"] and committed["examples"] >= 100
    assert subset["model_confident"] == 1.0
    for method, rates in committed["methods"].items():
        # 12 examples are ~65 target tokens: a rate's sd is at most 0.06
        np.testing.assert_allclose(subset["methods"][method], rates, atol=0.2, err_msg=method)


@pytest.mark.slow
def test_the_claims_of_the_documentation(subset):
    rates = subset["methods"]
    assert rates["raw"][-1] >= 0.8 and rates["rollout"][-1] >= 0.8  # the top layer copies the aligned digit
    assert rates["rollout"][0] <= subset["chance"]  # the first decoder layer does not
    assert rates["flow"][-1] < rates["rollout"][-1]  # flow's top layer is tied or spread over the source


def test_examples_are_reproducible_and_reversed():
    first, again = make_examples(5, seed=20_000), make_examples(5, seed=20_000)
    assert first == again
    for example in first:
        assert example.target == tuple(reversed(example.source))
        assert example.source[example.aligned(0)] == example.target[0]


@pytest.mark.e2e
def test_reproduce_reverse_writes_results(capsys, tmp_path):
    args = ["reproduce", "reverse", "--n", "2", "--method", "raw", "--method", "rollout", "--out", str(tmp_path)]
    status = main(args)
    out = capsys.readouterr()
    assert status == 0, out.err
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["examples"] == 2 and list(data["methods"]) == ["raw", "rollout"]
    assert "Aligned source digit ranked first" in " ".join(out.out.split())
    status = main(["reproduce", "reverse", "--retrain"])
    assert status != 0 and "--retrain needs --out" in capsys.readouterr().err
