"""Certified flow intervals: every interval holds the exact value, the add-back loop runs, proofs can fail.

The exact values come from the exact kernel (its own certificates checked by
``verify_flow``) and, on the smallest graphs, from networkx. Rows are
heavy-tailed like real attention: softmax of low-temperature logits with a
sink token, so a few keys hold most of a row and many hold almost nothing.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnflow import AttnflowError, attention_flow, solve_flow, solve_flow_bounds, verify_flow
from attnflow.methods._maxflow_kernel import CUT_TOL
from attnflow.methods.flow import flow_annotated, flow_scores
from attnflow.methods.flow_bounds import check_flow_tolerance
from tests.methods.test_flow import graph_by_hand, networkx_value


def heavy_tailed(rng: np.random.Generator, n_layers: int, n: int, *, causal: bool) -> np.ndarray:
    """``(L, H, n, n)`` softmax rows spanning many orders of magnitude, most mass on a sink and a few keys."""
    heads = int(rng.integers(1, 3))
    logits = rng.standard_t(3, size=(n_layers, heads, n, n)) / float(rng.uniform(0.15, 0.4))
    logits[..., 0] += float(rng.uniform(0, 4))  # an attention sink, as in decoder LMs
    below = np.arange(1, n)
    logits[..., below, below - 1] -= 20.0  # and a far tail: each row i >= 1 all but ignores key i - 1
    if causal:
        logits = np.where(np.tril(np.ones((n, n), dtype=bool)), logits, -np.inf)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def exact_allowance(n_layers: int, n: int) -> float:
    """The exact kernel's values are proven to ``CUT_TOL`` per arc of a cut: at most ``L * n^2 + n`` arcs."""
    return CUT_TOL * (n_layers * n * n + n)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_layers=st.integers(2, 5), n=st.integers(3, 12), causal=st.booleans(),
       output=st.sampled_from(["cls", "last", "mean", None]),
       tolerance=st.sampled_from([1e-12, 1e-6, 1e-3, 0.05]))
def test_every_interval_contains_the_exact_value(seed, n_layers, n, causal, output, tolerance):
    attention = heavy_tailed(np.random.default_rng(seed), n_layers, n, causal=causal)
    exact = solve_flow(attention, outputs=output)
    assert verify_flow(exact) <= 1e-12
    # Start sparse (arcs below 0.2 / n of a row left out), so the loop must add arcs back.
    bounds = solve_flow_bounds(attention, outputs=output, tolerance=tolerance, drop=0.2)
    assert bounds.arcs_first < bounds.arcs_full  # arcs were dropped
    allowance = exact_allowance(n_layers, n)
    asked = ~np.isnan(exact.values)
    assert np.array_equal(asked, ~np.isnan(bounds.lower)) and np.array_equal(asked, ~np.isnan(bounds.upper))
    assert np.all(bounds.lower[asked] <= exact.values[asked] + allowance)
    assert np.all(exact.values[asked] <= bounds.upper[asked] + allowance)
    assert bounds.complete
    # Width: tolerance times the output's capacity (1 for a token, n * 1/n for the mean), plus the upper
    # bound's rounding up (at most L * n^2 + n terms, one ulp each, of a value at most 1).
    assert np.nanmax(bounds.widths()) <= tolerance + 2.0**-52 * (n_layers * n * n + n)
    assert verify_flow(bounds) <= 1e-9
    low, high = bounds.normalized_bounds()
    normalized = exact.normalized()
    assert np.all(low[asked] <= normalized[asked] + 1e-9) and np.all(normalized[asked] <= high[asked] + 1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_layers=st.integers(3, 5), n=st.integers(4, 10), causal=st.booleans())
def test_the_add_back_loop_runs_and_ends_exact(seed, n_layers, n, causal):
    # A tolerance far below the dropped mass: the first sparse graph's bounds cannot meet it, so the
    # loop adds the dropped arcs that cross the cuts and solves again until every interval is a point.
    attention = heavy_tailed(np.random.default_rng(seed), n_layers, n, causal=causal)
    exact = solve_flow(attention, outputs="last", layers=-1)
    first = solve_flow_bounds(attention, outputs="last", layers=-1, tolerance=0.5, drop=0.5)
    bounds = solve_flow_bounds(attention, outputs="last", layers=-1, tolerance=1e-12, drop=0.5)
    widest_first = float(np.nanmax(first.widths()))
    assert bounds.arcs_first < bounds.arcs_full
    if widest_first > 1e-12:  # the first sparse graph left a gap: arcs must come back
        assert bounds.rounds >= 2 and bounds.arcs > bounds.arcs_first
    row = exact.values[-1, n - 1]
    allowance = exact_allowance(n_layers, n)
    np.testing.assert_array_less(bounds.lower[-1, n - 1], row + allowance)
    np.testing.assert_array_less(row, bounds.upper[-1, n - 1] + allowance)
    assert np.nanmax(bounds.widths()) <= 1e-12 + 2.0**-52 * (n_layers * n * n + n)


