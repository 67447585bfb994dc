"""evaluate(flow_details=True): each example keeps its flow's raw values, cut kinds and source bounds into the
explained output, as networkx max flow finds them on the same sentence captured alone."""

from __future__ import annotations

import numpy as np
import pytest

from attnflow import AttnflowError, evaluate
from attnflow.capture import load_model
from attnflow.methods.flow import CUT_KINDS
from attnflow.mixing import capture_text, get_graph
from tests.methods.test_flow import graph_by_hand, networkx_value
from tests.tolerances import EPS64, flow_bound, model_float32_bound

# two sentences of the bundled sva model's grammar, of 7 and 14 tokens with [CLS]: the short one is padded
SHORT = "the senators about the strange doors"
LONG = "from the clever lawyers , their computer outside the farmers with their gardens"


@pytest.fixture(scope="module")
def sva_model():
    return load_model("sva")


def test_details_are_networkx_flow_into_cls_over_attention_and_alti(sva_model):
    result = evaluate([LONG, SHORT], sva_model, methods=["flow"], graphs=["attention", "alti"],
                      ground_truths=["blankout"], faithfulness=False, flow_details=True)
    assert result.output == "cls"
    example = result.examples[1]
    assert set(example.flow_details) == {"flow", "alti/flow"}
    captured, mixing = capture_text(SHORT, sva_model)  # the sentence alone: one pass, no padding
    n_layers, n = captured.n_layers, captured.n_tokens
    assert len(example.tokens) == n == 7
    alti = get_graph("alti").matrices(mixing)
    graphs = {
        "flow": graph_by_hand(np.asarray(captured.attentions, dtype=np.float64), 0.5),
        "alti/flow": alti / alti.sum(axis=-1, keepdims=True),
    }
    # Two float32 runs of the model differ by at most b per weight and per row of a matrix (its differences sum
    # to b; renormalising a row doubles that). A max-flow value moves by no more than the summed change of the
    # capacities of its graph: L * n rows and the sink's. The kernel and networkx differ by flow_bound.
    b = model_float32_bound(sva_model.model.config)
    tolerance = 2 * b * (n_layers * n + 1) + flow_bound(n_layers * n * n)
    for key, ahat in graphs.items():
        found = example.details_of(key)
        assert found.values.shape == found.kinds.shape == (n_layers, n)
        for layer in range(1, n_layers + 1):
            expected = [networkx_value(ahat, layer, 0, source) for source in range(n)]
            np.testing.assert_allclose(found.values[layer - 1], expected, rtol=0, atol=tolerance, err_msg=key)
        # the bound: min(1, column sums of layer 1), n rows each within 2 b
        np.testing.assert_allclose(found.source_bound, np.minimum(1.0, ahat[0].sum(axis=0)), rtol=0,
                                   atol=2 * b * n + n * EPS64)
        # the scores evaluate reported are these values, each row divided by its sum (n float64 terms)
        np.testing.assert_allclose(found.values / found.values.sum(axis=1, keepdims=True), example.scores[key],
                                   rtol=0, atol=n * EPS64)
        # into layer 1 the flow is the source's own arc; in a deeper layer of a graph with no zero capacity a
        # source cut is every arc the source has into layer 1: its bound
        assert (found.kinds[0] == CUT_KINDS.index("source")).all()
        deeper = found.kinds[1:] == CUT_KINDS.index("source")
        if (ahat > 0).all():
            assert found.at_bound(1e-9 + flow_bound(n_layers * n * n))[1:][deeper].all()
    assert (example.details_of("flow").kinds[1:] != CUT_KINDS.index("source")).any()  # not every cut alike


def test_details_are_kept_only_when_asked(no_model):
    with pytest.raises(AttnflowError, match="'flow_details' parameter must be True or False"):
        evaluate([SHORT], "sva", methods=["flow"], flow_details="yes")


def test_no_details_by_default(sva_model):
    result = evaluate([SHORT], sva_model, methods=["flow"], ground_truths=["blankout"], faithfulness=False)
    assert result.examples[0].flow_details is None
    with pytest.raises(AttnflowError, match="no exact 'flow' flow details"):
        result.examples[0].details_of("flow")
