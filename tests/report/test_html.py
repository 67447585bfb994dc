"""The HTML page: self-contained, offline, and every user-derived string escaped."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from attnflow import AttnflowError
from attnflow.report import html as html_module
from attnflow.report.data import ReportData, report_data, report_data_from_results
from attnflow.report.html import json_for_script, render_html, write_html
from tests.report.conftest import EVALUATION_RESULTS, XSS_MODEL, XSS_TEXT, XSS_TOKENS


class PageParser(HTMLParser):
    """Every element and attribute of a page, and the text of its script blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.title = ""
        self._in: str | None = None
        self._script_attrs: dict[str, str | None] = {}

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "title"):
            self._in, self._script_attrs = tag, dict(attrs)
            if tag == "script":
                self.scripts.append((self._script_attrs, ""))

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._in == "title":
            self.title += data


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def embedded(page: str) -> dict:
    parser = parse(page)
    (block,) = [text for attrs, text in parser.scripts if attrs.get("type") == "application/json"]
    return json.loads(block)


@pytest.fixture
def benign_page(toy_data) -> str:
    return render_html(toy_data)


def test_page_is_self_contained(benign_page):
    parser = parse(benign_page)
    assert not re.search(r"https?://", benign_page), "the page must not reference anything on the network"
    for tag, attrs in parser.tags:
        assert "src" not in attrs and "srcset" not in attrs, f"<{tag}> loads something: {attrs}"
        assert tag not in ("link", "iframe", "object", "embed", "img", "base"), f"unexpected <{tag}>"
        assert "href" not in attrs or str(attrs["href"]).startswith("#")
    assert "@import" not in benign_page and "url(" not in benign_page
    assert len(parser.scripts) == 2 and all("src" not in attrs for attrs, _ in parser.scripts)


def test_content_security_policy_allows_only_the_page_script(benign_page):
    parser = parse(benign_page)
    (csp,) = [a["content"] for t, a in parser.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    (code,) = [text for attrs, text in parser.scripts if "type" not in attrs]
    digest = base64.b64encode(hashlib.sha256(code.encode("utf-8")).digest()).decode()
    assert f"'sha256-{digest}'" in csp


def test_embedded_data_round_trips(toy_data, benign_page):
    data = embedded(benign_page)
    assert data["tokens"] == toy_data.tokens and data["outputs"] == [0, 1, 2, 3, 4, 5]
    assert len(data["scores"]["flow"]) == 4 and len(data["attention"][0]) == 6
    assert data["summaries"]["rollout"].startswith("attention rollout")
    assert data["generator"].startswith("attnflow ")


def test_hostile_tokens_stay_text(xss_data):
    page = render_html(xss_data)
    benign = render_html(
        report_data(xss_data.attention, [f"t{i}" for i in range(xss_data.n_tokens)], methods=("raw", "rollout", "flow"))
    )
    hostile, reference = parse(page), parse(benign)
    # exactly the template's elements: nothing injected, no event handler attributes anywhere
    assert [tag for tag, _ in hostile.tags] == [tag for tag, _ in reference.tags]
    for tag, attrs in hostile.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
    assert len(hostile.scripts) == 2
    # the data block holds no markup and gives the tokens back unchanged
    (block,) = [text for attrs, text in hostile.scripts if attrs.get("type") == "application/json"]
    assert "<" not in block and ">" not in block and "&" not in block
    data = json.loads(block)
    assert data["tokens"] == XSS_TOKENS and data["model"] == XSS_MODEL and data["text"] == XSS_TEXT
    # outside the data block the raw strings never appear, only escaped
    outside = page.replace(block, "")
    for token in [*XSS_TOKENS[:6], XSS_MODEL, XSS_TEXT]:
        assert token not in outside
    assert "&lt;/title&gt;&lt;script&gt;" in outside  # the title, escaped
    assert hostile.title.startswith("“</title><script>")  # ... and read back as text
    # a token that looks like a template placeholder is not expanded
    assert "{{script}}" in data["tokens"]


def test_title_can_be_given_and_is_escaped(toy_data):
    page = render_html(toy_data, title="<b>mine</b>")
    assert "<title>&lt;b&gt;mine&lt;/b&gt; · attnflow report</title>" in page
    assert "<b>mine</b>" not in page


def test_json_for_script_escapes_everything_that_could_end_the_block():
    text = json_for_script({"a": "</script><!--<script>&\u2028\u2029"})
    assert not set("<>&") & set(text) and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!--<script>&\u2028\u2029"}


def test_evaluation_only_page():
    d = report_data_from_results(EVALUATION_RESULTS)
    page = render_html(d)
    data = embedded(page)
    assert data["evaluation"]["correlation"]["blankout"]["rollout"][1] == [0.71, None]
    assert data["tokens"] == [] and "Evaluation of minilm" in page


def test_nan_scores_are_null_in_the_page():
    d = ReportData(tokens=["a", "b"], scores={"flow": np.array([[[np.nan, np.nan], [0.3, 0.7]]])}, outputs=[0, 1])
    assert embedded(render_html(d))["scores"]["flow"] == [[[None, None], [0.3, 0.7]]]


def test_write_is_atomic(tmp_path, toy_data, monkeypatch):
    target = tmp_path / "report.html"
    target.write_text("old")

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(AttnflowError, match="No space left"):
        write_html(toy_data, target)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    monkeypatch.undo()

    def broken(*args, **kwargs):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(html_module, "render_html", broken)
    with pytest.raises(RuntimeError):
        write_html(toy_data, target)
    assert target.read_text() == "old"


def test_write_errors_are_clear(tmp_path, toy_data):
    with pytest.raises(AttnflowError, match="does not exist"):
        write_html(toy_data, tmp_path / "missing" / "report.html")
    with pytest.raises(AttnflowError, match="is a folder"):
        write_html(toy_data, tmp_path)
    path = write_html(toy_data, tmp_path / "report.html")
    assert isinstance(path, Path) and path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_browser_tests_fail_without_a_browser_under_ci(monkeypatch):
    from tests.report import conftest

    monkeypatch.setattr(conftest, "_find", lambda names, extra: None)
    assert conftest.find_browser() == (None, None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set, so the browser tests must run"):
        conftest.no_browser("no headless browser")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no headless browser"):
        conftest.no_browser("no headless browser")
