"""``attnflow batch`` on the command line: outputs, resume, and one-line errors (exit status 2)."""

from __future__ import annotations

import json
import socket
import sys

import pandas as pd
import pytest

from attnflow import cli
from tests.batch.conftest import write_jsonl


def _flat(text: str) -> str:
    return " ".join(text.split())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def run(capsys):
    def invoke(*args: str) -> tuple[int, str, str]:
        status = cli.main(["batch", *args])
        captured = capsys.readouterr()
        return status, _flat(captured.out), _flat(captured.err)

    return invoke


@pytest.mark.e2e
def test_batch_writes_parquet_and_a_summary_then_resumes(run, eight_jsonl, tmp_path):
    out = tmp_path / "out"
    status, stdout, _ = run("--data", str(eight_jsonl), "--out", str(out), "--method", "rollout", "--workers", "1",
                            "--shard-size", "3")
    assert status == 0, stdout
    assert "8 examples explained (8 in this run on 1 local worker(s)" in stdout and "0 skipped; 48 rows" in stdout
    assert len(pd.read_parquet(out / "scores")) == 48
    assert json.loads((out / "summary.json").read_text())["n_examples"] == 8
    status, stdout, _ = run("--data", str(eight_jsonl), "--out", str(out), "--method", "rollout", "--workers", "1",
                            "--shard-size", "3")
    assert status == 0 and "(0 in this run" in stdout
    status, _, stderr = run("--data", str(eight_jsonl), "--out", str(out), "--method", "raw", "--workers", "1",
                            "--shard-size", "3")
    assert status == 2 and "holds a run with other options (methods: ['rollout'] -> ['raw']" in stderr
    assert "--overwrite" in stderr and "Traceback" not in stderr


def test_skipped_rows_are_listed(run, tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "A fine day."}, {"text": ""}])
    status, stdout, _ = run("--data", str(data), "--out", str(tmp_path / "out"), "--method", "raw", "--workers", "1")
    assert status == 0 and "1 skipped" in stdout and "skipped 1: empty text" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text-column", "sentence"], "has no 'sentence' column (the texts); its columns are ['text', 'label']"),
        (["--engine", "ray", "--address", "127.0.0.1:@PORT@"], "Cannot reach a Ray cluster at '127.0.0.1:@PORT@'"),
        (["--engine", "ray", "--address", "nowhere"], "The Ray address 'nowhere' must be HOST:PORT"),
        (["--workers", "0"], "'workers' parameter must be a positive integer"),
    ],
)
def test_errors_are_one_line(run, eight_jsonl, tmp_path, args, message):
    port = str(_free_port())
    args = [a.replace("@PORT@", port) for a in args]
    status, _, stderr = run("--data", str(eight_jsonl), "--out", str(tmp_path / "out"), "--method", "raw", *args)
    assert status == 2
    assert message.replace("@PORT@", port) in stderr and "Traceback" not in stderr


def test_without_ray_the_engine_says_how_to_install_it(run, eight_jsonl, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were not installed
    status, _, stderr = run("--data", str(eight_jsonl), "--out", str(tmp_path / "out"), "--engine", "ray")
    assert status == 2 and "--engine ray needs Ray: pip install 'ray>=2.9,<3'" in stderr
