"""``attnflow.explain(..., graph=...)`` and ``attnflow explain --graph``: the methods over context-mixing graphs.

The references are independent of the method registry: rollout over a graph is the
plain matrix product of its layer matrices, raw is the top row of each layer, and
the exact flow is checked against networkx's max-flow on the layered graph.
"""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

import attnflow
from attnflow.capture import capture_attention
from attnflow.cli import main
from attnflow.errors import AttnflowError
from attnflow.mixing import graph_matrices
from tests.tolerances import EPS64, flow_bound, model_float32_bound

TEXT = "The keys to the cabinet are on the table."


def run_cli(capsys, *args):
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def alti_minilm(minilm):
    """MiniLM's ALTI matrices of TEXT, from the array API."""
    ids = capture_attention(TEXT, minilm).input_ids
    return graph_matrices("alti", minilm, ids)


def _rollout_reference(matrices: np.ndarray) -> np.ndarray:
    out, product = [], np.eye(matrices.shape[-1])
    for layer in matrices:
        product = layer @ product
        out.append(product.copy())
    return np.stack(out)


def _flow_reference(matrices: np.ndarray, output: int) -> np.ndarray:
    """Max-flow from every input token to ``output`` after the top layer, with networkx (unnormalised)."""
    n_layers, n, _ = matrices.shape
    graph = nx.DiGraph()
    for layer in range(n_layers):
        for i in range(n):
            for j in range(n):
                if matrices[layer, i, j] > 0:
                    graph.add_edge((layer, j), (layer + 1, i), capacity=float(matrices[layer, i, j]))
    return np.array([nx.maximum_flow_value(graph, (0, j), (n_layers, output)) for j in range(n)])


def test_explain_alti_equals_the_array_api_and_an_independent_rollout(minilm, alti_minilm):
    result = attnflow.explain(TEXT, minilm, methods=("raw", "rollout", "flow"), graph="alti")
    assert set(result.scores) == {"alti/raw", "alti/rollout", "alti/flow"}
    assert result.options["graph"] == ["alti"]
    same = attnflow.explain_attentions(alti_minilm, result.tokens, methods=("raw", "rollout", "flow"), output=0,
                                       residual=0.0)
    # float64 walks over the same float64 matrices: L layers of n-term row products; max-flow over L n^2 arcs
    n_layers, n = alti_minilm.shape[0], alti_minilm.shape[-1]
    walks, flows = n_layers * n * EPS64, flow_bound(n_layers * n**2)
    for method in ("raw", "rollout", "flow"):
        np.testing.assert_allclose(result.scores[f"alti/{method}"], same.scores[method], rtol=0,
                                   atol=flows if method == "flow" else walks)
    np.testing.assert_array_equal(result.scores["alti/raw"], alti_minilm[:, 0, :])  # the matrices' rows, as they are
    np.testing.assert_allclose(result.scores["alti/rollout"], _rollout_reference(alti_minilm)[:, 0, :], rtol=0,
                               atol=walks)
    flow = _flow_reference(alti_minilm, 0)
    top = result.scores["alti/flow"][-1]
    np.testing.assert_allclose(top, flow / flow.sum(), rtol=0, atol=flows)


def test_attention_keeps_its_names_beside_a_graph(minilm):
    both = attnflow.explain(TEXT, minilm, methods=("rollout",), graph=["attention", "norm"])
    plain = attnflow.explain(TEXT, minilm, methods=("rollout",))
    assert list(both.scores) == ["rollout", "norm/rollout"]
    # With a graph the attention comes from the one hooked pass (every head, fused in float64); alone, from the
    # head-fused capture (fused in float32): two float32 runs of the model, within its float32 bound.
    bound = model_float32_bound(minilm.model.config)
    np.testing.assert_allclose(both.scores["rollout"], plain.scores["rollout"], rtol=0, atol=bound)
    assert not np.allclose(both.scores["rollout"], both.scores["norm/rollout"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"graph": "alti", "residual": 0.3}, "already contains the residual stream"),
        ({"graph": "alti", "methods": ["grad-rollout"]}, "runs on the attention graph only"),
        ({"graph": "nope"},
         "Unknown graph 'nope'; available: attention, norm, globenc, globenc-rownorm, alti, value-zeroing"),
        ({"graph": []}, "non-empty list"),
    ],
)
def test_graph_mistakes_are_clear_errors(minilm, kwargs, message):
    with pytest.raises(AttnflowError, match=message.replace("(", r"\(")):
        attnflow.explain(TEXT, minilm, **kwargs)


