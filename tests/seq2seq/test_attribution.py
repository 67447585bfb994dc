"""Attribution methods on an encoder-decoder model: over the source and the target prefix, against direct computations.

The references here take the model's gradient (and blank out its vectors) at the encoder's and the decoder's
first layer's input with hooks named by hand (``model.model.encoder.layers[0]``), on the whole teacher-forced
target, not attnflow's prefix, point or Captum.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import transformers

import attnflow
from attnflow.bundled import bundled_reverse_path
from attnflow.capture import load_model
from attnflow.capture.seq2seq import capture_seq2seq
from attnflow.cli import main
from attnflow.evaluate.seq2seq import evaluate_seq2seq
from tests.tolerances import EPS32, model_float64_bound

SOURCE, TARGET = "7 2 9 4", "4 9 2 7"


@pytest.fixture(scope="module")
def double():
    """The bundled ``reverse`` model (Marian) in float64, so that only the arithmetic's order differs."""
    path = bundled_reverse_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(path, attn_implementation="eager").double().eval()
    return load_model(model, tokenizer), model


def first_layers(model):
    return model.model.encoder.layers[0], model.model.decoder.layers[0]


def log_p(model, cap, position, token, *, zero=None, leaves=None):
    """The target token's log-probability at ``position`` on the whole target; ``zero`` = (side, j) zeroes one
    vector at that side's first layer's input; ``leaves`` collects those inputs as leaves that need a gradient."""
    handles = []
    for side, layer in enumerate(first_layers(model)):

        def hook(_m, args, side=side):
            value = args[0].detach().clone()
            if zero is not None and zero[0] == side:
                value[0, zero[1]] = 0.0
            if leaves is not None:
                value.requires_grad_(True)
                leaves.append(value)
            return (value, *args[1:])

        handles.append(layer.register_forward_pre_hook(hook))
    try:
        logits = model(input_ids=torch.tensor([cap.source_ids]), decoder_input_ids=torch.tensor([cap.target_ids]),
                       use_cache=False).logits
    finally:
        for handle in handles:
            handle.remove()
    return torch.log_softmax(logits[0, position].double(), -1)[token]


def gradients(model, cap, position, token):
    """``(g, x)``: the gradient at both first layers' inputs and their values, source then target, ``(N, d)``."""
    leaves = []
    with torch.enable_grad():
        score = log_p(model, cap, position, token, leaves=leaves)
        grads = torch.autograd.grad(score, leaves)
    g = torch.cat([grad[0] for grad in grads]).numpy()
    x = torch.cat([leaf[0].detach() for leaf in leaves]).numpy()
    return g, x


def test_saliency_and_grad_x_input_are_the_models_gradient_over_the_source_and_the_target_prefix(double):
    loaded, model = double
    cap = capture_seq2seq(SOURCE, loaded, decoder_text=TARGET)
    ns, position = cap.n_source, 2
    token = cap.target_ids[position + 1]
    e = attnflow.explain(SOURCE, loaded, ["saliency", "grad-x-input"], output=position, decoder_text=TARGET,
                         captured=cap)
    g, x = gradients(model, cap, position, token)
    prefix = ns + position + 1
    saliency = np.linalg.norm(g, axis=-1)
    grad_x_input = np.abs((g * x).sum(-1))
    assert np.all(saliency[prefix:] == 0)  # causal decoder: later target positions do not reach the position
    for name, expected in (("saliency", saliency), ("grad-x-input", grad_x_input)):
        rows = e.scores[name]
        assert rows.shape == (cap.n_decoder_layers, ns + cap.n_target)
        assert np.all(rows == rows[0])  # layer input: the same row at every decoder layer
        # float64 forward and backward of both stacks in another order (prefix vs whole target)
        bound = model_float64_bound(model.config, scale=float(np.abs(expected).max()), backward=True)
        np.testing.assert_allclose(rows[0], expected, rtol=0, atol=bound)
    assert e.options["input_methods"] == {"saliency": "input", "grad-x-input": "input"}
    assert e.target["token_id"] == token and e.target["kind"] == "next"


