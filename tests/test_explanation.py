import json

import numpy as np
import pytest

import attnflow
from attnflow import AttnflowError, Explanation, explain_attentions
from tests.helpers import random_attention


@pytest.fixture
def explanation():
    attention = random_attention(np.random.default_rng(0), 3, 2, 4)
    return explain_attentions(attention, ["[CLS]", "a", "<b>", "[SEP]"], methods=("raw", "rollout"))


def test_scores_match_array_api(explanation):
    attention = random_attention(np.random.default_rng(0), 3, 2, 4)
    np.testing.assert_allclose(explanation.scores["rollout"], attnflow.rollout(attention)[:, 0])
    np.testing.assert_allclose(explanation.scores["raw"], attnflow.raw_attention(attention)[:, 0])
    assert explanation.output == 0


def test_json_round_trip(explanation, tmp_path):
    path = tmp_path / "e.json"
    explanation.to_json(path)
    data = json.loads(path.read_text())
    assert data["tokens"][2] == "<b>"
    back = Explanation.from_json(path)
    assert back.tokens == explanation.tokens
    for method in explanation.methods:
        np.testing.assert_array_equal(back.scores[method], explanation.scores[method])


def test_json_keeps_nan_as_null(tmp_path):
    attention = random_attention(np.random.default_rng(1), 3, 1, 3)
    e = explain_attentions(attention, methods="rollout", start_layer=2)
    path = tmp_path / "e.json"
    e.to_json(path)
    assert json.loads(path.read_text())["scores"]["rollout"][0] == [None, None, None]
    assert np.isnan(Explanation.from_json(path).scores["rollout"][0]).all()


def test_dataframe_is_long(explanation):
    frame = explanation.to_dataframe()
    assert len(frame) == 2 * 3 * 4
    assert set(frame.columns) == {"method", "layer", "position", "token", "special", "score"}


def test_top_tokens_and_layer_scores(explanation):
    top = explanation.top_tokens("rollout", k=2)
    assert len(top) == 2 and top[0][1] >= top[1][1]
    with pytest.raises(AttnflowError, match="layer"):
        explanation.layer_scores("rollout", 4)
    with pytest.raises(AttnflowError, match="method"):
        explanation.layer_scores("flow")


def test_shape_is_checked():
    with pytest.raises(AttnflowError, match="shape"):
        Explanation(tokens=["a"], scores={"raw": np.zeros((2, 3))}, output=0)


def test_unknown_method_lists_available():
    attention = random_attention(np.random.default_rng(2), 1, 1, 2)
    with pytest.raises(AttnflowError, match=r"available: raw, rollout\b"):
        explain_attentions(attention, methods=("nope",))


def test_unknown_option_and_wrong_tokens():
    attention = random_attention(np.random.default_rng(2), 1, 1, 2)
    with pytest.raises(AttnflowError, match="Unknown option"):
        explain_attentions(attention, methods="raw", temperature=2)
    with pytest.raises(AttnflowError, match="one token per"):
        explain_attentions(attention, ["a"], methods="raw")


def test_from_json_rejects_other_files(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}')
    with pytest.raises(AttnflowError, match="not an attnflow"):
        Explanation.from_json(path)
    with pytest.raises(AttnflowError, match="Cannot read"):
        Explanation.from_json(tmp_path / "missing.json")
