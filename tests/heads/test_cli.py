"""``attnflow heads`` on the command line: the files it writes, the table it prints, and its errors."""

from __future__ import annotations

import json

import pytest
import typer

from attnflow import cli
from attnflow.commands.heads import heads as heads_command
from tests.tiny_models import save_tiny_model


@pytest.fixture
def run(monkeypatch, capsys):
    """Run ``attnflow heads ARGS`` through ``attnflow.cli.main``; returns (status, stdout, stderr)."""
    registered = any(getattr(c.callback, "__name__", "") == "heads" for c in cli.app.registered_commands)
    if not registered:  # until cli.py wires the command: the same main() around an app that has it
        app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
        app.callback()(lambda: None)
        app.command()(heads_command)
        monkeypatch.setattr(cli, "app", app)

    def invoke(*args: str) -> tuple[int, str, str]:
        status = cli.main(["heads", *map(str, args)])
        captured = capsys.readouterr()
        return status, captured.out, " ".join(captured.err.split())  # rich wraps long paths

    return invoke


def test_writes_json_and_heatmap_and_prints_the_top_heads(run, tmp_path):
    model = save_tiny_model("bert", tmp_path / "bert-cls", head="classification")
    data = tmp_path / "data.txt"
    data.write_text("The keys to the cabinet are on the table.\nA cat sat on the warm mat.\n")
    status, out, err = run("--data", data, "--model", model, "--target", "1", "--out", tmp_path / "heads", "--top", 3)
    assert status == 0, err
    report = json.loads((tmp_path / "heads" / "heads.json").read_text())
    assert report["n_layers"] == 2 and report["n_heads"] == 4 and report["target"]["class"] == 1
    assert "counted over the data set itself" in report["frequency_source"]
    assert (tmp_path / "heads" / "heads.png").read_bytes()[:4] == b"\x89PNG"
    assert "Top 3 heads by importance" in " ".join(out.split())
    assert str(tmp_path / "heads" / "heads.json") in out


def test_errors_leave_nothing_behind(run, tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("hello\n")
    target = tmp_path / "a-file"
    target.write_text("x")
    status, _, err = run("--data", data, "--out", target)
    assert status == 2 and "is a file" in err
    status, _, err = run("--data", tmp_path / "missing.txt", "--out", tmp_path / "out")
    assert status == 2 and not (tmp_path / "out").exists()
