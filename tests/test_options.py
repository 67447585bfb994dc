"""Options shared by several commands: one definition, one check, a usage error (exit 2) before any model loads."""

from __future__ import annotations

import pytest

from attnflow.cli import main

BAD = [
    (["--head-fusion", "foo"], "--head-fusion"),
    (["--residual", "7"], "--residual"),
    (["--graph", "nope"], "--graph"),
    (["--method", "nope"], "--method"),
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
