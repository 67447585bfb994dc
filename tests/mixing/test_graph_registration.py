"""Adding a graph is one definition plus its registration: a graph registered here runs end to end.

The throwaway graph mixes each layer's head-mean attention half and half with the
identity, ``0.5 * mean_h(A) + 0.5 * I``: exactly what the attention graph's rollout and flow
build from the same weights with ``residual=0.5`` and mean head fusion. So they must equal
rollout and flow over the attention graph (raw, which adds no residual there, is half the
attention row plus half the explained token's own), and rollout must equal the
plain matrix product of the new graph's layer matrices (an independent reference).
"""

from __future__ import annotations

import numpy as np
import pytest

import attnflow
from attnflow.capture import load_model
from attnflow.mixing import available_graphs, context_mixing, get_graph, registry
from attnflow.mixing.registry import Graph, register_graph
from tests.tolerances import EPS64

NAME = "half-identity"
TEXT = "The keys to the cabinet are on the table."


def _half_identity(layer, capture) -> np.ndarray:
    weights = layer.weights.astype(np.float64).mean(axis=0)
    return 0.5 * weights + 0.5 * np.eye(weights.shape[-1])


@pytest.fixture
def half_identity(monkeypatch):
    """The graph, registered in a copy of the registry that the test's end puts back."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    register_graph(Graph(
        NAME, "half head-mean attention, half identity", "test only", "inside: the identity half",
        "rows sum to 1", frozenset({"post-ln", "pre-ln", None}), layer_matrix=_half_identity,
    ))
    yield NAME
    assert NAME in available_graphs()


def test_a_registered_graph_runs_through_explain_like_any_other(half_identity, tiny_bert_path):
    assert context_mixing(["attention", half_identity]) == [half_identity]
    loaded = load_model(tiny_bert_path)
    result = attnflow.explain(TEXT, loaded, methods=("raw", "rollout", "flow"), graph=["attention", half_identity],
                              every_output="auto")
    assert {f"{half_identity}/{m}" for m in ("raw", "rollout", "flow")} <= set(result.scores)
    assert result.options["graph"] == ["attention", half_identity]
    assert set(result.every_output) == {"attention", half_identity}
    n = len(result.tokens)
    # float64 products of n-long rows over L layers: each entry within L * n * eps64 of the other path's
    bound = result.n_layers * n * EPS64
    for method in ("rollout", "flow"):
        np.testing.assert_allclose(result.scores[f"{half_identity}/{method}"], result.scores[method], atol=bound)
    # raw is the explained row of each layer's matrix; over attention, without the residual
    own = np.eye(n)[0]
    np.testing.assert_allclose(result.scores[f"{half_identity}/raw"], 0.5 * result.scores["raw"] + 0.5 * own,
                               atol=bound)
    matrices = get_graph(half_identity).matrices(attnflow.mixing.capture_mixing(loaded, result_ids(loaded)))
    product = np.eye(n)
    for layer, matrix in enumerate(matrices):
        product = matrix @ product
        np.testing.assert_allclose(result.scores[f"{half_identity}/rollout"][layer], product[0], atol=bound)


def result_ids(loaded) -> list[int]:
    return attnflow.capture.capture_attention(TEXT, loaded).input_ids


def test_the_registration_is_gone_after_the_test():
    assert NAME not in available_graphs()
