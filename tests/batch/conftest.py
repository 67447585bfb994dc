"""Tiny data sets for the batch tests (eight short texts), and a real local Ray head."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# The test head, its drivers and this process agree on Ray's authentication mode whatever ~/.ray holds:
# off (the head listens on loopback only, for the length of these tests).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

EIGHT = [
    "The keys to the cabinet are on the table.",
    "A cat sat on the warm mat.",
    "I really loved this film.",
    "Dogs bark.",
    "She reads a new book every week, often two.",
    "Rain again.",
    "The author of the books is here.",
    "Where does the output draw its information from?",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def eight_jsonl(tmp_path: Path) -> Path:
    """Eight texts with integer labels, as JSONL."""
    return write_jsonl(tmp_path / "eight.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(EIGHT)])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_head(env: dict[str, str]):
    """A real Ray head on loopback with 2 CPUs and ``env``, for the length of the ``with``; yields its address."""
    pytest.importorskip("ray")
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    command = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}",
        "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    head = subprocess.Popen(command, start_new_session=True, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    address = f"127.0.0.1:{port}"
    try:
        while True:  # until the head answers (or dies)
            if head.poll() is not None:
                pytest.fail(f"ray start --head exited: {head.stderr.read()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.5)
        yield address
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        try:
            os.killpg(head.pid, signal.SIGKILL)  # anything of the session still alive
        except ProcessLookupError:
            pass
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_head():
    """A real Ray head with authentication off, started once for the tests that use it and stopped after them.

    Tests using it belong to the ``xdist_group("batch-engines")``, so one head serves them all.
    """
    with running_head({**os.environ, **RAY_ENV}) as address:
        yield address


@pytest.fixture(scope="session")
def token_home(tmp_path_factory) -> Path:
    """A home folder holding a Ray token where Ray keeps it (``~/.ray/auth_token``), as ``ray start`` leaves it."""
    import secrets

    home = tmp_path_factory.mktemp("home")
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))
    return home


@pytest.fixture(scope="session")
def ray_token_head(token_home):
    """A real Ray head started as Ray 2.60 starts one by default where a token exists: token authentication on.

    ``RAY_AUTH_MODE`` is unset, and ``HOME`` is :func:`token_home`.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
    with running_head({**env, "HOME": str(token_home), "RAY_USAGE_STATS_ENABLED": "0"}) as address:
        yield address
