"""`attnflow explain --html/--png/--svg` and `attnflow report`, end to end on the bundled model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnflow import AttnflowError, Explanation
from tests.helpers import patch_everywhere
from tests.report.conftest import EVALUATION_RESULTS, XSS_TOKENS
from tests.report.test_html import embedded, parse
from tests.tolerances import EPS64, rounded_bound

pytestmark = pytest.mark.e2e

TEXT = "The keys to the cabinet are on the table."


def test_explain_writes_report_figures_and_json(run_command, tmp_path, capsys):
    html, png, svg, data = tmp_path / "r.html", tmp_path / "f.png", tmp_path / "f.svg", tmp_path / "e.json"
    run_command("explain", TEXT, "--method", "raw", "--method", "rollout", "--method", "flow",
                "--html", str(html), "--png", str(png), "--svg", str(svg), "--json", str(data))
    out = capsys.readouterr().out
    assert "Scores for token 0 ([CLS])" in out  # the table, as before
    for name in ("r.html", "f-heatmap.png", "f-graph.png", "f-heatmap.svg", "f-graph.svg", "e.json"):
        assert (tmp_path / name).stat().st_size > 1000, name
        if name != "e.json":  # explain's own "wrote" line for --json may wrap in a narrow terminal
            assert f"wrote {tmp_path / name}" in out
    page = embedded(html.read_text(encoding="utf-8"))
    n = len(page["tokens"])
    assert page["model"] == "minilm" and page["outputs"] == list(range(n)) and page["output"] == 0
    assert len(page["scores"]["flow"]) == 6 and all(len(layer) == n for layer in page["scores"]["flow"])
    assert page["scores"]["flow"][5][3] is not None  # flow for every output, not only [CLS]
    saved = json.loads(data.read_text())
    np.testing.assert_allclose(np.array(page["scores"]["rollout"])[:, 0, :], saved["scores"]["rollout"], rtol=0,
                               atol=rounded_bound(6))  # the page rounds to 6 decimals


def test_explain_report_follows_output_and_layer(run_command, tmp_path):
    html = tmp_path / "r.html"
    run_command("explain", TEXT, "--method", "rollout", "--output", "mean", "--layer", "3", "--html", str(html))
    page = embedded(html.read_text(encoding="utf-8"))
    assert page["output"] == "mean" and page["outputs"][-1] == "mean" and page["layer"] == 3


def test_explain_checks_report_paths_before_any_work(run_command, tmp_path):
    with pytest.raises(AttnflowError, match="--png needs a file name ending in .png"):
        run_command("explain", TEXT, "--png", str(tmp_path / "f.svg"))
    with pytest.raises(AttnflowError, match="does not exist"):
        run_command("explain", TEXT, "--html", str(tmp_path / "missing" / "r.html"))
    assert list(tmp_path.iterdir()) == []


def test_report_from_explain_json(run_command, tmp_path, capsys):
    data, html = tmp_path / "e.json", tmp_path / "r.html"
    run_command("explain", TEXT, "--json", str(data))
    run_command("report", str(data), "-o", str(html), "--png", str(tmp_path / "f.png"), "--layer", "2")
    assert f"wrote {html}" in capsys.readouterr().out
    page = embedded(html.read_text(encoding="utf-8"))
    assert page["outputs"] == [0] and page["attention"] is None and page["layer"] == 2
    assert "one output" in page["notes"][0]
    assert (tmp_path / "f-heatmap.png").exists() and not (tmp_path / "f-graph.png").exists()


def test_report_from_evaluation_results(run_command, tmp_path):
    results, html = tmp_path / "results.json", tmp_path / "r.html"
    results.write_text(json.dumps(EVALUATION_RESULTS))
    run_command("report", str(results), "-o", str(html))
    page = embedded(html.read_text(encoding="utf-8"))
    assert page["evaluation"]["faithfulness"]["layer"] == 2 and page["tokens"] == []
    with pytest.raises(AttnflowError, match="Figures .* show token scores"):
        run_command("report", str(results), "-o", str(tmp_path / "other.html"), "--png", str(tmp_path / "f.png"))
    assert not (tmp_path / "other.html").exists()  # nothing written when any part fails


def test_report_escapes_hostile_tokens(run_command, tmp_path):
    e = Explanation(tokens=XSS_TOKENS, scores={"raw": np.full((2, len(XSS_TOKENS)), 0.1)}, output=1,
                    model_name="<script>window.__xss = 8</script>", text=XSS_TOKENS[1])
    data, html = tmp_path / "e.json", tmp_path / "r.html"
    e.to_json(data)
    run_command("report", str(data), "-o", str(html))
    page = html.read_text(encoding="utf-8")
    parser = parse(page)
    assert not any(tag in ("img", "svg") and "onerror" in attrs or "onload" in attrs for tag, attrs in parser.tags)
    assert not any(name.startswith("on") for _, attrs in parser.tags for name in attrs)
    assert len(parser.scripts) == 2 and "<script>window" not in page
    assert embedded(page)["tokens"] == XSS_TOKENS


@pytest.mark.parametrize(
    "args, message",
    [
        (["report", "{tmp}/nope.json", "-o", "{tmp}/r.html"], "does not exist"),
        (["report", "{tmp}/text.json", "-o", "{tmp}/r.html"], "not valid JSON"),
        (["report", "{tmp}/other.json", "-o", "{tmp}/r.html"], "not an attnflow results file"),
        (["report", "{tmp}/other.json"], "Nothing to write"),
        (["report", "{tmp}/other.json", "--svg", "{tmp}/f.png"], "--svg needs a file name ending in .svg"),
        (["report", "{tmp}/other.json", "-o", "{tmp}"], "is a folder"),
    ],
)
def test_report_bad_input(run_command, tmp_path, args, message):
    (tmp_path / "text.json").write_text("hello")
    (tmp_path / "other.json").write_text('{"loss": 0.1}')
    with pytest.raises(AttnflowError, match=message):
        run_command(*[a.format(tmp=tmp_path) for a in args])
    assert not (tmp_path / "r.html").exists()


def test_cli_main_runs_report(tmp_path, capsys):
    from attnflow.cli import main

    results = tmp_path / "results.json"
    results.write_text(json.dumps(EVALUATION_RESULTS))
    assert main(["report", str(results), "-o", str(tmp_path / "r.html")]) == 0
    assert main(["report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_decoder_report_explains_the_last_token(run_command, tmp_path, tiny_gpt2_path):
    html = tmp_path / "r.html"
    run_command("explain", "the cat sat on the mat", "--model", str(tiny_gpt2_path), "--method", "rollout",
                "--method", "flow", "--html", str(html))
    page = embedded(html.read_text(encoding="utf-8"))
    n = len(page["tokens"])
    assert page["is_causal"] and page["output"] == n - 1 and page["n_layers"] == 2
    attention = np.array(page["attention"])
    assert np.allclose(np.triu(attention, k=1), 0.0)  # causal: nothing attends to later tokens


def test_gradient_methods_are_shown_for_the_explained_output(run_command, tmp_path):
    html = tmp_path / "r.html"
    run_command("explain", TEXT, "--method", "grad-rollout", "--method", "rollout", "--html", str(html))
    page = embedded(html.read_text(encoding="utf-8"))
    scores = page["scores"]["grad-rollout"]
    assert all(v is not None for v in scores[5][0]) and all(v is None for v in scores[5][3])
    assert any("computed for output token 0 only" in note for note in page["notes"])
    assert page["scores"]["rollout"][5][3][0] is not None


def test_explain_html_captures_once_and_computes_each_output_once(run_command, tmp_path, monkeypatch):
    import attnflow.capture
    import attnflow.capture.plan
    from attnflow.methods import flow

    captures, flow_outputs = [], []
    real_capture = attnflow.capture.capture_attention
    patch_everywhere(monkeypatch, attnflow.capture, "capture_attention",
                     lambda *a, **k: captures.append(a) or real_capture(*a, **k))
    real_solve = flow.solve_flow

    def counted(attentions, **options):
        flow_outputs.extend(options["outputs"])
        return real_solve(attentions, **options)

    patch_everywhere(monkeypatch, flow, "solve_flow", counted)
    html = tmp_path / "r.html"
    run_command("explain", TEXT, "--method", "flow", "--method", "rollout", "--html", str(html))
    page = embedded(html.read_text(encoding="utf-8"))
    n = len(page["tokens"])
    assert len(captures) == 1  # explain's capture is the report's
    assert sorted(flow_outputs) == list(range(n))  # each output's flow solved once (explain reads its own from it)
    assert all(v is not None for v in page["scores"]["flow"][5][n - 1])


def test_explain_takes_a_capture_of_its_own_text_only():
    import attnflow
    from attnflow.capture import capture_attention

    captured = capture_attention(TEXT)
    e = attnflow.explain(TEXT, methods="rollout", captured=captured)
    # one output's rollout multiplies rows, not matrices (methods.rollout.output_walk): equal up to the order of sums
    L, n = captured.attentions.shape[0], captured.attentions.shape[-1]  # float64: L layers of n-term row products
    np.testing.assert_allclose(e.scores["rollout"], attnflow.rollout(captured.attentions)[:, 0, :], rtol=0,
                               atol=L * n * EPS64)
    with pytest.raises(AttnflowError, match="must be of the text being explained"):
        attnflow.explain("Another text.", methods="rollout", captured=captured)
