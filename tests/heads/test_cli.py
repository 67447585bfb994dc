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


def test_syntactic_roles_from_the_arcs_in_the_data_file(run, tmp_path):
    from attnflow.tasks import sva

    data = sva.write_jsonl(sva.generate(6, split="test", seed=4), tmp_path / "sva.jsonl", arcs=True)
    status, out, err = run("--data", data, "--model", "sva", "--target", "gold", "--dependencies", "data",
                           "--relation", "det", "--relation", "agreement", "--out", tmp_path / "heads", "--top", 2)
    assert status == 0, err
    report = json.loads((tmp_path / "heads" / "heads.json").read_text())
    assert sorted(report["syntactic"]) == ["agreement", "det"]
    assert report["thresholds"] == {"positional": 0.9, "rare": 0.5, "syntactic_margin": 0.1, "share": 0.5}
    assert report["dependency_source"].startswith("the 'arcs' of")
    assert len(report["roles"]) == 6 and len(report["roles"][0]) == 8 and "share_roles" in report
    text = " ".join(out.split())
    assert "Syntactic heads" in text and "agreement" in text


def test_syntactic_roles_from_a_conllu_file(run, tmp_path):
    model = save_tiny_model("bert", tmp_path / "bert-cls", head="classification")
    data = tmp_path / "data.txt"
    data.write_text("Dogs bark loudly.\n")
    conllu = tmp_path / "parse.conllu"
    conllu.write_text("1\tDogs\t_\t_\t_\t_\t2\tnsubj\t_\t_\n2\tbark\t_\t_\t_\t_\t0\troot\t_\t_\n"
                      "3\tloudly\t_\t_\t_\t_\t2\tadvmod\t_\t_\n4\t.\t_\t_\t_\t_\t2\tpunct\t_\t_\n\n")
    status, _, err = run("--data", data, "--model", model, "--target", "1", "--dependencies", conllu,
                         "--out", tmp_path / "heads")
    assert status == 0, err
    report = json.loads((tmp_path / "heads" / "heads.json").read_text())
    assert sorted(report["syntactic"]) == ["advmod", "nsubj", "punct"]
    assert report["syntactic"]["nsubj"]["n_arcs"] == 1


def test_bad_dependencies_get_one_line(run, tmp_path):
    model = save_tiny_model("bert", tmp_path / "bert-cls", head="classification")
    text = tmp_path / "data.txt"
    text.write_text("Dogs bark.\n")
    status, _, err = run("--data", text, "--model", model, "--dependencies", "data", "--out", tmp_path / "o1")
    assert status == 2 and "needs a .jsonl --data file" in err
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"text": "Dogs bark."}\n')
    status, _, err = run("--data", plain, "--model", model, "--dependencies", "data", "--out", tmp_path / "o2")
    assert status == 2 and "has no 'arcs' field" in err
    arcs = tmp_path / "arcs.jsonl"
    arcs.write_text('{"text": "Dogs bark.", "arcs": [[1, 0, "nsubj"]]}\n')
    status, _, err = run("--data", arcs, "--model", model, "--dependencies", "data", "--relation", "dobj",
                         "--out", tmp_path / "o3")
    assert status == 2 and "'dobj' does not occur in the dependencies; they have: nsubj" in err
    status, _, err = run("--data", arcs, "--model", model, "--dependencies", tmp_path / "no.conllu",
                         "--out", tmp_path / "o4")
    assert status == 2 and "is not a file" in err
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_pruning_by_ranking_and_by_gates_from_the_command_line(run, tmp_path):
    model = save_tiny_model("bert", tmp_path / "bert-cls", head="classification")
    data = tmp_path / "data.txt"
    data.write_text("The keys to the cabinet are on the table.\nA cat sat on the warm mat.\nDogs bark.\n")
    status, out, err = run("--data", data, "--model", model, "--target", "predicted", "--out", tmp_path / "heads",
                           "--prune", "--gates", "--penalty", 0, "--penalty", 100, "--gate-steps", 40, "--top", 0)
    assert status == 0, err
    gates = json.loads((tmp_path / "heads" / "gates.json").read_text())
    assert [row["penalty"] for row in gates["rows"]] == [0.0, 100.0]
    assert gates["rows"][0]["n_kept"] == 8 and gates["rows"][1]["n_kept"] < 8
    assert gates["labels"] == "the unpruned model's predictions"
    pruning = json.loads((tmp_path / "heads" / "pruning.json").read_text())
    assert pruning["format"] == "attnflow.head_pruning" and pruning["n_heads"] == 8
    assert (tmp_path / "heads" / "pruning.png").read_bytes()[:4] == b"\x89PNG"
    text = " ".join(out.split())
    assert "Pruning with stochastic gates" in text and "Pruning by importance ranking" in text
    status, _, err = run("--data", data, "--model", model, "--out", tmp_path / "again", "--penalty", 0.1)
    assert status == 2 and "need --prune or --gates" in err
    status, out, err = run("--data", data, "--model", model, "--target", "predicted", "--out", tmp_path / "tuned",
                           "--gates", "--fine-tune", "--model-learning-rate", 0.001, "--penalty", 0,
                           "--gate-steps", 5, "--top", 0)
    assert status == 0, err
    tuned = json.loads((tmp_path / "tuned" / "gates.json").read_text())
    assert tuned["fine_tune"] is True and tuned["settings"]["model_learning_rate"] == 0.001
    assert "all_heads_accuracy" in tuned["rows"][0] and "model fine-tuned with the gates" in " ".join(out.split())
    status, _, err = run("--data", data, "--model", model, "--out", tmp_path / "again2", "--fine-tune")
    assert status == 2 and "--fine-tune trains the model with the head gates: it needs --gates." in err
