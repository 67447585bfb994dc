"""The method registry's every-output path gives what the methods give output by output; node shares are rollout."""

from __future__ import annotations

import numpy as np
import pytest

import attnflow
from attnflow.graph import AttentionGraph
from attnflow.methods import available_methods, get_method, node_shares
from tests.helpers import random_attention
from tests.tolerances import EPS64, flow_bound


@pytest.fixture
def attention():
    return random_attention(np.random.default_rng(5), 3, 2, 5)


@pytest.mark.parametrize("name", [m for m in available_methods() if not get_method(m).needs_gradients])
def test_scores_for_outputs_are_the_scores_of_each_output(attention, name):
    method = get_method(name)
    outputs = [0, 3, "mean", 4]
    options = {"residual": 0.3, "head_fusion": "max"}  # raw takes no residual: left out for it
    together = method.scores_for_outputs(attention, outputs, **options)
    kept = {k: v for k, v in options.items() if k in method.options}
    n_layers, n = attention.shape[0], attention.shape[-1]  # float64 walks; max-flow within its allowances
    bound = flow_bound(n_layers * n**2) if name == "flow" else n_layers * n * EPS64
    for index, t in enumerate(outputs):
        np.testing.assert_allclose(together[:, index], method.scores(attention, t, **kept), rtol=0, atol=bound)
    assert method.scores_for_outputs(attention, []).shape == (3, 0, 5)


def test_every_output_is_registered_for_the_cheap_methods():
    assert get_method("raw").every_output is not None and get_method("rollout").every_output is not None


def test_rollout_every_output_honours_discard_ratio(attention):
    method = get_method("rollout")
    together = method.scores_for_outputs(attention, [0, 2], discard_ratio=0.5)
    n_layers, n = attention.shape[0], attention.shape[-1]
    np.testing.assert_allclose(together[:, 1], method.scores(attention, 2, discard_ratio=0.5), rtol=0,
                               atol=n_layers * n * EPS64)  # float64 walks: L n-term row products


def test_progress_adds_up_over_outputs(attention):
    seen: list[tuple[int, int]] = []
    get_method("flow").scores_for_outputs(attention, [0, 1, 2], progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] and len({total for _, total in seen}) == 1
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_node_shares_are_rollout_between_layers(attention):
    shares = node_shares(attention, residual=0.4)
    capacities = AttentionGraph.from_attentions(attention, residual=0.4).capacities
    assert np.array_equal(shares[:, 0], attnflow.rollout(attention, residual=0.4))
    for layer in (1, 2, 3):
        product = np.eye(5)
        for k in range(layer - 1, -1, -1):  # node (k, j) of output (layer, t): Ahat[layer] ... Ahat[k+1]
            product = product @ capacities[k]
            np.testing.assert_allclose(shares[layer - 1, k], product, rtol=0, atol=layer * 5 * EPS64)  # 5 terms a row
        assert np.isnan(shares[layer - 1, layer:]).all()
        np.testing.assert_allclose(shares[layer - 1, :layer].sum(axis=-1), 1.0)
