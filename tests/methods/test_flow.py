"""Attention flow: agreement with networkx on independently built graphs, invariants, errors."""

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnflow import AttnflowError, attention_flow, available_methods, explain_attentions, rollout
from attnflow.methods._flow_reference import edmonds_karp_flow, networkx_flow, preflow_push_flow
from attnflow.methods.flow import flow_scores
from tests.helpers import random_attention
from tests.tolerances import EPS64, flow_bound

KINDS = ("dense", "sparse", "causal", "peaky_sink")


# --- an independent reference: plain numpy graph, plain networkx max-flow -------------------


def graph_by_hand(attentions: np.ndarray, residual: float = 0.5) -> np.ndarray:
    """``Ahat`` from raw ``(L, H, n, n)`` attention, written out without the library."""
    fused = attentions.mean(axis=1)
    n = fused.shape[-1]
    augmented = (1 - residual) * fused + residual * np.eye(n)
    return augmented / augmented.sum(axis=-1, keepdims=True)


def networkx_value(ahat: np.ndarray, layer: int, target: int | str, source: int, *, ek=False):
    """Max flow from ``(0, source)`` to ``(layer, target)`` (or the mean super-sink)."""
    n = ahat.shape[-1]
    graph = nx.DiGraph()
    for k in range(layer):
        for i in range(n):
            for j in range(n):
                if ahat[k, i, j] > 0:
                    graph.add_edge(("node", k, j), ("node", k + 1, i), capacity=ahat[k, i, j])
    if target == "mean":
        sink = "super-sink"
        for i in range(n):
            graph.add_edge(("node", layer, i), sink, capacity=1.0 / n)
    else:
        sink = ("node", layer, target)
    if ("node", 0, source) not in graph or sink not in graph:
        return 0.0
    algorithm = nx.algorithms.flow.edmonds_karp if ek else None
    return nx.maximum_flow_value(graph, ("node", 0, source), sink, flow_func=algorithm)


def make_attention(kind: str, rng: np.random.Generator, n_layers: int, n: int) -> np.ndarray:
    heads = int(rng.integers(1, 4))
    if kind == "dense":
        return random_attention(rng, n_layers, heads, n, temperature=float(rng.uniform(0.5, 3)))
    if kind == "causal":
        return random_attention(rng, n_layers, heads, n, temperature=float(rng.uniform(0.3, 2)),
                                causal=True)
    if kind == "sparse":  # exact zeros: each query keeps a random subset of keys
        weights = rng.random((n_layers, heads, n, n))
        keep = rng.random(weights.shape) < rng.uniform(0.1, 0.6)
        keep[..., int(rng.integers(n))] = True  # no empty row
        weights = np.where(keep, weights, 0.0)
        return weights / weights.sum(axis=-1, keepdims=True)
    # peaky with a sink token (BOS-like): most attention goes to token 0
    logits = rng.normal(size=(n_layers, heads, n, n)) / 0.3
    logits[..., 0] += 3.0
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def case(seed: int) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    kind = KINDS[seed % len(KINDS)]
    n = int(rng.integers(1, 41)) if seed % 3 == 0 else int(rng.integers(1, 13))
    return kind, make_attention(kind, rng, int(rng.integers(1, 9)), n)


def slow_if_big(seed: int):
    _, attention = case(seed)
    n_layers, _, n, _ = attention.shape
    return pytest.param(seed, marks=pytest.mark.slow) if n_layers * n * n > 2500 else seed


@pytest.mark.parametrize("seed", [slow_if_big(seed) for seed in range(240)])
def test_agrees_with_networkx_on_random_graphs(seed):
    kind, attention = case(seed)
    rng = np.random.default_rng(10_000 + seed)
    n_layers, _, n, _ = attention.shape
    ahat = graph_by_hand(attention)
    flow = attention_flow(attention, normalize=False)
    checks = [(int(rng.integers(1, n_layers + 1)), int(rng.integers(n)), int(rng.integers(n)))
              for _ in range(6)]
    checks.append((n_layers, int(rng.integers(n)), 0))  # the sink token, top layer
    bound = 2 * flow_bound(n_layers * n**2)  # two max-flow solvers, each within its allowances
    for layer, target, source in checks:
        expected = networkx_value(ahat, layer, target, source)
        assert abs(flow[layer - 1, target, source] - expected) <= bound, (kind, layer, target, source)
    layer = int(rng.integers(1, n_layers + 1))
    mean = attention_flow(attention, outputs="mean", layers=layer, normalize=False)
    source = int(rng.integers(n))
    assert abs(mean[layer - 1, source] - networkx_value(ahat, layer, "mean", source)) <= bound


