"""The flow kernel's building blocks on their own: the compiled ``prepare`` and the search for an augmenting path.

Both are checked against independent references: the dense capacities themselves and
``prepare_arcs`` (a different route, numpy's lexsort) for ``prepare``; networkx's maximum
flow for the search, which must find a path exactly when the blocking flow fell short.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from attnflow.methods import _maxflow_kernel as kernel
from attnflow.methods._flow_reference import networkx_flow


def capacities(seed: int, n_layers: int, n: int, density: float) -> np.ndarray:
    """Heavy-tailed capacities with exact zeros, ties (a few levels) and values at or below ``EPS``."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.pareto(1.5, size=(n_layers, n, n)), 1)  # rounding makes ties
    values[rng.random(values.shape) < 0.1] = kernel.EPS  # kept out: at most EPS
    return np.where(rng.random(values.shape) < density, values, 0.0)


def dense_from_lists(prepared: tuple, n_layers: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The capacities the forward lists hold, and those the backward lists point at, as ``(L, n, n)``."""
    cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt = prepared
    forward = np.zeros((n_layers, n, n))
    backward = np.zeros((n_layers, n, n))
    for k in range(n_layers):
        for j in range(n):
            start = fwd_off[k, j]
            heads = fwd_idx[start : start + fwd_cnt[k, j]]
            caps = cap_s[start : start + fwd_cnt[k, j]]
            assert np.all(np.diff(caps) <= 0), "each forward list runs largest capacity first"
            forward[k, heads, j] = caps
        for i in range(n):
            start = bwd_off[k, i]
            for rb in range(bwd_cnt[k, i]):
                j = bwd_idx[start + rb]
                r = bwd_fwd[start + rb]  # the same arc in its tail's forward list
                assert fwd_idx[fwd_off[k, j] + r] == i
                assert fwd_back[fwd_off[k, j] + r] == rb
                backward[k, i, j] = cap_s[fwd_off[k, j] + r]
    return forward, backward


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_layers=st.integers(1, 4), n=st.integers(1, 9),
       density=st.floats(0.0, 1.0))
def test_prepare_holds_exactly_the_arcs_above_eps_sorted_and_cross_referenced(seed, n_layers, n, density):
    cap = capacities(seed, n_layers, n, density)
    prepared = kernel.prepare(cap)
    kept = np.where(cap > kernel.EPS, cap, 0.0)
    forward, backward = dense_from_lists(prepared, n_layers, n)
    np.testing.assert_array_equal(forward, kept)
    np.testing.assert_array_equal(backward, kept)
    assert prepared[0].size == np.count_nonzero(kept)
    assert prepared[4][-1, 0] == prepared[0].size and prepared[5][-1, 0] == prepared[0].size  # totals row
    # prepare_arcs builds the same graph from a list of arcs by another route
    layer, head, tail = np.nonzero(cap)
    from_arcs = kernel.prepare_arcs(n_layers, n, layer, head, tail, cap[layer, head, tail])
    np.testing.assert_array_equal(dense_from_lists(from_arcs, n_layers, n)[0], kept)
    for mine, theirs in zip(prepared[3:], from_arcs[3:], strict=True):  # counts and offsets
        if mine.ndim == 2:
            np.testing.assert_array_equal(mine, theirs)


def blocking_flow_then_search(
    cap: np.ndarray, sink_cap: np.ndarray, source: int, costs: tuple[float, float] = (1.0, 1.0)
) -> tuple[float, bool]:
    """The blocking flow alone from the zero flow, then the search (``costs``: its turns' shares of work):
    ``(the blocking flow's value, whether a path is left)``."""
    depth, n, _ = cap.shape
    prepared = kernel.prepare(cap)
    cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt = prepared
    res, flow = cap_s.copy(), np.zeros_like(cap_s)
    sink_res = np.where(sink_cap > kernel.EPS, sink_cap, 0.0)
    size = (depth + 1) * n + 1
    scratch = [np.empty(size, np.bool_), np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size, np.int64)]
    value = kernel._blocking_flow(source, depth, n, 0.0, np.inf, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, res,
                                  flow, sink_res, *scratch)
    found = kernel._reaches_sink(source, depth, n, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd,
                                 bwd_cnt, res, flow, sink_res, np.empty(size, np.bool_), np.empty(size, np.bool_),
                                 np.empty(size, np.int64), np.empty(size, np.int64), *costs)
    return value, found == kernel.PATH


def test_the_search_finds_the_path_that_needs_a_backward_arc():
    """The first forward path blocks the only other one: the blocking flow gets 1 of 2, the search sees the rest."""
    cap = np.array([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]])
    for costs in [(1.0, 1.0), (1e9, 1.0), (1.0, 1e9)]:
        value, left = blocking_flow_then_search(cap, np.array([1.0, 1.0]), 0, costs)
        assert value == 1.0 and left
    assert networkx_flow(cap, np.array([1.0, 1.0]), [0])[0] == 2.0


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(1, 5), n=st.integers(1, 7), density=st.floats(0.2, 1.0),
       costs=st.sampled_from([(1.0, 1.0), (1.0, 32.0), (8.0, 4.0), (1e9, 1.0), (1.0, 1e9)]))
