"""Blank-out, input gradients and integrated gradients on models whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnflow.capture.gradient_point import gradient_point
from attnflow.capture.perturb import (
    blank_token_id,
    blankout,
    gradient_importance,
    input_gradients,
    integrated_gradients,
    score_sequences,
)
from attnflow.capture.targets import resolve_target
from attnflow.errors import AttnflowError
from tests.evaluate.toy import POSITION, one_token_model, tiny_loaded, toy_probability
from tests.tolerances import EPS64, model_float32_bound

TEXT = "the keys to the cabinet are on the table"
#: Two runs of the float64 toy on the same ids in other batches: a difference of two probabilities, each
#: from an 8-term (hidden size) reduction.
TOY_BOUND = 2 * 8 * EPS64


@pytest.fixture(scope="module")
def toy():
    return one_token_model()


def _bound(loaded, spec=None, text=TEXT):
    ids = loaded.tokenizer(text)["input_ids"]
    return ids, resolve_target(spec, loaded).bind(loaded, ids)


def _count_forwards(model, monkeypatch):
    calls = []
    original = model.forward

    def counting(*args, **kwargs):
        batch = kwargs.get("input_ids", kwargs.get("inputs_embeds"))
        calls.append(batch.shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", counting)
    return calls


def test_blankout_ranks_the_one_token_first(toy):
    ids, bound = _bound(toy)
    content = list(range(1, len(ids) - 1))
    unk = blank_token_id(toy, "unk")
    importance = blankout(toy, bound, ids, content, blank_id=unk)
    assert int(np.nanargmax(importance)) == POSITION
    assert importance[POSITION] > 1e-3
    others = [p for p in content if p != POSITION]
    np.testing.assert_array_equal(importance[others], 0.0)  # the toy never reads them
    assert np.isnan(importance[0]) and np.isnan(importance[-1])  # special tokens are not blanked
    blanked = list(ids)
    blanked[POSITION] = unk
    expected = abs(toy_probability(toy, ids, bound.index) - toy_probability(toy, blanked, bound.index))
    assert importance[POSITION] == pytest.approx(expected, abs=TOY_BOUND)


def test_blankout_is_one_forward_pass_and_batches_agree(toy, monkeypatch):
    ids, bound = _bound(toy)
    content = list(range(1, len(ids) - 1))
    calls = _count_forwards(toy.model, monkeypatch)
    whole = blankout(toy, bound, ids, content, blank_id=100)
    assert calls == [len(content) + 1]  # the input and all its blanked copies together
    calls.clear()
    pieces = blankout(toy, bound, ids, content, blank_id=100, batch_size=3)
    assert calls == [3, 3, 3, 1]
    np.testing.assert_allclose(pieces, whole, atol=TOY_BOUND)


def test_out_of_memory_halves_the_batch(toy, monkeypatch):
    ids, bound = _bound(toy)
    content = list(range(1, len(ids) - 1))
    expected = blankout(toy, bound, ids, content, blank_id=100)
    original = toy.model.forward
    sizes = []

    def tight(*args, **kwargs):
        size = kwargs["input_ids"].shape[0]
        sizes.append(size)
        if size > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(*args, **kwargs)

    monkeypatch.setattr(toy.model, "forward", tight)
    np.testing.assert_allclose(blankout(toy, bound, ids, content, blank_id=100), expected, atol=TOY_BOUND)
    total = len(content) + 1
    assert sizes[:3] == [total, total // 2, total // 4] and max(sizes[3:]) <= 2


@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert", "gpt2", "llama"])
def test_padded_batches_equal_one_at_a_time(architecture):
    head = "causal-lm" if architecture in ("gpt2", "llama") else "classification"
    loaded = tiny_loaded(architecture, head)
    ids, bound = _bound(loaded)
    sequences = [ids, ids[:3], ids[:1] + ids[3:], ids[:-2]]
    together = score_sequences(loaded, bound, sequences)
    alone = [score_sequences(loaded, bound, [seq])[0] for seq in sequences]
    # padding changes the reduction order: two float32 runs of the model, scores of their own size
    bound = model_float32_bound(loaded.model.config, scale=max(1.0, float(np.abs(alone).max())))
    np.testing.assert_allclose(together, alone, rtol=0, atol=bound)


GRADIENT_CASES = [
    ("toy", None),
    ("bert-classification", "predicted"),
    ("bert-classification", "norm"),
    ("bert-base", "norm"),
    ("bert-base", "cosine:a table with keys"),
    ("gpt2-causal-lm", "predicted"),
    ("llama-causal-lm", "predicted"),
]


def _model(case):
    if case == "toy":
        return one_token_model()
    architecture, head = case.split("-", 1)
    return tiny_loaded(architecture, head, double=True)


def _score_at_point(loaded, bound, ids, point, shift):
    """The score with ``shift`` ``(n, d)`` added to the point's value: an independent finite-difference route."""
    def add(value):
        return value + torch.as_tensor(shift, dtype=value.dtype)[None]

    if point.layer_input:
        handle = point.module.register_forward_pre_hook(lambda _m, args: (add(args[0]), *args[1:]))
    else:
        handle = point.module.register_forward_hook(lambda _m, _i, out: add(out))
    try:
        batch = torch.tensor([ids])
        with torch.no_grad():
            return float(bound.forward(loaded.model, input_ids=batch, attention_mask=torch.ones_like(batch),
                                       kind="score")[0])
    finally:
        handle.remove()


