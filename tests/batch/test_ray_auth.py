"""``--engine ray --address`` as Ray ships (issue 28 item 4, D10, D11): token authentication, and bounded failures.

Real heads: one started with Ray's defaults where a token exists (authentication on,
``ray_token_head``) and one with authentication off (``ray_head``). Each driver is
``attnflow batch`` in a fresh process, with ``RAY_AUTH_MODE`` unset unless a test sets it,
so Ray reads the token where it documents it (``~/.ray/auth_token`` under ``HOME``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from attnflow.batch import read_results, run_batch
from tests.batch.conftest import write_jsonl

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("batch-engines")]

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [{"text": "The keys are on the table."}, {"text": "Dogs bark."}]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("auth") / "two.jsonl", TEXTS)


@pytest.fixture(scope="module")
def one_process(data, minilm, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "out"
    run_batch(data, out, minilm, ["raw"], workers=1, threads=1, head_fusion="mean")
    return read_results(out)


def _batch(data: Path, out: Path, address: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    base = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
    return subprocess.run(
        [sys.executable, "-m", "attnflow", "batch", "--data", str(data), "--out", str(out), "--method", "raw",
         "--engine", "ray", "--address", address, "--workers", "1", "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, env={**base, "HOME": str(home), **env},
    )


def _one_error_line(run: subprocess.CompletedProcess) -> str:
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-3000:]
    return lines[0]


def test_a_default_head_with_token_auth_works_with_the_token_where_ray_keeps_it(
    data, one_process, ray_token_head, token_home, tmp_path
):
    run = _batch(data, tmp_path / "out", ray_token_head, token_home)
    assert run.returncode == 0, run.stderr[-3000:]
    pd.testing.assert_frame_equal(read_results(tmp_path / "out"), one_process)


def test_auth_failures_are_one_line_that_says_so(data, ray_token_head, token_home, tmp_path):
    no_token = _one_error_line(_batch(data, tmp_path / "a", ray_token_head, tmp_path))  # a home without a token
    assert "requires token authentication and this process has no token for it" in no_token
    assert "copy the cluster's token (`ray get-auth-token` on the head) to ~/.ray/auth_token" in no_token
    wrong = _one_error_line(_batch(data, tmp_path / "b", ray_token_head, token_home, RAY_AUTH_TOKEN="wrong"))
    assert "requires token authentication and it refused the token from RAY_AUTH_TOKEN" in wrong


def test_a_head_without_auth_works_even_where_a_token_exists(data, one_process, ray_head, token_home, tmp_path):
    """A driver in token mode would connect to this head, but its actors would never start: none is forced."""
    run = _batch(data, tmp_path / "out", ray_head, token_home)
    assert run.returncode == 0, run.stderr[-3000:]
    pd.testing.assert_frame_equal(read_results(tmp_path / "out"), one_process)


def test_a_plain_tcp_listener_is_not_a_cluster(data, tmp_path):
    """It passes a TCP connect; Ray would retry for minutes. The probe is bounded by GCS_PROBE_SECONDS."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        try:
            while True:
                accepted.append(listener.accept()[0])
        except OSError:  # closed at the end of the test
            pass

    threading.Thread(target=accept, daemon=True).start()
    try:
        port = listener.getsockname()[1]
        line = _one_error_line(_batch(data, tmp_path / "out", f"127.0.0.1:{port}", tmp_path))
    finally:
        listener.close()
    assert f"Something answers at '127.0.0.1:{port}', but no Ray cluster (no reply within 10 s)" in line


def test_a_stale_current_cluster_file_for_auto_is_one_line(data, tmp_path):
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")  # left by a Ray long stopped
    line = _one_error_line(_batch(data, tmp_path / "out", "auto", tmp_path, RAY_TMPDIR=str(tmp_path)))
    assert "Cannot reach a Ray cluster at 'auto' (auto found" in line and ":1'" in line
