"""Reading examples from .txt, .jsonl, .csv and .parquet (attnflow.data, shared with batch); errors for bad files."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from attnflow.errors import AttnflowError
from attnflow.evaluate import Example, as_examples, read_examples


def test_txt_one_text_per_line(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("First text.\n\n  Second text.  \r\nThird\n", encoding="utf-8")
    assert read_examples(path) == [Example("First text."), Example("Second text."), Example("Third")]


def test_jsonl_with_and_without_labels(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "A", "label": 1}\n\n{"text": "B", "label": "pos", "extra": 3}\n{"text": "C"}\n')
    assert read_examples(path) == [Example("A", 1), Example("B", "pos"), Example("C", None)]


def test_csv_text_and_label_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('id,Text,label\n1,"Hello, world",positive\n2,Bye,\n', encoding="utf-8-sig")
    assert read_examples(path) == [Example("Hello, world", "positive"), Example("Bye", None)]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("d.txt", "", "holds no examples"),
        ("d.txt", "\n  \n", "holds no examples"),
        ("d.csv", "text,label\n", "holds no examples"),
        ("d.jsonl", "", "holds no examples"),
        ("d.csv", "sentence,label\nhi,1\n", "no 'text' column"),
        ("d.jsonl", '{"sentence": "hi"}\n', r"no 'text' column \(the texts\); its columns are \['sentence'\]"),
        ("d.jsonl", '{"text": "ok"}\n{"text": \n', "Line 2 .* not valid JSON"),
        ("d.jsonl", '["text"]\n', "must be a JSON object"),
        ("d.csv", "text,label\n  ,1\n,2\n", r"No row of .* can be explained: 2 rows skipped \(empty text\)"),
        ("d.jsonl", '{"text": "a", "label": [1]}\n', "Row 0 .* label of type list"),
        ("d.tsv", "text\nhi\n", "must end in"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AttnflowError, match=message):
        read_examples(path)


def test_rows_without_a_text_are_skipped_and_counted_like_batch(tmp_path):
    """The reader batch uses: an empty or missing text is a skipped row with its reason, never an error or a gap."""
    from attnflow.batch import read_dataset

    path = tmp_path / "d.csv"
    path.write_text("text,label\nfine,1\n  ,2\nalso fine,\n", encoding="utf-8")
    examples = read_examples(path)
    assert examples == [Example("fine", "1"), Example("also fine", None)]
    assert examples.skipped == [{"example": 1, "reason": "empty text"}]
    assert [r.row for r in read_dataset(path).records if r.text is None] == [1]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a"}\n{"sentence": "b"}\n{"text": 3}\n')
    examples = read_examples(jsonl)
    assert examples == [Example("a"), Example("3")] and examples.skipped == [{"example": 1, "reason": "empty text"}]
    assert as_examples(examples) is examples  # already read: kept with its skipped rows


def test_parquet_files_and_other_columns(tmp_path):
    path = tmp_path / "d.parquet"
    pd.DataFrame({"sentence": ["x y", "z"], "y": [0, 1]}).to_parquet(path)
    assert read_examples(path, text_column="sentence", label_column="y") == [Example("x y", 0), Example("z", 1)]
    with pytest.raises(AttnflowError, match="no 'text' column"):
        as_examples(str(path))


def test_the_same_error_lines_as_batch(tmp_path):
    from attnflow.batch import read_dataset

    for name, content in (("a.jsonl", '{"sentence": "hi"}\n'), ("b.txt", "\n\n"), ("c.csv", "text\n")):
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(AttnflowError) as from_evaluate:
            read_examples(path)
        with pytest.raises(AttnflowError) as from_batch:
            read_dataset(path)
        assert str(from_evaluate.value) == str(from_batch.value)


def test_missing_unreadable_and_binary_files(tmp_path):
    with pytest.raises(AttnflowError, match="Cannot read the data file"):
        read_examples(tmp_path / "missing.txt")
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(AttnflowError, match="is a folder"):
        read_examples(tmp_path / "folder.txt")
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(AttnflowError, match="not UTF-8"):
        read_examples(binary)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.txt"
        locked.write_text("hi")
        locked.chmod(0)
        with pytest.raises(AttnflowError, match="Cannot read"):
            read_examples(locked)


def test_as_examples_forms(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("From a file.\n")
    assert as_examples(path) == [Example("From a file.")]
    assert as_examples(str(path)) == [Example("From a file.")]
    assert as_examples("just.txt") == [Example("just.txt")]  # not a file: a text
    assert as_examples("One text.") == [Example("One text.")]
    frame = pd.DataFrame({"text": ["a", "b"], "label": [1, float("nan")]})
    assert as_examples(frame) == [Example("a", 1), Example("b", None)]
    with pytest.raises(AttnflowError, match="no examples"):
        as_examples([])
    with pytest.raises(AttnflowError, match="Example 1 .* empty text"):
        as_examples(["fine", " "])
    with pytest.raises(AttnflowError, match="without a 'text' key"):
        as_examples([{"label": 1}])
    with pytest.raises(AttnflowError, match="no 'text' column"):
        as_examples(pd.DataFrame({"sentence": ["a"]}))


@pytest.mark.e2e
def test_evaluate_skips_and_counts_the_rows_batch_skips(tmp_path, capsys):
    """attnflow evaluate --data: an empty and a too-long row are skipped with batch's reasons, the rest evaluated."""
    from attnflow import cli

    path = tmp_path / "d.jsonl"
    rows = [{"text": "Dogs bark."}, {"text": " "}, {"text": "word " * 600}, {"text": "A cat sat."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    status = cli.main(["evaluate", "--data", str(path), "--out", str(tmp_path / "out"), "--method", "rollout",
                       "--ground-truth", "blankout", "--no-faithfulness", "--target", "norm"])
    printed = " ".join(capsys.readouterr().out.split())
    assert status == 0
    assert "skipped 1 row(s) of the data file: empty text (rows 1, from 0)" in printed
    assert "skipped 1 row(s) of the data file: too long (more than 512 tokens) (rows 2, from 0)" in printed
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["n_examples"] == 2
