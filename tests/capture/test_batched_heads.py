"""Head gradients in padded batches equal one example at a time; head analysis gives the same report batched."""

from __future__ import annotations

import numpy as np
import pytest

from attnflow.capture.gradients import batch_head_gradients, target_gradients
from attnflow.capture.targets import resolve_target
from attnflow.heads import analyze_heads
from tests.capture.test_gradients import CASES, _loaded
from tests.tiny_models import foreign_hooks
from tests.tolerances import EPS64, model_float32_bound, model_float64_bound

TEXTS = [
    "The keys to the cabinet are on the table.",
    "Dogs bark.",
    "Hello world, the quick fox jumps over the lazy dog!",
]


@pytest.mark.parametrize(("arch", "head", "target"), CASES, ids=[f"{a}-{h}" for a, h, _ in CASES])
def test_batch_equals_one_at_a_time(arch, head, target):
    loaded = _loaded(arch, head)  # float64 weights: padding and batching change nothing beyond round-off
    resolved = resolve_target(target, loaded)
    ids = [loaded.tokenizer(text)["input_ids"] for text in TEXTS]
    bounds = [resolved.bind(loaded, i) for i in ids]
    batched = batch_head_gradients(loaded, bounds, ids)
    for found, bound, one_ids in zip(batched, bounds, ids, strict=True):
        one = target_gradients(loaded, bound, one_ids, objective="log_probability")
        assert found.attentions.shape == one.attentions.shape and found.input_ids == one.input_ids
        config = loaded.model.config
        np.testing.assert_allclose(found.attentions, one.attentions, rtol=0, atol=model_float64_bound(config))
        scale = np.abs(one.head_gradients).max()
        np.testing.assert_allclose(found.head_gradients, one.head_gradients, rtol=0,
                                   atol=model_float64_bound(config, scale=scale, backward=True))
        assert scale > 0 and found.value == pytest.approx(
            one.value, rel=0, abs=model_float64_bound(config, scale=max(1.0, abs(one.value))))
        assert found.special_positions == one.special_positions
    assert foreign_hooks(loaded.model) == {}


def test_analyze_heads_batched_equals_unbatched(minilm):
    texts = TEXTS + ["Attention flows."]  # batches of 3 and 1
    one = analyze_heads(texts, minilm, target="norm", batch_size=1)
    batched = analyze_heads(texts, minilm, target="norm", batch_size=3)
    config = minilm.model.config  # float32, other batch shapes; importance and relevance come from gradients
    np.testing.assert_allclose(batched.importance, one.importance, rtol=0,
                               atol=model_float32_bound(config, scale=np.abs(one.importance).max(), backward=True))
    np.testing.assert_allclose(batched.relevance, one.relevance, rtol=0,
                               atol=model_float32_bound(config, backward=True))
    np.testing.assert_allclose(batched.confidence, one.confidence, rtol=0, atol=model_float32_bound(config))
    assert batched.roles.tolist() == one.roles.tolist() and batched.share_roles.tolist() == one.share_roles.tolist()
    assert batched.n_examples == one.n_examples == len(texts)


def test_batch_size_is_checked(minilm):
    from attnflow.errors import AttnflowError

    with pytest.raises(AttnflowError, match="batch_size"):
        analyze_heads(["Dogs bark."], minilm, target="norm", batch_size=0)


def test_a_model_that_ignores_the_mask_runs_one_at_a_time():
    """The toy's heads attend to every key, padding included: batching would change it, so it is not batched."""
    from tests.heads.toy_heads import positional_model

    loaded = positional_model()
    resolved = resolve_target("predicted", loaded)
    ids = [loaded.tokenizer(text)["input_ids"] for text in TEXTS]
    bounds = [resolved.bind(loaded, i) for i in ids]
    for found, bound, one_ids in zip(batch_head_gradients(loaded, bounds, ids), bounds, ids, strict=True):
        one = target_gradients(loaded, bound, one_ids, objective="log_probability")
        width = loaded.model.config.hidden_size  # one float64 attention layer; the gradient retraces it
        np.testing.assert_allclose(found.attentions, one.attentions, rtol=0, atol=width * EPS64)
        scale = np.abs(one.head_gradients).max()
        np.testing.assert_allclose(found.head_gradients, one.head_gradients, rtol=0, atol=2 * width * EPS64 * scale)
    assert foreign_hooks(loaded.model) == {}
