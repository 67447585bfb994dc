"""Output into a pipe that closes early (issue 28, item 3): the files are written, the exit is quiet.

Real pipes and real processes: the reader's end is closed before the command
prints anything (what ``| head -0`` does, so the first write fails every time),
or after one line as ``| head -1`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from attnflow.cli import SIGPIPE_STATUS

pytestmark = pytest.mark.e2e

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _attnflow(*args) -> list[str]:
    return [sys.executable, "-m", "attnflow", *map(str, args)]


def _explain(model, tmp_path) -> list[str]:
    return _attnflow("explain", "The keys to the cabinet are here.", "--model", model, "--method", "rollout",
                     "--method", "flow", "--json", tmp_path / "a.json", "--html", tmp_path / "a.html")


def _assert_files(tmp_path) -> None:
    assert json.loads((tmp_path / "a.json").read_text())["tokens"][0] == "[CLS]"
    page = (tmp_path / "a.html").read_text()
    assert page.rstrip().endswith("</html>")
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")], "a temporary file was left"


def test_a_pipe_closed_before_the_first_line_loses_no_file(tmp_path, tiny_bert_path):
    process = subprocess.Popen(_explain(tiny_bert_path, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=ENV, cwd=tmp_path)
    process.stdout.close()  # the reader is gone before anything is written
    err = process.stderr.read().decode()
    assert process.wait(timeout=600) == SIGPIPE_STATUS, err
    assert "Traceback" not in err and "error" not in err.lower() and "Exception ignored" not in err, err
    _assert_files(tmp_path)


def test_head_dash_1_leaves_both_files(tmp_path, tiny_bert_path):
    """``attnflow explain ... --json a.json --html a.html | head -1`` in a shell, as the issue ran it."""
    command = " ".join(f"'{part}'" for part in _explain(tiny_bert_path, tmp_path))
    run = subprocess.run(["bash", "-c", f"{command} | head -1; exit ${{PIPESTATUS[0]}}"], capture_output=True,
                         text=True, env=ENV, cwd=tmp_path, timeout=600)
    assert run.returncode in (0, SIGPIPE_STATUS), run.stderr
    assert run.stdout.startswith("Scores for") and run.stdout.count("\n") == 1
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr
    _assert_files(tmp_path)


def test_help_into_a_closed_pipe_is_quiet(tmp_path):
    process = subprocess.Popen(_attnflow("explain", "--help"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=ENV, cwd=tmp_path)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=600) in (0, SIGPIPE_STATUS)
    assert err == "", err
