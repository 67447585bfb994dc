"""run_batch and `attnflow batch` with --graph: rows equal attnflow.explain(graph=...), the manifest keeps them."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attnflow
from attnflow import cli
from attnflow.batch import read_results, run_batch
from attnflow.errors import AttnflowError
from tests.batch.conftest import EIGHT, write_jsonl
from tests.tolerances import model_float32_bound

GRAPHS = ["attention", "alti", "norm"]
METHODS = ["raw", "rollout"]
TEXTS = EIGHT[:3]


@pytest.fixture(scope="module")
def graph_run(tmp_path_factory, minilm):
    """Three texts, two methods over three graphs, shards of two rows, in this process."""
    folder = tmp_path_factory.mktemp("graphs")
    data = write_jsonl(folder / "three.jsonl", [{"text": t} for t in TEXTS])
    result = run_batch(data, folder / "out", minilm, METHODS, graphs=GRAPHS, shard_size=2, workers=1)
    return data, folder / "out", result


def test_rows_are_attnflow_explain_with_the_same_graphs(graph_run, minilm):
    _, out, result = graph_run
    frame = read_results(out)
    keys = ["raw", "rollout", "alti/raw", "alti/rollout", "norm/raw", "norm/rollout"]
    assert list(dict.fromkeys(frame["method"])) == keys  # attention keeps plain names, in the order given
    assert result.summary["rows"] == len(frame) == len(TEXTS) * len(keys) * 6
    for example, text in enumerate(TEXTS):
        expected = attnflow.explain(text, minilm, methods=METHODS, graph=GRAPHS)  # one text alone, no padding
        assert sorted(expected.scores) == sorted(keys)
        rows = frame[frame["example"] == example]
        for key in keys:
            got = np.stack(rows[rows["method"] == key].sort_values("layer")["scores"].tolist())
            np.testing.assert_allclose(got, expected.scores[key], rtol=0,
                                       atol=model_float32_bound(minilm.model.config))  # batched: another order
        assert list(rows["tokens"].iloc[0]) == expected.tokens


def test_the_graphs_are_in_the_manifest_and_a_resume_with_others_is_refused(graph_run, minilm):
    data, out, result = graph_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["graphs"] == GRAPHS
    again = run_batch(data, out, minilm, METHODS, graphs=GRAPHS, shard_size=2, workers=1)  # the same: nothing to do
    assert again.summary["last_run"]["examples"] == 0 and again.summary["rows"] == result.summary["rows"]
    for other in (["attention", "alti"], None):
        with pytest.raises(AttnflowError, match=r"other options \(graphs: "):
            run_batch(data, out, minilm, METHODS, graphs=other, shard_size=2, workers=1)


def test_overwrite_replaces_a_run_with_other_graphs(minilm, tmp_path):
    data = write_jsonl(tmp_path / "one.jsonl", [{"text": TEXTS[0]}])
    run_batch(data, tmp_path / "out", minilm, "rollout", workers=1)
    with pytest.raises(AttnflowError, match="other options"):
        run_batch(data, tmp_path / "out", minilm, "rollout", graphs="alti", workers=1)
    result = run_batch(data, tmp_path / "out", minilm, "rollout", graphs="alti", workers=1, overwrite=True)
    assert set(result.dataframe()["method"]) == {"alti/rollout"}
    expected = attnflow.explain(TEXTS[0], minilm, methods="rollout", graph="alti").scores["alti/rollout"]
    got = np.stack(result.dataframe().sort_values("layer")["scores"].tolist())
    np.testing.assert_allclose(got, expected, rtol=0, atol=model_float32_bound(minilm.model.config))  # two runs


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"residual": 0.3}, "'residual' option weighs the residual"),
        ({"methods": ["grad-rollout"]}, "Method 'grad-rollout' weighs attention weights by their gradients"),
        ({"graphs": "nope"}, "Unknown graph 'nope'"),
    ],
)
def test_bad_graph_options_fail_before_the_model_loads(tmp_path, kwargs, message):
    data = write_jsonl(tmp_path / "one.jsonl", [{"text": TEXTS[0]}])
    kwargs = {"methods": ["rollout"], "graphs": ["alti"], **kwargs}
    with pytest.raises(AttnflowError, match=message):  # a model that does not exist: nothing was loaded
        run_batch(data, tmp_path / "out", "no-such-model", **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_graph_the_model_does_not_define_fails_once_and_writes_nothing(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "the keys to the cabinet are here"}])
    with pytest.raises(AttnflowError, match="'globenc' graph is not defined for megatron-bert"):
        run_batch(data, tmp_path / "out", "sva", "rollout", graphs=["attention", "globenc"], workers=1)
    assert not (tmp_path / "out").exists()


def test_images_take_the_attention_graph_only(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(AttnflowError, match="images .--images. run on the attention graph only"):
        run_batch(None, tmp_path / "out", "no-such-model", "rollout", images=tmp_path / "images", graphs="alti")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--graph", "alti", "--residual", "0.3"], "--residual weighs the residual added to attention weights"),
        (["--graph", "alti", "--method", "grad-rollout"], "--method grad-rollout weighs attention weights"),
        (["--graph", "nope"], "must be one of attention"),
    ],
)
def test_cli_graph_errors_are_one_line(capsys, tmp_path, args, message):
    data = write_jsonl(tmp_path / "one.jsonl", [{"text": TEXTS[0]}])
    status = cli.main(["batch", "--data", str(data), "--out", str(tmp_path / "out"), "--model", "no-such-model", *args])
    err = " ".join(capsys.readouterr().err.split())
    assert status == 2 and message in err and "Traceback" not in err


def test_cli_graph_rows(capsys, tmp_path):
    data = write_jsonl(tmp_path / "one.jsonl", [{"text": TEXTS[1]}])
    out = tmp_path / "out"
    status = cli.main(["batch", "--data", str(data), "--out", str(out), "--method", "rollout", "--graph", "attention",
                       "--graph", "alti", "--workers", "1"])
    assert status == 0, capsys.readouterr().err
    assert list(dict.fromkeys(read_results(out)["method"])) == ["rollout", "alti/rollout"]
    options = json.loads((out / "manifest.json").read_text())["options"]
    assert options["graphs"] == ["attention", "alti"] and "residual" not in options["method_options"]  # as explain


def test_evaluating_rows_over_graphs_equals_attnflow_evaluate(minilm, tmp_path):
    data = write_jsonl(tmp_path / "two.jsonl", [{"text": t} for t in TEXTS[:2]])
    options = {"ground_truths": ["gradient"], "faithfulness": False}
    result = run_batch(data, tmp_path / "out", minilm, "rollout", graphs=["attention", "alti"], evaluation=options,
                       workers=1)
    frame = result.dataframe()
    expected = attnflow.evaluate(TEXTS[:2], minilm, ["rollout"], graphs=["attention", "alti"], **options).to_dataframe()
    assert set(result.summary["evaluation"]["correlation"]["gradient"]) == {"rollout", "alti/rollout"}
    for key in ("rollout", "alti/rollout"):
        got = frame[frame["method"] == key].sort_values(["example", "layer"])["spearman_gradient"].to_numpy()
        want = expected[expected["method"] == key].sort_values(["example", "layer"])["spearman_gradient"].to_numpy()
        # literal: rank correlations of the same arithmetic (float32 noise could swap two ranks, a jump no
        # rounding bound describes); equal but for float64 round-off in the Spearman formula
        np.testing.assert_allclose(got, want, rtol=1e-9)
