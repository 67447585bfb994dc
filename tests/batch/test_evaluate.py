"""run_batch(evaluation=...): each row's numbers are attnflow.evaluate's for that text alone; options are fixed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attnflow.evaluate as evaluate_module
from attnflow import cli
from attnflow.batch import run_batch
from attnflow.data import Example
from attnflow.errors import AttnflowError
from tests.batch.conftest import write_jsonl

TEXTS = ["The cat sat on the mat.", "", "Dogs bark loudly."]
OPTIONS = {"ground_truths": ["blankout", "gradient"], "percents": [20, 40], "seed": 3}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, minilm):
    folder = tmp_path_factory.mktemp("evaluate")
    data = write_jsonl(folder / "d.jsonl", [{"text": t} for t in TEXTS])
    result = run_batch(data, folder / "out", minilm, ["raw", "rollout"], target="norm", shard_size=2, workers=1,
                       evaluation=OPTIONS)
    return data, folder / "out", result


def test_rows_hold_attnflow_evaluate_of_each_text(evaluated, minilm):
    _, _, result = evaluated
    frame = result.dataframe()
    assert result.summary["n_skipped"] == 1 and sorted(set(frame.example)) == [0, 2]
    # The input gradients of this target are near ties, so their ranks depend on the torch thread
    # count: compute the expectation with the threads the batch worker used.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(result.summary["last_run"]["threads_per_worker"])
    try:
        expected_runs = {
            example: evaluate_module.evaluate(
                [Example(TEXTS[example])], minilm, ["raw", "rollout"], target="norm",
                ground_truths=["blankout", "gradient"], percents=[20, 40], seed=3, first_index=example,
            )
            for example in (0, 2)
        }
    finally:
        torch.set_num_threads(before)
    for example in (0, 2):
        expected = expected_runs[example]
        table = expected.to_dataframe()
        rows = frame[frame.example == example].reset_index(drop=True)
        assert rows.method.tolist() == table.method.tolist() and rows.layer.tolist() == table.layer.tolist()
        # Literal: the same arithmetic (threads pinned alike) in another process. Rankings decide these columns,
        # and float32 noise that reordered two tokens would move them by a jump no rounding bound describes.
        for column in ("spearman_blankout", "spearman_gradient", "aopc_comprehensiveness", "random_aopc_sufficiency",
                       "comprehensiveness_20", "sufficiency_40"):
            np.testing.assert_allclose(rows[column].to_numpy(float), table[column].to_numpy(float), atol=1e-9)
        truth = np.array(rows.ground_truth_blankout.iloc[0], dtype=float)
        np.testing.assert_allclose(truth, expected.examples[0].ground_truths["blankout"], atol=1e-9)
        assert set(rows.output) == {"mean"}  # evaluate's choice for a pooled target


def test_summary_means_are_the_means_of_the_rows(evaluated):
    _, out, result = evaluated
    frame = result.dataframe()
    top = frame[(frame.method == "rollout") & (frame.layer == 6)]
    stats = result.summary["evaluation"]["correlation"]["blankout"]["rollout"][-1]
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(top.spearman_blankout.mean())
    aopc = result.summary["evaluation"]["faithfulness"]["rollout"]["aopc_comprehensiveness"]
    assert aopc["mean"] == pytest.approx(frame[frame.method == "rollout"].aopc_comprehensiveness.mean())
    assert json.loads((out / "summary.json").read_text())["evaluation"] == result.summary["evaluation"]


def test_other_evaluation_options_are_refused(evaluated, minilm):
    data, out, _ = evaluated
    with pytest.raises(AttnflowError, match="other options \\(evaluation:"):
        run_batch(data, out, minilm, ["raw", "rollout"], target="norm", shard_size=2, workers=1,
                  evaluation={**OPTIONS, "seed": 4})


@pytest.mark.parametrize(
    ("evaluation", "message"),
    [
        ({"ground_truths": ["nope"]}, r"Unknown ground truth\(s\) \['nope'\]"),
        ({"steps": 3}, r"Unknown evaluation option\(s\) \['steps'\]"),
        ({"removal": "cut"}, "'removal' option must be one of delete, blank"),
    ],
)
def test_bad_evaluation_options_fail_before_any_work(tmp_path, evaluation, message):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "A b."}])
    with pytest.raises(AttnflowError, match=message):
        run_batch(data, tmp_path / "out", methods=["raw"], evaluation=evaluation)
    assert not (tmp_path / "out").exists()


def test_a_target_the_model_cannot_give_fails_once(tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "A b."}])
    status = cli.main(["batch", "--data", str(data), "--out", str(tmp_path / "out"), "--method", "raw", "--evaluate",
                       "--target", "predicted", "--workers", "1"])
    assert status == 2 and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_one_process_run_numbers_a_data_file_by_its_rows_as_the_shards_do(evaluated, minilm):
    """Row 1 is empty and skipped: example 2 keeps its number, and so its random baseline, in both runs."""
    from attnflow.data import read_examples

    data, _, result = evaluated
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(result.summary["last_run"]["threads_per_worker"])
    try:
        whole = evaluate_module.evaluate(read_examples(data), minilm, ["raw", "rollout"], target="norm", **OPTIONS)
    finally:
        torch.set_num_threads(before)
    table, frame = whole.to_dataframe(), result.dataframe()
    assert sorted(set(table.example)) == sorted(set(frame.example)) == [0, 2]
    for example in (0, 2):
        ours = table[table.example == example].reset_index(drop=True)
        theirs = frame[frame.example == example].reset_index(drop=True)
        for column in ("random_aopc_sufficiency", "random_aopc_comprehensiveness", "aopc_sufficiency"):
            # literal: the same arithmetic in another process (rankings decide these; see the test above)
            np.testing.assert_allclose(ours[column].to_numpy(float), theirs[column].to_numpy(float), atol=1e-9)
