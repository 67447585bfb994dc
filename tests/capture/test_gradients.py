"""Attention gradients and head masks: the real gradients on every architecture, finite differences, no hooks left."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnflow.capture import load_model
from attnflow.capture.gradients import (
    attention_output_projections,
    count_heads,
    head_mask,
    target_gradients,
)
from attnflow.capture.targets import resolve_target
from attnflow.errors import AttnflowError
from tests.evaluate.toy import one_token_model, tiny_loaded
from tests.tiny_models import build_tokenizer, foreign_hooks
from tests.tolerances import EPS64, model_float64_bound

TEXT = "The keys to the cabinet are on the table."

#: (architecture, head, target) for every tiny model, plus Megatron-BERT (the SVA model's architecture).
CASES = [
    ("bert", "base", "norm"),
    ("bert", "classification", 1),
    ("roberta", "classification", "predicted"),
    ("distilbert", "base", "cosine:a cabinet"),
    ("gpt2", "causal-lm", "predicted"),
    ("llama", "causal-lm", "predicted"),
    ("megatron", "classification", 0),
]


def _loaded(arch: str, head: str):
    if arch == "megatron":
        from attnflow.tasks.sva_model import build_model

        tokenizer = build_tokenizer("bert")
        model = build_model(
            len(tokenizer), num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
            initializer_range=0.2,
        ).double().eval()
        return load_model(model, tokenizer)
    return tiny_loaded(arch, head, double=True)


def _bound(loaded, target, text=TEXT):
    ids = loaded.tokenizer(text)["input_ids"]
    return resolve_target(target, loaded).bind(loaded, ids), ids


@pytest.mark.parametrize(("arch", "head", "target"), CASES, ids=[f"{a}-{h}" for a, h, _ in CASES])
def test_attention_gradients_are_the_real_ones(arch, head, target):
    """sum_ij A * dS/dA equals the head-mask gradient, computed by another route (hooks on the projection).

    Holds only if the returned attention tensors are the ones the forward pass used, and if
    the hooks scale the right slice of every head: both checked at once, per head.
    """
    loaded = _loaded(arch, head)
    implementation = loaded.model.config._attn_implementation
    bound, ids = _bound(loaded, target)
    found = target_gradients(loaded, bound, ids)
    assert found.gradients.shape == found.attentions.shape == (2, count_heads(loaded.model), len(ids), len(ids))
    assert np.abs(found.gradients).max() > 0
    terms = found.gradients * found.attentions
    via_attention = terms.sum(axis=(-1, -2))  # another route through the float64 backward pass, and n^2 terms
    scale = np.abs(terms).sum(axis=(-1, -2)).max()
    atol = model_float64_bound(loaded.model.config, scale=scale, backward=True) + len(ids) ** 2 * EPS64 * scale
    np.testing.assert_allclose(via_attention, found.head_gradients, rtol=0, atol=atol)
    assert loaded.model.config._attn_implementation == implementation  # restored after the eager pass
    assert all(p.grad is None for p in loaded.model.parameters())


@pytest.mark.parametrize(("arch", "head", "target"), [CASES[1], CASES[4]], ids=["bert-cls", "gpt2"])
@pytest.mark.parametrize("objective", ["score", "log_probability"])
def test_head_mask_gradients_agree_with_finite_differences(arch, head, target, objective):
    loaded = _loaded(arch, head)
    bound, ids = _bound(loaded, target)
    found = target_gradients(loaded, bound, ids, objective=objective)
    tensor = torch.tensor([ids])
    mask_ones = torch.ones_like(tensor)
    kind = "score" if objective == "score" else "value"

    def objective_at(mask: np.ndarray) -> float:
        with head_mask(loaded.model, mask), torch.no_grad():
            value = float(bound.forward(loaded.model, input_ids=tensor, attention_mask=mask_ones, kind=kind)[0])
        return value if objective == "score" else float(np.log(value))

    eps = 1e-6
    shape = found.head_gradients.shape
    numeric = np.zeros(shape)
    for layer in range(shape[0]):
        for h in range(shape[1]):
            plus, minus = np.ones(shape), np.ones(shape)
            plus[layer, h] += eps
            minus[layer, h] -= eps
            numeric[layer, h] = (objective_at(plus) - objective_at(minus)) / (2 * eps)
    # Literal: a central difference's error is its truncation, eps^2 / 6 * |f'''|, not a rounding bound.
    np.testing.assert_allclose(found.head_gradients, numeric, rtol=1e-5, atol=1e-8)
    value = objective_at(np.ones(shape))  # a mask of ones: another float64 run of the model
    assert found.value == pytest.approx(value, rel=0, abs=model_float64_bound(loaded.model.config,
                                                                              scale=max(1.0, abs(value))))


def test_head_mask_of_ones_changes_nothing_and_zero_heads_change_the_output():
    loaded = _loaded("gpt2", "causal-lm")
    ids = torch.tensor([loaded.tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        full = loaded.model(input_ids=ids).logits
        with head_mask(loaded, np.ones((2, 4))):
            same = loaded.model(input_ids=ids).logits
        mask = np.ones((2, 4))
        mask[1, 2] = 0.0
        with head_mask(loaded, mask):
            pruned = loaded.model(input_ids=ids).logits
    torch.testing.assert_close(full, same)
    assert not torch.allclose(full, pruned)


def test_no_hooks_survive_success_or_an_exception():
    loaded = _loaded("bert", "classification")
    before = foreign_hooks(loaded.model)
    ids = torch.tensor([loaded.tokenizer(TEXT)["input_ids"]])
    with head_mask(loaded, np.ones((2, 4))):
        assert foreign_hooks(loaded.model) != before  # the hooks are there inside the block
        loaded.model(input_ids=ids)
    assert foreign_hooks(loaded.model) == before
    with pytest.raises(RuntimeError, match="boom"), head_mask(loaded, np.ones((2, 4))):
        raise RuntimeError("boom")
    assert foreign_hooks(loaded.model) == before
    bound, raw_ids = _bound(loaded, 1)
    target_gradients(loaded, bound, raw_ids)
    assert foreign_hooks(loaded.model) == before


def test_hooks_are_removed_when_the_forward_pass_fails(monkeypatch):
    loaded = _loaded("bert", "classification")
    before = foreign_hooks(loaded.model)
    bound, ids = _bound(loaded, 1)

    def broken(*args, **kwargs):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(loaded.model, "forward", broken)
    with pytest.raises(AttnflowError, match="the model broke"):
        target_gradients(loaded, bound, ids)
    assert foreign_hooks(loaded.model) == before


def test_mask_shape_and_unsupported_models_are_errors():
    loaded = _loaded("distilbert", "base")
    assert len(attention_output_projections(loaded.model)) == 2
    with pytest.raises(AttnflowError, match=r"shape \(2, 4\)"), head_mask(loaded, np.ones((2, 3))):
        pass
    with pytest.raises(AttnflowError, match="output projections"):
        attention_output_projections(torch.nn.Linear(2, 2))


def test_attention_the_output_does_not_use_has_zero_gradient():
    """The toy classifier reports attention it never uses: its gradient is 0, not an error."""
    loaded = one_token_model()
    loaded.model.config.num_attention_heads = 1
    bound, ids = _bound(loaded, 1, "a cat sat")
    found = target_gradients(loaded, bound, ids, head_gradients=False)
    assert found.gradients.shape == found.attentions.shape
    assert not found.gradients.any()
