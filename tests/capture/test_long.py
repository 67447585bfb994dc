"""Long inputs end to end: raw attention, rollout and grad-rollout over 1024 tokens of a random Llama.

The model is the random-initialised Llama config of ``benchmarks/capture.py`` (8 layers,
8 heads, hidden 256); docs/capture.md gives the 4096-token run's time and memory.
"""

from __future__ import annotations

import numpy as np
import pytest

import attnflow
from attnflow.capture import capture_attention, load_model
from attnflow.cli import main
from tests.tolerances import EPS64, float32_sum_bound, model_float32_bound

TOKENS = 1024


@pytest.fixture(scope="module")
def long_llama(tmp_path_factory):
    from benchmarks.capture import build_model, text_of

    folder = build_model(tmp_path_factory.mktemp("long_llama") / "llama")
    loaded = load_model(folder)
    return folder, loaded, text_of(loaded.tokenizer, TOKENS)


@pytest.mark.slow
def test_long_input_end_to_end(long_llama):
    folder, loaded, text = long_llama
    result = attnflow.explain(text, loaded, methods=("raw", "rollout", "grad-rollout"), target="predicted")
    assert len(result.tokens) == TOKENS and result.output == TOKENS - 1
    for name, scores in result.scores.items():
        assert scores.shape == (8, TOKENS) and np.all(np.isfinite(scores)), name
    layers = loaded.model.config.num_hidden_layers
    np.testing.assert_allclose(result.scores["rollout"].sum(-1), 1.0, rtol=0,
                               atol=layers * TOKENS * EPS64)  # a float64 walk: L n-term row products
    # float32 rows (renormalised, then rounded): n half-ulps
    np.testing.assert_allclose(result.scores["raw"].sum(-1), 1.0, rtol=0, atol=float32_sum_bound(TOKENS))
    assert result.scores["grad-rollout"].min() >= 0 and result.scores["grad-rollout"][:, -1].min() >= 1
    # the fused capture explain used, checked against the model's own last row of the top layer
    fused = capture_attention(text, loaded, heads="mean")
    assert fused.attentions.shape == (8, 1, TOKENS, TOKENS) and fused.attentions.dtype == np.float32
    np.testing.assert_allclose(result.scores["raw"], fused.fused[:, -1, :], rtol=0,
                               atol=model_float32_bound(loaded.model.config))  # two float32 runs


@pytest.mark.slow
@pytest.mark.e2e
def test_long_flow_says_its_estimate_first(long_llama, capsys):
    """Flow over 512 tokens: the CLI refuses past --max-flow-seconds, naming the estimate, before solving."""
    from benchmarks.capture import text_of

    folder, loaded, _ = long_llama
    text = text_of(loaded.tokenizer, 512)
    status = main(["explain", text, "--model", str(folder), "--method", "flow", "--max-flow-seconds", "5"])
    err = " ".join(capsys.readouterr().err.split())
    assert status != 0 and "Attention flow for 512 tokens and 8 layers is estimated at" in err
    assert "--method rollout" in err