def test_cli_graph_table_and_json_equal_the_library(capsys, tmp_path, minilm):
    path = tmp_path / "out.json"
    status, out, err = run_cli(capsys, "explain", TEXT, "--graph", "alti", "--graph", "attention",
                               "--method", "rollout", "--json", str(path))
    assert status == 0, err
    assert "alti/rollout" in out and "graphs: alti, attention" in " ".join(out.split())
    data = json.loads(path.read_text())
    assert list(data["scores"]) == ["alti/rollout", "rollout"]
    expected = attnflow.explain(TEXT, minilm, methods=("rollout",), graph=["alti", "attention"])
    for key in ("alti/rollout", "rollout"):  # two float32 runs of the model; the JSON keeps every digit
        np.testing.assert_allclose(np.array(data["scores"][key]), expected.scores[key], rtol=0,
                                   atol=model_float32_bound(minilm.model.config))


def test_cli_attention_graph_is_today_s_output(capsys, tmp_path):
    plain, chosen = tmp_path / "plain.json", tmp_path / "chosen.json"
    assert run_cli(capsys, "explain", TEXT, "--json", str(plain))[0] == 0
    assert run_cli(capsys, "explain", TEXT, "--graph", "attention", "--json", str(chosen))[0] == 0
    first, second = json.loads(plain.read_text()), json.loads(chosen.read_text())
    assert first["scores"] == second["scores"] and "graph" not in second.get("options", {})
    assert second["options"]["residual"] == 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--graph", "alti", "--residual", "0.3"], "--residual weighs the residual added to attention weights"),
        (["--graph", "norm", "--method", "grad-rollout"], "--method grad-rollout weighs attention weights"),
        (["--graph", "alti", "--generate", "2"], "--generate runs on the attention graph only"),
    ],
)
def test_cli_graph_mistakes_are_one_line_before_any_model_loads(capsys, args, message):
    # the model does not exist: the graph check must come first
    status, out, err = run_cli(capsys, "explain", "hello", "--model", "/nonexistent/model", *args)
    assert status != 0 and "Traceback" not in out + err
    assert message in " ".join(err.split()) and "nonexistent" not in err


def test_cli_unknown_graph_is_a_usage_error_listing_the_graphs(capsys):
    status, _, err = run_cli(capsys, "explain", "hello", "--graph", "nope")
    assert status == 2
    assert "attention, norm, globenc, globenc-rownorm, alti, value-zeroing" in " ".join(err.split())


def test_generate_with_a_graph_is_refused(tiny_gpt2_path):
    with pytest.raises(AttnflowError, match="cannot be given with 'generate'"):
        attnflow.explain("the keys", tiny_gpt2_path, graph="alti", generate=2)


@pytest.mark.slow
def test_flow_saturation_counts_tokens_at_their_first_layer_bound(minilm):
    """The share flow_saturation gives equals networkx max-flow values compared with min(1, column sum of layer 1)."""
    from attnflow.graph import add_residual, fuse_heads
    from attnflow.tasks.saturation import flow_saturation

    found = flow_saturation([TEXT], minilm, graphs=["attention", "norm"])
    ids = capture_attention(TEXT, minilm).input_ids
    shares = {}
    for name in ("attention", "norm"):
        matrices = graph_matrices(name, minilm, ids)
        if name == "attention":
            matrices = add_residual(fuse_heads(matrices, "mean"), 0.5)
        flow = _flow_reference(matrices, 0)
        bound = np.minimum(1.0, matrices[0].sum(axis=0))
        shares[name] = float(np.mean(np.abs(flow - bound) <= 1e-9))  # the library's saturation tolerance
        assert found["graphs"][name]["all_tokens"] == pytest.approx(shares[name])
    assert shares["norm"] > 0  # the check can tell: some tokens are at their bound over the norm graph
