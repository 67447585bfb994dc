import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnflow import AttnflowError, raw_attention, rollout
from tests.helpers import random_attention
from tests.tolerances import EPS64, float32_sum_bound

# Three layers, two tokens, two heads; fused attention per layer:
#   [[1, 0], [1, 0]], [[0, 1], [0, 1]], [[.5, .5], [.5, .5]]
HAND = np.array(
    [
        [[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]]],
        [[[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]],
        [[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]],
    ]
)
# Worked by hand with Ahat = 0.5 * Abar + 0.5 * I.
HAND_ROLLOUT = np.array(
    [
        [[1.0, 0.0], [0.5, 0.5]],
        [[0.75, 0.25], [0.5, 0.5]],
        [[0.6875, 0.3125], [0.5625, 0.4375]],
    ]
)


def test_hand_computed_three_layers():
    n_layers, n = HAND.shape[0], HAND.shape[-1]  # float64: L layers of n-term row products
    np.testing.assert_allclose(rollout(HAND), HAND_ROLLOUT, rtol=0, atol=n_layers * n * EPS64)


def test_list_and_fused_inputs_agree():
    fused = HAND.mean(axis=1)
    np.testing.assert_allclose(rollout(fused), HAND_ROLLOUT)
    np.testing.assert_allclose(rollout(list(HAND)), HAND_ROLLOUT)
    np.testing.assert_allclose(rollout(list(fused)), HAND_ROLLOUT)


def test_seed_unnormalised_form_gives_same_normalised_rollout():
    attention = random_attention(np.random.default_rng(0), 5, 4, 7)
    product = np.eye(7)
    for layer in attention:
        product = (np.eye(7) + layer.mean(axis=0)) @ product
    assert np.allclose(product.sum(-1), 2.0**5)
    normalised = product / product.sum(-1, keepdims=True)
    np.testing.assert_allclose(rollout(attention)[-1], normalised, rtol=0, atol=5 * 7 * EPS64)  # L n eps64


def test_identity_attention_rolls_out_to_identity():
    identity = np.broadcast_to(np.eye(5), (4, 3, 5, 5))
    np.testing.assert_array_equal(rollout(identity), np.broadcast_to(np.eye(5), (4, 5, 5)))


def test_residual_zero_is_plain_product_and_one_is_identity():
    attention = random_attention(np.random.default_rng(1), 3, 2, 4)
    fused = attention.mean(axis=1)
    np.testing.assert_allclose(rollout(attention, residual=0.0)[-1], fused[2] @ fused[1] @ fused[0])
    np.testing.assert_allclose(rollout(attention, residual=1.0)[-1], np.eye(4))


def test_torch_and_numpy_agree():
    attention = random_attention(np.random.default_rng(2), 3, 2, 6)
    from_torch = rollout(torch.tensor(attention, dtype=torch.float32))
    # float32 input: rows off 1 by n half-ulps, through 3 layers of products
    np.testing.assert_allclose(from_torch, rollout(attention), rtol=0, atol=float32_sum_bound(6, depth=3))
    assert isinstance(from_torch, np.ndarray)


def test_max_and_min_fusion_keep_rows_stochastic():
    attention = random_attention(np.random.default_rng(3), 3, 4, 5)
    for fusion in ("max", "min"):
        result = rollout(attention, head_fusion=fusion)
        np.testing.assert_allclose(result.sum(-1), 1.0)
    one_layer = rollout(attention[:1], head_fusion="max")[0]
    expected = 0.5 * attention[0].max(0) + 0.5 * np.eye(5)
    np.testing.assert_allclose(one_layer, expected / expected.sum(-1, keepdims=True))


