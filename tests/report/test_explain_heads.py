"""``attnflow explain --html FILE --heads``: the report's heads panel computed for the explained text, or read."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnflow import AttnflowError
from attnflow.capture import capture_attention
from attnflow.heads import analyze_heads
from tests.report.conftest import open_page, severe
from tests.report.test_html import embedded
from tests.tolerances import EPS64, model_float32_bound, significant_bound

TEXT = "the keys to the old cabinet are on the table"


def previous_max_by_hand(attentions: np.ndarray) -> np.ndarray:
    """Per head, the share of queries 1..n-1 whose largest attention weight is on the token just before them."""
    n = attentions.shape[-1]
    pointer = attentions.argmax(axis=-1)  # (L, H, n): ties go to the first key, as numpy's argmax
    return (pointer[..., 1:] == np.arange(n - 1)).mean(axis=-1)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """The report of TEXT on MiniLM with the computed panel, made by the command (once for the module)."""
    import typer

    from attnflow.commands.explain import explain

    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(explain)
    html = tmp_path_factory.mktemp("explain-heads") / "r.html"
    app(args=[TEXT, "--method", "rollout", "--html", str(html), "--heads"], standalone_mode=False)
    return html, embedded(html.read_text(encoding="utf-8"))["heads"]


def test_the_panel_is_the_head_analysis_of_the_explained_text(page, minilm):
    _, panel = page
    assert panel["n_layers"] == 6 and panel["n_heads"] == 12 and panel["model"] == "minilm"
    assert panel["source"].startswith("computed for this text") and panel["n_examples"] == 1
    reference = analyze_heads([TEXT], "minilm")
    # the panel keeps 6 significant digits; the reference is another
    # float32 run of the model and its backward pass
    bound = model_float32_bound(minilm.model.config, scale=float(np.max(reference.importance)), backward=True)
    np.testing.assert_allclose(panel["importance"], reference.importance, rtol=significant_bound(6), atol=bound)
    # each head's share of its layer: shares summing to 1, each moved by at most 5e-6 of itself
    relevance = np.array(panel["relevance"])
    np.testing.assert_allclose(relevance.sum(axis=1), 1.0, rtol=0,
                               atol=significant_bound(6) + relevance.shape[1] * EPS64)
    # positional roles against the maximum attention counted directly on a separate capture
    share = previous_max_by_hand(capture_attention(TEXT, "minilm").attentions)
    shown = np.array([["previous" in cell for cell in row] for row in panel["roles"]])
    np.testing.assert_array_equal(shown, share >= 0.9)
    assert shown[0, 2]  # layer 1 head 3, MiniLM's previous-token head (docs/heads.md)
    assert not any("rare" in cell for row in panel["roles"] for cell in row)  # one text: no word frequencies


def test_a_heads_file_is_shown_as_written_and_bad_combinations_are_one_line(run_command, tmp_path):
    report = analyze_heads(["the dog runs", "the keys to the cabinet are here"], "sva")
    heads_json = tmp_path / "heads.json"
    report.to_json(heads_json)
    html = tmp_path / "f.html"
    run_command("explain", "the dog runs", "--model", "sva", "--method", "rollout", "--html", str(html),
                "--heads-file", str(heads_json))
    panel = embedded(html.read_text(encoding="utf-8"))["heads"]
    assert panel["source"] == "heads.json" and panel["roles"] == report.role_lists()
    np.testing.assert_allclose(panel["importance"], report.importance, rtol=significant_bound(6))  # the panel rounds
    cases = [
        (["--heads"], "give --html FILE.html too"),
        (["--html", str(tmp_path / "a.html"), "--heads", "--heads-file", str(heads_json)], "not both"),
        (["--html", str(tmp_path / "b.html"), "--heads-file", str(tmp_path / "none.json")], "does not exist"),
    ]
    for args, message in cases:
        with pytest.raises(AttnflowError, match=message):
            run_command("explain", "the dog runs", "--model", "sva", *args)
    with pytest.raises(AttnflowError, match="for texts, not --image"):
        run_command("explain", "--image", str(heads_json), "--html", str(tmp_path / "c.html"), "--heads")
    minilm = tmp_path / "minilm.json"
    analyze_heads(["the dog runs"], "minilm").to_json(minilm)  # 6 layers too, but 12 heads
    with pytest.raises(AttnflowError, match="12 heads per layer and this report's model 8"):
        run_command("explain", "the dog runs", "--model", "sva", "--method", "rollout", "--html",
                    str(tmp_path / "d.html"), "--heads-file", str(minilm))
    assert json.loads(heads_json.read_text())["n_heads"] == 8
    assert not any((tmp_path / name).exists() for name in ("a.html", "b.html", "c.html", "d.html"))


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.xdist_group("browser")
def test_the_computed_panel_in_a_browser(browser, page):
    from selenium.webdriver.common.by import By

    path, panel = page
    assert not severe(open_page(browser, path))
    assert browser.find_element(By.ID, "sec-heads").is_displayed()
    cells = browser.find_elements(By.CSS_SELECTOR, "#heads-grid td.head-cell")
    assert len(cells) == 72
    for cell in cells:
        layer, head = int(cell.get_attribute("data-layer")), int(cell.get_attribute("data-head"))
        shown = cell.find_element(By.CSS_SELECTOR, ".head-roles").get_attribute("textContent")
        assert shown == (", ".join(panel["roles"][layer - 1][head - 1]) or "\u2013")
    caption = browser.find_element(By.ID, "heads-caption").text
    assert "model minilm" in caption and "1 example" in caption and "computed for this text" in caption
    best = np.unravel_index(int(np.argmax(panel["importance"])), (6, 12))
    assert browser.find_element(By.ID, "heads-top").text.startswith(f"Most important: L{best[0] + 1}H{best[1] + 1} (")
