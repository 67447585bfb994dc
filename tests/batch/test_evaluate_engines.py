"""``attnflow evaluate --engine``: shards on the batch engines give the numbers of one process; kill -9, then resume.

The bundled ``sva`` model on four sentences; the Ray test uses the real local head of
``tests/batch/conftest.py`` (``ray start --head`` on loopback).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from attnflow import cli
from tests.batch.conftest import RAY_ENV

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("batch-engines")]

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = [
    "the keys to the cabinet are on the table .",
    "the author of the books is here .",
    "the dog near the cars barks .",
    "the pictures of the girl are old .",
]
OPTIONS = ["--model", "sva", "--method", "raw", "--method", "rollout", "--ground-truth", "blankout",
           "--ground-truth", "gradient", "--percent", "20", "--percent", "40", "--seed", "1"]

# `attnflow evaluate ARGS` that SIGKILLs itself and its workers once `kill_at` examples are written.
KILLED_RUN = """
import os, signal, sys
import attnflow.batch as batch
from attnflow import cli

real, kill_at = batch.run_batch, int(sys.argv[1])

def killing(*args, progress=None, **kwargs):
    def watch(done, total):
        if done >= kill_at:
            os.killpg(os.getpgid(0), signal.SIGKILL)
    return real(*args, progress=watch, **kwargs)

for name, module in list(sys.modules.items()):  # every binding of run_batch (imported at the top of callers)
    if name.startswith("attnflow") and getattr(module, "run_batch", None) is real:
        module.run_batch = killing
sys.exit(cli.main(["evaluate", *sys.argv[2:]]))
"""


def evaluate(*args: object) -> int:
    return cli.main(["evaluate", *map(str, args)])


def results(folder: Path) -> dict:
    data = json.loads((folder / "results.json").read_text())
    return data


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The four sentences evaluated in one process (one torch thread), then in shards of one in this process."""
    import torch

    folder = tmp_path_factory.mktemp("evaluate-engines")
    data = folder / "four.txt"
    data.write_text("\n".join(SENTENCES) + "\n")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert evaluate("--data", data, "--out", folder / "one", *OPTIONS) == 0
    finally:
        torch.set_num_threads(before)
    assert evaluate("--data", data, "--out", folder / "sharded", *OPTIONS, "--engine", "local", "--workers", 1,
                    "--threads", 1, "--shard-size", 1) == 0
    return data, folder


def _close(a, b, path="") -> None:
    """Equal JSON values, floats to 1e-9 (one process pads its batches; shards capture each text alone)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}/{i}")
    elif isinstance(a, float) and isinstance(b, float):
        # literal: shards run the same arithmetic as one process; rankings decide the metrics, so float32 noise
        # would move them by jumps no rounding bound describes
        assert a == pytest.approx(b, abs=1e-9), path
    else:
        assert a == b, path


def test_shards_give_the_results_of_one_process(reference):
    _, folder = reference
    one, sharded = results(folder / "one"), results(folder / "sharded")
    _close(sharded, one)
    assert one["n_examples"] == 4 and set(one["faithfulness"]["methods"]) == {"raw", "rollout", "random"}
    assert sorted(p.name for p in (folder / "sharded").iterdir()) == [
        "correlation.png", "examples.csv", "manifest.json", "results.json", "scores", "summary.json", "texts.parquet"]
    pd.testing.assert_frame_equal(pd.read_csv(folder / "sharded" / "examples.csv"),
                                  pd.read_csv(folder / "one" / "examples.csv"), check_exact=False, atol=1e-9)


def _killed_then_resumed(data: Path, out: Path, engine: list[str]) -> dict:
    process = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, "2", "--data", str(data), "--out", str(out), *OPTIONS, *engine,
         "--threads", "1", "--shard-size", "1"],
        cwd=ROOT, start_new_session=True, capture_output=True, text=True, env={**os.environ, **RAY_ENV},
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert len(list((out / "scores").glob("part-*.parquet"))) == 2 and not (out / "results.json").exists()
    assert evaluate("--data", data, "--out", out, *OPTIONS, *engine, "--threads", 1, "--shard-size", 1) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["last_run"]["shards"] == 2 and summary["n_examples"] == 4
    return results(out)


def test_local_kill_9_then_resume_gives_the_results_of_an_uninterrupted_run(reference, tmp_path):
    data, folder = reference
    resumed = _killed_then_resumed(data, tmp_path / "killed", ["--engine", "local", "--workers", "2"])
    assert resumed == results(folder / "sharded")  # every number, exactly


def test_ray_kill_9_then_resume_gives_the_results_of_an_uninterrupted_run(reference, ray_head, tmp_path, monkeypatch):
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    data, folder = reference
    resumed = _killed_then_resumed(data, tmp_path / "killed",
                                   ["--engine", "ray", "--address", ray_head, "--workers", "2"])
    assert resumed == results(folder / "sharded")


def test_other_options_are_refused_unless_overwrite(reference, tmp_path, capsys):
    data, folder = reference
    out = tmp_path / "copy"
    import shutil

    shutil.copytree(folder / "sharded", out)
    sharded = ["--engine", "local", "--workers", "1", "--threads", "1", "--shard-size", "1"]
    assert evaluate("--data", data, "--out", out, *OPTIONS[:-1], "2", *sharded) == 2
    assert "holds a run with other options (evaluation:" in " ".join(capsys.readouterr().err.split())
    assert results(out) == results(folder / "sharded")  # untouched
    assert evaluate("--data", data, "--out", out, *OPTIONS[:-1], "2", *sharded, "--overwrite") == 0
    assert results(out)["options"]["seed"] == 2


def test_a_folder_of_one_process_evaluate_is_not_mixed_into(reference, capsys):
    data, folder = reference
    assert evaluate("--data", data, "--out", folder / "one", *OPTIONS, "--engine", "local", "--workers", 1) == 2
    assert "holds no batch run" in " ".join(capsys.readouterr().err.split())