def test_head_weights_equal_weights_equal_mean():
    attention = random_attention(np.random.default_rng(4), 2, 3, 4)
    np.testing.assert_allclose(rollout(attention, head_fusion=np.ones((2, 3))), rollout(attention))
    only_first = rollout(attention, head_fusion=np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(only_first, rollout(attention[:, :1]))


def test_discard_ratio_zeroes_lowest_but_never_the_kept_column():
    attention = random_attention(np.random.default_rng(5), 1, 1, 4, temperature=0.3)
    fused = attention[0, 0]
    result = rollout(attention, discard_ratio=0.5, keep_token=0)[0]
    np.testing.assert_allclose(result.sum(-1), 1.0)
    candidates = fused[:, 1:].ravel()
    threshold = np.sort(candidates)[len(candidates) // 2 - 1]
    for i in range(4):
        for j in range(1, 4):
            if fused[i, j] <= threshold and i != j:
                assert result[i, j] == 0.0
    assert np.all(result[:, 0] > 0)


def test_start_layer_skips_lower_layers():
    attention = random_attention(np.random.default_rng(6), 4, 2, 3)
    result = rollout(attention, start_layer=3)
    assert np.isnan(result[:2]).all()
    full_from_three = rollout(attention[2:])
    np.testing.assert_allclose(result[2:], full_from_three)


def test_raw_attention_is_head_mean():
    np.testing.assert_allclose(raw_attention(HAND), HAND.mean(axis=1))


@st.composite
def attention_and_permutation(draw):
    n_layers = draw(st.integers(1, 4))
    n_heads = draw(st.integers(1, 3))
    n_tokens = draw(st.integers(1, 7))
    seed = draw(st.integers(0, 2**32 - 1))
    causal = draw(st.booleans())
    rng = np.random.default_rng(seed)
    temperature = draw(st.sampled_from([0.2, 1.0, 5.0]))
    attention = random_attention(rng, n_layers, n_heads, n_tokens, temperature=temperature, causal=causal)
    permutation = rng.permutation(n_tokens)
    return attention, permutation


@settings(max_examples=60, deadline=None)
@given(attention_and_permutation())
def test_rollout_properties(case):
    attention, permutation = case
    n_layers, _, n, _ = attention.shape
    result = rollout(attention)
    assert result.shape == (n_layers, n, n)
    walks = n_layers * n * EPS64  # float64: L layers of n-term row products
    np.testing.assert_allclose(result.sum(-1), 1.0, rtol=0, atol=walks)
    assert result.min() >= 0
    permuted = attention[:, :, permutation][:, :, :, permutation]
    np.testing.assert_allclose(
        rollout(permuted), result[:, permutation][:, :, permutation], rtol=0, atol=walks
    )


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones((2, 2)), "rank 2"),
        (np.ones((1, 1, 2, 3)) / 3, "square"),
        (np.full((1, 1, 2, 2), np.nan), "NaN"),
        (np.array([[[[1.5, -0.5], [0.5, 0.5]]]]), "negative"),
        (np.full((1, 1, 2, 2), 0.3), "sum to 1"),
        (np.zeros((0, 1, 2, 2)), "at least one"),
        ("attention", "numeric"),
    ],
)
def test_bad_attention_is_rejected(bad, message):
    with pytest.raises(AttnflowError, match=message):
        rollout(bad)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"head_fusion": "median"}, "head_fusion"),
        ({"head_fusion": np.ones(5)}, "head_fusion"),
        ({"residual": 1.5}, "residual"),
        ({"discard_ratio": 1.0}, "discard_ratio"),
        ({"start_layer": 0}, "start_layer"),
        ({"start_layer": 4}, "start_layer"),
    ],
)
def test_bad_options_are_rejected(options, message):
    with pytest.raises(AttnflowError, match=message):
        rollout(HAND, **options)


def test_error_is_a_value_error():
    assert issubclass(AttnflowError, ValueError)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 7), layers=st.integers(1, 4), residual=st.floats(0.0, 1.0))
def test_output_walk_is_rollout_from_every_layer_up(seed, n, layers, residual):
    from attnflow.graph import AttentionGraph
    from attnflow.methods import get_method, node_shares
    from attnflow.methods.rollout import output_walk

    attention = random_attention(np.random.default_rng(seed), layers, 2, n)
    capacities = AttentionGraph.from_attentions(attention, residual=residual).capacities
    every = node_shares(attention, residual=residual)
    for output in (0, n - 1, "mean"):
        walk = output_walk(capacities, output)
        expected = every.mean(axis=2) if output == "mean" else every[:, :, output]
        # NaN where k >= l in both; float64 walks of L layers, n terms a row (and an n-term mean)
        np.testing.assert_allclose(walk, expected, rtol=0, atol=(layers + 1) * n * EPS64)
        # the one-output method reads the walk: the same numbers, bit for bit
        scores = get_method("rollout").scores(attention, output, residual=residual)
        assert np.array_equal(scores, walk[:, 0])


