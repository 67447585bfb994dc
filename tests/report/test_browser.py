"""The report in a real headless browser: no console errors, the controls change the view, nothing injected runs.

Needs Debian's chromium and chromedriver (``scripts/install-browser.sh``, run by the
set-up) and selenium; without them every test here is skipped with the reason, or
fails when ``CI`` is set. Screenshots go to pytest's temporary folder, or to
``$ATTNFLOW_SCREENSHOT_DIR``.

The page receives the library's numbers rounded to 6 decimals and shows them as
they are, so what it shows is compared exactly with ``np.round(library, 6)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import attnflow
from attnflow.graph import add_residual
from attnflow.report.data import report_data_from_capture, report_data_from_results
from attnflow.report.html import write_html
from tests.report.conftest import REPRODUCE_RESULTS, XSS_TOKENS, open_page, severe

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.xdist_group("browser")]  # one chromium per run


@pytest.fixture(scope="module")
def minilm_report(tmp_path_factory) -> tuple[Path, object]:
    from attnflow.capture import capture_attention

    captured = capture_attention("The keys to the cabinet are on the table.")
    data = report_data_from_capture(captured, methods=("raw", "rollout", "flow"))
    path = tmp_path_factory.mktemp("browser") / "report.html"
    write_html(data, path)
    data.library_rollout = attnflow.rollout(captured.attentions)  # the library itself, beside the report's data
    data.library_attentions = captured.attentions
    return path, data


def page_precision(values: np.ndarray) -> np.ndarray:
    """The library's numbers as the page receives them: rounded to 6 decimals (ReportData.to_dict)."""
    return np.round(values, 6)


def input_node_tips(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll('#graph circle[data-layer=\"0\"]')].map(c => c.getAttribute('data-tip'))"
    )


