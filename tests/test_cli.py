"""The command line, end to end, in-process and as a real subprocess."""

import json
import os
import subprocess
import sys

import pytest

from attnflow import __version__
from attnflow.cli import main

pytestmark = pytest.mark.e2e


def run_cli(capsys, *args):
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_version(capsys):
    status, out, _ = run_cli(capsys, "--version")
    assert status == 0 and __version__ in out


def test_help_lists_commands(capsys):
    status, out, _ = run_cli(capsys, "--help")
    assert status == 0 and "explain" in out


def test_explain_bundled_model_table_and_json(capsys, tmp_path):
    path = tmp_path / "out.json"
    status, out, err = run_cli(capsys, "explain", "The keys are on the table.", "--json", str(path))
    assert status == 0, err
    assert "[CLS]" in out and "rollout" in out and "keys" in out
    data = json.loads(path.read_text())
    assert data["tokens"][0] == "[CLS]" and len(data["scores"]["rollout"]) == 6


@pytest.mark.parametrize(
    "args, message",
    [
        (["explain", ""], "empty"),
        (["explain", "hello", "--method", "nope"], "Unknown method 'nope'; available: raw, rollout"),
        (["explain", "hello", "--output", "first"], "output"),
        (["explain", "hello", "--output", "99"], "output"),
        (["explain", "hello", "--model", "/nonexistent/folder"], "model"),
        (["explain", "hello", "--head-fusion", "median"], "--head-fusion"),
        (["explain", "hello", "--layer", "9"], "layer"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(capsys, args, message):
    status, out, err = run_cli(capsys, *args)
    assert status != 0
    assert message in " ".join(err.split())
    assert "Traceback" not in err + out


def test_too_long_text_needs_truncate(capsys):
    text = "word " * 600
    status, _, err = run_cli(capsys, "explain", text)
    assert status == 2 and "--truncate" in " ".join(err.split())
    status, out, err = run_cli(capsys, "explain", text, "--truncate", "--method", "rollout")
    assert status == 0, err


def test_json_not_written_on_error(capsys, tmp_path):
    path = tmp_path / "out.json"
    status, _, _ = run_cli(capsys, "explain", "", "--json", str(path))
    assert status != 0 and not path.exists()


def test_console_script_runs_as_subprocess(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-m", "attnflow", "explain", "", "--method", "rollout"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_importance_fusion_reaches_the_html_report(capsys, tmp_path):
    path = tmp_path / "report.html"
    status, _, err = run_cli(
        capsys, "explain", "The keys are on the table.", "--head-fusion", "importance", "--html", str(path)
    )
    assert status == 0, err
    assert path.is_file()
    assert '"head_fusion":"weighted"' in path.read_text(encoding="utf-8")
