"""Attribution baselines in the HTML report of ``attnflow explain --html``: beside flow in the method comparison."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from attnflow.cli import main
from tests.report.conftest import browser, open_page, severe  # noqa: F401  (the session's headless chromium)

TEXT = "The <b>keys</b> to the cabinet & more."


def test_the_report_shows_the_baselines_for_the_explained_output_beside_flow(capsys, tmp_path):
    page, saved = tmp_path / "r.html", tmp_path / "r.json"
    status = main(["explain", TEXT, "--method", "flow", "--method", "saliency", "--method", "occlusion",
                   "--html", str(page), "--json", str(saved)])
    assert status == 0, capsys.readouterr().err
    html = page.read_text()
    block = re.search(r'<script type="application/json" id="[^"]*">(.*?)</script>', html, re.S).group(1)
    assert "<" not in block and ">" not in block and "&" not in block  # the data block holds no markup
    data, explained = json.loads(block), json.loads(saved.read_text())
    assert data["tokens"] == explained["tokens"] and "<" in data["tokens"] and "&" in data["tokens"]
    assert data["text"] == TEXT and TEXT not in html.replace(block, "")  # outside the block only escaped
    assert {"flow", "saliency", "occlusion"} <= set(data["scores"])
    assert data["input_methods"] == ["saliency", "occlusion"]  # headed "(input)" in the comparison
    assert data["summaries"]["saliency"].endswith("(layer input: the same at every layer)")
    k = data["outputs"].index(explained["output"])
    for name in ("saliency", "occlusion"):
        shown = np.asarray(data["scores"][name], dtype=float)  # (L, K, n), null where not computed
        assert shown.shape == (6, len(data["outputs"]), len(data["tokens"]))
        # the page rounds what it shows to 6 decimals (report/data.py's _rounded): half a unit of the 6th
        np.testing.assert_allclose(shown[:, k], explained["scores"][name], rtol=0, atol=0.5e-6)
        others = np.delete(shown, k, axis=1)
        assert np.isnan(others).all()  # computed for the explained output only, and the page says so
        assert any(name in note and "computed for output token 0 only" in note for note in data["notes"])
    flow = np.asarray(data["scores"]["flow"], dtype=float)
    assert not np.isnan(flow).any()  # flow, from attention alone, for every output of this short text


def test_the_comparison_heads_a_baseline_input_and_shows_its_values(browser, tmp_path, capsys):  # noqa: F811
    page, saved = tmp_path / "b.html", tmp_path / "b.json"
    status = main(["explain", "The cat sat.", "--method", "rollout", "--method", "saliency", "--html", str(page),
                   "--json", str(saved)])
    assert status == 0, capsys.readouterr().err
    assert severe(open_page(browser, page)) == []
    heads = browser.execute_script("return [...document.querySelectorAll('#compare thead th')].map(t => t.textContent)")
    assert [h.strip() for h in heads[2:]] == ["rollout", "saliency (input)"]
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#compare tbody tr')].map(r => r.querySelectorAll('td.num')[1]"
        ".textContent)"
    )
    wanted = json.loads(saved.read_text())["scores"]["saliency"][-1]
    assert [float(c) for c in cells] == pytest.approx(wanted, abs=0.5e-3)  # shown to 3 decimals


def test_over_a_context_mixing_graph_a_baseline_keeps_its_own_name(capsys, tmp_path):
    """An attribution method scores the input, in no graph: never ``alti/saliency``, and its note has no graph."""
    page = tmp_path / "g.html"
    status = main(["explain", "The cat sat.", "--graph", "alti", "--method", "rollout", "--method", "saliency",
                   "--html", str(page)])
    assert status == 0, capsys.readouterr().err
    block = re.search(r'<script type="application/json" id="[^"]*">(.*?)</script>', page.read_text(), re.S).group(1)
    data = json.loads(block)
    assert set(data["scores"]) == {"alti/rollout", "saliency"} and data["input_methods"] == ["saliency"]
    assert any(note.startswith("Method saliency scores the input") for note in data["notes"])
    assert not any("graph: Method saliency" in note for note in data["notes"])
