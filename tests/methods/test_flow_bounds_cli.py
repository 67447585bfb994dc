"""`attnflow explain --flow-tolerance / --flow-seconds`: bad values in one line, intervals in the table and JSON."""

import json

import numpy as np
import pytest

from attnflow import Explanation
from tests.test_cli import run_cli

pytestmark = pytest.mark.e2e

TEXT = "The keys to the cabinet are on the table near the window."


@pytest.mark.parametrize(("option", "value"), [("--flow-tolerance", "-0.001"), ("--flow-tolerance", "nan"),
                                               ("--flow-tolerance", "1"), ("--flow-tolerance", "2.5"),
                                               ("--flow-seconds", "0"), ("--flow-seconds", "-3")])
def test_a_bad_value_is_one_line_before_the_model_loads(capsys, monkeypatch, option, value):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("attnflow.capture.load_model", no_model)
    code, out, err = run_cli(capsys, "explain", TEXT, "--method", "flow", option, value)
    assert code == 2 and out == "" and "Traceback" not in err
    assert option in err and value in err


def test_a_tolerance_is_for_flow_only(capsys, monkeypatch):
    monkeypatch.setattr("attnflow.capture.load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError()))
    code, out, err = run_cli(capsys, "explain", TEXT, "--method", "rollout", "--flow-tolerance", "0.01")
    assert code == 2 and "--flow-tolerance is for --method flow" in err


def test_intervals_in_the_table_and_the_json(capsys, tmp_path):
    path = tmp_path / "flow.json"
    code, out, err = run_cli(capsys, "explain", TEXT, "--method", "flow", "--flow-tolerance", "0.001",
                             "--json", str(path))
    assert code == 0, err
    assert "flow ±" in out and "certified" in out
    data = json.loads(path.read_text())
    lower, upper = (np.array(data[key], dtype=float) for key in ("flow_lower", "flow_upper"))
    scores = np.array(data["scores"]["flow"], dtype=float)
    assert lower.shape == upper.shape == scores.shape
    assert np.all(lower <= scores) and np.all(scores <= upper)
    again = Explanation.from_json(path)
    np.testing.assert_array_equal(again.bounds["flow"][0], lower)
    np.testing.assert_array_equal(again.bounds["flow"][1], upper)


def test_tolerance_zero_gives_the_exact_scores(capsys, tmp_path):
    exact, zero = tmp_path / "exact.json", tmp_path / "zero.json"
    assert run_cli(capsys, "explain", TEXT, "--method", "flow", "--json", str(exact))[0] == 0
    assert run_cli(capsys, "explain", TEXT, "--method", "flow", "--flow-tolerance", "0", "--json", str(zero))[0] == 0
    first, second = (json.loads(p.read_text()) for p in (exact, zero))
    assert first["scores"] == second["scores"] and "flow_lower" not in second


def test_the_report_carries_the_intervals_to_draw(capsys, tmp_path):
    from attnflow.report.data import ReportData

    page = tmp_path / "report.html"
    code, out, err = run_cli(capsys, "explain", TEXT, "--method", "flow", "--flow-tolerance", "0.001",
                             "--html", str(page))
    assert code == 0, err
    html = page.read_text()
    assert '"bounds"' in html and "certified in [" in html  # the data, and the page's drawing code
    marker = '<script type="application/json" id="attnflow-data">'
    start = html.index(marker) + len(marker)
    data = json.loads(html[start : html.index("</script>", start)])
    again = ReportData.from_dict(data)
    bounds = again.bounds["flow"]
    scores = again.scores["flow"][:, bounds["k"], :]
    # the page's numbers are rounded for size: compare with that rounding's allowance
    assert np.all(bounds["lower"] <= scores + 1e-6) and np.all(scores <= bounds["upper"] + 1e-6)
