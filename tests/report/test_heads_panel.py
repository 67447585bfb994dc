"""The report's heads panel: each head's roles and importance, from a HeadReport or heads.json, in a real browser."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnflow import AttnflowError
from attnflow.heads import HeadReport, analyze_heads
from attnflow.report.data import ReportData, report_data
from attnflow.report.heads_panel import check_heads_panel, heads_panel
from attnflow.report.html import write_html
from attnflow.tasks import sva
from tests.helpers import random_attention
from tests.report.conftest import XSS_TOKENS, open_page, severe
from tests.report.test_html import embedded
from tests.tolerances import significant_bound


@pytest.fixture(scope="module")
def sva_heads() -> HeadReport:
    """Real roles: the bundled SVA model over generated sentences with the generator's arcs."""
    data = sva.generate(24, split="train", seed=1)
    return analyze_heads([(e.text, e.label) for e in data], "sva", "gold", dependencies=data)


def hand_report(labels: list[list[list[str]]] | None = None) -> dict:
    """heads.json-like data for 2 layers x 3 heads with known importance (and, optionally, hostile role labels)."""
    z = np.zeros((2, 3))
    report = HeadReport(np.array([[0.1, 0.9, 0.0], [0.5, 0.3, 0.2]]), z + 0.7, z, z, z, z,
                        previous_max=np.array([[0.95, 0.0, 0.0], [0.0, 0.0, 0.0]]), model_name="toy")
    data = report.to_dict()
    if labels is not None:
        data["roles"] = labels
    return data


def test_the_panel_carries_the_reports_roles_and_scores_and_survives_json(sva_heads, tmp_path):
    panel = heads_panel(sva_heads)
    assert panel["roles"] == sva_heads.role_lists() and panel["n_layers"] == 6 and panel["n_heads"] == 8
    assert any("agreement" in cell for row in panel["roles"] for cell in row)
    # the panel keeps 6 significant digits
    np.testing.assert_allclose(panel["importance"], sva_heads.importance, rtol=significant_bound(6))
    np.testing.assert_allclose(panel["relevance"], sva_heads.relevance, rtol=significant_bound(6))
    assert panel["target"] == "gold" and panel["source"] == "computed for this text"
    path = tmp_path / "heads.json"
    sva_heads.to_json(path)  # what `attnflow heads` writes
    from_file = heads_panel(path)
    assert {**from_file, "source": ""} == {**panel, "source": ""} and from_file["source"] == "heads.json"
    data = report_data(random_attention(np.random.default_rng(0), 6, 8, 4), methods="rollout")
    data.heads = panel
    again = ReportData.from_dict(json.loads(json.dumps(data.to_dict())))
    assert again.heads == panel


def test_bad_panels_get_one_line(tmp_path):
    with pytest.raises(AttnflowError, match="not the heads.json"):
        heads_panel({"format": "attnflow.explanation"})
    bad = hand_report()
    bad["scores"]["importance"] = [[0.1, 0.2]]
    with pytest.raises(AttnflowError, match="'importance' must be 2 layers x 3 heads"):
        heads_panel(bad)
    with pytest.raises(AttnflowError, match="'roles' must be 2 layers x 3 heads of lists of labels"):
        heads_panel(hand_report([[["a"], [1], []], [[], [], []]]))
    newer = {**hand_report(), "version": 999}
    with pytest.raises(AttnflowError, match="version 999"):
        heads_panel(newer)
    with pytest.raises(AttnflowError, match="expected numbers"):
        check_heads_panel({"n_layers": 1, "n_heads": 1, "roles": [[[]]], "confidence": [["high"]]})
    (tmp_path / "x.json").write_text("[1]")
    with pytest.raises(AttnflowError, match=r"x\.json: This is not the heads\.json"):
        heads_panel(tmp_path / "x.json")
    data = report_data(random_attention(np.random.default_rng(0), 3, 2, 4), methods="rollout")
    with pytest.raises(AttnflowError, match="2 layers and this report 3: the head analysis is of another model"):
        ReportData(**{**data.__dict__, "heads": heads_panel(hand_report())})


