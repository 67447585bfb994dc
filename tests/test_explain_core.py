"""The explain core: one capture in, scores out; the model runs once per input and each flow problem is solved once."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import attnflow
import attnflow.capture
from attnflow.capture import CapturedAttention
from attnflow.cli import main
from attnflow.core import score_capture
from attnflow.methods import _maxflow_kernel
from tests.helpers import random_attention
from tests.tolerances import EPS64, flow_bound

# 36 tokens on the bundled MiniLM, [CLS] and [SEP] included
SENTENCE = (
    "The old keys that the children found under the heavy wooden cabinet near the kitchen door last winter are "
    "finally back on the big table where they belong today, said Anna Lee."
)


@pytest.fixture
def counted(monkeypatch):
    """Forward passes of every model ``attnflow.capture.load_model`` loads, and the kernel's flow problems."""
    counts = {"forward": 0, "problems": []}
    load = attnflow.capture.load_model

    def load_and_count(*args, **kwargs):
        loaded = load(*args, **kwargs)
        if not getattr(loaded.model, "_counted_here", False):
            loaded.model.register_forward_hook(lambda *_: counts.__setitem__("forward", counts["forward"] + 1))
            loaded.model._counted_here = True
        return loaded

    solve = _maxflow_kernel.LayeredMaxFlow.solve_certified

    def solve_and_count(self, depths, rows, sources, sink_caps, **kwargs):
        # one problem: its depth (layer - 1), its sink's capacities (the output) and its source
        counts["problems"].extend(
            (int(d), np.asarray(sink_caps[r]).tobytes(), int(s)) for d, r, s in zip(depths, rows, sources, strict=True)
        )
        return solve(self, depths, rows, sources, sink_caps, **kwargs)

    monkeypatch.setattr(attnflow.capture, "load_model", load_and_count)
    monkeypatch.setattr(_maxflow_kernel.LayeredMaxFlow, "solve_certified", solve_and_count)
    return counts


def _payload(path):
    text = path.read_text()
    return json.loads(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S).group(1))


@pytest.mark.e2e
@pytest.mark.parametrize("graph", [["alti"], []])
def test_explain_with_a_report_runs_the_model_once_and_solves_each_flow_problem_once(
    counted, capsys, tmp_path, graph
):
    page = tmp_path / "out.html"
    flags = [arg for name in graph for arg in ("--graph", name)]
    status = main(["explain", SENTENCE, "--method", "rollout", "--method", "flow", *flags, "--html", str(page)])
    assert status == 0, capsys.readouterr().err
    payload = _payload(page)
    prefix = "".join(f"{name}/" for name in graph)
    assert list(payload["scores"]) == [f"{prefix}rollout", f"{prefix}flow"]
    n_layers, n = 6, 36
    flow = np.array(payload["scores"][f"{prefix}flow"], dtype=float)
    assert flow.shape == (n_layers, n, n) and np.isfinite(flow).all()  # every output selectable
    assert counted["forward"] == 1
    problems = counted["problems"]
    # the page's flow for every output at every layer is L * n outputs of n sources: each solved once
    assert len(problems) == len(set(problems)) == n_layers * n * n


def test_score_capture_gives_every_output_from_one_solve_and_the_explained_output_from_it():
    attention = random_attention(np.random.default_rng(5), 3, 2, 6)
    captured = CapturedAttention(attention, list("abcdef"), list(range(6)), (), "toy", False, "a b c d e f")
    found = score_capture(captured, ["raw", "rollout", "flow"], output=2, every_output="all", residual=0.4)
    every = found.every_output["attention"]
    assert every.outputs == list(range(6))
    # float64 both ways: flow within the kernel's allowance over the graph's arcs; rollout's L products of
    # n-term row sums
    np.testing.assert_allclose(every.scores["flow"], attnflow.attention_flow(attention, residual=0.4),
                               atol=flow_bound(attention.shape[0] * 6 * 6))
    np.testing.assert_allclose(every.scores["rollout"], attnflow.rollout(attention, residual=0.4),
                               atol=attention.shape[0] * 6 * EPS64)
    alone = attnflow.explain_attentions(attention, methods=("raw", "rollout", "flow"), output=2, residual=0.4)
    for method in alone.methods:  # the explained output: what explain_attentions gives, read from the same solve
        np.testing.assert_array_equal(found.explanation.scores[method], alone.scores[method])
        np.testing.assert_array_equal(every.scores[method][:, 2], alone.scores[method])
    assert found.explanation.token_labels == alone.token_labels and found.explanation.notes == alone.notes
    assert found.explanation.solutions["flow"] is every.flow_solution


def test_score_capture_wants_the_mixing_capture_for_a_context_mixing_graph():
    captured = CapturedAttention(np.full((1, 1, 2, 2), 0.5), ["a", "b"], [1, 2], (), "toy", False, "a b")
    with pytest.raises(attnflow.AttnflowError, match="mixing capture"):
        score_capture(captured, ["rollout"], graphs=["alti"])
