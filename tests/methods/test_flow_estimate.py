"""The flow time estimate: what it grows with, and the CLI's refusal and warning before any flow runs."""

import numpy as np
import pytest

from attnflow.methods.flow import estimate_flow_seconds
from tests.test_cli import run_cli

LONG_TEXT = " ".join(["The keys to the cabinet are on the table."] * 45)


def test_estimate_grows_with_the_work():
    base = estimate_flow_seconds(6, 128, threads=2)
    assert estimate_flow_seconds(6, 256, threads=2) == pytest.approx(8 * base)  # n problems of n^2 arcs
    assert estimate_flow_seconds(6, 128, outputs=128, threads=2) == pytest.approx(128 * base)
    assert estimate_flow_seconds(6, 128, layers=[6], threads=2) == pytest.approx(base * 6 / 21)
    assert estimate_flow_seconds(6, 128, threads=1) == pytest.approx(2 * base)


def test_estimate_is_on_the_high_side_of_a_real_run():
    import time

    import attnflow

    rng = np.random.default_rng(0)
    attention = rng.dirichlet(np.ones(48) * 0.3, size=(6, 2, 48))
    attnflow.attention_flow(attention, outputs=0)  # warm
    start = time.perf_counter()
    attnflow.attention_flow(attention, outputs=0)
    # not a timing assertion on the code under test: the estimate must not promise less than a real run
    assert estimate_flow_seconds(6, 48) >= 0.2 * (time.perf_counter() - start)


@pytest.mark.e2e
def test_max_flow_seconds_refuses_before_any_flow_runs(capsys, monkeypatch):
    import attnflow.methods.flow as flow

    def no_flow(*args, **kwargs):
        raise AssertionError("flow ran")

    monkeypatch.setattr(flow, "solve_flow", no_flow)
    args = ("explain", LONG_TEXT, "--truncate", "--method", "flow", "--max-flow-seconds", "0.5")
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and out == ""
    assert "estimated at" in err and "--max-flow-seconds 0.5" in err and "--method rollout" in err
    assert "Traceback" not in err


@pytest.mark.e2e
def test_a_long_exact_flow_is_announced(capsys, monkeypatch):
    monkeypatch.setattr("attnflow.methods.flow.SECONDS_PER_ARC", 1e-2)  # as if the machine were very slow
    code, out, err = run_cli(capsys, "explain", "The keys to the cabinet are on the table.", "--method", "flow",
                             "--flow-tolerance", "0")
    assert code == 0 and "will take about" in err and "Ctrl-C stops cleanly" in err


@pytest.mark.e2e
def test_flow_too_slow_to_be_exact_is_certified_by_default_with_a_note(capsys, monkeypatch):
    monkeypatch.setattr("attnflow.methods.flow.SECONDS_PER_ARC", 1e-2)  # as if the machine were very slow
    code, out, err = run_cli(capsys, "explain", "The keys to the cabinet are on the table.", "--method", "flow")
    assert code == 0 and "will take about" not in err
    assert "exact flow would take about" in out and "certified interval" in out and "flow ±" in out