def screenshot(driver, name: str, tmp_path: Path) -> Path:
    """A full-page screenshot, saved where a person can look at it."""
    folder = Path(os.environ.get("ATTNFLOW_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1360, min(int(height) + 40, 6000))
    path = folder / name
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1360, 1000)
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 20_000
    return path


def view(driver) -> dict:
    """What the page shows now: its state and a few things drawn from it."""
    return driver.execute_script(
        """
        const svg = document.getElementById('graph');
        return {
          state: window.attnflowReport.state(),
          body: [document.body.dataset.layer, document.body.dataset.output],
          graph: [svg.dataset.layer, svg.dataset.output, svg.querySelectorAll('.route line').length],
          caption: document.getElementById('tokens-caption').textContent,
          currentRow: document.querySelector('.hm-row-label.current').textContent,
          firstChip: document.querySelector('.sentence .tok').style.background,
          shares: window.attnflowReport.inputShares(),
        };
        """
    )


def test_layer_and_output_controls_change_the_view(browser, minilm_report, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    path, data = minilm_report
    assert not severe(open_page(browser, path))
    before = view(browser)
    assert before["state"] == {"layer": 6, "output": 0, "graphMethod": "flow", "cutSource": -1}
    assert before["body"] == ["6", "0"] and before["graph"][:2] == ["6", "0"]
    # the input shares the graph shows are the library's rollout, exactly, at the page's precision
    assert before["shares"] == page_precision(data.library_rollout[5, 0]).tolist()
    assert before["shares"] == page_precision(data.output_scores("rollout", 0)[5]).tolist()
    screenshot(browser, "report-initial.png", tmp_path)

    # the layer: a real key press on the slider
    slider = browser.find_element(By.ID, "layer-range")
    slider.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    after_layer = view(browser)
    assert after_layer["state"]["layer"] == 4 and after_layer["graph"][0] == "4"
    assert after_layer["currentRow"] == "layer 4" and "after layer 4 of 6" in after_layer["caption"]
    assert after_layer["firstChip"] != before["firstChip"] or after_layer["shares"] != before["shares"]
    assert after_layer["shares"] == page_precision(data.library_rollout[3, 0]).tolist()
    tips = input_node_tips(browser)
    assert len(tips) == data.n_tokens
    for j, tip in enumerate(tips):  # and so are the numbers it prints
        assert f"share of the output (rollout): {page_precision(data.library_rollout[3, 0, j]):.4f}" in tip

    # the output token: the select box, as a person would
    Select(browser.find_element(By.ID, "output-select")).select_by_index(6)
    after_output = view(browser)
    token = data.tokens[6]
    assert after_output["state"]["output"] == 6 and after_output["graph"][1] == "6"
    assert f"token 6 \u201c{token}\u201d" in after_output["caption"]
    assert after_output["shares"] == page_precision(data.library_rollout[3, 6]).tolist()
    flow_bars = browser.execute_script(
        "return [...document.querySelectorAll('#graph .labels rect')].map(r => r.getAttribute('data-tip'))"
    )
    assert len(flow_bars) == data.n_tokens and all("flow score" in tip for tip in flow_bars)

    # clicking a node of the graph explains that token at that layer
    node = browser.find_element(By.CSS_SELECTOR, '#graph circle[data-layer="2"][data-position="2"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", node)
    node.click()
    assert view(browser)["state"] == {"layer": 2, "output": 2, "graphMethod": "flow", "cutSource": -1}
    assert not severe(browser.get_log("browser"))
    shot = screenshot(browser, "report-changed.png", tmp_path)
    assert shot.exists()


def expected_cut_edges(data, layer: int, source: int) -> int:
    """The edges leaving ``source``'s cut side, counted here from the library's cut and the page's capacities."""
    from attnflow.methods.flow import solve_flow

    solution = solve_flow(data.library_attentions, outputs=[data.output], keep_cuts=True)
    side = solution.source_sides(layer, data.output)[source]  # (layer, n): node layers 0..layer-1
    capacities = add_residual(page_precision(data.attention), data.residual) > 0
    edges = sum(int((side[k][None, :] & ~side[k + 1][:, None] & capacities[k]).sum()) for k in range(layer - 1))
    return edges + int((side[layer - 1] & capacities[layer - 1, data.output]).sum())


def test_a_flow_cut_is_drawn_for_the_token_whose_bar_is_clicked(browser, minilm_report):
    from selenium.webdriver.common.by import By

    path, data = minilm_report
    assert not severe(open_page(browser, path))
    kinds = data.flow_cuts["layers"][5]["kinds"]
    assert len(kinds) == data.n_tokens and set(kinds) <= {"source", "output", "inside"}
    for kind in dict.fromkeys(kinds):  # one token of every kind the top layer has
        j = kinds.index(kind)
        bar = browser.find_element(By.CSS_SELECTOR, f'#graph .score-bar[data-position="{j}"]')
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", bar)
        bar.click()
        drawn = browser.execute_script(
            "return [window.attnflowReport.state().cutSource, document.querySelectorAll('#graph .cut line').length, "
            "document.getElementById('graph-caption').textContent]"
        )
        assert drawn[0] == j
        assert drawn[1] == expected_cut_edges(data, 6, j) > 0
        assert f"minimum cut proving the flow of #{j}" in drawn[2] and f"{kind}" in drawn[2]
    browser.find_element(By.CSS_SELECTOR, f'#graph .score-bar[data-position="{j}"]').click()  # again: it goes away
    assert browser.execute_script("return document.querySelectorAll('#graph .cut line').length") == 0
    browser.execute_script("window.attnflowReport.setOutputToken(3)")
    caption = browser.execute_script("return document.getElementById('graph-caption').textContent")
    assert "Flow cuts are in this report for output token 0" in caption or "for token 0" in caption
    assert not severe(browser.get_log("browser"))


def test_hover_shows_the_value(browser, minilm_report):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    path, data = minilm_report
    open_page(browser, path)
    cell = browser.find_elements(By.CSS_SELECTOR, '.heatmap-card[data-method="rollout"] .hm-cell')[2]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", cell)
    ActionChains(browser).move_to_element(cell).perform()
    tip = browser.find_element(By.ID, "tooltip")
    assert tip.is_displayed()
    value = data.output_scores("rollout", 0)[5][2]  # the top row is layer 6; the third cell is token 2
    assert f"{value:.4f}" in tip.text and "layer 6" in tip.text


def test_hostile_tokens_do_not_run(browser, xss_data, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    path = write_html(xss_data, tmp_path / "xss.html")
    entries = open_page(browser, path)
    assert not severe(entries), entries
    assert browser.execute_script("return typeof window.__xss") == "undefined"
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018  (reading it is the check)
    chips = [chip.get_attribute("textContent") for chip in browser.find_elements(By.CSS_SELECTOR, ".sentence")[0]
             .find_elements(By.CSS_SELECTOR, ".tok")]
    assert chips == XSS_TOKENS  # shown as text, exactly
    assert browser.execute_script("return document.querySelectorAll('img, iframe, object, embed').length") == 0
    assert browser.execute_script("return document.scripts.length") == 2
    assert XSS_TOKENS[0] in browser.title or browser.title.startswith("\u201c</title>")
    # interact, so every renderer runs with the hostile tokens too
    browser.execute_script("window.attnflowReport.setOutputToken(4); window.attnflowReport.setLayer(1)")
    for element in browser.find_elements(By.CSS_SELECTOR, "#graph circle")[:3]:
        browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('mousemove', {bubbles: true}))", element)
    assert browser.execute_script("return typeof window.__xss") == "undefined"
    assert not severe(browser.get_log("browser"))


def test_evaluation_page(browser, tmp_path):
    from selenium.webdriver.common.by import By

    path = write_html(report_data_from_results(json.loads(json.dumps(REPRODUCE_RESULTS))), tmp_path / "eval.html")
    assert not severe(open_page(browser, path))
    assert browser.find_element(By.ID, "sec-eval").is_displayed()
    assert not browser.find_element(By.ID, "sec-graph").is_displayed()
    cards = browser.find_elements(By.CSS_SELECTOR, ".eval-card")
    assert [c.get_attribute("data-truth") for c in cards] == ["blankout", "gradient"]
    assert len(cards[0].find_elements(By.CSS_SELECTOR, "svg polyline")) == 2
    assert len(cards[0].find_elements(By.CSS_SELECTOR, "svg path")) == 2  # the paper's values, one per method
    assert "The paper, layer 2" in cards[0].text and "accuracy 0.97 (paper 0.96)" in browser.page_source
    assert "0.71" in cards[0].text and "AOPC" in browser.find_element(By.ID, "eval-faith").text
    screenshot(browser, "report-evaluation.png", tmp_path)


def test_a_route_left_out_is_said_not_drawn(browser, tmp_path, monkeypatch):
    from attnflow.report import data as report_module
    from tests.helpers import random_attention

    monkeypatch.setattr(report_module, "ROUTE_ALL_OUTPUTS_BUDGET", 10.0)  # as for a long input
    data = report_module.report_data(random_attention(np.random.default_rng(2), 3, 2, 6), methods="rollout")
    path = write_html(data, tmp_path / "chosen.html")
    assert not severe(open_page(browser, path))
    assert view(browser)["shares"] == page_precision(data.output_scores("rollout", 0)[2]).tolist()
    browser.execute_script("window.attnflowReport.setOutputToken(3)")
    after = view(browser)
    assert after["shares"] is None and after["graph"][2] == 0  # no route drawn, nothing made up
    assert "not in this report" in browser.find_element("id", "graph-caption").text
    assert not severe(browser.get_log("browser"))
