"""Blank-out and input gradients of an encoder-decoder model, against direct forward passes and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from attnflow import AttnflowError
from attnflow.capture import load_model
from attnflow.capture.seq2seq import capture_seq2seq, seq2seq_blankout, seq2seq_input_gradients
from attnflow.evaluate.seq2seq import evaluate_seq2seq
from tests.tolerances import model_float32_bound, model_float64_bound

SOURCE, TARGET = "the cat sat on the mat", "le chat est assis"


def run_bound(model, scale: float, backward: bool = False) -> float:
    """Two float64 runs of the model differ by the model's bound in eps64; T5's layer norm takes its variance
    in float32 even here (a D-term float32 sum), so T5's runs differ by the float32 bound."""
    bound = model_float32_bound if model.config.model_type == "t5" else model_float64_bound
    return bound(model.config, scale=scale, backward=backward)


def double_model(path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModelForSeq2SeqLM.from_pretrained(path, attn_implementation="eager").double().eval()
    return load_model(model, tokenizer), model, tokenizer


def log_p(model, source_ids, decoder_ids, position, token, embed_shift=None):
    """The target token's log-probability, from the model directly; ``embed_shift`` = (j, eps) adds eps to x_j.

    ``x`` is the input of the encoder's first layer (named here by hand, not found by attnflow's code).
    """
    handle = None
    if embed_shift is not None:
        j, eps = embed_shift
        calls = []

        def shift(_m, args):
            if calls:
                return args
            calls.append(1)
            out = args[0].clone()
            out[0, j] += eps
            return (out, *args[1:])

        encoder = model.get_encoder()
        first = encoder.block[0] if hasattr(encoder, "block") else encoder.layers[0]
        handle = first.register_forward_pre_hook(shift)
    try:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([source_ids]), decoder_input_ids=torch.tensor([decoder_ids]),
                           use_cache=False).logits
    finally:
        if handle is not None:
            handle.remove()
    return torch.log_softmax(logits[0, position].double(), -1)[token].item()


def t5_leaf_gradient(model, cap, position, token):
    """Sum over the embedding axis of dS/de_j with the embeddings given as a leaf tensor.

    T5 neither scales its embeddings nor adds positions, so they are the first layer's input.
    """
    leaf = model.get_encoder().embed_tokens(torch.tensor([cap.source_ids])).detach().requires_grad_(True)
    logits = model(inputs_embeds=leaf, decoder_input_ids=torch.tensor([cap.target_ids]), use_cache=False).logits
    score = torch.log_softmax(logits[0, position].double(), -1)[token]
    (grad,) = torch.autograd.grad(score, leaf)
    return grad[0].sum(-1).numpy()


@pytest.mark.parametrize("arch", ["t5", "bart", "marian"])
def test_blankout_and_gradients_against_direct_computation(seq2seq_paths, arch):
    loaded, model, tokenizer = double_model(seq2seq_paths[arch])
    cap = capture_seq2seq(SOURCE, loaded, decoder_text=TARGET)
    position = 1
    token = cap.target_ids[position + 1]
    base = log_p(model, cap.source_ids, cap.target_ids, position, token)
    blank = tokenizer.unk_token_id
    blankout = seq2seq_blankout(cap, loaded, position)
    grads = seq2seq_input_gradients(cap, loaded, position)
    eps = 1e-5
    leaf = t5_leaf_gradient(model, cap, position, token) if arch == "t5" else None
    for j in range(cap.n_source):
        if j in cap.source_special:
            assert np.isnan(blankout[j]) and np.isnan(grads[j])
            continue
        blanked = [blank if i == j else t for i, t in enumerate(cap.source_ids)]
        expected = abs(base - log_p(model, blanked, cap.target_ids, position, token))
        # two log-probabilities, each z - logsumexp(z): four logits' differences
        assert blankout[j] == pytest.approx(expected, abs=4 * run_bound(model, max(1.0, abs(base)))), (arch, j)
        if arch == "t5":  # T5's layer norm computes in float32, too coarse for a finite difference
            bound = run_bound(model, float(np.abs(leaf).max()), backward=True)
            assert grads[j] == pytest.approx(abs(leaf[j]), rel=0, abs=bound)
            continue
        if j > 3:  # finite differences for a few tokens keep the test short
            continue
        up = log_p(model, cap.source_ids, cap.target_ids, position, token, (j, eps))
        down = log_p(model, cap.source_ids, cap.target_ids, position, token, (j, -eps))
        # literal: a central difference's error is its truncation, eps^2 / 6 * |f'''|, not a rounding bound
        assert grads[j] == pytest.approx(abs(up - down) / (2 * eps), rel=1e-5, abs=1e-8), (arch, j)
    assert np.nanmax(blankout) > 0 and np.nanmax(grads) > 0


def test_evaluate_seq2seq_on_a_tiny_model(seq2seq_paths):
    pairs = [("a dog ran", "un chien")]
    result = evaluate_seq2seq(pairs, seq2seq_paths["bart"], ["rollout", "grad-rollout"])
    expected = sum(capture_seq2seq(s, seq2seq_paths["bart"], decoder_text=t).n_target - 1 for s, t in pairs)
    assert result["predictions"] == expected and result["examples"] == 1
    for truth in ("blankout", "gradient"):
        for method in ("rollout", "grad-rollout"):
            rows = result["correlation"][truth][method]
            assert len(rows) == 2 and all(mean is None or -1 <= mean <= 1 for mean, _ in rows)


def test_evaluate_seq2seq_bad_input(seq2seq_paths, tiny_gpt2_path):
    with pytest.raises(AttnflowError, match="non-empty list"):
        evaluate_seq2seq([], "reverse")
    with pytest.raises(AttnflowError, match="Pair 0"):
        evaluate_seq2seq([("1 2", "")], "reverse")
    with pytest.raises(AttnflowError, match="positions"):
        evaluate_seq2seq([("1 2", "2 1")], "reverse", positions="first")
    with pytest.raises(AttnflowError, match="decoder-only"):
        evaluate_seq2seq([("1 2", "2 1")], tiny_gpt2_path)


@pytest.mark.e2e
def test_attnflow_evaluate_on_pairs(capsys, tmp_path):
    import json

    from attnflow.cli import main

    data = tmp_path / "pairs.jsonl"
    data.write_text('{"text": "7 2 9", "target": "9 2 7"}\n{"text": "5 6"}\n')
    out = tmp_path / "out"
    status = main(["evaluate", "--data", str(data), "--model", "reverse", "--method", "rollout", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 0, err
    result = json.loads((out / "results.json").read_text())
    assert result["predictions"] == 3 and result["skipped_rows"] == 1 and result["methods"] == ["rollout"]
    expected = evaluate_seq2seq([("7 2 9", "9 2 7")], "reverse", ["rollout"])
    assert result["correlation"] == expected["correlation"]
    status = main(["evaluate", "--data", str(data), "--model", "reverse", "--faithfulness", "--out", str(out),
                   "--overwrite"])
    assert status != 0 and "not available for an encoder-decoder model" in " ".join(capsys.readouterr().err.split())
    (tmp_path / "texts.jsonl").write_text('{"text": "7 2 9"}\n')
    status = main(["evaluate", "--data", str(tmp_path / "texts.jsonl"), "--model", "reverse", "--out", str(out),
                   "--overwrite"])
    assert status != 0 and "no target column 'target'" in capsys.readouterr().err