def test_occlusion_is_zeroing_one_vector_at_a_time(double):
    loaded, model = double
    cap = capture_seq2seq(SOURCE, loaded, decoder_text=TARGET)
    ns, position = cap.n_source, 3
    token = cap.target_ids[position + 1]
    e = attnflow.explain(SOURCE, loaded, ["occlusion"], output=position, decoder_text=TARGET, captured=cap)
    with torch.no_grad():
        base = log_p(model, cap, position, token).item()
        expected = [abs(base - log_p(model, cap, position, token, zero=(0, j)).item()) for j in range(ns)]
        expected += [abs(base - log_p(model, cap, position, token, zero=(1, t)).item()) for t in range(position + 1)]
    expected += [0.0] * (cap.n_target - position - 1)  # after the prefix: not in the model pass
    # a difference of two float64 log-probabilities, each within the model's bound of the other order's; Captum's
    # ablation then hands each difference back rounded to float32 (half an eps32, relative)
    bound = 2 * model_float64_bound(model.config, scale=abs(base))
    np.testing.assert_allclose(e.scores["occlusion"][-1], expected, rtol=EPS32 / 2, atol=bound)
    assert max(expected) > 100 * bound  # the model does depend on the vectors zeroed


def _payload(path):
    text = path.read_text()
    return json.loads(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S).group(1))


@pytest.mark.e2e
def test_explain_prints_writes_json_and_a_report_with_attribution_methods(capsys, tmp_path):
    record, page = tmp_path / "e.json", tmp_path / "e.html"
    status = main(["explain", SOURCE, "--model", "reverse", "--decoder-text", TARGET, "--method", "flow", "--method",
                   "saliency", "--method", "occlusion", "--json", str(record), "--html", str(page)])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "saliency (input)" in out.out and "occlusion (input)" in out.out
    assert "saliency, occlusion explain the log-probability of 7 (next)" in " ".join(out.out.split())
    e = attnflow.explain(SOURCE, "reverse", ["flow", "saliency", "occlusion"], decoder_text=TARGET)
    data = json.loads(record.read_text())
    assert data["options"]["input_methods"] == {"saliency": "input", "occlusion": "input"}
    for name in ("flow", "saliency", "occlusion"):  # the JSON is what the API gives (6 decimals)
        np.testing.assert_allclose(data["scores"][name], e.scores[name], rtol=0, atol=0.5e-6 + 1e-15)
    payload = _payload(page)
    assert payload["input_methods"] == ["saliency", "occlusion"]
    ns, position = 5, e.seq2seq["position"]
    saliency = np.array(payload["scores"]["saliency"], dtype=float)  # (graph layers, decoder positions, N)
    np.testing.assert_allclose(saliency[[3, 5], position], e.scores["saliency"], rtol=0, atol=0.5e-6 + 1e-15)
    others = np.delete(saliency, position, axis=1)
    assert np.isnan(others).all() and np.isnan(saliency[[0, 1, 2, 4]]).all()  # the explained position only
    assert ns + position + 1 == len(e.tokens) - 1  # default position: the one predicting the last target token


@pytest.mark.e2e
def test_evaluate_ranks_attribution_methods_on_an_encoder_decoder_model(capsys, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"text": "7 2 9", "target": "9 2 7"}\n')
    out = tmp_path / "out"
    status = main(["evaluate", "--data", str(data), "--model", "reverse", "--method", "rollout", "--method",
                   "saliency", "--method", "random", "--seed", "3", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    result = json.loads((out / "results.json").read_text())
    assert result["methods"] == ["rollout", "saliency", "random"]
    expected = evaluate_seq2seq([("7 2 9", "9 2 7")], "reverse", ["rollout", "saliency", "random"],
                                attribution={"seed": 3})
    assert result["correlation"] == expected["correlation"]
    assert len(result["correlation"]["gradient"]["saliency"]) == result["decoder_layers"]
    status = main(["evaluate", "--data", str(data), "--model", "reverse", "--method", "integrated-gradients",
                   "--ig-steps", "0", "--out", str(out), "--overwrite"])
    assert status == 2 and "'--ig-steps': must be in [1, inf]" in capsys.readouterr().err  # before any model loads


def test_the_random_baseline_draws_per_decoder_position_or_per_prediction():
    from attnflow.explainers.seq2seq import seq2seq_scores

    loaded = load_model("reverse")
    cap = capture_seq2seq(SOURCE, loaded, decoder_text=TARGET)
    ns = cap.n_source

    def draw(position, **attribution):
        return seq2seq_scores(cap, ["random"], position, model=loaded, attribution=attribution).explanation.scores[
            "random"][0]

    expected = np.random.default_rng([0, 2]).random(ns + 3)  # default_rng([seed, index]) over the pass's tokens
    np.testing.assert_array_equal(draw(2), np.concatenate([expected, np.zeros(cap.n_target - 3)]))
    assert not np.array_equal(draw(2, index=7), draw(2))  # evaluate: one draw per prediction