@pytest.mark.parametrize("kind", KINDS)
def test_small_graphs_agree_entry_by_entry(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    for _ in range(3):
        attention = make_attention(kind, rng, int(rng.integers(1, 5)), int(rng.integers(1, 7)))
        n_layers, _, n, _ = attention.shape
        ahat = graph_by_hand(attention, residual=0.3)
        flow = attention_flow(attention, residual=0.3, normalize=False)
        expected = np.array([[[networkx_value(ahat, layer, t, j) for j in range(n)]
                              for t in range(n)] for layer in range(1, n_layers + 1)])
        np.testing.assert_allclose(flow, expected, rtol=0, atol=2 * flow_bound(n_layers * n**2))


def test_edmonds_karp_reference_agrees_too():
    attention = make_attention("causal", np.random.default_rng(3), 3, 5)
    ahat = graph_by_hand(attention)
    flow = attention_flow(attention, layers=-1, normalize=False)
    for t in range(5):
        for j in range(5):
            assert abs(flow[-1, t, j] - networkx_value(ahat, 3, t, j, ek=True)) <= 2 * flow_bound(3 * 5**2)


# --- the kernel on general capacities, including cases the first phase cannot finish ------


def test_kernel_needs_a_backward_arc():
    """The first path found blocks every other forward path; the maximum needs a reversal."""
    from attnflow.methods._maxflow_kernel import LayeredMaxFlow

    cap = np.array([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]])
    sink = np.array([[1.0, 1.0]])
    assert LayeredMaxFlow(cap).solve([2], [0], [0], sink)[0] == 2.0
    np.testing.assert_allclose(networkx_flow(cap, sink[0], [0]), [2.0])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_layers=st.integers(1, 5),
    n=st.integers(1, 7),
    density=st.floats(0.1, 1.0),
)
def test_kernel_agrees_with_networkx_on_arbitrary_capacities(seed, n_layers, n, density):
    """Not row-stochastic, nodes without incoming or outgoing capacity, capacities above 1."""
    from attnflow.methods._maxflow_kernel import LayeredMaxFlow

    rng = np.random.default_rng(seed)
    cap = np.where(rng.random((n_layers, n, n)) < density, rng.exponential(size=(n_layers, n, n)),
                   0.0)
    sink = np.where(rng.random((2, n)) < density, rng.random((2, n)), 0.0)
    solver = LayeredMaxFlow(cap)
    depth = int(rng.integers(0, n_layers + 1))
    got = solver.solve(np.full(2 * n, depth), np.repeat([0, 1], n), np.tile(np.arange(n), 2), sink)
    expected = np.concatenate([networkx_flow(cap[:depth], sink[row], range(n)) for row in (0, 1)])
    # capacities above 1: the kernel's absolute allowances, and eps64 per arc relative to the largest
    np.testing.assert_allclose(got, expected, rtol=0, atol=2 * flow_bound(cap.size + sink.size) * max(1.0, cap.max()))
    # the work arrays are left clean: solving again gives the same answer
    np.testing.assert_array_equal(solver.solve(np.full(2 * n, depth), np.repeat([0, 1], n),
                                               np.tile(np.arange(n), 2), sink), got)


# --- facts from docs/design.md §5 -----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_layers=st.integers(1, 6), n=st.integers(1, 9),
       kind=st.sampled_from(KINDS))
def test_invariants(seed, n_layers, n, kind):
    attention = make_attention(kind, np.random.default_rng(seed), n_layers, n)
    raw = attention_flow(attention, normalize=False)
    rolled = rollout(attention)
    np.testing.assert_array_equal(raw[0], rolled[0])  # one layer: the edge itself
    flows, walks = flow_bound(n_layers * n**2), n_layers * n * EPS64  # max-flow; float64 n-term row products
    assert np.all(raw >= 0) and np.all(raw <= 1 + flows)
    assert np.all(raw >= rolled - walks - flows)  # rollout is a feasible flow
    out_capacity = graph_by_hand(attention)[0].sum(axis=0)
    assert np.all(raw <= np.minimum(1.0, out_capacity)[None, None, :] + flows)
    normalized = attention_flow(attention)
    np.testing.assert_allclose(normalized.sum(axis=-1), 1.0, rtol=0, atol=n * EPS64)  # n float64 terms
    np.testing.assert_allclose(normalized, raw / raw.sum(axis=-1, keepdims=True), rtol=0, atol=n * EPS64)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_layers=st.integers(1, 5), n=st.integers(1, 8),
       kind=st.sampled_from(KINDS))
