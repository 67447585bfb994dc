"""The note that tells users when flow only restates first-layer column sums."""

import numpy as np

import attnflow
from attnflow.methods.flow import saturated_sources
from tests.helpers import random_attention


def test_saturation_matches_bound_computed_independently():
    attention = random_attention(np.random.default_rng(0), 6, 2, 8)
    raw = attnflow.attention_flow(attention, outputs=[3], normalize=False)[-1, 3]
    ahat1 = 0.5 * attention[0].mean(0) + 0.5 * np.eye(8)
    bound = np.minimum(1.0, ahat1.sum(axis=0))
    np.testing.assert_array_equal(saturated_sources(attention, 3), np.abs(raw - bound) <= 1e-9)


def test_deep_random_attention_gets_the_note_and_one_layer_does_not():
    attention = random_attention(np.random.default_rng(1), 6, 2, 8)
    assert saturated_sources(attention, 0).mean() >= 0.8
    deep = attnflow.explain_attentions(attention, methods=("rollout", "flow"))
    assert deep.notes and "upper bound" in deep.notes[0]
    assert not attnflow.explain_attentions(attention, methods=("rollout",)).notes
    assert not attnflow.explain_attentions(attention[:1], methods=("flow",)).notes


def test_notes_round_trip_json(tmp_path):
    attention = random_attention(np.random.default_rng(2), 6, 2, 6)
    e = attnflow.explain_attentions(attention, methods=("flow",))
    e.to_json(tmp_path / "e.json")
    assert attnflow.Explanation.from_json(tmp_path / "e.json").notes == e.notes