def test_heavy_tailed_rows_need_the_add_back_here():
    # One fixed case where the first sparse graph is known to fall short (checked, not assumed).
    attention = heavy_tailed(np.random.default_rng(7), 4, 10, causal=True)
    first = solve_flow_bounds(attention, outputs="last", layers=-1, tolerance=0.5, drop=0.5)
    assert np.nanmax(first.widths()) > 1e-3
    bounds = solve_flow_bounds(attention, outputs="last", layers=-1, tolerance=1e-12, drop=0.5)
    assert bounds.rounds >= 2 and bounds.arcs_first < bounds.arcs < bounds.arcs_full


@pytest.mark.parametrize("seed", range(4))
def test_intervals_contain_networkx_values(seed):
    rng = np.random.default_rng(seed)
    attention = heavy_tailed(rng, 3, 5, causal=bool(seed % 2))
    bounds = solve_flow_bounds(attention, outputs=[0, 4], tolerance=1e-3, drop=0.3)
    ahat = graph_by_hand(attention)
    for layer in (2, 3):
        for output in (0, 4):
            for source in range(5):
                value = networkx_value(ahat, layer, output, source)
                # networkx's preflow-push sums in float64: off by a few ulps per arc of the graph.
                slack = 2.0**-52 * 3 * 25 * 4
                assert bounds.lower[layer - 1, output, source] <= value + slack
                assert value <= bounds.upper[layer - 1, output, source] + slack


def test_a_spent_budget_keeps_proven_bounds_and_says_so():
    attention = heavy_tailed(np.random.default_rng(3), 4, 12, causal=True)
    bounds = solve_flow_bounds(attention, outputs="last", tolerance=1e-9, seconds=1e-9)
    assert not bounds.complete and bounds.rounds == 0
    exact = solve_flow(attention, outputs="last")
    asked = ~np.isnan(exact.values)
    allowance = exact_allowance(4, 12)
    assert np.all(bounds.lower[asked] <= exact.values[asked] + allowance)
    assert np.all(exact.values[asked] <= bounds.upper[asked] + allowance)
    assert verify_flow(bounds) <= 1e-9  # the trivial bounds are proven too: the zero flow, a one-node cut


def test_tolerance_zero_is_the_exact_solver_bit_for_bit():
    attention = heavy_tailed(np.random.default_rng(11), 3, 9, causal=False)
    exact = attention_flow(attention, outputs=[2])[:, 2, :]
    np.testing.assert_array_equal(flow_scores(attention, 2, flow_tolerance=0), exact)
    scores, _, labels, solution = flow_annotated(attention, 2, flow_tolerance=0)
    np.testing.assert_array_equal(scores, exact)
    assert "flow ±" not in labels and not hasattr(solution, "upper")


def test_an_interval_run_labels_each_token_and_notes_the_intervals():
    attention = heavy_tailed(np.random.default_rng(5), 3, 9, causal=True)
    scores, notes, labels, bounds = flow_annotated(attention, "last", flow_tolerance=1e-3)
    low, high = bounds.normalized_bounds()
    exact = attention_flow(attention, outputs="last")[:, -1, :]
    assert np.all(low[:, -1, :] <= exact + 1e-9) and np.all(exact <= high[:, -1, :] + 1e-9)
    np.testing.assert_allclose(scores, (low[:, -1, :] + high[:, -1, :]) / 2)
    assert len(labels["flow ±"]) == 9 and all(label.startswith("±") for label in labels["flow ±"])
    assert any("certified" in note for note in notes)


def test_forged_bounds_fail_verification():
    attention = heavy_tailed(np.random.default_rng(2), 3, 6, causal=False)
    bounds = solve_flow_bounds(attention, outputs=0, layers=-1, tolerance=1e-3)
    bounds.upper[-1, 0, 3] -= 1e-3  # no longer the capacity of the cut kept for it
    with pytest.raises(AttnflowError, match="source 3"):
        verify_flow(bounds)
    bounds = solve_flow_bounds(attention, outputs=0, layers=-1, tolerance=1e-3)
    bounds.lower[-1, 0, 1] = bounds.upper[-1, 0, 1] + 1e-3
    with pytest.raises(AttnflowError, match="lower bound"):
        verify_flow(bounds)


@pytest.mark.parametrize("bad", [-1e-3, float("nan"), 1.0, 2, "wide", None, True])
def test_a_bad_tolerance_is_one_clear_error(bad):
    with pytest.raises(AttnflowError, match=r"--flow-tolerance must be a number in \[0, 1\)"):
        check_flow_tolerance(bad)
    with pytest.raises(AttnflowError, match="tolerance"):
        solve_flow_bounds(np.full((2, 1, 3, 3), 1 / 3), tolerance=0 if bad is None else bad)
