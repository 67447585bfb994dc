"""Every flow value comes with a proof: a checked flow and a minimum cut of the same capacity.

The cuts are checked here against the graph (``verify_flow``) and, independently,
by recomputing a cut's capacity with plain loops; at sizes networkx cannot reach,
the certificate is the only check there is, so it must be able to fail.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import attnflow
from attnflow import AttnflowError, solve_flow, verify_flow
from attnflow.methods._maxflow_kernel import LayeredMaxFlow
from tests.helpers import random_attention
from tests.methods.test_flow import graph_by_hand, make_attention, networkx_value
from tests.tolerances import flow_bound


def cut_capacity_by_hand(ahat, layer, output, source, side):
    """Sum the capacity of every arc from the source side to the other side, one arc at a time."""
    n = ahat.shape[-1]
    total = 0.0
    depth = side.shape[0] - 1
    for k in range(depth):
        for i in range(n):
            for j in range(n):
                if side[k, j] and not side[k + 1, i]:
                    total += ahat[k, i, j]
    sink = np.full(n, 1 / n) if output == "mean" else ahat[layer - 1, output]
    return total + sum(sink[a] for a in range(n) if side[depth, a])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), kind=st.sampled_from(["dense", "sparse", "causal", "peaky_sink"]),
       n_layers=st.integers(1, 5), n=st.integers(1, 9), mean=st.booleans())
def test_every_value_is_certified_on_arbitrary_attention(seed, kind, n_layers, n, mean):
    attention = make_attention(kind, np.random.default_rng(seed), n_layers, n)
    solution = solve_flow(attention, outputs="mean" if mean else None)
    assert verify_flow(solution) <= flow_bound(n_layers * n * n)
    ahat = graph_by_hand(attention)
    layer = n_layers
    output = "mean" if mean else n - 1
    for source in range(n):
        side = solution.source_side(layer, None if mean else output, source)
        assert side[0, source] and side[0].sum() == 1
        value = solution.row(layer, None if mean else output)[source]
        assert abs(cut_capacity_by_hand(ahat, layer, output, source, side) - value) <= flow_bound(n_layers * n * n)
        if not mean and n * n_layers <= 24:
            assert abs(value - networkx_value(ahat, layer, output, source)) <= flow_bound(n_layers * n * n)


def test_the_cut_is_the_canonical_one_smallest_source_side():
    # Two tokens, everyone attends to token 1: source 0's flow is its own column (0.5), so its canonical
    # cut is its own arcs; source 1 fills the output (1.0) through a cut that is not at its arcs.
    a = np.array([[[0.0, 1.0], [0.0, 1.0]]] * 2)
    solution = solve_flow(a, outputs=0, layers=-1)
    assert solution.cut_kinds(2, 0) == ["source", "output"]
    assert not solution.source_side(2, 0, 0)[1:].any()
    np.testing.assert_allclose(solution.cut_breakdown(2, 0, 0), [0.5, 0.0])  # source arcs, sink arcs


def test_a_wrong_value_or_a_wrong_cut_is_caught():
    attention = random_attention(np.random.default_rng(3), 4, 2, 6)
    solution = solve_flow(attention, outputs=[0, 2])
    verify_flow(solution)
    wrong_value = solve_flow(attention, outputs=[0, 2])
    wrong_value.values[-1, 2, 3] += 1e-6
    with pytest.raises(AttnflowError, match="layer 4, output 2, source 3"):
        verify_flow(wrong_value)
    wrong_cut = solve_flow(attention, outputs=[0, 2])
    wrong_cut.cuts[:] = 0  # every cut claims to be the source's own arcs
    with pytest.raises(AttnflowError, match="its cut has capacity"):
        verify_flow(wrong_cut)
    broken_flow = solve_flow(attention, outputs=[0, 2])
    broken_flow.violations[0, 1] = 1e-3
    with pytest.raises(AttnflowError, match="breaks a capacity or conservation"):
        verify_flow(broken_flow)
    with pytest.raises(AttnflowError, match="no certificates"):
        verify_flow(solve_flow(attention, outputs=0, keep_cuts=False))


def test_values_are_those_of_attention_flow_and_do_not_depend_on_threads_or_company():
    attention = random_attention(np.random.default_rng(4), 5, 2, 40, temperature=0.4)
    alone = attnflow.attention_flow(attention, outputs=7, normalize=False)
    together = attnflow.attention_flow(attention, normalize=False)
    certified = solve_flow(attention, outputs=7).values
    np.testing.assert_array_equal(alone[:, 7], together[:, 7])
    np.testing.assert_array_equal(alone[:, 7], certified[:, 7])
    capacities = solve_flow(attention, outputs=7).capacities
    one_thread = LayeredMaxFlow(capacities[:4], n_workers=1)  # the same blocks, one after another
    sink = capacities[4, [7]]
    np.testing.assert_array_equal(
        one_thread.solve(np.full(40, 4), np.zeros(40, int), np.arange(40), sink), alone[-1, 7]
    )


def test_the_serial_and_the_parallel_loop_give_the_same_bits(monkeypatch):
    from attnflow.methods import _maxflow_kernel as kernel

    attention = random_attention(np.random.default_rng(5), 4, 2, 48, temperature=0.4)
    capacities = solve_flow(attention, outputs=0, layers=1).capacities
    problems = (np.repeat([2, 3], 48), np.repeat([0, 1], 48), np.tile(np.arange(48), 2), capacities[[2, 3], 5])
    solver = LayeredMaxFlow(capacities[:3], n_workers=2)
    monkeypatch.setattr(kernel, "SERIAL_WORK", np.inf)  # every batch on the calling thread
    serial = solver.solve_certified(*problems, keep_cuts=True)
    monkeypatch.setattr(kernel, "SERIAL_WORK", -1.0)  # every batch shared between the threads
    shared = solver.solve_certified(*problems, keep_cuts=True)
    for mine, theirs in zip(serial, shared, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert serial.values.max() > 0


@pytest.mark.slow
def test_certified_where_networkx_cannot_go_random_24_by_512():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(24, 512, 512)) / 0.5
    logits[..., 0] += 2.0
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    solution = solve_flow(attention, outputs=0, layers=-1)
    assert verify_flow(solution) <= flow_bound(attention.size)
    bound = np.minimum(1.0, solution.capacities[0].sum(axis=0)) + flow_bound(attention.size)
    assert np.all(solution.values[-1, 0] <= bound)


@pytest.mark.slow
def test_certified_on_banded_attention():
    n, window = 256, 4
    idx = np.arange(n)
    band = (np.abs(idx[:, None] - idx[None, :]) <= window).astype(float)
    attention = np.repeat((band / band.sum(-1, keepdims=True))[None], 24, axis=0)
    solution = solve_flow(attention, outputs=n // 2, layers=-1)
    assert verify_flow(solution) <= flow_bound(attention.size)
    kinds = solution.cut_kinds(24, n // 2)
    assert kinds.count("inside") > 0  # a narrow band is a real bottleneck for distant tokens


@pytest.mark.slow
@pytest.mark.e2e
def test_certified_on_minilm_attention_at_512_tokens():
    from attnflow.capture import capture_attention

    text = " ".join(["The keys to the cabinet are on the table, and the cabinet is in the kitchen."] * 40)
    captured = capture_attention(text, truncate=True)
    assert captured.n_tokens >= 500
    solution = solve_flow(captured.attentions, outputs="cls", layers=-1)
    assert verify_flow(solution) <= flow_bound(np.asarray(solution.capacities).size)
    assert set(solution.cut_kinds(solution.capacities.shape[0], 0)) <= {"source", "output", "inside"}