@pytest.mark.parametrize("case, spec", GRADIENT_CASES)
def test_gradients_agree_with_finite_differences(case, spec):
    loaded = _model(case)
    ids, bound = _bound(loaded, spec)
    point = gradient_point(loaded)
    gradient, inputs = input_gradients(loaded, bound, ids)
    assert gradient.shape == inputs.shape == (len(ids), loaded.model.config.hidden_size)

    def score(shift):
        return _score_at_point(loaded, bound, ids, point, shift)

    # Llama's RMSNorm computes in float32 even in a float64 model: a larger step, a looser match.
    # literal: a central difference's error is its truncation, h^2 / 6 * |f'''|, not a rounding bound
    h, rel = (1e-3, 2e-3) if case.startswith("llama") else (1e-5, 1e-5)
    rng = np.random.default_rng(0)
    for token in range(len(ids)):  # the all-ones direction on one token gives sum_d grad
        step = np.zeros_like(inputs)
        step[token] = h
        numeric = (score(step) - score(-step)) / (2 * h)
        assert gradient[token].sum() == pytest.approx(numeric, rel=rel, abs=1e-7)
    for _ in range(3):  # and random directions over all tokens
        direction = rng.normal(size=inputs.shape)
        numeric = (score(h * direction) - score(-h * direction)) / (2 * h)
        assert float((gradient * direction).sum()) == pytest.approx(numeric, rel=rel, abs=1e-7)
    assert all(p.grad is None for p in loaded.model.parameters())  # nothing accumulated on the model


def test_gradient_importances_single_out_the_one_token(toy):
    ids, bound = _bound(toy)
    importance = gradient_importance(*input_gradients(toy, bound, ids))
    for values in importance.values():
        assert int(np.argmax(values)) == POSITION
        np.testing.assert_array_equal(np.delete(values, POSITION), 0.0)


@pytest.mark.parametrize("case, spec", [("toy", None), ("bert-classification", "predicted"), ("gpt2-causal-lm", None)])
def test_integrated_gradients_are_complete(case, spec):
    loaded = _model(case)
    ids, bound = _bound(loaded, spec)
    unk = blank_token_id(loaded, "unk")
    baseline = [unk if 0 < i < len(ids) - 1 else t for i, t in enumerate(ids)]
    importance, delta, relative = integrated_gradients(loaded, bound, ids, baseline, n_steps=50)
    assert importance.shape == (len(ids),)
    mask = torch.ones(1, len(ids), dtype=torch.long)
    with torch.no_grad():
        s = [float(bound.forward(loaded.model, input_ids=torch.tensor([x]), attention_mask=mask, kind="score")[0])
             for x in (ids, baseline)]
    # attributions sum to S(x) - S(baseline); literal: 50 Riemann steps' quadrature error, not a rounding bound
    assert abs(delta) <= 1e-3 * max(1.0, abs(s[0] - s[1]))
    if s[0] != s[1]:  # the relative delta is the delta over |S(x) - S(baseline)|, computed independently here
        assert relative == pytest.approx(delta / abs(s[0] - s[1]), rel=1e-3, abs=1e-9)
    if case == "toy":
        assert int(np.argmax(importance)) == POSITION
        # the toy never reads the other tokens: their gradient is an exact 0 (no rounding enters)
        np.testing.assert_array_equal(np.delete(importance, POSITION), 0.0)


def test_model_state_is_restored():
    loaded = tiny_loaded("bert", "classification")
    loaded.model.train()  # dropout on: evaluation must switch it off, then restore train mode
    implementation = loaded.model.config._attn_implementation
    ids, bound = _bound(loaded)
    first = blankout(loaded, bound, ids, [1, 2, 3], blank_id=100)
    second = blankout(loaded, bound, ids, [1, 2, 3], blank_id=100)
    np.testing.assert_array_equal(first, second)
    input_gradients(loaded, bound, ids)
    assert loaded.model.training and all(m.training for m in loaded.model.modules())
    assert loaded.model.config._attn_implementation == implementation


def test_blank_tokens():
    gpt2 = tiny_loaded("gpt2", "causal-lm")
    assert blank_token_id(gpt2, "unk") == gpt2.tokenizer.unk_token_id
    with pytest.raises(AttnflowError, match="no mask token"):
        blank_token_id(gpt2, "mask")
    with pytest.raises(AttnflowError, match="neither"):
        blank_token_id(gpt2, "certainly-not-a-token")
