"""Options shared by several commands: one definition, one check, a usage error (exit 2) before any model loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from attnflow.cli import main

BAD = [
    (["--head-fusion", "foo"], "--head-fusion"),
    (["--residual", "7"], "--residual"),
    (["--graph", "nope"], "--graph"),
    (["--method", "nope"], "--method"),
    (["--target", "cosine:"], "--target"),
    (["--target", "are|"], "--target"),
]


@pytest.mark.parametrize(("bad", "option"), BAD, ids=[option for _, option in BAD])
@pytest.mark.parametrize("command", ["explain", "evaluate", "batch"])
def test_a_bad_shared_option_is_a_usage_error_before_any_model_loads(no_model, capsys, tmp_path, command, bad, option):
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "The keys are on the table."}\n')
    out = tmp_path / "out"
    given = {
        "explain": ["explain", "The keys are on the table."],
        "evaluate": ["evaluate", "--data", str(data), "--out", str(out)],
        "batch": ["batch", "--data", str(data), "--out", str(out)],
    }[command]
    assert main([*given, *bad]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"Invalid value for '{option}'" in err
    assert not out.exists()


def test_the_commands_share_one_declaration_of_each_option():
    from typing import get_type_hints

    from attnflow.commands import batch, evaluate, explain, options

    for name, alias in (("residual", options.Residual), ("head_fusion", options.HeadFusion),
                        ("graph", options.Graphs), ("trust_remote_code", options.TrustRemoteCode)):
        for command in (explain.explain, evaluate.evaluate, batch.batch):
            assert get_type_hints(command, include_extras=True)[name] == alias, (command.__name__, name)


def test_a_bad_method_is_a_usage_error_for_reproduce_too(no_model, capsys, tmp_path):
    assert main(["reproduce", "sva", "--method", "nope", "--out", str(tmp_path / "out")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Invalid value for '--method'" in err and "saliency" in err  # the attribution registry is asked too
    assert not (tmp_path / "out").exists()


def test_method_model_and_target_are_declared_once_and_every_command_takes_that_declaration():
    from typing import get_type_hints

    import attnflow.commands as package
    from attnflow.commands import batch, evaluate, explain, heads, options, reproduce
    from attnflow.commands.common import check_method_option

    sources = {path.name: path.read_text() for path in Path(package.__file__).parent.glob("*.py")}
    for flag in ("--method", "--model", "--target"):
        declared = [name for name, text in sources.items() if re.search(rf'typer\.Option\(\s*"{flag}"', text)]
        assert declared == ["options.py"], (flag, declared)
        assert len(re.findall(rf'"{flag}"', sources["options.py"])) == 1, flag
    takes = {"method": (explain.explain, evaluate.evaluate, batch.batch, reproduce.reproduce),
             "model": (explain.explain, evaluate.evaluate, batch.batch, heads.heads, reproduce.reproduce),
             "target": (explain.explain, evaluate.evaluate, batch.batch, heads.heads)}
    flags = {"method": ("--method",), "model": ("--model", "-m"), "target": ("--target", "-t")}
    for name, commands in takes.items():
        for command in commands:
            info = get_type_hints(command, include_extras=True)[name].__metadata__[0]
            assert (info.default, *info.param_decls) == flags[name], (command.__name__, name)  # typer: 1st is default
            if name == "method":
                assert info.callback is check_method_option, command.__name__
    assert options.method_option("x").__metadata__[0].callback is check_method_option
