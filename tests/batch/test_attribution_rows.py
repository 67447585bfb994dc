"""Attribution methods in ``attnflow batch``: one Parquet row per example and method at layer 0 (the input)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from attnflow import cli, explain
from attnflow.batch import read_explanation, run_batch
from attnflow.errors import AttnflowError
from tests.batch.conftest import EIGHT, write_jsonl

TEXTS = EIGHT[:3]
METHODS = ["rollout", "saliency", "occlusion"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, minilm):
    folder = tmp_path_factory.mktemp("attribution")
    data = write_jsonl(folder / "three.jsonl", [{"text": t} for t in TEXTS])
    run_batch(data, folder / "out", minilm, METHODS, shard_size=1, workers=1, head_fusion="mean")
    return data, folder / "out", pd.read_parquet(folder / "out" / "scores")


def test_attribution_rows_sit_at_layer_zero_beside_the_attention_rows(finished, minilm):
    _, out, frame = finished
    assert sorted(frame["example"].unique()) == [0, 1, 2]
    for example, text in enumerate(TEXTS):
        rows = frame[frame["example"] == example]
        layers = {method: sorted(group["layer"]) for method, group in rows.groupby("method")}
        assert layers == {"rollout": list(range(1, 7)), "saliency": [0], "occlusion": [0]}
        alone = explain(text, minilm, methods=["saliency", "occlusion"])  # the text alone, as explain scores it
        for method in ("saliency", "occlusion"):
            row = rows[rows["method"] == method].iloc[0]
            assert list(row["tokens"]) == alone.tokens
            # The same float32 model on the same ids: equal up to the reduction order of a matrix product,
            # at most d = 384 float32 roundings of the largest score.
            got, want = np.asarray(row["scores"]), alone.scores[method][0]
            np.testing.assert_allclose(got, want, rtol=0, atol=384 * np.finfo(np.float32).eps * np.abs(want).max())
            assert json.loads(row["target"])["kind"] == "norm"
        again = read_explanation(out, example)  # the layer-0 row back at every layer, as explain gives it
        assert again.options["input_methods"] == {"saliency": "input", "occlusion": "input"}
        assert again.scores["saliency"].shape == (6, len(alone.tokens))
        assert np.array_equal(again.scores["saliency"][5], np.asarray(rows[rows["method"] == "saliency"].iloc[0]
                                                                      ["scores"]))


def test_a_resumed_run_recomputes_only_the_missing_shard_and_gives_the_same_rows(finished, minilm, tmp_path):
    data, out, frame = finished
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    shards = sorted((copy / "scores").glob("*.parquet"))
    assert len(shards) == 3
    shards[1].unlink()
    lines: list[str] = []
    run_batch(data, copy, minilm, METHODS, shard_size=1, workers=1, head_fusion="mean", log=lines.append)
    assert lines[0] == "Resuming: 2 of 3 shards done"
    again = pd.read_parquet(copy / "scores")
    key = ["example", "method", "layer"]
    pd.testing.assert_frame_equal(again.sort_values(key).reset_index(drop=True),
                                  frame.sort_values(key).reset_index(drop=True), check_exact=False, rtol=0,
                                  atol=384 * np.finfo(np.float32).eps * 10)  # as above, scores below 10
    with pytest.raises(AttnflowError, match="other options"):  # other attribution options: not the same run
        run_batch(data, copy, minilm, METHODS, shard_size=1, workers=1, head_fusion="mean",
                  attribution={"ig_steps": 10})


@pytest.mark.parametrize("args, message", [
    (["--method", "saliency", "--evaluate"], "does not judge them yet"),
    (["--method", "lime", "--lime-samples", "50", "--max-passes", "10"], "over the limit of 10"),
    (["--method", "occlusion", "--decoder-column", "target", "--graph", "alti"], "cannot be given with it"),
    (["--method", "integrated-gradients", "--ig-steps", "0"], "--ig-steps of at least 1"),
])
def test_bad_attribution_runs_are_one_line_before_a_model_loads(tmp_path, capsys, args, message):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "a b c", "target": "c b a"}])
    status = cli.main(["batch", "--data", str(data), *args, "--out", str(tmp_path / "out"), "--model", "no/such"])
    err = " ".join(capsys.readouterr().err.split())
    assert status != 0 and message in err and "Traceback" not in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
