"""``attnflow batch --images FOLDER``: one row per image x method x layer, equal to explain_image, resumable."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from attnflow import cli, explain_image
from attnflow.batch import read_results, run_batch
from attnflow.errors import AttnflowError

METHODS = ["raw", "rollout"]


@pytest.fixture
def digits(tmp_path, capsys):
    """Four digits-vit test images, written by ``attnflow samples digits``, and one file that is no image."""
    folder = tmp_path / "digits"
    assert cli.main(["samples", "digits", str(folder), "--n", "4"]) == 0
    capsys.readouterr()
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not read: not an image ending")
    return folder


def test_rows_equal_explain_image_and_a_broken_image_is_counted(digits, tmp_path, capsys):
    out = tmp_path / "out"
    status = cli.main(["batch", "--images", str(digits), "--out", str(out), "--method", "raw", "--method", "rollout",
                       "--workers", "1", "--shard-size", "2"])
    printed = " ".join(capsys.readouterr().out.split())
    assert status == 0 and "4 examples explained" in printed and "1 skipped" in printed
    frame = read_results(out)
    names = sorted(p.name for p in digits.glob("*.png"))  # example numbers follow the file names
    assert names[0] == "broken.png"
    summary = pd.read_json(out / "summary.json", typ="series")
    assert summary["n_rows"] == 5 and summary["n_examples"] == 4 and summary["skipped"][0]["example"] == 0
    assert "Cannot read the image" in summary["skipped"][0]["reason"]
    assert len(frame) == 4 * len(METHODS) * 4  # digits-vit has 4 layers
    assert frame["text"].isna().all() and frame["label"].isna().all()
    for example, group in frame.groupby("example"):
        name = names[example]
        assert set(group["image"]) == {name}
        expected = explain_image(digits / name, "digits-vit", methods=METHODS)
        for method in METHODS:
            rows = group[group["method"] == method].sort_values("layer")
            np.testing.assert_array_equal(np.stack(rows["scores"].to_list()), expected.scores[method])
            assert rows["tokens"].iloc[0].tolist() == expected.tokens
            assert rows["grid"].iloc[0].tolist() == expected.image["grid"] == [4, 4]


def test_resume_after_a_lost_shard_and_a_changed_folder_is_refused(digits, tmp_path):
    out = tmp_path / "out"
    first = run_batch(None, out, images=digits, methods=["rollout"], workers=1, shard_size=2)
    before = first.dataframe()
    (out / "scores" / "part-00001.parquet").unlink()  # as if killed before that shard was written
    again = run_batch(None, out, images=digits, methods=["rollout"], workers=1, shard_size=2)
    assert again.summary["last_run"]["shards"] == 1
    pd.testing.assert_frame_equal(again.dataframe(), before)
    shutil.copy(sorted(digits.glob("test*.png"))[0], digits / "test999-copy.png")
    with pytest.raises(AttnflowError, match="changed since the run"):
        run_batch(None, out, images=digits, methods=["rollout"], workers=1, shard_size=2)
    texts = tmp_path / "texts.txt"
    texts.write_text("Dogs bark.\n")
    with pytest.raises(AttnflowError, match="other options"):
        run_batch(texts, out, "digits-vit", methods=["rollout"], workers=1, shard_size=2)


def test_bad_combinations_are_one_line(digits, tmp_path, capsys):
    cases = [
        (["--images", str(digits), "--model", "sva"], "takes text; --images needs an image model"),
        (["--images", str(digits), "--evaluate"], "attnflow evaluate --images FOLDER"),
        ([], "Give --data FILE (texts) or --images FOLDER, exactly one of them."),
        (["--images", str(tmp_path / "none")], "does not exist"),
        (["--images", str(digits / "notes.txt")], "is a file; --images takes a folder"),
    ]
    for args, message in cases:
        status = cli.main(["batch", "--out", str(tmp_path / "o"), "--workers", "1", *args])
        err = " ".join(capsys.readouterr().err.split())
        assert status == 2 and message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "o" / "manifest.json").exists()


@pytest.mark.slow
def test_two_local_workers_give_the_rows_of_one_process(digits, tmp_path):
    one = run_batch(None, tmp_path / "one", images=digits, methods=["rollout"], workers=1, threads=1, shard_size=1)
    two = run_batch(None, tmp_path / "two", images=digits, methods=["rollout"], workers=2, threads=1, shard_size=1)
    assert two.summary["last_run"]["workers"] == 2
    pd.testing.assert_frame_equal(one.dataframe(), two.dataframe())
