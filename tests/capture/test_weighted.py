"""grad-rollout from the per-layer reduced mean_h max(0, dS/dA * A) equals grad-rollout from the full gradients."""

from __future__ import annotations

import numpy as np
import pytest

from attnflow.capture.gradients import target_gradients, weighted_attention
from attnflow.errors import AttnflowError
from attnflow.methods.grad_rollout import WeightedAttention, grad_rollout
from tests.capture.test_gradients import CASES, TEXT, _bound, _loaded
from tests.tiny_models import foreign_hooks
from tests.tolerances import model_float32_bound, model_float64_bound


@pytest.mark.parametrize(("arch", "head", "target"), CASES, ids=[f"{a}-{h}" for a, h, _ in CASES])
def test_weighted_equals_full_gradients(arch, head, target):
    """Today's path (every head's dS/dA and A in float64, fused afterwards) against the streamed reduction."""
    loaded = _loaded(arch, head)
    bound, ids = _bound(loaded, target)
    full = target_gradients(loaded, bound, ids, head_gradients=False)
    weighted = weighted_attention(loaded, bound, ids)
    reference = np.maximum(full.gradients * full.attentions, 0.0).mean(axis=1)
    assert weighted.shape == reference.shape
    assert np.abs(reference).max() > 0  # the target depends on the attention: the check can fail
    config = loaded.model.config  # two float64 backward passes
    np.testing.assert_allclose(weighted.values, reference, rtol=0,
                               atol=model_float64_bound(config, scale=np.abs(reference).max(), backward=True))
    want = grad_rollout(full.attentions, full.gradients)
    np.testing.assert_allclose(grad_rollout(full.attentions, weighted), want, rtol=0,
                               atol=model_float64_bound(config, scale=np.abs(want).max(), backward=True))
    # a head-fused attention serves as well: only L and n are read
    np.testing.assert_array_equal(
        grad_rollout(full.attentions.mean(1), weighted), grad_rollout(full.attentions, weighted)
    )
    assert foreign_hooks(loaded.model) == {}
    assert all(p.grad is None for p in loaded.model.parameters())


def test_weighted_float32_minilm(minilm):
    """The bundled MiniLM in float32: equal within float32 round-off of the gradients."""
    bound, ids = _bound(minilm, "norm", TEXT)
    full = target_gradients(minilm, bound, ids, head_gradients=False)
    weighted = weighted_attention(minilm, bound, ids)
    reference = np.maximum(full.gradients * full.attentions, 0).mean(1)
    np.testing.assert_allclose(weighted.values, reference, rtol=0, atol=model_float32_bound(
        minilm.model.config, scale=np.abs(reference).max(), backward=True))


def test_weighted_attention_checks():
    with pytest.raises(AttnflowError, match=r"\(L, n, n\)"):
        WeightedAttention(np.zeros((2, 3, 4)))
    with pytest.raises(AttnflowError, match="non-negative"):
        WeightedAttention(-np.ones((1, 2, 2)))
    with pytest.raises(AttnflowError, match="need"):
        grad_rollout(np.full((2, 1, 3, 3), 1 / 3), WeightedAttention(np.zeros((1, 3, 3))))
