"""Tables that survive a pipe and a narrow terminal (issue 28, item 2): stacked, never cut.

Every table is printed into a console that is not a terminal and 80 columns
wide, as ``| cat`` or ``> out.txt`` gets it, read back cell by cell, and
compared with the numbers the command wrote to its JSON: each token's text,
every score at the printed precision and every flow-cut label must be there,
and no line may pass column 80.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from attnflow.cli import main
from attnflow.report.stacking import StackingTable
from attnflow.report.terminal import column_largest, score_text

WIDTH = 80


def read_tables(text: str) -> list[dict[str, list[str]]]:
    """Each box-drawn table in ``text`` as {header: cells top to bottom}; unnamed (bar) columns are left out."""
    tables: list[dict[str, list[str]]] = []
    headers: list[str] = []
    for line in text.splitlines():
        if line.startswith("┃"):
            headers = [cell.strip() for cell in line.strip().strip("┃").split("┃")]
            tables.append({name: [] for name in headers if name})
        elif line.startswith("│") and tables:
            cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
            assert len(cells) == len(headers), line
            for name, cell in zip(headers, cells, strict=True):
                if name:
                    tables[-1][name].append(cell)
    return tables


def merged(tables: list[dict[str, list[str]]], keys: tuple[str, ...] = ("#", "token")) -> dict[str, list[str]]:
    """One column set from stacked parts; the key columns must be the same in every part that repeats them."""
    columns: dict[str, list[str]] = {}
    for table in tables:
        for name, cells in table.items():
            if name in keys and name in columns:
                assert columns[name] == cells, f"stacked parts disagree on {name!r}"
            assert name in keys or name not in columns, f"column {name!r} printed twice"
            columns[name] = cells
    return columns


def assert_within(text: str, width: int = WIDTH) -> None:
    """No table line passes ``width`` and no cell is cut (plain lines, such as paths, are written whole)."""
    wide = [line for line in text.splitlines() if line[:1] in "┏┃┡│└" and cell_len(line.rstrip()) > width]
    assert not wide, f"{len(wide)} lines wider than {width} columns, e.g. {wide[0]!r}"
    assert "…" not in text, "a cell was cut"


def printed(renderable, width: int = WIDTH) -> str:
    console = Console(width=width, color_system=None, force_terminal=False, record=True, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


# ------------------------------------------------------------------ the layout alone


def _wide_table(n_blocks: int, table_class=StackingTable) -> Table:
    kwargs = {"keys": 2} if table_class is StackingTable else {}
    table = table_class(title="scores", caption="a note that says something about the table", **kwargs)
    table.add_column("#")
    table.add_column("token")
    for block in range(n_blocks):
        extra = {"block": f"m{block}", "group": "g"} if table_class is StackingTable else {}
        table.add_column(f"method{block}", **extra)
        table.add_column("", width=10, **extra)
    if table_class is StackingTable:
        table.add_column("method1 cut", block="m1", group="g")  # joins method1 when stacked
    else:
        table.add_column("method1 cut")
    for row in range(3):
        cells = [str(row), f"token{row}"]
        for block in range(n_blocks):
            cells += [f"{row + block / 1000:.3f}", "#" * row]
        table.add_row(*cells, f"L{row}-{row + 1}")
    return table


def test_a_table_that_fits_prints_as_rich_prints_it():
    assert printed(_wide_table(2)) == printed(_wide_table(2, Table))


def test_a_wide_table_stacks_with_every_cell_and_the_keys_repeated():
    text = printed(_wide_table(6))
    assert_within(text)
    tables = read_tables(text)
    assert len(tables) > 1
    columns = merged(tables)
    assert columns["token"] == ["token0", "token1", "token2"]
    for block in range(6):
        assert columns[f"method{block}"] == [f"{row + block / 1000:.3f}" for row in range(3)]
    assert columns["method1 cut"] == ["L0-1", "L1-2", "L2-3"]
    part = next(table for table in tables if "method1" in table)
    assert "method1 cut" in part, "a label column stacks with its method"
    assert text.count("scores") == 1 and text.count("a note that") == 1  # title and caption once


def test_groups_start_their_own_part():
    table = StackingTable(keys=1)
    table.add_column("token")
    for name in ("a/x", "a/y", "b/x", "b/y", "c/x"):
        table.add_column(name, block=name, group=name[0])
    table.add_row("t", "1", "2", "3", "4", "5" * 60)  # too wide for 80 columns in one table
    tables = read_tables(printed(table))
    assert [sorted(t) for t in tables] == [["a/x", "a/y", "token"], ["b/x", "b/y", "token"], ["c/x", "token"]]


# ------------------------------------------------------------------ the commands, at 80 columns, not a terminal


@pytest.fixture
def narrow(monkeypatch):
    """The CLI's console 80 columns wide and not a terminal: what ``| cat`` gets."""
    from attnflow.commands import common

    monkeypatch.setattr(common.console, "_width", WIDTH)
    assert not common.console.is_terminal


