"""Reading data sets for attnflow batch: every format, every row kept in place, clear errors."""

from __future__ import annotations

import pandas as pd
import pytest

from attnflow.batch import read_dataset
from attnflow.errors import AttnflowError
from tests.batch.conftest import EIGHT, write_jsonl

ROWS = [
    {"text": "Good film.", "label": "pos", "gold": "1"},
    {"text": "", "label": "neg", "gold": "0"},
    {"text": "Bad film.", "label": None, "gold": "0"},
]


def _expected():
    return [(0, "Good film.", "pos", "1"), (1, None, "neg", "0"), (2, "Bad film.", None, "0")]


def _tuples(dataset):
    return [(r.row, r.text, r.label, r.target) for r in dataset.records]


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "datasets"])
def test_every_format_reads_the_same_rows(tmp_path, kind):
    frame = pd.DataFrame(ROWS)
    if kind == "jsonl":
        path = write_jsonl(tmp_path / "d.jsonl", ROWS)
    elif kind == "csv":
        path = tmp_path / "d.csv"
        frame.to_csv(path, index=False)
    elif kind == "parquet":
        path = tmp_path / "d.parquet"
        frame.to_parquet(path)
    else:
        datasets = pytest.importorskip("datasets")
        path = tmp_path / "saved"
        datasets.Dataset.from_pandas(frame).save_to_disk(str(path))
    dataset = read_dataset(path, target_column="gold")
    assert _tuples(dataset) == _expected()
    assert dataset.label_type == "string"


def test_a_dataset_dict_needs_a_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "dd"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({"text": ["a b"]}), "test": datasets.Dataset.from_dict({"text": ["c"]})}
    ).save_to_disk(str(path))
    with pytest.raises(AttnflowError, match=r"splits \['train', 'test'\]; choose one with --split"):
        read_dataset(path)
    assert [r.text for r in read_dataset(path, split="test").records] == ["c"]


def test_integer_labels_keep_their_type(eight_jsonl):
    dataset = read_dataset(eight_jsonl)
    assert dataset.label_type == "int" and [r.label for r in dataset.records] == [i % 2 for i in range(8)]
    assert [r.text for r in dataset.records] == EIGHT


def test_fingerprint_follows_the_content(tmp_path):
    first = read_dataset(write_jsonl(tmp_path / "a.jsonl", [{"text": "x y"}, {"text": "z"}]))
    same = read_dataset(write_jsonl(tmp_path / "b.jsonl", [{"text": "x y"}, {"text": "z"}]))
    changed = read_dataset(write_jsonl(tmp_path / "c.jsonl", [{"text": "x y"}, {"text": "z!"}]))
    assert first.fingerprint == same.fingerprint != changed.fingerprint


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ('{"sentence": "a"}\n', "d.jsonl", r"no 'text' column \(the texts\); its columns are \['sentence'\]"),
        ("", "d.jsonl", "holds no examples"),
        ("text\n", "d.csv", "holds no examples"),
        ('{"text": "a"}\nnot json\n', "d.jsonl", "Line 2 of .* is not valid JSON"),
        ("a", "d.xlsx", "must end in .jsonl, .csv, .parquet, .txt"),
    ],
)
def test_bad_data_sets_are_one_line_errors(tmp_path, content, name, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AttnflowError, match=message):
        read_dataset(path)


def test_a_missing_target_column_or_file_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "a"}])
    with pytest.raises(AttnflowError, match="no target column 'gold'"):
        read_dataset(path, target_column="gold")
    with pytest.raises(AttnflowError, match="does not exist"):
        read_dataset(tmp_path / "missing.jsonl")
