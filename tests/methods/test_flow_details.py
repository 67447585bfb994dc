"""FlowSolution.details: one output's raw flow at every layer, each value's cut kind and the source bounds."""

import numpy as np
import pytest

from attnflow import AttnflowError
from attnflow.methods.flow import CUT_KINDS, solve_flow
from attnflow.methods.flow_bounds import solve_flow_bounds
from tests.methods.test_flow import KINDS, graph_by_hand, make_attention, networkx_value
from tests.tolerances import EPS64, flow_bound


@pytest.mark.parametrize("seed", range(12))
def test_details_are_the_networkx_values_with_the_solutions_cut_kinds(seed):
    rng = np.random.default_rng(seed)
    n_layers, n = int(rng.integers(1, 5)), int(rng.integers(2, 8))
    attentions = make_attention(KINDS[seed % len(KINDS)], rng, n_layers, n)
    residual = float(rng.uniform(0, 0.9))
    output = "mean" if seed % 3 == 0 else int(rng.integers(n))
    solution = solve_flow(attentions, outputs=output if output == "mean" else [output], residual=residual)
    found = solution.details(output)
    assert found.values.shape == found.kinds.shape == (n_layers, n) and found.kinds.dtype == np.int8
    ahat = graph_by_hand(attentions, residual)
    tolerance = flow_bound(n_layers * n * n)  # the kernel's allowances against networkx's exact search
    for layer in range(1, n_layers + 1):
        expected = [networkx_value(ahat, layer, output, source) for source in range(n)]
        np.testing.assert_allclose(found.values[layer - 1], expected, rtol=0, atol=tolerance)
        assert found.kind_names(layer) == solution.cut_kinds(layer, output)
    # min(1, column sums of layer 1), summed by hand: n float64 terms
    np.testing.assert_allclose(found.source_bound, np.minimum(1.0, ahat[0].sum(axis=0)), rtol=0, atol=n * EPS64)
    # what each kind means: a source cut crosses the source's own arcs only (every arc into layer 1 where all arcs
    # have capacity, so its column sum, where a layer lies between source and sink; else its arc into the output),
    # an output cut the output's capacity (1)
    source, output_cut = found.kinds == CUT_KINDS.index("source"), found.kinds == CUT_KINDS.index("output")
    inner = slice(0, None) if output == "mean" else slice(1, None)
    if (ahat > 0).all():
        assert found.at_bound(tolerance)[inner][source[inner]].all()
    if output != "mean":
        assert source[0].all()
        np.testing.assert_allclose(found.values[0], ahat[0, output], rtol=0, atol=tolerance)
    np.testing.assert_allclose(found.values[output_cut], 1.0, rtol=0, atol=1e-9 + n * EPS64)
    assert (found.values <= found.source_bound + tolerance).all()


def test_details_need_every_layer_and_exact_flow():
    a = make_attention("dense", np.random.default_rng(0), 3, 4)
    with pytest.raises(AttnflowError, match="no problems for layer 1"):
        solve_flow(a, outputs=[0], layers=-1).details(0)
    with pytest.raises(AttnflowError, match="no exact values"):
        solve_flow_bounds(a, outputs=[0], tolerance=1e-3).details(0)
