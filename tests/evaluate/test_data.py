"""Reading examples from .txt, .jsonl and .csv, and the errors for bad files."""

from __future__ import annotations

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
        ("d.jsonl", '{"sentence": "hi"}\n', "Line 1 .* no 'text' field"),
        ("d.jsonl", '{"text": "ok"}\n{"text": \n', "Line 2 .* not valid JSON"),
        ("d.jsonl", '["text"]\n', "must be a JSON object"),
        ("d.jsonl", '{"text": 3}\n', "string text"),
        ("d.csv", "text,label\nfine,1\n  ,2\n", "Row 3 .* empty text"),
        ("d.tsv", "text\nhi\n", "must end in"),
    ],
)
def test_bad_files_give_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AttnflowError, match=message):
        read_examples(path)


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
