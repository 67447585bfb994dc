"""The HTML report of an encoder-decoder explanation: its data, `explain --html`, and the page in a real browser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import attnflow
from attnflow.capture.seq2seq import capture_seq2seq
from attnflow.cli import main
from attnflow.methods.seq2seq import Seq2SeqGraph
from attnflow.report.data import ReportData
from attnflow.report.seq2seq import seq2seq_report_data
from tests.report.conftest import browser, open_page, severe  # noqa: F401  (the browser fixture)
from tests.tolerances import EPS64

SOURCE, TARGET = "7 2 9 4", "4 9 2 7"


@pytest.fixture(scope="module")
def report():
    captured = capture_seq2seq(SOURCE, "reverse", decoder_text=TARGET)
    e = attnflow.explain(SOURCE, "reverse", ["raw", "rollout", "flow"], decoder_text=TARGET, captured=captured,
                         every_output="auto")
    return e, captured, seq2seq_report_data(e, captured)


def test_report_data_holds_the_layered_graph_and_the_explanation(report):
    e, captured, data = report
    ns, nt = captured.n_source, captured.n_target
    graph = Seq2SeqGraph.from_attentions(captured.encoder, captured.decoder, captured.cross)
    np.testing.assert_array_equal(data.attention, graph.capacities)
    assert data.residual == 0.0 and data.source_length == ns and data.outputs == list(range(ns, ns + nt))
    assert data.layer_names == ["enc 1", "enc 2", "dec 1 self", "dec 1 cross", "dec 2 self", "dec 2 cross"]
    assert data.layer == 6 and data.output == e.output
    for method in e.methods:  # the explained output at the decoder layers: exactly the explanation's scores
        np.testing.assert_array_equal(data.output_scores(method)[[3, 5]], e.scores[method])
    # every other output: rollout through the graph, and the route the page draws is that rollout
    for t in range(nt):
        np.testing.assert_allclose(data.output_scores("rollout", ns + t)[5], data.route_shares(6, ns + t)[0],
                                   rtol=0, atol=6 * (ns + nt) * EPS64)  # float64 walks over 6 layers of ns + nt
    back = ReportData.from_dict(data.to_dict())
    assert back.source_length == ns and back.layer_names == data.layer_names


@pytest.mark.e2e
def test_explain_html_writes_the_report(capsys, tmp_path):
    path = tmp_path / "report.html"
    status = main(["explain", "--model", "reverse", SOURCE, "--decoder-text", TARGET, "--method", "rollout",
                   "--html", str(path)])
    out = capsys.readouterr()
    assert status == 0, out.err
    page = path.read_text()
    assert '"source_length":5' in page and "dec 2 cross" in page
    status = main(["explain", "--model", "reverse", SOURCE, "--decoder-text", TARGET, "--png", str(tmp_path / "a.png")])
    assert status != 0 and "--png is not available for encoder-decoder" in " ".join(capsys.readouterr().err.split())


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.xdist_group("browser")
def test_the_page_shows_both_sequences_and_the_cross_edges(browser, report, tmp_path):  # noqa: F811
    from attnflow.report.html import write_html

    e, captured, data = report
    path = Path(write_html(data, tmp_path / "seq2seq.html"))
    assert not severe(open_page(browser, path))
    seen = browser.execute_script(
        """
        return {
          rows: [...document.querySelectorAll('.hm-row-label')].slice(0, 6).map(e => e.textContent),
          targets: document.querySelectorAll('.sentence')[0].querySelectorAll('.tok.target').length,
          start: document.querySelectorAll('.sentence')[0].querySelector('.tok.target-start').textContent,
          cross: [...document.querySelectorAll('#graph line.cross-edge')].map(l => [l.getAttribute('x1'),
                  l.getAttribute('x2')]).length,
          sides: [...document.querySelectorAll('#graph text.layer-label')].map(t => t.textContent),
          caption: document.getElementById('tokens-caption').textContent,
        };
        """
    )
    assert seen["rows"] == ["dec 2 cross", "dec 2 self", "dec 1 cross", "dec 1 self", "enc 2", "enc 1"]
    assert seen["targets"] == captured.n_target and seen["start"] == "<pad>"
    # the page draws a cross edge for every cross-attention capacity at or above its threshold (0.08)
    graph = data.attention
    ns = captured.n_source
    expected = sum(int((graph[k, ns:, :ns] >= 0.08).sum()) for k in (3, 5))
    assert seen["cross"] == expected > 0
    assert "source" in seen["sides"] and "target" in seen["sides"] and "dec 1 cross" in seen["sides"]
    assert "The first 5 tokens are the source" in seen["caption"]
    assert "after dec 2 cross, graph layer 6 of 6" in seen["caption"]
    assert not severe(browser.get_log("browser"))