def test_permutation_equivariance(seed, n_layers, n, kind):
    rng = np.random.default_rng(seed)
    attention = make_attention(kind, rng, n_layers, n)
    order = rng.permutation(n)
    permuted = attention[..., order, :][..., order]
    flow = attention_flow(attention, normalize=False)
    bound = 2 * flow_bound(n_layers * n**2)  # the same flows, solved in another order
    np.testing.assert_allclose(attention_flow(permuted, normalize=False),
                               flow[:, order][:, :, order], rtol=0, atol=bound)
    np.testing.assert_allclose(attention_flow(permuted, outputs="mean", normalize=False),
                               attention_flow(attention, outputs="mean", normalize=False)[:, order],
                               rtol=0, atol=bound)


def test_flow_reaches_the_bound_on_deep_graphs():
    attention = make_attention("dense", np.random.default_rng(7), 8, 12)
    raw = attention_flow(attention, layers=-1, normalize=False)[-1]
    bound = np.minimum(1.0, graph_by_hand(attention)[0].sum(axis=0))
    assert np.mean(np.isclose(raw, bound[None, :], rtol=0, atol=flow_bound(8 * 12**2))) > 0.9


def test_hand_computed_two_layers():
    a = np.array([[[0.0, 1.0], [0.0, 1.0]]] * 2)  # everyone attends to token 1
    raw = attention_flow(a, normalize=False)
    np.testing.assert_array_equal(raw[0], [[0.5, 0.5], [0.0, 1.0]])
    np.testing.assert_array_equal(raw[1], [[0.5, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(attention_flow(a)[1], [[1 / 3, 2 / 3], [0.0, 1.0]])


# --- degenerate cases --------------------------------------------------------------------------


def test_single_token_flows_everything():
    attention = np.ones((3, 2, 1, 1))
    np.testing.assert_array_equal(attention_flow(attention, normalize=False), np.ones((3, 1, 1)))
    np.testing.assert_array_equal(attention_flow(attention, outputs="mean"), np.ones((3, 1)))


def test_single_layer_is_the_graph():
    attention = make_attention("sparse", np.random.default_rng(2), 1, 6)
    ahat = graph_by_hand(attention)
    np.testing.assert_array_equal(attention_flow(attention, normalize=False)[0], rollout(attention)[0])
    heads = attention.shape[1]  # float64 head mean, residual mix and renormalisation
    np.testing.assert_allclose(attention_flow(attention, normalize=False)[0], ahat[0], rtol=0,
                               atol=(heads + 3) * EPS64)


def test_source_without_outgoing_capacity_gets_nothing():
    # No residual, layer 1: every query attends only to token 0, so tokens 1 and 2 feed nothing.
    first = np.zeros((3, 3))
    first[:, 0] = 1.0
    second = np.full((3, 3), 1 / 3)
    raw = attention_flow(np.stack([first, second]), residual=0.0, normalize=False)
    np.testing.assert_array_equal(raw[:, :, 1:], 0.0)
    np.testing.assert_allclose(raw[:, :, 0], 1.0)


def test_identity_attention_flows_to_itself():
    identity = np.broadcast_to(np.eye(4), (3, 2, 4, 4))
    np.testing.assert_array_equal(attention_flow(identity), np.broadcast_to(np.eye(4), (3, 4, 4)))


# --- selection, input forms, solvers, progress ---------------------------------------------------


def test_outputs_and_layers_select_rows_and_leave_the_rest_nan():
    attention = make_attention("dense", np.random.default_rng(4), 4, 5)
    full = attention_flow(attention)
    part = attention_flow(attention, outputs=[0, "last", -1], layers=[2, -1])
    chosen = np.zeros(full.shape, bool)
    chosen[np.ix_([1, 3], [0, 4])] = True
    np.testing.assert_array_equal(part[chosen], full[chosen])
    assert np.isnan(part[~chosen]).all()
    np.testing.assert_array_equal(attention_flow(attention, outputs="cls")[:, 0], full[:, 0])


def test_input_forms_agree():
    attention = make_attention("causal", np.random.default_rng(5), 3, 4)
    expected = attention_flow(attention)
    bound = flow_bound(3 * 4**2)  # the same capacities but for the head mean's float64 order
    np.testing.assert_allclose(attention_flow(torch.tensor(attention)), expected, rtol=0, atol=bound)
    np.testing.assert_allclose(attention_flow(list(attention)), expected, rtol=0, atol=bound)
    np.testing.assert_allclose(attention_flow(attention.mean(axis=1)), expected, rtol=0, atol=bound)


@pytest.mark.parametrize("solver", [edmonds_karp_flow, preflow_push_flow])
def test_flow_func_swaps_in_networkx(solver):
    attention = make_attention("peaky_sink", np.random.default_rng(6), 3, 6)
    bound = 2 * flow_bound(3 * 6**2)  # two solvers, each within its allowances
    np.testing.assert_allclose(attention_flow(attention, flow_func=solver),
                               attention_flow(attention), rtol=0, atol=bound)
    np.testing.assert_allclose(attention_flow(attention, outputs="mean", flow_func=solver),
                               attention_flow(attention, outputs="mean"), rtol=0, atol=bound)


def test_head_fusion_and_residual_are_passed_on():
    attention = make_attention("dense", np.random.default_rng(8), 2, 4)
    augmented = 0.8 * attention.max(axis=1) + 0.2 * np.eye(4)
    ahat = augmented / augmented.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(attention_flow(attention, head_fusion="max", residual=0.2),
                               attention_flow(ahat, residual=0.0), rtol=0, atol=flow_bound(2 * 4**2))
    assert not np.allclose(attention_flow(attention, residual=0.9),
                           attention_flow(attention, residual=0.1))


def test_registered_as_flow():
    assert "flow" in available_methods()
    attention = make_attention("dense", np.random.default_rng(9), 3, 5)
    full = attention_flow(attention)
    np.testing.assert_array_equal(flow_scores(attention, 2), full[:, 2])
    np.testing.assert_array_equal(flow_scores(attention, "last"), full[:, 4])
    np.testing.assert_array_equal(flow_scores(attention, "mean"),
                                  attention_flow(attention, outputs="mean"))
    explanation = explain_attentions(attention, methods=("flow",), output=1)
    np.testing.assert_array_equal(explanation.scores["flow"], full[:, 1])


def test_progress_reports_every_problem():
    calls = []
    attention = make_attention("dense", np.random.default_rng(10), 3, 4)
    attention_flow(attention, progress=lambda done, total: calls.append((done, total)))
    assert calls[0] == (0, 48) and calls[-1] == (48, 48)
    assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:], strict=False))


