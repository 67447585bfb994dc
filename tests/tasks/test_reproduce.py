"""``attnflow reproduce sva`` on a small sample: the structure of the results and the paper's central claim."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnflow.tasks.reproduce import GROUND_TRUTHS, PAPER, reproduce_sva

N = 50


@pytest.fixture(scope="module")
def small_run():
    """50 test sentences with the bundled model, every registered method. Do not modify."""
    return reproduce_sva(N, seed=0)


def test_results_have_the_evaluate_structure_plus_accuracy_and_plausibility(small_run) -> None:
    d = json.loads(small_run.to_json())
    assert d["task"] == "sva" and d["n_examples"] == N and d["n_layers"] == 6
    assert d["ground_truths"] == list(GROUND_TRUTHS)
    assert d["methods"][:3] == ["raw", "rollout", "flow"]
    for truth in GROUND_TRUTHS:
        for method in d["methods"]:
            pairs = d["correlation"][truth][method]
            assert len(pairs) == 6 and all(len(p) == 2 for p in pairs)
    assert set(d["accuracy"]) >= {"accuracy", "accuracy_attractors", "accuracy_no_attractors", "n", "n_attractors"}
    assert d["accuracy"]["n"] == N
    plaus = d["plausibility"]
    assert plaus["n_examples"] == d["accuracy"]["n_attractors"] > 0 and plaus["skipped"] == 0
    for method in d["methods"]:
        rates = plaus["methods"][method]
        assert len(rates) == 6 and all(0.0 <= r <= 1.0 for r in rates)
    assert 0.0 < plaus["chance"] <= 0.5
    assert d["paper"] == PAPER


def test_central_claim_rollout_and_flow_beat_raw_attention_with_blankout_at_the_top_layer(small_run) -> None:
    """The paper's Table 1: at layer 6, rollout (0.71) and flow (0.70) correlate with blank-out more than raw (0.29)."""
    top = {m: small_run.evaluation.correlation("blankout", m)[-1, 0] for m in ("raw", "rollout", "flow")}
    assert np.all(np.isfinite(list(top.values())))
    assert top["rollout"] > top["raw"], top
    assert top["flow"] > top["raw"], top


def test_files_and_tables(small_run) -> None:
    files = small_run.files(plot=False)
    assert set(files) == {"results.json", "tables.md", "examples.jsonl", "examples.csv"}
    text = files["tables.md"].decode()
    assert "Top layer (6) against the paper" in text and "| rollout |" in text
    assert len(files["examples.jsonl"].decode().splitlines()) == N


def test_the_cli_command_writes_the_folder(tmp_path) -> None:
    import typer
    from typer.testing import CliRunner

    from attnflow.commands.reproduce import reproduce

    app = typer.Typer()
    app.command()(reproduce)
    app.command("noop")(lambda: None)  # a second command keeps 'reproduce' a subcommand
    out = tmp_path / "sva"
    run = CliRunner().invoke(app, ["reproduce", "sva", "--n", "4", "--out", str(out), "--method", "rollout"])
    assert run.exit_code == 0, run.output
    assert "against the paper" in run.output
    d = json.loads((out / "results.json").read_text())
    assert d["methods"] == ["rollout"] and d["n_examples"] == 4
    assert (out / "tables.md").is_file()


@pytest.mark.slow
def test_retrain_trains_saves_and_judges_a_new_model(tmp_path) -> None:
    r = reproduce_sva(
        3,
        retrain=True,
        train_dir=tmp_path / "model",
        methods=["rollout"],
        train_options={"n_train": 64, "n_validation": 8, "n_test": 8, "max_steps": 2, "num_hidden_layers": 2},
    )
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert r.evaluation.n_layers == 2 and r.train_report["steps"] == 2
    assert r.to_dict()["model_folder"] == str(tmp_path / "model")
