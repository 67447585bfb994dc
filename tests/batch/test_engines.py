"""The engines: local worker processes and a real Ray cluster give the rows of one process; kill -9, then resume.

The Ray tests start a real head (``ray start --head --block`` on 127.0.0.1) and stop it afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attnflow.batch import read_results, run_batch
from attnflow.errors import AttnflowError
from tests.batch.conftest import RAY_ENV, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("batch-engines")]  # one reference run, one head

METHODS = ["raw", "rollout", "flow"]
ROOT = Path(__file__).resolve().parents[2]

# A run that kills itself (SIGKILL, no clean-up) once `kill_at` examples are written.
KILLED_RUN = """
import os, signal, sys
from attnflow.batch import run_batch

data, out, engine, address, kill_at = sys.argv[1:6]

def progress(done, total):
    if done >= int(kill_at):
        os.killpg(os.getpgid(0), signal.SIGKILL)

run_batch(data, out, None, {methods!r}, shard_size=1, workers=2, engine=engine,
          address=None if address == "-" else address, progress=progress)
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Eight texts, one shard each, in this process (threads = cores)."""
    from tests.batch.conftest import EIGHT, write_jsonl

    folder = tmp_path_factory.mktemp("engines")
    data = write_jsonl(folder / "eight.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(EIGHT)])
    run_batch(data, folder / "one", None, METHODS, shard_size=1, workers=1, threads=1)
    return data, read_results(folder / "one")


def same_rows(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal rows, every score bit for bit."""
    lists = ["scores", "tokens", "special"]
    pd.testing.assert_frame_equal(got.drop(columns=lists), expected.drop(columns=lists), check_exact=True)
    assert [list(t) for t in got.tokens] == [list(t) for t in expected.tokens]
    assert [list(t) for t in got.special] == [list(t) for t in expected.special]
    assert all(np.array_equal(a, b) for a, b in zip(got.scores, expected.scores, strict=True))


def _killed_then_resumed(data: Path, out: Path, engine: str, address: str | None) -> pd.DataFrame:
    script = KILLED_RUN.format(methods=METHODS)
    process = subprocess.run(
        [sys.executable, "-c", script, str(data), str(out), engine, address or "-", "3"],
        cwd=ROOT, start_new_session=True, capture_output=True, text=True, env={**os.environ, **RAY_ENV},
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    written = sorted(p.name for p in (out / "scores").glob("part-*.parquet"))
    assert len(written) == 3 and not (out / "summary.json").exists()  # stopped in the middle
    workers = 2 if engine == "ray" else 1  # locally, resume in this process: another engine, the same rows
    resumed = run_batch(data, out, None, METHODS, shard_size=1, workers=workers, threads=1, engine=engine,
                        address=address)
    assert resumed.summary["last_run"]["shards"] == 5 and resumed.summary["n_examples"] == 8
    return resumed.dataframe()


def test_local_kill_9_then_resume_gives_the_rows_of_an_uninterrupted_run(reference, tmp_path):
    """Two worker processes write three shards and are killed; this process does the rest: the rows of one process."""
    data, expected = reference
    same_rows(_killed_then_resumed(data, tmp_path / "killed", "local", None), expected)


def test_ray_gives_the_rows_of_one_process(reference, tmp_path):
    """No address: a Ray of 2 workers started for this run and stopped after it.

    Run in a fresh process: a Ray started and shut down in this process would leave state behind
    that cancels the actors of a later connection to the test head (seen with Ray 2.x).
    """
    data, expected = reference
    script = (
        "import os, sys\n"
        "from attnflow.batch import run_batch\n"
        "before = os.environ.get('RAY_AUTH_MODE')\n"
        f"r = run_batch(sys.argv[1], sys.argv[2], None, {METHODS!r}, shard_size=1, engine='ray', workers=2)\n"
        "assert os.environ.get('RAY_AUTH_MODE') == before, 'Ray auth mode leaked'\n"  # Ray's setting does not leak
        "print(r.summary['last_run']['engine'], r.summary['last_run']['workers'])\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(data), str(tmp_path / "ray")], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["ray", "2"]
    same_rows(read_results(tmp_path / "ray"), expected)


def test_ray_kill_9_then_resume_gives_the_rows_of_an_uninterrupted_run(reference, ray_head, tmp_path, monkeypatch):
    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    data, expected = reference
    same_rows(_killed_then_resumed(data, tmp_path / "killed", "ray", ray_head), expected)


def test_an_unreachable_ray_address_is_one_line(reference, tmp_path):
    pytest.importorskip("ray")
    data, _ = reference
    with pytest.raises(AttnflowError, match=r"Cannot reach a Ray cluster at '127\.0\.0\.1:\d+'"):
        run_batch(data, tmp_path / "out", None, ["raw"], engine="ray", address=f"127.0.0.1:{free_port()}")


def test_ray_runs_context_mixing_graphs_and_encoder_decoder_pairs_as_one_process(ray_head, tmp_path, monkeypatch):
    """The options issue 15 lists beside images (graphs, sequence-to-sequence pairs) on the real head: equal rows."""
    from tests.batch.conftest import write_jsonl

    for key, value in RAY_ENV.items():
        monkeypatch.setenv(key, value)
    texts = write_jsonl(tmp_path / "texts.jsonl", [{"text": "The keys are on the table."}, {"text": "Dogs bark."}])
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"text": "7 2 9", "target": "9 2 7"},
                                                    {"text": "1 5 3", "target": "3 5 1"}])
    runs = [
        (texts, None, ["rollout", "flow"], {"graphs": ["attention", "alti"]}),
        (pairs, "reverse", ["rollout", "flow"], {"decoder_column": "target"}),
    ]
    for index, (data, model, methods, options) in enumerate(runs):
        one = run_batch(data, tmp_path / f"one{index}", model, methods, shard_size=1, workers=1, threads=1, **options)
        ray = run_batch(data, tmp_path / f"ray{index}", model, methods, shard_size=1, workers=2, threads=1,
                        engine="ray", address=ray_head, **options)
        assert ray.summary["last_run"]["engine"] == "ray"
        same_rows(read_results(tmp_path / f"ray{index}"), read_results(tmp_path / f"one{index}"))
        assert len(one.dataframe()) > 0
