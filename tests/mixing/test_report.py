"""The report over context-mixing graphs: each graph's methods are entries ``GRAPH/METHOD`` for every output."""

from __future__ import annotations

import json
import re

import numpy as np

import attnflow
from attnflow.capture import capture_attention
from attnflow.cli import main
from attnflow.mixing import graph_matrices
from attnflow.report.graphs import DRAWN_NOTE, report_with_graphs
from tests.tolerances import EPS64

TEXT = "The keys are on the table."


def test_report_scores_over_a_graph_for_every_output(minilm):
    captured = capture_attention(TEXT, minilm)
    explained = attnflow.explain(TEXT, minilm, methods=["rollout"], graph=["attention", "norm"], captured=captured,
                                 every_output="auto")
    data = report_with_graphs(captured, ["attention", "norm"], ["rollout"], explained)
    assert data.methods == ["rollout", "norm/rollout"] and DRAWN_NOTE in data.notes
    matrices = graph_matrices("norm", minilm, captured.input_ids)
    product = np.eye(matrices.shape[-1])
    n = matrices.shape[-1]
    for layer, matrix in enumerate(matrices):  # rollout over the graph: the plain product, every output row
        product = matrix @ product
        # float64 products of row-stochastic n x n matrices, layer + 1 of them
        np.testing.assert_allclose(data.scores["norm/rollout"][layer], product, rtol=0, atol=(layer + 1) * n * EPS64)
    np.testing.assert_array_equal(data.output_scores("rollout"), explained.scores["rollout"])
    alone = report_with_graphs(captured, ["norm"], ["rollout"],
                               attnflow.explain(TEXT, minilm, methods=["rollout"], graph="norm", every_output="auto"))
    assert alone.methods == ["norm/rollout"] and alone.flow_cuts is None


def test_cli_html_over_a_graph_names_it(capsys, tmp_path):
    page = tmp_path / "report.html"
    status = main(["explain", TEXT, "--graph", "alti", "--method", "rollout", "--html", str(page)])
    err = capsys.readouterr().err
    assert status == 0, err
    text = page.read_text()
    payload = json.loads(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S).group(1))
    assert list(payload["scores"]) == ["alti/rollout"]
    assert "here over the alti graph" in payload["summaries"]["alti/rollout"]
