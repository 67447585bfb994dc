"""Role scores from arrays alone: hand-computed shares, labels and their thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from attnflow.errors import AttnflowError
from attnflow.heads import roles


def _previous_token_attention(n: int) -> np.ndarray:
    a = np.zeros((n, n))
    a[0, 0] = 1.0
    a[np.arange(1, n), np.arange(n - 1)] = 1.0
    return a


def test_positional_heads_found_among_uniform_ones():
    n = 6
    uniform = np.full((n, n), 1 / n)
    following = _previous_token_attention(n)[::-1, ::-1]  # the next token; the last one attends to itself
    a = np.stack([np.stack([uniform, _previous_token_attention(n), following])])
    scores = roles.role_scores(a, rare_position=3, sinks=[0, n - 1])
    np.testing.assert_allclose(scores["previous_token"][0], [1 / n, 1.0, 0.0])
    np.testing.assert_allclose(scores["next_token"][0], [1 / n, 0.0, 1.0])
    assert roles.role_labels(scores).tolist() == [["", "previous", "next"]]


def test_shares_confidence_and_sinks_by_hand():
    a = np.array([[[[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.0, 0.4, 0.6]]]])
    np.testing.assert_allclose(roles.confidence(a), [[(0.5 + 0.8 + 0.6) / 3]])
    np.testing.assert_allclose(roles.share_on(a, [2]), [[(0.25 + 0.8 + 0.6) / 3]])
    np.testing.assert_allclose(roles.share_on(a, [0, 2]), [[(0.75 + 0.9 + 0.6) / 3]])
    assert np.isnan(roles.share_on(a, [])).all()
    assert np.isnan(roles.previous_token_share(np.ones((1, 1, 1, 1)))).all()
    with pytest.raises(AttnflowError, match="positions"):
        roles.share_on(a, [3])


def test_rarest_position_and_sink_positions():
    tokens = ["[CLS]", "the", "cat", "sat", ",", "the", "aardvark", "[SEP]"]
    counts = {"the": 100, "cat": 5, "sat": 5, ",": 80, "aardvark": 1}
    assert roles.rarest_position(tokens, counts, (0, 7)) == 6
    assert roles.rarest_position(tokens, {}, (0, 7)) == 1  # all unseen: the first one
    assert roles.rarest_position(["[CLS]"], {}, (0,)) is None
    assert roles.sink_positions(tokens, (0, 7)) == [0, 4, 7]
    assert roles.is_punctuation("...") and not roles.is_punctuation("a.")


def test_labels_need_the_threshold():
    scores = {"previous_token": np.array([[0.45]]), "rare": np.array([[0.2]]), "sink": np.array([[np.nan]])}
    assert roles.role_labels(scores).tolist() == [[""]]
    assert roles.role_labels(scores, threshold=0.4).tolist() == [["previous"]]
    with pytest.raises(AttnflowError, match="threshold"):
        roles.role_labels(scores, threshold=0)
