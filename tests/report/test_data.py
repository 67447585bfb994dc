"""Report data: every output's scores agree with the methods themselves; reading results files; bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attnflow
from attnflow import AttnflowError, Explanation, core
from attnflow.report import data as report_module
from attnflow.report.data import (
    ReportData,
    load_report_data,
    report_data,
    report_data_from_explanation,
    report_data_from_results,
)
from tests.helpers import random_attention
from tests.report.conftest import EVALUATION_RESULTS, REPRODUCE_RESULTS
from tests.tolerances import EPS64, flow_bound, rounded_bound


@pytest.fixture
def attention():
    return random_attention(np.random.default_rng(11), 3, 2, 5)


def test_every_output_matches_the_methods(attention):
    d = report_data(attention, list("abcde"), methods=("raw", "rollout", "flow"), residual=0.4)
    assert d.outputs == [0, 1, 2, 3, 4] and d.n_layers == 3 and d.n_heads == 2
    np.testing.assert_allclose(d.attention, attnflow.raw_attention(attention))
    np.testing.assert_allclose(d.scores["rollout"], attnflow.rollout(attention, residual=0.4))
    np.testing.assert_allclose(d.scores["flow"], attnflow.attention_flow(attention, residual=0.4))
    for t in range(5):  # the same numbers explain() gives for that one output
        e = attnflow.explain_attentions(attention, methods=("raw", "rollout", "flow"), output=t, residual=0.4)
        for method in e.methods:
            # float64 over the same weights: 3 layers of 5-term row products; flow within the kernel's allowances
            bound = flow_bound(3 * (5**2 + 5)) if method == "flow" else 3 * 5 * EPS64
            np.testing.assert_allclose(d.output_scores(method, t), e.scores[method], rtol=0, atol=bound)


def test_mean_output_is_offered_beside_every_token(attention):
    d = report_data(attention, methods=("rollout", "flow"), output="mean")
    assert d.outputs[-1] == "mean" and d.output == "mean" and len(d.outputs) == 6
    np.testing.assert_allclose(d.output_scores("rollout"), attnflow.select_output(attnflow.rollout(attention), "mean"))
    np.testing.assert_allclose(d.output_scores("flow"), attnflow.attention_flow(attention, outputs="mean"))


def test_flow_for_the_chosen_output_only_says_so(attention, monkeypatch):
    d = report_data(attention, methods=("rollout", "flow"), output=2, flow_outputs="chosen")
    assert np.isnan(d.scores["flow"][:, [0, 1, 3, 4]]).all() and np.isfinite(d.output_scores("flow", 2)).all()
    assert any("output token 2 only" in note for note in d.notes)
    monkeypatch.setattr(core, "FLOW_ALL_OUTPUTS_BUDGET", 10.0)  # "auto" on a "large" input
    d = report_data(attention, methods="flow", output="last")
    assert np.isnan(d.scores["flow"][:, 0]).all() and np.isfinite(d.output_scores("flow", 4)).all()
    assert "too large for every output" in d.notes[0]


def _backward(capacities: np.ndarray, layer: int, output: int | str) -> np.ndarray:
    """Reference: backward rollout from one node, v[k-1] = v[k] @ Ahat[k], written out here."""
    n = capacities.shape[-1]
    v = np.zeros((layer + 1, n))
    v[layer] = 1.0 / n if output == "mean" else np.eye(n)[output]
    for k in range(layer, 0, -1):
        v[k - 1] = v[k] @ capacities[k - 1]
    return v


def test_route_shares_are_the_rollout_and_the_backward_walk(attention):
    d = report_data(attention, methods="rollout", output="mean", residual=0.3)
    capacities = d.graph_capacities()
    for layer in (1, 2, 3):
        for output in (0, 3, "mean"):
            shares = d.route_shares(layer, output)
            np.testing.assert_allclose(shares.sum(axis=1), 1.0)
            np.testing.assert_allclose(shares, _backward(capacities, layer, output), rtol=0,
                                       atol=layer * capacities.shape[-1] * EPS64)  # float64 walks, n terms a layer
            # the input row is the rollout score the page shows, the same numbers, not a second computation
            assert np.array_equal(shares[0], d.output_scores("rollout", output)[layer - 1])
    with pytest.raises(AttnflowError, match="no attention graph"):
        report_data_from_explanation(Explanation(["a"], {"raw": [[1.0]]}, 0)).route_shares(1, 0)


def test_route_for_the_chosen_output_only_on_large_inputs(attention, monkeypatch):
    monkeypatch.setattr(report_module, "ROUTE_ALL_OUTPUTS_BUDGET", 10.0)
    d = report_data(attention, methods="rollout", output=2)
    assert any("route into output token 2 only" in note for note in d.notes)
    capacities = d.graph_capacities()
    np.testing.assert_allclose(d.route_shares(3, 2), _backward(capacities, 3, 2), rtol=0,
                               atol=3 * capacities.shape[-1] * EPS64)
    with pytest.raises(AttnflowError, match=r"route for \[2\] only"):
        d.route_shares(3, 0)
    page = d.to_dict()["shares"]
    assert [p is None for p in page] == [True, True, False, True, True]


def test_explain_scores_are_used_for_their_output(attention):
    e = attnflow.explain_attentions(attention, methods=("rollout", "flow"), output=2)
    e.scores["flow"] = np.full_like(e.scores["flow"], 0.2)  # marked: the report must show these, not recompute
    e.scores["grad"] = np.full_like(e.scores["flow"], 0.1)  # a gradient method: only explain can compute it
    d = report_data(attention, methods=("rollout", "flow"), output=2, explanation=e)
    assert np.array_equal(d.output_scores("flow", 2), e.scores["flow"])
    np.testing.assert_allclose(d.output_scores("flow", 0), attnflow.attention_flow(attention, outputs=[0])[:, 0])
    assert np.array_equal(d.output_scores("rollout", 2), e.scores["rollout"])
    assert "grad" not in d.scores  # not asked for
    with pytest.raises(AttnflowError, match="must be the same"):
        report_data(attention, methods="rollout", output=1, explanation=e)
    with pytest.raises(AttnflowError, match="same tokens"):
        report_data(attention, list("vwxyz"), methods="rollout", output=2, explanation=e)


def test_gradient_methods_come_from_the_explanation(attention, monkeypatch):
    from attnflow.methods import registry

    method = registry.Method("grad", "a gradient method", lambda *a, **k: None, needs_gradients=True)
    monkeypatch.setitem(registry._REGISTRY, "grad", method)
    d = report_data(attention, methods=("grad", "rollout"), output=1)
    assert "grad" not in d.scores and "needs attention gradients" in d.notes[0]
    e = Explanation(tokens=[str(i) for i in range(5)], scores={"grad": np.full((3, 5), 0.2)}, output=1)
    d = report_data(attention, methods=("grad", "rollout"), output=1, explanation=e)
    assert np.isnan(d.scores["grad"][:, [0, 2, 3, 4]]).all()
    assert np.array_equal(d.output_scores("grad"), e.scores["grad"])
    assert "computed for output token 1 only" in d.notes[0]


def test_round_trip_through_json(tmp_path, toy_data):
    toy_data.scores["flow"][:, 1, :] = np.nan
    path = tmp_path / "data.json"
    toy_data.to_json(path)
    back = load_report_data(path)
    assert back.tokens == toy_data.tokens and back.outputs == toy_data.outputs
    assert back.special_positions == (0, 5) and back.model_name == "toy"
    np.testing.assert_allclose(back.scores["flow"], toy_data.scores["flow"], rtol=0, atol=rounded_bound(6))  # 6 dec.
    np.testing.assert_allclose(back.attention, toy_data.attention, rtol=0, atol=rounded_bound(6))
    assert np.isnan(back.scores["flow"][:, 1]).all()
    # the graph's node shares travel as they are, at the stated precision (6 decimals), not recomputed
    assert np.array_equal(back.shares, np.round(toy_data.shares, 6), equal_nan=True)


def test_explanation_json_gives_its_one_output(tmp_path):
    e = Explanation(
        tokens=["[CLS]", "hi", "[SEP]"],
        scores={"rollout": np.array([[0.5, 0.3, 0.2], [0.6, 0.2, 0.2]])},
        output=0,
        model_name="toy",
        special_positions=(0, 2),
        options={"residual": 0.3, "head_fusion": "max"},
    )
    path = tmp_path / "e.json"
    e.to_json(path)
    d = load_report_data(path, layer=1)
    assert d.outputs == [0] and d.attention is None and d.layer == 1 and d.residual == 0.3
    assert "one output" in d.notes[0] and d.head_fusion == "max"
    np.testing.assert_allclose(d.output_scores("rollout"), e.scores["rollout"])
    with pytest.raises(AttnflowError, match="no attention graph"):
        d.graph_capacities()
    assert report_data_from_explanation(Explanation(["a"], {"raw": [[1.0]]}, "mean")).outputs == ["mean"]


def test_evaluation_results_give_the_evaluation_section(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(EVALUATION_RESULTS))
    d = load_report_data(path)
    assert d.tokens == [] and d.methods == [] and d.n_layers == 0
    summary = d.evaluation
    assert summary["target"] == "norm" and summary["n_examples"] == 3 and summary["model"] == "minilm"
    assert summary["correlation"]["blankout"]["rollout"] == [[0.5, 0.1], [0.71, None]]
    assert summary["faithfulness"]["methods"]["random"]["aopc_sufficiency"] == [0.3, 0.02]


def test_reproduce_results_bring_the_papers_numbers(tmp_path):
    d = report_data_from_results(REPRODUCE_RESULTS)
    d.to_json(tmp_path / "d.json")
    assert load_report_data(tmp_path / "d.json").evaluation == d.evaluation  # the summary is stable
    summary = d.evaluation
    assert summary["accuracy"] == 0.97 and summary["paper"]["layer"] == 2
    assert summary["paper"]["correlation"]["blankout"] == {"raw": 0.29, "rollout": 0.71}
    assert report_data_from_results(EVALUATION_RESULTS).evaluation["paper"] is None


def test_results_with_an_explanation_inside_give_both():
    e = Explanation(tokens=["a", "b"], scores={"raw": np.array([[0.4, 0.6]])}, output=1)
    d = report_data_from_results({"correlation": EVALUATION_RESULTS["correlation"], "explanation": e.to_dict()})
    assert d.tokens == ["a", "b"] and d.evaluation is not None


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "must hold an object"),
        ('{"hello": 1}', "not an attnflow results file"),
        ("{not json", "not valid JSON"),
        ('{"correlation": {"blankout": {"raw": [1, 2]}}}', "list of \\[mean, sd\\] pairs"),
        ('{"correlation": []}', "'correlation' must map"),
        ('{"format": "attnflow.explanation", "tokens": ["a"]}', "Malformed attnflow explanation|holds no scores"),
        ('{"format": "attnflow.report", "tokens": ["a"]}', "Malformed attnflow report data"),
    ],
)
def test_bad_results_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AttnflowError, match=message) as info:
        load_report_data(path)
    assert str(path) in str(info.value)


def test_missing_folder_and_binary_files(tmp_path):
    with pytest.raises(AttnflowError, match="does not exist"):
        load_report_data(tmp_path / "nope.json")
    with pytest.raises(AttnflowError, match="is a folder"):
        load_report_data(tmp_path)
    binary = tmp_path / "x.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(AttnflowError, match="not UTF-8|not valid JSON"):
        load_report_data(binary)


def test_report_data_checks_its_input(attention):
    with pytest.raises(AttnflowError, match="one token per attention position"):
        report_data(attention, ["a"])
    with pytest.raises(AttnflowError, match="Unknown method 'nope'"):
        report_data(attention, methods="nope")
    with pytest.raises(AttnflowError, match="flow_outputs"):
        report_data(attention, methods="flow", flow_outputs="some")
    with pytest.raises(AttnflowError, match="'output' parameter"):
        report_data(attention, output=9)
    with pytest.raises(AttnflowError, match="'layers' parameter"):
        report_data(attention, layer=7)
    with pytest.raises(AttnflowError, match="shape"):
        ReportData(tokens=["a", "b"], scores={"raw": np.zeros((1, 2, 3))}, outputs=[0, 1])
    with pytest.raises(AttnflowError, match="must be one of"):
        ReportData(tokens=["a", "b"], scores={"raw": np.zeros((1, 1, 2))}, outputs=[0], output=1)
