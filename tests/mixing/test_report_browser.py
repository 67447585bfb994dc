"""The report over context-mixing graphs in a real browser: each graph's scores shown, its graph view switching."""

from __future__ import annotations

import numpy as np
import pytest

import attnflow
from attnflow.capture import capture_attention
from attnflow.report.graphs import report_with_graphs
from attnflow.report.html import write_html
from tests.report.conftest import browser, open_page, severe  # noqa: F401  (the browser fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("browser")]  # one chromium per run

TEXT = "The keys to the cabinet are on the table."


def test_the_page_shows_each_graphs_scores_and_its_graph_view_switches(browser, minilm, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    captured = capture_attention(TEXT, minilm)
    graphs, methods = ["attention", "alti"], ["rollout", "flow"]
    explained = attnflow.explain(TEXT, minilm, methods=methods, graph=graphs, captured=captured, every_output="auto")
    data = report_with_graphs(captured, graphs, methods, explained)
    path = tmp_path / "report.html"
    write_html(data, path)
    assert not severe(open_page(browser, path))

    names = browser.execute_script(
        "return [...document.querySelectorAll('.method-name')].map(e => e.textContent.trim())"
    )
    for method in ("rollout", "flow", "alti/rollout", "alti/flow"):
        assert method in names
    chips = browser.execute_script(
        "return [...document.querySelectorAll('.sentence .tok')].map(c => c.getAttribute('data-tip'))"
    )
    top = data.n_layers
    for method in ("alti/rollout", "alti/flow"):
        shown = [tip for tip in chips if tip.startswith(f"{method} \u00b7 ")]
        assert len(shown) == data.n_tokens
        expected = np.round(data.output_scores(method)[top - 1], 6)  # what the page receives
        np.testing.assert_allclose(explained.scores[method][top - 1], data.output_scores(method)[top - 1])
        for j, tip in enumerate(shown):
            assert f"#{j} {data.tokens[j]}: {expected[j]:.4f}" in tip

    # the graph view: pick alti's flow as a person would; its bars carry alti's flow scores
    Select(browser.find_element(By.ID, "graph-method")).select_by_value("alti/flow")
    assert browser.execute_script("return window.attnflowReport.state().graphMethod") == "alti/flow"
    bars = browser.execute_script(
        "return [...document.querySelectorAll('#graph .labels rect')].map(r => r.getAttribute('data-tip'))"
    )
    assert len(bars) == data.n_tokens and all(tip.startswith("alti/flow score of #") for tip in bars)
    assert not severe(browser.get_log("browser"))
