"""Attribution methods inside ``attnflow evaluate`` and ``attnflow explain``: judged beside the attention methods."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnflow import cli
from attnflow.evaluate import evaluate
from tests.evaluate.toy import POSITION, one_token_model

TEXTS = ["a b c d e", "the keys to the cabinet are on the table", "one two three"]


@pytest.fixture(scope="module")
def result():
    return evaluate(TEXTS, one_token_model(), methods=["rollout", "saliency", "integrated-gradients", "occlusion",
                                                      "random"], ig_steps=20)


def test_attribution_methods_sit_beside_the_attention_methods(result):
    data = json.loads(result.to_json())
    assert data["methods"] == ["rollout", "saliency", "integrated-gradients", "occlusion", "random"]
    assert data["options"]["input_methods"]["saliency"] == {"layer": "input", "not_correlated_with": "saliency"}
    for example in result.examples:  # the toy reads one position: every attribution method finds it
        for name in ("saliency", "integrated-gradients", "occlusion"):
            scores = example.scores[name]
            assert scores.shape == (result.n_layers, len(example.tokens))
            assert np.all(scores == scores[0]) and int(np.argmax(scores[0])) == POSITION


def test_no_method_is_correlated_with_the_yardstick_it_computes(result):
    data = json.loads(result.to_json())
    assert all(pair == [None, None] for pair in data["correlation"]["saliency"]["saliency"])
    assert all(pair == [None, None] for pair in data["correlation"]["integrated_gradients"]["integrated-gradients"])
    assert data["correlation"]["blankout"]["saliency"][0][0] == pytest.approx(1.0)
    assert data["correlation"]["saliency"]["integrated-gradients"][0][0] == pytest.approx(1.0)


def test_faithfulness_ranks_every_method_and_random_once(result):
    from attnflow.commands.evaluate import ranked_faithfulness

    summary = result.faithfulness_summary()
    assert list(summary) == ["rollout", "saliency", "integrated-gradients", "occlusion", "random"]
    ranked = [name for name, _ in ranked_faithfulness(summary)]
    assert sorted(ranked) == sorted(summary) and ranked[-1] == "random"


@pytest.mark.parametrize("args, message", [
    (["--method", "integrated-gradients", "--ig-steps", "0"], "--ig-steps"),
    (["--method", "lime", "--lime-samples", "50", "--max-passes", "10"], "over the limit of 10"),
    (["--method", "saliency", "--images", "digits"], "text attribution method"),
])
def test_bad_attribution_options_are_one_line_before_a_model_loads(tmp_path, capsys, args, message):
    data = tmp_path / "t.txt"
    data.write_text("a b c\n")
    given = args if "--images" in args else ["--data", str(data), *args]
    status = cli.main(["evaluate", *given, "--out", str(tmp_path / "out")])
    err = " ".join(capsys.readouterr().err.split())
    assert status != 0 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_explain_prints_attention_and_attribution_methods_side_by_side(capsys, tmp_path):
    out = tmp_path / "e.json"
    status = cli.main(["explain", "The keys to the cabinet.", "--method", "rollout", "--method", "saliency",
                       "--method", "occlusion", "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 0 and "saliency (input)" in " ".join(printed.split()) or "saliency" in printed
    data = json.loads(out.read_text())
    assert data["options"]["input_methods"] == {"saliency": "input", "occlusion": "input"}
    assert set(data["scores"]) == {"rollout", "saliency", "occlusion"}
    status = cli.main(["explain", "--image", str(tmp_path / "x.png"), "--method", "lime"])
    err = capsys.readouterr().err
    assert status != 0 and "does not take --image yet" in " ".join(err.split()) and len(err.strip().splitlines()) == 1
