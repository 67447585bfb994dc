"""The Parquet schema (issue 28 item 5): ``special`` per token, ``words`` (``words=True``), texts once, in order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import attnflow
from attnflow.batch import COLUMNS, read_results, run_batch
from attnflow.batch.worker import WORD_COLUMNS
from attnflow.errors import AttnflowError
from attnflow.words import word_groups
from tests.batch.conftest import EIGHT, write_jsonl


@pytest.fixture(scope="module")
def worded(tmp_path_factory, minilm):
    folder = tmp_path_factory.mktemp("schema")
    data = write_jsonl(folder / "eight.jsonl", [{"text": t} for t in EIGHT])
    run_batch(data, folder / "out", minilm, ["raw", "rollout"], shard_size=3, workers=1, words=True)
    return folder / "out"


def test_rows_read_back_in_example_order_though_shards_are_cut_by_length(worded):
    frame = read_results(worded)
    assert list(frame.columns) == [*COLUMNS, *WORD_COLUMNS]
    assert frame.example.is_monotonic_increasing and sorted(set(frame.example)) == list(range(8))
    direct = pd.read_parquet(worded / "scores")  # shard order: rows sorted by token count, not example
    assert not direct.example.is_monotonic_increasing and len(direct) == len(frame)


def test_special_marks_the_special_tokens(worded, minilm):
    frame = read_results(worded)
    for index, text in enumerate(EIGHT):
        row = frame[frame.example == index].iloc[0]
        ids = minilm.tokenizer(text)["input_ids"]
        expected = [bool(m) for m in minilm.tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)]
        assert list(row.special) == expected and expected[0] and expected[-1] and not any(expected[1:-1])
        assert len(row.special) == row.n_tokens == len(row.tokens)


def test_words_are_attnflow_word_groups_and_their_scores_sum_the_pieces(worded, minilm):
    frame = read_results(worded)
    for index, text in enumerate(EIGHT):
        rows = frame[frame.example == index]
        groups = word_groups(minilm, minilm.tokenizer(text)["input_ids"], text)
        for row in rows.itertuples():
            assert list(row.words) == groups.labels
            by_hand = [sum(row.scores[p] for p in group) for group in groups.groups]
            # a sum of at most n float64 terms each below 1: n * eps64
            np.testing.assert_allclose(row.word_scores, by_hand, rtol=0, atol=len(row.scores) * np.finfo(float).eps)
            if row.method == "rollout":  # rollout's shares still sum to one over the words
                assert abs(sum(row.word_scores) - 1) <= len(row.scores) * np.finfo(float).eps
    explained = attnflow.explain(EIGHT[0], minilm, methods=["rollout"], words=True)
    assert list(frame[frame.example == 0].iloc[0].words) == explained.words.labels


def test_the_text_is_kept_once_per_example(worded):
    shard = pq.read_table(worded / "scores" / "part-00000.parquet")
    assert "text" not in shard.column_names
    texts = pq.read_table(worded / "texts.parquet").to_pandas()
    assert texts.example.tolist() == list(range(8)) and texts.text.tolist() == EIGHT
    frame = read_results(worded)
    assert all(frame.text == frame.example.map(dict(enumerate(EIGHT))))


def test_a_missing_texts_file_is_written_again_on_resume(worded, minilm, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(worded, copy)
    (copy / "texts.parquet").unlink()
    with pytest.raises(AttnflowError, match="has no texts.parquet of this run; rerun the batch command"):
        read_results(copy)
    run_batch(worded.parent / "eight.jsonl", copy, minilm, ["raw", "rollout"], shard_size=3, workers=1, words=True)
    pd.testing.assert_frame_equal(read_results(copy), read_results(worded))


def test_words_are_for_texts(tmp_path):
    with pytest.raises(AttnflowError, match=r"Words \(--words\) are for the rows of texts; images"):
        run_batch(None, tmp_path / "out", images=tmp_path, words=True)