def _run(capsys, *args) -> str:
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def _assert_scores_shown(out: str, json_path: Path, keys: tuple[str, ...] = ("#", "token")) -> dict[str, list[str]]:
    """Every token and every top-layer score in the JSON is in the printed table, as :func:`score_text` prints it."""
    assert_within(out)
    data = json.loads(json_path.read_text())
    columns = merged(read_tables(out), keys)
    tokens = data["tokens"]
    shown = columns["token"]
    assert len(shown) == len(tokens)
    assert shown == [" ".join(str(token).split()) for token in tokens]
    for method, layers in data["scores"].items():
        top = np.asarray(layers[-1], dtype=float)
        expected = ["–" if np.isnan(v) else score_text(v, column_largest(top)) for v in top]
        assert columns[method] == expected, method
    for name, labels in (data.get("token_labels") or {}).items():
        assert columns[name] == list(labels), name
    return columns


@pytest.mark.e2e
def test_explain_text_with_graphs_keeps_every_row_and_cut(capsys, narrow, tmp_path):
    path = tmp_path / "e.json"
    out = _run(capsys, "explain", "The keys to the cabinet are here.", "--method", "rollout", "--method", "flow",
               "--graph", "attention", "--graph", "alti", "--graph", "value-zeroing", "--json", path)
    columns = _assert_scores_shown(out, path)
    assert {"flow cut", "alti/flow cut", "value-zeroing/flow cut"} <= set(columns)


@pytest.mark.e2e
def test_explain_image_keeps_every_patch(capsys, narrow, tmp_path):
    from attnflow.tasks.digits import digits_test_set, save_digit_png

    images, _ = digits_test_set(1)
    image = save_digit_png(images[0], tmp_path / "digit.png")
    path = tmp_path / "i.json"
    out = _run(capsys, "explain", "--image", image, "--method", "raw", "--method", "rollout", "--method", "flow",
               "--method", "grad-rollout", "--json", path)
    _assert_scores_shown(out, path)


def test_explain_seq2seq_keeps_both_sequences(capsys, narrow, tmp_path):
    from tests.seq2seq_models import save_seq2seq_model

    path = tmp_path / "s.json"
    model = save_seq2seq_model("bart", tmp_path / "bart")
    out = _run(capsys, "explain", "7 2 9 4", "--model", model, "--decoder-text", "4 9 2 7",
               "--method", "raw", "--method", "rollout", "--method", "flow", "--method", "grad-rollout",
               "--json", path)
    _assert_scores_shown(out, path, keys=("#", "token", "part"))


def test_explain_generation_keeps_the_prompt_and_the_answer(capsys, narrow, tmp_path, tiny_llama_path):
    path = tmp_path / "g.json"
    out = _run(capsys, "explain", "The keys to the cabinet", "--model", tiny_llama_path, "--generate", "3",
               "--method", "raw", "--method", "rollout", "--method", "flow", "--method", "grad-rollout",
               "--json", path)
    assert_within(out)
    columns = merged(read_tables(out), ("#", "token", "part"))
    data = json.loads(path.read_text())
    assert len(columns["token"]) == len(columns["rollout"]) >= len(data["tokens"]) - 1
    assert columns["part"].count("prompt") > 0 and any(part.startswith("answer") for part in columns["part"])
    for method in ("raw", "rollout", "flow", "grad-rollout"):
        assert all(cell == "–" or float(cell) >= 0 for cell in columns[method]), method


