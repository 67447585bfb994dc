"""Attribution baselines (the second kind of method): Captum's attributions against attnflow's own yardsticks."""

from __future__ import annotations

import numpy as np
import pytest

from attnflow.capture.perturb import gradient_importance, input_gradients, integrated_gradients
from attnflow.capture.targets import resolve_target
from attnflow.errors import AttnflowError
from attnflow.methods.attribution import (
    AttributionInputs,
    attribution_scores,
    available_attributions,
    check_attribution_model,
    check_attribution_options,
    check_passes,
    split_methods,
)
from tests.evaluate.toy import tiny_loaded
from tests.tolerances import model_float64_bound

TEXT = "the keys to the cabinet"


@pytest.fixture(scope="module")
def bert():
    loaded = tiny_loaded("bert", "classification", double=True)
    ids = loaded.tokenizer(TEXT)["input_ids"]
    bound = resolve_target(None, loaded).bind(loaded, ids)
    return loaded, ids, bound


def _inputs(bert, **options):
    loaded, ids, bound = bert
    return AttributionInputs(loaded, bound, ids, loaded.tokenizer.unk_token_id, **options)


def test_gradient_methods_equal_the_yardsticks_by_another_route(bert):
    """Captum's Saliency, InputXGradient and IntegratedGradients against attnflow's autograd yardsticks."""
    loaded, ids, bound = bert
    # two float64 backward passes of the same model (relative to each score), and an absolute floor for scores
    # that are sums of terms of either sign (grad × input), of the size of the largest term
    rtol = model_float64_bound(loaded.model.config, backward=True)
    own = gradient_importance(*input_gradients(loaded, bound, ids))
    np.testing.assert_allclose(attribution_scores("saliency", _inputs(bert)), own["saliency"], rtol=rtol)
    np.testing.assert_allclose(attribution_scores("grad-x-input", _inputs(bert)), own["grad_x_input"], rtol=rtol,
                               atol=rtol * float(np.nanmax(np.abs(own["grad_x_input"]))))
    baseline = [loaded.tokenizer.unk_token_id if 0 < i < len(ids) - 1 else t for i, t in enumerate(ids)]
    ig = integrated_gradients(loaded, bound, ids, baseline, n_steps=20).importance
    # 20 steps' gradients summed: 20 times the one-pass bound
    np.testing.assert_allclose(attribution_scores("integrated-gradients", _inputs(bert, ig_steps=20)), ig,
                               rtol=20 * rtol, atol=20 * rtol * float(np.nanmax(np.abs(ig))))


def test_occlusion_is_the_score_change_with_one_token_zeroed(bert):
    import torch

    from attnflow.capture import eager_attention
    from attnflow.capture.gradient_point import gradient_point, replace_point

    loaded, ids, bound = bert
    scores = attribution_scores("occlusion", _inputs(bert))
    point = gradient_point(loaded)
    batch = torch.tensor([ids])

    def score(zeroed=None):
        def make(value):
            value = value.clone()
            if zeroed is not None:
                value[:, zeroed] = 0.0
            return value

        with eager_attention(loaded.model), torch.no_grad(), replace_point(point, make):
            return float(bound.forward(loaded.model, input_ids=batch, attention_mask=torch.ones_like(batch),
                                       kind="score")[0])

    full = score()
    # Captum's Occlusion accumulates the differences in a float32 tensor: one float32 rounding, eps32 relative.
    eps32 = float(np.finfo(np.float32).eps)
    np.testing.assert_allclose(scores, [abs(full - score(j)) for j in range(len(ids))], rtol=eps32, atol=0)


def test_every_method_scores_every_token_reproducibly(bert):
    for name in available_attributions():
        first = attribution_scores(name, _inputs(bert, ig_steps=8, lime_samples=16, seed=3, index=1))
        again = attribution_scores(name, _inputs(bert, ig_steps=8, lime_samples=16, seed=3, index=1))
        assert first.shape == (len(bert[1]),) and np.all(np.isfinite(first)), name
        np.testing.assert_array_equal(first, again)
    other = attribution_scores("random", _inputs(bert, seed=3, index=2))
    assert not np.array_equal(other, attribution_scores("random", _inputs(bert, seed=3, index=1)))


def test_bad_options_and_models_are_one_line():
    assert split_methods(["flow", "lime", "raw"]) == (["flow", "raw"], ["lime"])
    with pytest.raises(AttnflowError, match="--ig-steps of at least 1; got -2"):
        check_attribution_options(["integrated-gradients"], ig_steps=-2)
    with pytest.raises(AttnflowError, match="gradient-shap needs --ig-steps of at least 1; got 0"):
        check_attribution_options(["gradient-shap"], ig_steps=0)  # its samples
    check_attribution_options(["saliency"], ig_steps=0)  # not a stepped method: the option is not read
    with pytest.raises(AttnflowError, match="over the limit of 100"):
        check_attribution_options(["lime"], lime_samples=200, max_passes=100)
    with pytest.raises(AttnflowError, match="raise --max-passes or shorten the text"):
        check_passes(["occlusion"], 30, 10)
    check_passes(["saliency"], 30, 10)  # gradient methods take a fixed number of passes

    class Vision:
        is_vision = True

    with pytest.raises(AttnflowError, match="text attribution method"):
        check_attribution_model(["saliency"], Vision())