def test_fused_capture_is_read_in_place_not_copied():
    """A one-head (fused) capture gives the scores of fusing it, and the scores do not hold the whole array."""
    from attnflow.graph import AttentionGraph, add_residual, fused_layers
    from attnflow.methods.raw import raw_attention, raw_scores

    rng = np.random.default_rng(7)
    fused = rng.random((3, 1, 6, 6)).astype(np.float32)
    fused /= fused.sum(-1, keepdims=True)
    per_head = np.repeat(fused.astype(np.float64), 4, axis=1)  # four equal heads: the same mean
    for fusion in ("mean", "max", "min"):
        np.testing.assert_allclose(fused_layers(fused.astype(np.float64), fusion), fused[:, 0], atol=0)
        graph = AttentionGraph.from_attentions(fused, head_fusion=fusion)
        # float32 rows sum to 1 within n half-ulps; the graph renormalises them in float64
        np.testing.assert_allclose(graph.capacities, add_residual(per_head.mean(1), 0.5), rtol=0,
                                   atol=float32_sum_bound(6))
        np.testing.assert_allclose(raw_scores(fused, 2, head_fusion=fusion), per_head.mean(1)[:, 2], rtol=0,
                                   atol=float32_sum_bound(6))
    scores = raw_scores(fused, "last")
    assert scores.base is None or scores.base.size == scores.size
    scores[0, 0] = 5.0  # a copy the caller owns
    np.testing.assert_allclose(raw_attention(fused)[:, -1], per_head.mean(1)[:, -1], rtol=0, atol=float32_sum_bound(6))
    view = fused_layers(per_head[:, :1])
    with pytest.raises(ValueError):
        view[0, 0, 0] = 1.0


def test_the_residual_is_added_in_place_only_to_arrays_made_here():
    """Float32 attention is converted, so its copy takes the residual in place; a caller's float64 is left alone."""
    from attnflow.graph import AttentionGraph

    rng = np.random.default_rng(11)
    weights = rng.random((2, 1, 5, 5))
    weights /= weights.sum(-1, keepdims=True)
    mine = weights.copy()
    tensor = torch.tensor(weights)
    want = AttentionGraph.from_attentions(weights.astype(np.float32).astype(np.float64).copy()).capacities
    for source in (weights, tensor, weights.astype(np.float32), weights[:, 0], list(weights)):
        got = AttentionGraph.from_attentions(source, discard_ratio=0.0).capacities
        # float32 rounding of the weights (half an ulp) and of their n-term row sums, renormalised
        np.testing.assert_allclose(got, want, rtol=0, atol=float32_sum_bound(5))
    np.testing.assert_array_equal(weights, mine)
    np.testing.assert_array_equal(tensor.numpy(), mine)
    discarded = AttentionGraph.from_attentions(weights, discard_ratio=0.2, keep_column=0).capacities
    np.testing.assert_array_equal(weights, mine)
    np.testing.assert_allclose(discarded.sum(-1), 1.0)


def test_rollout_of_one_output_makes_no_float64_copy_of_the_capture():
    """A row walk: at most a layer or two in float64 alive at once, never the (L, n, n) capture (issue 24)."""
    import tracemalloc

    from attnflow.methods import get_method

    layers, n = 8, 192
    rng = np.random.default_rng(3)
    fused = rng.random((layers, 1, n, n), dtype=np.float32)
    fused /= fused.sum(-1, keepdims=True)
    want = rollout(fused.astype(np.float64))[:, -1]
    tracemalloc.start()
    try:
        scores = get_method("rollout").scores(fused, "last")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    layer64 = n * n * 8
    # one float64 layer being made and the one the walk multiplies by, plus the (L, L, n) walk and small rows
    assert peak < 3 * layer64 + layers * layers * n * 8 < layers * layer64  # a whole copy would be L * layer64
    # float64 products of rows that sum to 1 within n * eps32 (float32 input): the same within L * n * eps32
    np.testing.assert_allclose(scores, want, rtol=0, atol=float32_sum_bound(n, depth=layers))
    # explain_attentions hands the float32 capture to raw and rollout as it is
    from attnflow import explain_attentions

    tracemalloc.start()
    try:
        explained = explain_attentions(fused, methods=["raw", "rollout"], output="last")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * layer64 + 2 * layers * layers * n * 8
    np.testing.assert_array_equal(explained.scores["rollout"], scores)