def test_heads_table_keeps_every_number(capsys, narrow, tmp_path, tiny_bert_path):
    from tests.tiny_models import save_tiny_model

    model = save_tiny_model("bert", tmp_path / "bert-cls", head="classification")
    data = tmp_path / "data.txt"
    data.write_text("The keys to the cabinet are on the table.\nA cat sat on the warm mat.\n")
    out = _run(capsys, "heads", "--data", data, "--model", model, "--target", "1", "--out", tmp_path / "h",
               "--top", 8)
    assert_within(out)
    columns = merged(read_tables(out), ("layer", "head"))
    report = json.loads((tmp_path / "h" / "heads.json").read_text())
    importance = np.asarray(report["scores"]["importance"], dtype=float)
    assert len(columns["importance"]) == 8
    for layer, head, shown in zip(columns["layer"], columns["head"], columns["importance"], strict=True):
        assert shown == f"{importance[int(layer) - 1, int(head) - 1]:.3g}"
    for key, name in (("relevance", "relevance"), ("confidence", "confidence"), ("sink_share", "sink share")):
        assert columns[name] == [f"{entry[key]:.2f}" for entry in report["top"][:8]], name


def test_evaluate_tables_keep_every_method(capsys, narrow, tmp_path):
    from tests.tiny_models import save_tiny_model

    model = save_tiny_model("bert", tmp_path / "bert-cls", head="classification")
    data = tmp_path / "data.txt"
    data.write_text("The keys to the cabinet are on the table.\nA cat sat on the warm mat.\nDogs bark.\n")
    out = _run(capsys, "evaluate", "--data", data, "--model", model, "--out", tmp_path / "e",
               "--method", "raw", "--method", "rollout", "--method", "flow", "--method", "grad-rollout")
    assert_within(out)
    results = json.loads((tmp_path / "e" / "results.json").read_text())
    spearman = [table for table in read_tables(out) if "layer" in table]  # stacked parts repeat "layer"
    shown = {name for table in spearman for name in table} - {"layer"}
    assert set(results["methods"]) <= shown
    faithfulness = merged([table for table in read_tables(out) if "method" in table], ("method",))
    assert set(results["faithfulness"]["methods"]) <= set(faithfulness["method"])
    assert all(cell for cell in faithfulness["AOPC comprehensiveness"])


# ------------------------------------------------------------------ a real pipe


@pytest.mark.e2e
@pytest.mark.slow
def test_explain_through_a_real_pipe_at_80_columns(tmp_path):
    """The issue's check: ``attnflow explain ... --method flow | cat`` at COLUMNS=80, with two context-mixing graphs."""
    env = {**os.environ, "COLUMNS": "80", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    path = tmp_path / "p.json"
    command = [sys.executable, "-m", "attnflow", "explain", "The keys to the cabinet are here.", "--method", "flow",
               "--method", "rollout", "--graph", "alti", "--graph", "value-zeroing", "--json", str(path)]
    cat = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    run = subprocess.run(command, stdout=cat.stdin, stderr=subprocess.PIPE, env=env, cwd=tmp_path, timeout=600)
    cat.stdin.close()
    out = cat.stdout.read().decode()
    cat.wait()
    assert run.returncode == 0, run.stderr.decode()
    columns = _assert_scores_shown(out, path)
    assert {"alti/flow cut", "value-zeroing/flow cut"} <= set(columns)


# ------------------------------------------------------------------ help at 80 columns


@pytest.mark.parametrize("command", ["explain", "batch", "evaluate", "heads"])
def test_help_reads_at_80_columns(command):
    """Help texts keep their words together at 80 columns, and no '[default: ...]' in them is eaten as markup."""
    env = {**os.environ, "COLUMNS": "80"}
    run = subprocess.run([sys.executable, "-m", "attnflow", command, "--help"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert all(cell_len(line) <= WIDTH for line in lines), max(lines, key=cell_len)
    assert not [line for line in lines if line.rstrip().endswith(" .")], "a help text lost its '[...]' part"
    # the option descriptions: lines indented past the option column carry several words each
    described = [line.split() for line in lines if line.startswith(" " * 20) and line.strip()]
    assert described and sum(len(words) for words in described) / len(described) >= 4
    if command == "explain":
        assert "[default: the one predicting the last target token]" in " ".join(run.stdout.split())
