"""run_batch in this process on the bundled MiniLM: rows against attnflow.explain, skips, resume and refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import attnflow
from attnflow.batch import COLUMNS, read_results, run_batch
from attnflow.errors import AttnflowError
from tests.batch.conftest import EIGHT, write_jsonl
from tests.tolerances import model_float32_bound

METHODS = ["raw", "rollout", "flow"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, minilm):
    """The eight texts, three methods, shards of three rows, in this process."""
    folder = tmp_path_factory.mktemp("batch")
    data = write_jsonl(folder / "eight.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(EIGHT)])
    result = run_batch(data, folder / "out", minilm, METHODS, shard_size=3, workers=1)
    return data, folder / "out", result


def test_rows_are_attnflow_explain_of_each_text(reference_run, minilm):
    _, out, result = reference_run
    frame = result.dataframe()
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 8 * len(METHODS) * 6 == result.summary["rows"]
    for index, text in enumerate(EIGHT):
        expected = attnflow.explain(text, minilm, methods=METHODS)  # one text at a time, no padding
        rows = frame[frame.example == index]
        assert rows.text.unique().tolist() == [text] and rows.label.unique().tolist() == [index % 2]
        assert rows.tokens.iloc[0].tolist() == expected.tokens
        for method in METHODS:
            got = np.stack(rows[rows.method == method].sort_values("layer").scores.to_numpy())
            # float32 model: padding in a batch changes the reduction order (why the manifest fixes the batches)
            atol = model_float32_bound(minilm.model.config)
            np.testing.assert_allclose(got, expected.scores[method], rtol=0, atol=atol)
    assert set(frame.output) == {"0"} and not frame.truncated.any() and frame.target.isna().all()


def test_pandas_reads_the_scores_folder_directly(reference_run):
    _, out, result = reference_run
    direct = pd.read_parquet(out / "scores")
    assert len(direct) == result.summary["rows"]
    assert sorted(direct.example.unique()) == list(range(8))


def test_one_example_as_an_explanation_for_attnflow_report(reference_run, tmp_path, capsys):
    from attnflow import cli
    from attnflow.batch import read_explanation
    from attnflow.explanation import Explanation

    _, out, result = reference_run
    explanation = read_explanation(out, 4)
    rows = result.dataframe()
    rows = rows[rows.example == 4]
    assert explanation.text == EIGHT[4] and explanation.methods == METHODS and explanation.model_name == "minilm"
    for method in METHODS:
        np.testing.assert_array_equal(explanation.scores[method], np.stack(rows[rows.method == method].scores))
    explanation.to_json(tmp_path / "four.json")
    assert Explanation.from_json(tmp_path / "four.json").tokens == explanation.tokens
    status = cli.main(["report", str(tmp_path / "four.json"), "-o", str(tmp_path / "four.html")])
    assert status == 0, capsys.readouterr()
    assert (tmp_path / "four.html").stat().st_size > 0
    with pytest.raises(AttnflowError, match="has no rows for example 99"):
        read_explanation(out, 99)


def test_summary_and_manifest(reference_run):
    _, out, result = reference_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary == result.summary
    assert summary["n_examples"] == 8 and summary["n_skipped"] == 0 and summary["shards"] == 3
    assert summary["methods"] == METHODS and summary["n_layers"] == 6
    manifest = json.loads((out / "manifest.json").read_text())
    shards = [s["examples"] for s in manifest["shards"]]
    assert sorted(sum(shards, [])) == list(range(8)) and [len(s) for s in shards] == [3, 3, 2]
    lengths = [len(attnflow.capture.capture_attention(EIGHT[i]).tokens) for i in sum(shards, [])]
    assert lengths == sorted(lengths)  # shards are cut from the rows sorted by length


def test_resume_computes_only_missing_shards_and_gives_the_same_rows(reference_run, minilm, tmp_path):
    data, out, result = reference_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "scores" / "part-00001.parquet").unlink()
    (copy / "scores" / ".part-00001.parquet.x.part").write_bytes(b"half a file")  # left by a kill mid-write
    resumed = run_batch(data, copy, minilm, METHODS, shard_size=3, workers=1)
    assert resumed.summary["last_run"]["shards"] == 1 and resumed.summary["last_run"]["examples"] == 3
    assert not list((copy / "scores").glob(".*"))
    pd.testing.assert_frame_equal(resumed.dataframe(), result.dataframe())
    again = run_batch(data, copy, minilm, METHODS, shard_size=3, workers=1)  # all done: nothing to compute
    assert again.summary["last_run"]["shards"] == 0 and again.summary["rows"] == result.summary["rows"]


def test_other_options_model_or_data_are_refused_unless_overwrite(reference_run, minilm, tmp_path, tiny_bert_path):
    data, out, _ = reference_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    with pytest.raises(AttnflowError, match=r"other options \(methods: \['raw', 'rollout', 'flow'\] -> \['raw'\]\)"):
        run_batch(data, copy, minilm, ["raw"], shard_size=3, workers=1)
    with pytest.raises(AttnflowError, match=r"other options \(shard_size: 3 -> 4\)"):
        run_batch(data, copy, minilm, METHODS, shard_size=4, workers=1)
    with pytest.raises(AttnflowError, match="a run of another model"):
        run_batch(data, copy, str(tiny_bert_path), METHODS, shard_size=3, workers=1)
    changed = write_jsonl(tmp_path / "changed.jsonl", [{"text": t, "label": 1} for t in EIGHT])
    with pytest.raises(AttnflowError, match="changed since the run .* began"):
        run_batch(changed, copy, minilm, METHODS, shard_size=3, workers=1)
    replaced = run_batch(data, copy, minilm, ["raw"], shard_size=4, workers=1, overwrite=True)
    assert replaced.summary["shards"] == 2 and set(read_results(copy).method) == {"raw"}


def test_a_folder_of_other_files_is_refused(eight_jsonl, minilm, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(AttnflowError, match="is not empty and holds no batch run"):
        run_batch(eight_jsonl, tmp_path / "mine", minilm, ["raw"], workers=1)


def test_bad_rows_are_skipped_and_counted_with_the_reason(minilm, tmp_path):
    long_text = " ".join(["word"] * 600)
    data = write_jsonl(
        tmp_path / "d.jsonl",
        [{"text": "A fine day."}, {"text": "   "}, {"text": long_text}, {"label": 3}, {"text": "\u200b"}],
    )
    result = run_batch(data, tmp_path / "out", minilm, ["rollout"], workers=1)
    summary = result.summary
    assert summary["n_rows"] == 5 and summary["n_examples"] == 1 and summary["n_skipped"] == 4
    assert summary["skipped_reasons"] == {
        "empty text": 2, "too long (more than 512 tokens)": 1, "no tokens (the tokenizer keeps nothing)": 1,
    }
    assert [s["example"] for s in summary["skipped"]] == [1, 2, 3, 4]
    assert set(result.dataframe().example) == {0}
    truncated = run_batch(data, tmp_path / "cut", minilm, ["rollout"], workers=1, truncate=True)
    frame = truncated.dataframe()
    assert truncated.summary["n_examples"] == 2 and frame[frame.example == 2].truncated.all()
    assert frame[frame.example == 2].n_tokens.iloc[0] == 512


def test_the_data_set_may_not_lie_among_the_outputs(reference_run, minilm, tmp_path):
    _, out, _ = reference_run
    with pytest.raises(AttnflowError, match="lies among the files of the output folder"):
        run_batch(out / "scores" / "part-00000.parquet", out, minilm, METHODS, workers=1, overwrite=True)
    assert (out / "scores" / "part-00000.parquet").is_file()


def test_nothing_to_explain_is_an_error(minilm, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": ""}, {"text": " "}])
    with pytest.raises(AttnflowError, match="No row of .* can be explained: 2 rows skipped \\(empty text\\)"):
        run_batch(data, tmp_path / "out", minilm, ["raw"], workers=1)


def test_per_row_targets_and_gradient_methods(tmp_path, tiny_roberta_path):
    from attnflow.capture import load_model

    loaded = load_model(tiny_roberta_path)  # a classifier: per-row class targets
    data = write_jsonl(
        tmp_path / "d.jsonl", [{"text": "Hello world", "gold": "1"}, {"text": "The lazy dog.", "gold": "0"}]
    )
    result = run_batch(data, tmp_path / "out", loaded, ["grad-rollout"], target_column="gold", workers=1)
    frame = result.dataframe()
    classes = [json.loads(t)["class"] for t in frame.groupby("example").target.first()]
    assert classes == [1, 0]
    for index, (text, target) in enumerate([("Hello world", "1"), ("The lazy dog.", "0")]):
        expected = attnflow.explain(text, loaded, methods=["grad-rollout"], target=target)
        got = np.stack(frame[frame.example == index].scores.to_numpy())
        want = expected.scores["grad-rollout"]  # two float32 forward and backward passes
        np.testing.assert_allclose(got, want, rtol=0, atol=model_float32_bound(
            loaded.model.config, scale=np.abs(want).max(), backward=True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "spark"}, "engine must be one of local, ray"),
        ({"shard_size": 0}, "'shard_size' parameter must be a positive integer"),
        ({"address": "127.0.0.1:1"}, "An address is for --engine ray"),
        ({"methods": ["nope"]}, "Unknown method 'nope'"),
        ({"discard_ratio": 0.5, "methods": ["raw"]}, r"Unknown option\(s\) \['discard_ratio'\]"),
    ],
)
def test_bad_arguments_fail_before_any_work(eight_jsonl, tmp_path, kwargs, message):
    kwargs = {"methods": ["rollout"], **kwargs}
    with pytest.raises(AttnflowError, match=message):
        run_batch(eight_jsonl, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
