"""Hostile and careless data files (issue 28, D1-D5 and the readers' minor items): one line each, before a model.

Every probe runs the way a user met it: through ``attnflow batch``, ``evaluate`` and
``heads`` where the issue names them, and through :func:`attnflow.data.read_dataset`.
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attnflow.data import MAX_FILE_BYTES, read_dataset, read_examples
from attnflow.errors import AttnflowError
from tests.test_hostile_input import flat, run_cli

# The three commands that read a --data file, with what each needs besides it (an --out folder).
READERS = {
    "batch": ["batch", "--out", "{out}", "--data", "{data}"],
    "evaluate": ["evaluate", "--out", "{out}", "--data", "{data}"],
    "heads": ["heads", "--out", "{out}", "--data", "{data}"],
}


def _run(capsys, command, data, tmp_path):
    args = [a.format(out=tmp_path / "out", data=data) for a in READERS[command]]
    status, out, err = run_cli(capsys, *args)
    assert "Traceback" not in out + err and "Error:" not in err.replace("error:", ""), err
    assert status != 0
    return flat(err)


@pytest.fixture
def deep(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 200_000 + "]" * 200_000 + "\n")
    return path


@pytest.mark.parametrize("command", list(READERS))
def test_deeply_nested_jsonl_is_one_line_not_a_recursion_error(capsys, no_model, tmp_path, deep, command):  # noqa: F811
    assert "Line 1 of" in _run(capsys, command, deep, tmp_path) and "nested too deeply" in flat(str(
        pytest.raises(AttnflowError, read_dataset, deep).value))


def test_a_deep_value_inside_an_object_is_refused_too(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "fine"}\n{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    with pytest.raises(AttnflowError, match="Line 2 of .* nested too deeply"):
        read_dataset(path)


def test_rows_are_split_at_newline_only(tmp_path):
    text = tmp_path / "f.txt"
    text.write_text("first\fstill first\nsecond\r\nthird\u2028still third\n", encoding="utf-8")
    assert [r.text for r in read_dataset(text).records] == ["first\fstill first", "second", "third\u2028still third"]
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_text(json.dumps({"text": "a\u2028b\x85c\fd"}, ensure_ascii=False) + "\r\n", encoding="utf-8")
    assert [r.text for r in read_dataset(jsonl).records] == ["a\u2028b\x85c\fd"]


def test_cells_that_are_not_texts_are_skipped_with_the_reason_and_numbers_become_text(tmp_path):
    rows = [{"text": {"inner": "x"}}, {"text": ["a", "list"]}, {"text": True}, {"text": 3}, {"text": 2.5},
            {"text": "fine"}, {"text": None}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = read_dataset(path).records
    assert [r.text for r in records] == [None, None, None, "3", "2.5", "fine", None]
    assert [r.reason for r in records] == [
        "text is an object (dict), not a string", "text is a list (list), not a string",
        "text is true/false (bool), not a string", None, None, None, "empty text",
    ]
    examples = read_examples(path)
    assert examples == [e for e in examples if e.text in ("3", "2.5", "fine")] and len(examples) == 3
    assert [s["reason"] for s in examples.skipped] == [r.reason for r in records if r.text is None]


def test_a_parquet_binary_cell_is_not_explained_as_its_repr(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": pa.array([b"bytes here", b"more"], type=pa.binary())}), path)
    dataset = read_dataset(path)
    assert [r.text for r in dataset.records] == [None, None]
    assert {r.reason for r in dataset.records} == {"text is bytes (bytes), not a string"}
    with pytest.raises(AttnflowError, match=r"2 rows skipped \(text is bytes"):
        read_examples(path)


def test_a_target_cell_that_is_not_a_text_skips_its_row(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a b", "gold": [1]}\n{"text": "c d", "gold": 1}\n')
    records = read_dataset(path, target_column="gold").records
    assert [(r.text, r.target, r.reason) for r in records] == [
        (None, None, "target is a list (list), not a string"), ("c d", "1", None)
    ]


@pytest.mark.parametrize("command", list(READERS))
@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
def test_a_2_gib_sparse_file_is_refused_on_its_size_before_reading(capsys, no_model, tmp_path, command, suffix):  # noqa: F811
    big = tmp_path / f"big{suffix}"
    with big.open("wb") as handle:
        handle.truncate(2 << 30)  # sparse: no disk used, and nothing may read it
    assert big.stat().st_size > MAX_FILE_BYTES
    assert "holds 2.0 GiB; attnflow reads data files of up to 1 GiB" in _run(capsys, command, big, tmp_path)


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl"])
def test_nul_content_is_not_text(tmp_path, suffix):
    path = tmp_path / f"d{suffix}"
    path.write_bytes(b"text\nfine\n" + b"\0" * 10 + b"\n")
    with pytest.raises(AttnflowError, match=r"holds a NUL byte \(byte 10\): it is not a text file"):
        read_dataset(path)


@pytest.mark.parametrize("command", list(READERS))
def test_a_fifo_or_a_link_to_dev_zero_is_refused_without_reading(capsys, no_model, tmp_path, command):  # noqa: F811
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)  # opening it to read would block for ever
    zero = tmp_path / "zero.jsonl"
    zero.symlink_to("/dev/zero")  # reading it would grow until memory runs out
    for path in (fifo, zero):
        assert "is not a regular file (a device or a pipe)" in _run(capsys, command, path, tmp_path)
        with pytest.raises(AttnflowError, match="is not a regular file"):
            read_dataset(path)


def test_a_duplicate_column_is_refused_not_silently_the_first(tmp_path):
    csv = tmp_path / "d.csv"
    csv.write_text("text,label,text\nfirst,1,second\n")
    with pytest.raises(AttnflowError, match="names the column 'text' more than once"):
        read_dataset(csv)
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "first", "text": "second"}\n')
    with pytest.raises(AttnflowError, match="Line 1 of .* the key 'text' is given twice"):
        read_dataset(jsonl)


def test_split_with_a_file_is_refused(capsys, no_model, tmp_path):  # noqa: F811
    path = tmp_path / "d.txt"
    path.write_text("Dogs bark.\n")
    with pytest.raises(AttnflowError, match="has no splits; leave out --split"):
        read_dataset(path, split="train")
    status, _, err = run_cli(capsys, "batch", "--data", path, "--out", tmp_path / "o", "--split", "train")
    assert status == 2 and "leave out --split" in flat(err) and not (tmp_path / "o").exists()


def test_a_results_json_with_a_byte_order_mark_reads(tmp_path):
    from attnflow.io import read_json

    path = tmp_path / "r.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"format": "attnflow.explanation", "version": 1}).encode())
    assert read_json(path) == {"format": "attnflow.explanation", "version": 1}


# ------------------------------------------------------------------ batch options, refused before any model (item 5)

BAD_BATCH_VALUES = [
    (["--head-fusion", "foo"], "--head-fusion", "mean, max, min, importance"),
    (["--residual", "7"], "--residual", "[0, 1]"),
    (["--residual", "nan"], "--residual", "[0, 1]"),
    (["--method", "nope"], "--method", "Unknown method 'nope'"),
    (["--output", "first"], "--output", "cls, last, mean"),
    (["--engine", "spark"], "--engine", "local, ray"),
    (["--batch-size", "0"], "--batch-size", "[1, inf]"),
    (["--shard-size", "0"], "--shard-size", "[1, inf]"),
]


@pytest.mark.parametrize("args, option, message", BAD_BATCH_VALUES)
def test_bad_batch_values_are_usage_errors_before_any_model(capsys, no_model, tmp_path, args, option, message):  # noqa: F811
    data = tmp_path / "d.txt"
    data.write_text("Dogs bark.\n")
    status, out, err = run_cli(capsys, "batch", "--data", data, "--out", tmp_path / "out", *args)
    assert status == 2, err
    assert f"Invalid value for '{option}" in flat(err) and message in flat(err), err
    assert "Traceback" not in err + out and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "options, message",
    [({"head_fusion": "foo"}, "'head_fusion' parameter must be one of mean, max, min, 'importance'"),
     ({"residual": 7}, "'residual' parameter must be a number in \\[0, 1\\]"),
     ({"discard_ratio": 1.5}, "discard_ratio")],
)
def test_run_batch_refuses_bad_method_options_before_any_model(no_model, tmp_path, options, message):  # noqa: F811
    from attnflow.batch import run_batch

    data = tmp_path / "d.txt"
    data.write_text("Dogs bark.\n")
    with pytest.raises(AttnflowError, match=message):
        run_batch(data, tmp_path / "out", methods="rollout", workers=1, **options)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "address, message",
    [("127.0.0.1:²", "must be HOST:PORT"), ("ray://127.0.0.1:1", "is a Ray Client address"),
     ("127.0.0.1:99999", "has port 99999; a port is 1 to 65535")],
)
def test_ray_addresses_that_gave_tracebacks_are_one_line_before_any_model(capsys, no_model, tmp_path, address,  # noqa: F811
                                                                          message):
    data = tmp_path / "d.txt"
    data.write_text("Dogs bark.\n")
    pytest.importorskip("ray")
    status, _, err = run_cli(capsys, "batch", "--data", data, "--out", tmp_path / "o", "--engine", "ray", "--address",
                             address)
    assert status == 2 and message in " ".join(err.split()) and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_examples_csv_never_holds_a_live_formula():
    import io

    import pandas as pd

    from attnflow.io import csv_bytes

    texts = ["=HYPERLINK(\"http://x\",\"click\")", "+1", "-cmd", "@SUM(A1)", "\tx", "plain", "a=b"]
    back = pd.read_csv(io.BytesIO(csv_bytes(pd.DataFrame({"text": texts, "score": [-0.5] * 7}))))
    assert back.text.tolist() == ["'" + t for t in texts[:4]] + ["'\tx", "plain", "a=b"]
    assert back.score.tolist() == [-0.5] * 7  # numbers stay numbers