def test_the_search_finds_a_path_exactly_when_the_blocking_flow_fell_short(seed, depth, n, density, costs):
    """No path left: the blocking flow is the maximum (networkx); a path left: it is short by more than round-off.

    Whatever share of the work each side of the search gets (``costs``, down to one side
    alone), the answer is the same.
    """
    rng = np.random.default_rng(seed)
    cap = capacities(seed, depth, n, density)
    sink_cap = np.where(rng.random(n) < density, rng.random(n), 0.0)
    source = int(rng.integers(n))
    value, left = blocking_flow_then_search(cap, sink_cap, source, costs)
    exact = networkx_flow(cap, sink_cap, [source])[0]
    # Round-off: a value is a sum of at most (#arcs) capacities of size at most cap.max() in float64.
    slack = max(1.0, float(cap.max())) * cap.size * 2.0**-52
    if left:
        assert exact - value > kernel.EPS - slack
    else:
        assert abs(exact - value) <= (cap.size + n) * kernel.EPS + slack


def finish(cap: np.ndarray, sink_cap: np.ndarray, source: int, how: str) -> tuple[float, int]:
    """The blocking flow, then Dinic phases (``"dinic"``) or push-relabel (``"push-relabel"``) to the maximum.

    Returns ``(the value, the Dinic phases that ran)``; the final flow is checked feasible here.
    """
    depth, n, _ = cap.shape
    cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt = kernel.prepare(cap)
    res, flow = cap_s.copy(), np.zeros_like(cap_s)
    sink_res = np.where(sink_cap > kernel.EPS, sink_cap, 0.0)
    size = (depth + 1) * n + 1
    ints = [np.empty(size, np.int64) for _ in range(6)]
    dead = np.empty(size, np.bool_)
    value = kernel._blocking_flow(source, depth, n, 0.0, np.inf, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, res,
                                  flow, sink_res, dead, ints[0], ints[1], ints[2])
    phases = 0
    if how == "dinic":
        more = True
        while more:
            value, more = kernel._dinic_phase(source, depth, n, value, np.inf, fwd_idx, fwd_back, fwd_cnt, fwd_off,
                                              bwd_off, bwd_idx, bwd_fwd, bwd_cnt, res, flow, sink_res, ints[0], dead,
                                              ints[1], ints[2], ints[3], ints[4])
            phases += 1
    else:
        excess = np.empty(size)
        value = kernel._push_relabel(source, depth, n, value, np.inf, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off,
                                     bwd_off, bwd_idx, bwd_fwd, bwd_cnt, res, flow, sink_res, excess, ints[0],
                                     np.empty(size + 2, np.int64), ints[1], np.empty(size + 2, np.int64), ints[2],
                                     ints[3])
        kernel._return_excess(source, depth, n, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd,
                              bwd_cnt, res, flow, excess)
    # A flow: within capacities, the two copies agree, conserved at every inner node.
    assert np.all(res >= -kernel.EPS) and np.all(res <= cap_s + kernel.EPS)
    arc_flow = cap_s - res
    inflow, outflow = np.zeros((depth + 1, n)), np.zeros((depth + 1, n))
    for k in range(depth):
        for a in range(n):
            for r in range(fwd_cnt[k, a]):
                p = fwd_off[k, a] + r
                i = fwd_idx[p]
                assert abs(flow[bwd_off[k, i] + fwd_back[p]] - arc_flow[p]) <= 4 * kernel.EPS
                outflow[k, a] += arc_flow[p]
                inflow[k + 1, i] += arc_flow[p]
    outflow[depth] = np.where(sink_cap > kernel.EPS, sink_cap, 0.0) - sink_res
    tolerance = (cap.size + n) * kernel.EPS
    np.testing.assert_allclose(inflow[1:], outflow[1:], rtol=0, atol=tolerance)
    assert abs(outflow[0, source] - outflow[depth].sum()) <= tolerance
    return value, phases


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(1, 5), n=st.integers(1, 7), density=st.floats(0.2, 1.0),
       how=st.sampled_from(["dinic", "push-relabel"]))
def test_dinic_phases_and_push_relabel_each_finish_the_blocking_flow_to_the_maximum(seed, depth, n, density, how):
    """Either route after the blocking flow ends at networkx's value with a feasible flow."""
    rng = np.random.default_rng(seed)
    cap = capacities(seed, depth, n, density)
    sink_cap = np.where(rng.random(n) < density, rng.random(n), 0.0)
    source = int(rng.integers(n))
    value, phases = finish(cap, sink_cap, source, how)
    exact = networkx_flow(cap, sink_cap, [source])[0]
    assert abs(value - exact) <= (cap.size + n) * kernel.EPS + max(1.0, float(cap.max())) * cap.size * 2.0**-52
    assert phases <= (depth + 2) * n + 1  # the sink's distance grows with every phase


def test_a_dinic_phase_reverses_an_arc():
    """The blocking flow gets 1 of 2; one Dinic phase finds the path through the reverse arc, the next proves it."""
    cap = np.array([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]])
    assert finish(cap, np.array([1.0, 1.0]), 0, "dinic") == (2.0, 2)
    assert finish(cap, np.array([1.0, 1.0]), 0, "push-relabel")[0] == 2.0
