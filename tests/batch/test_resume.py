"""Resume and --overwrite trust only what this run wrote (issue 28, D6-D8): damaged, foreign and old shards.

Each probe starts from a copy of one finished run (the eight texts, ``raw``, shards of
three rows in this process) and checks the rows a rerun gives against that run's.
"""

from __future__ import annotations

import json
import shutil
import struct

import pandas as pd
import pyarrow.parquet as pq
import pytest

from attnflow import cli
from attnflow.batch import read_results, run_batch
from attnflow.batch.runner import FORMAT_VERSION
from attnflow.errors import AttnflowError
from tests.batch.conftest import EIGHT, write_jsonl


@pytest.fixture(scope="module")
def finished(tmp_path_factory, minilm):
    folder = tmp_path_factory.mktemp("resume")
    data = write_jsonl(folder / "eight.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(EIGHT)])
    result = run_batch(data, folder / "out", minilm, ["raw"], shard_size=3, workers=1, head_fusion="mean")  # as the CLI
    return data, folder / "out", result.dataframe()


@pytest.fixture
def copy(finished, tmp_path):
    shutil.copytree(finished[1], tmp_path / "copy")
    return tmp_path / "copy"


def _rerun(finished, out, minilm, **kwargs):
    lines: list[str] = []
    result = run_batch(finished[0], out, minilm, ["raw"], shard_size=3, workers=1, log=lines.append,
                       head_fusion="mean", **kwargs)
    return result, lines


def _damage_data_pages(path):
    """XOR 16 bytes in the middle of the data pages, leaving the footer (and so the schema) intact."""
    content = bytearray(path.read_bytes())
    footer = struct.unpack("<I", content[-8:-4])[0]
    middle = (4 + len(content) - 8 - footer) // 2
    for i in range(middle, middle + 16):
        content[i] ^= 0xFF
    path.write_bytes(bytes(content))
    pq.read_schema(path)  # the metadata still reads: only the pages tell


def test_a_shard_with_damaged_pages_is_computed_again(finished, copy, minilm):
    shard = copy / "scores" / "part-00001.parquet"
    _damage_data_pages(shard)
    with pytest.raises(AttnflowError, match=r"part-00001.parquet' is not one of this run's: its data cannot be read"):
        read_results(copy)
    result, lines = _rerun(finished, copy, minilm)
    assert lines[0] == "Resuming: 2 of 3 shards done" and "part-00001.parquet is computed again: its data" in lines[1]
    assert result.summary["last_run"]["shards"] == 1
    pd.testing.assert_frame_equal(read_results(copy), finished[2])


def test_a_shard_copied_over_another_is_not_taken_for_it(finished, copy, minilm):
    scores = copy / "scores"
    shutil.copyfile(scores / "part-00000.parquet", scores / "part-00002.parquet")
    with pytest.raises(AttnflowError, match="belongs to another run or another shard"):
        read_results(copy)
    result, lines = _rerun(finished, copy, minilm)
    assert lines == ["Resuming: 2 of 3 shards done",
                     "  part-00002.parquet is computed again: it belongs to another run or another shard"]
    frame = read_results(copy)
    assert not frame.duplicated(["example", "method", "layer"]).any() and set(frame.example) == set(range(8))
    pd.testing.assert_frame_equal(frame, finished[2])


def test_a_shard_of_another_run_with_the_same_number_is_computed_again(finished, copy, minilm, tmp_path):
    other = run_batch(finished[0], tmp_path / "other", minilm, ["rollout"], shard_size=3, workers=1)
    shutil.copyfile(other.scores_path / "part-00001.parquet", copy / "scores" / "part-00001.parquet")
    result, lines = _rerun(finished, copy, minilm)
    assert result.summary["last_run"]["shards"] == 1 and "part-00001.parquet is computed again" in lines[1]
    pd.testing.assert_frame_equal(read_results(copy), finished[2])


def test_overwrite_through_a_scores_link_replaces_the_old_rows(finished, minilm, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "scores").symlink_to(elsewhere)
    run_batch(finished[0], out, minilm, ["raw"], shard_size=3, workers=1)
    (elsewhere / "thesis.csv").write_text("mine")
    replaced = run_batch(finished[0], out, minilm, ["rollout"], shard_size=4, workers=1, overwrite=True)
    assert replaced.summary["last_run"]["shards"] == 2 and set(read_results(out).method) == {"rollout"}
    assert (out / "scores").is_symlink() and sorted(p.name for p in elsewhere.iterdir()) == [
        "part-00000.parquet", "part-00001.parquet", "thesis.csv"]


def test_overwrite_never_deletes_a_users_files(finished, copy, minilm):
    (copy / "scores" / "thesis.csv").write_text("my thesis")
    (copy / "notes.md").write_text("my notes")
    replaced = run_batch(finished[0], copy, minilm, ["rollout"], shard_size=3, workers=1, overwrite=True)
    assert replaced.summary["shards"] == 3 and set(read_results(copy).method) == {"rollout"}
    assert (copy / "scores" / "thesis.csv").read_text() == "my thesis" and (copy / "notes.md").exists()


@pytest.mark.parametrize("mine", ["summary.json", "manifest.json", "scores/part-00001.parquet", "scores"])
def test_a_users_file_where_a_run_writes_is_refused_even_with_overwrite(finished, copy, minilm, mine):
    path = copy / mine
    if path.is_dir():
        shutil.rmtree(path)
    path.write_text(json.dumps({"my": "results"}))
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    for overwrite in (False, True):
        with pytest.raises(AttnflowError, match=rf"{mine}' was not written by attnflow batch.*move it away"):
            run_batch(finished[0], copy, minilm, ["rollout"], shard_size=3, workers=1, overwrite=overwrite)
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before
    assert json.loads(path.read_text()) == {"my": "results"}


def test_a_run_of_the_old_format_is_refused_on_resume_naming_both_versions(finished, copy, minilm, capsys):
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    status = cli.main(["batch", "--data", str(finished[0]), "--out", str(copy), "--method", "raw", "--workers", "1",
                       "--shard-size", "3"])
    err = " ".join(capsys.readouterr().err.split())
    assert status == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert f"was written with format version 1; this attnflow writes version {FORMAT_VERSION}" in err
    assert "pass --overwrite to start again" in err
    result, lines = _rerun(finished, copy, minilm, overwrite=True)
    assert lines == [] and result.summary["last_run"]["shards"] == 3
    pd.testing.assert_frame_equal(read_results(copy), finished[2])


def test_the_command_says_it_resumes(finished, copy, capsys):
    (copy / "scores" / "part-00002.parquet").unlink()
    status = cli.main(["batch", "--data", str(finished[0]), "--out", str(copy), "--method", "raw", "--workers", "1",
                       "--shard-size", "3"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "Resuming: 2 of 3 shards done" in captured.err
    assert "8 examples explained (2 in this run" in " ".join(captured.out.split())