def test_interrupt_between_chunks_stops_cleanly():
    attention = make_attention("dense", np.random.default_rng(11), 3, 4)
    expected = attention_flow(attention)

    def interrupt(done, total):
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        attention_flow(attention, progress=interrupt)
    np.testing.assert_array_equal(attention_flow(attention), expected)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attentions": np.ones((2, 2))}, "'attentions' parameter must have shape"),
        ({"attentions": np.full((1, 1, 2, 3), 0.5)}, "must be square"),
        ({"attentions": np.full((1, 2, 2), np.nan)}, "NaN or infinite"),
        ({"attentions": np.array([[[1.5, -0.5], [0.5, 0.5]]])}, "negative entries"),
        ({"attentions": np.full((1, 2, 2), 0.3)}, "rows that sum to 1"),
        ({"attentions": "text"}, "numeric array"),
        ({"residual": 1.5}, "'residual' parameter"),
        ({"head_fusion": "median"}, "'head_fusion' parameter"),
        ({"layers": [0]}, "'layers' parameter"),
        ({"layers": [3]}, "'layers' parameter"),
        ({"outputs": 5}, "'outputs' parameter must be a token index from 0 to 2"),
        ({"outputs": "first"}, "'outputs' parameter"),
        ({"outputs": []}, "'outputs' parameter"),
        ({"outputs": [0, "mean"]}, "'mean' only on its own"),
        ({"outputs": 1.5}, "'outputs' parameter"),
        ({"normalize": "yes"}, "'normalize' parameter"),
        ({"flow_func": "networkx"}, "'flow_func' parameter"),
        ({"flow_func": lambda cap, sink, sources: np.zeros(1)}, "'flow_func' parameter returned"),
        ({"progress": 3}, "'progress' parameter"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, message):
    arguments = {"attentions": np.full((2, 1, 3, 3), 1 / 3), **kwargs}
    with pytest.raises(AttnflowError, match=message):
        attention_flow(**arguments)