@pytest.mark.e2e
@pytest.mark.slow
def test_report_and_explain_add_the_panel_from_the_command_line(run_command, sva_heads, tmp_path, capsys):
    heads_json = tmp_path / "heads.json"
    sva_heads.to_json(heads_json)
    explained = tmp_path / "e.json"
    run_command("explain", "the keys to the cabinet", "--model", "sva", "--method", "rollout", "--json",
                str(explained))
    html = tmp_path / "r.html"
    run_command("report", str(explained), "--out", str(html), "--heads", str(heads_json))
    page = embedded(html.read_text(encoding="utf-8"))
    assert page["heads"]["roles"] == sva_heads.role_lists() and page["heads"]["source"] == "heads.json"
    with pytest.raises(AttnflowError, match="--heads adds a panel to the HTML report"):
        run_command("report", str(explained), "--png", str(tmp_path / "f.png"), "--heads", str(heads_json))
    with pytest.raises(AttnflowError, match="Cannot read heads file .*no.json.: it does not exist"):
        run_command("report", str(explained), "--out", str(tmp_path / "s.html"), "--heads", str(tmp_path / "no.json"))
    other = tmp_path / "minilm.json"
    run_command("explain", "the keys", "--method", "rollout", "--json", str(other))  # MiniLM: 6 layers too
    small = hand_report()
    (tmp_path / "small.json").write_text(json.dumps(small))
    with pytest.raises(AttnflowError, match="another model"):
        run_command("report", str(other), "--out", str(tmp_path / "m.html"), "--heads", str(tmp_path / "small.json"))
    assert not (tmp_path / "m.html").exists() and not (tmp_path / "s.html").exists()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.xdist_group("browser")
def test_the_panel_in_a_browser_shows_every_head_with_its_roles(browser, sva_heads, tmp_path):
    from selenium.webdriver.common.by import By

    data = report_data(random_attention(np.random.default_rng(1), 6, 8, 5), methods="rollout")
    data.heads = heads_panel(sva_heads)
    path = write_html(data, tmp_path / "heads.html")
    assert not severe(open_page(browser, path))
    assert browser.find_element(By.ID, "sec-heads").is_displayed()
    cells = browser.find_elements(By.CSS_SELECTOR, "#heads-grid td.head-cell")
    assert len(cells) == 48
    roles = sva_heads.role_lists()
    for cell in cells:
        layer, head = int(cell.get_attribute("data-layer")), int(cell.get_attribute("data-head"))
        shown = cell.find_element(By.CSS_SELECTOR, ".head-roles").get_attribute("textContent")
        assert shown == (", ".join(roles[layer - 1][head - 1]) or "\u2013")
    # the colour follows importance: the most important head is the darkest cell, and it is named first below
    best = np.unravel_index(int(np.argmax(sva_heads.importance)), sva_heads.importance.shape)
    darkest = browser.execute_script(
        "const cells = [...document.querySelectorAll('#heads-grid td.head-cell')];"
        "const lum = c => c.style.background.match(/\\d+/g).slice(0, 3).reduce((a, b) => a + Number(b), 0);"
        "const d = cells.reduce((a, b) => lum(b) < lum(a) ? b : a);"
        "return [Number(d.dataset.layer), Number(d.dataset.head)];"
    )
    assert darkest == [int(best[0]) + 1, int(best[1]) + 1]
    top = browser.find_element(By.ID, "heads-top").text
    assert top.startswith(f"Most important: L{best[0] + 1}H{best[1] + 1} (")
    caption = browser.find_element(By.ID, "heads-caption").text
    assert "model sva" in caption and "target gold" in caption and "24 examples" in caption and "0.90" in caption
    tip = cells[0].get_attribute("data-tip")
    assert tip.startswith("layer 1 \u00b7 head 1") and "rank " in tip and "relevance" in tip


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.xdist_group("browser")
def test_hostile_role_labels_and_names_are_shown_as_text(browser, tmp_path):
    from selenium.webdriver.common.by import By

    labels = [[XSS_TOKENS[0:2], XSS_TOKENS[2:4], XSS_TOKENS[4:6]], [XSS_TOKENS[6:8], XSS_TOKENS[8:10], []]]
    hostile = hand_report(labels)
    hostile["model"] = XSS_TOKENS[1]
    hostile["target"] = {"spec": XSS_TOKENS[0]}
    data = report_data(random_attention(np.random.default_rng(1), 2, 3, 4), methods="rollout")
    data.heads = heads_panel(hostile, origin=XSS_TOKENS[4])
    path = write_html(data, tmp_path / "xss-heads.html")
    assert not severe(open_page(browser, path))
    assert browser.execute_script("return typeof window.__xss") == "undefined"
    shown = [cell.get_attribute("textContent")
             for cell in browser.find_elements(By.CSS_SELECTOR, "#heads-grid td.head-cell .head-roles")]
    assert shown == [", ".join(cell) or "\u2013" for row in labels for cell in row]
    assert XSS_TOKENS[1] in browser.find_element(By.ID, "heads-caption").get_attribute("textContent")
    assert browser.execute_script("return document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert browser.execute_script("return document.scripts.length") == 2
    for element in browser.find_elements(By.CSS_SELECTOR, "#heads-grid td.head-cell")[:3]:
        browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('mousemove', {bubbles: true}))", element)
    assert browser.execute_script("return typeof window.__xss") == "undefined"
    assert not severe(browser.get_log("browser"))
