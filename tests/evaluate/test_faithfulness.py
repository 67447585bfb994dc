"""Comprehensiveness, sufficiency and AOPC against values computed by hand on toy functions."""

from __future__ import annotations

import numpy as np
import pytest

from attnflow.errors import AttnflowError
from attnflow.evaluate import faithfulness_many, faithfulness_scores, n_removed, removal_masks, removal_order
from attnflow.evaluate.faithfulness import check_percents

WEIGHTS = np.array([0.0, 0.4, 0.1, 0.3, 0.2, 0.0])  # an additive "model": the summed weight of kept tokens


def additive(keep: np.ndarray) -> np.ndarray:
    return keep.astype(float) @ WEIGHTS


def test_hand_computed_additive_model():
    # candidates 1..4 (0 and 5 are special); scores rank 1 > 3 > 4 > 2 (the true order)
    scores = [9.0, 0.9, 0.1, 0.7, 0.5, 9.0]
    f = faithfulness_scores(scores, additive, candidates=[1, 2, 3, 4], percents=[25, 50, 75])
    # k% of 4 candidates: 1, 2, 3 tokens. Full value 1.0.
    # comprehensiveness: removing {1}, {1,3}, {1,3,4} loses 0.4, 0.7, 0.9
    np.testing.assert_allclose(f.comprehensiveness, [0.4, 0.7, 0.9])
    # sufficiency: keeping only {1}, {1,3}, {1,3,4} (plus specials, weight 0) loses 0.6, 0.3, 0.1
    np.testing.assert_allclose(f.sufficiency, [0.6, 0.3, 0.1])
    assert f.aopc_comprehensiveness == pytest.approx((0.4 + 0.7 + 0.9) / 3)
    assert f.aopc_sufficiency == pytest.approx((0.6 + 0.3 + 0.1) / 3)
    assert f.full == pytest.approx(1.0)


def test_a_nonlinear_toy_by_hand():
    # value = product of (1 + w_j) over kept tokens; scores give the order 3, 1, 2
    w = np.array([0.0, 1.0, 0.5, 2.0])

    def product(keep):
        return np.prod(np.where(keep, 1 + w, 1.0), axis=1)

    f = faithfulness_scores([0, 2, 1, 3], product, candidates=[1, 2, 3], percents=[30, 60])
    full = 2 * 1.5 * 3
    np.testing.assert_allclose(f.comprehensiveness, [full - 2 * 1.5, full - 1.5])  # drop {3}; drop {3, 1}
    np.testing.assert_allclose(f.sufficiency, [full - 3, full - 3 * 2])  # keep {3}; keep {3, 1}


def test_special_tokens_are_never_removed():
    seen = []

    def spy(keep):
        seen.append(keep.copy())
        return additive(keep)

    out = faithfulness_many({"a": np.arange(6.0), "b": -np.arange(6.0)}, spy, candidates=[1, 2, 3, 4])
    masks = np.concatenate(seen)
    assert masks[:, 0].all() and masks[:, 5].all()
    assert set(out) == {"a", "b", "random"}
    assert len(seen) == 1  # every method and the baseline in one call: one batch for the model


def test_better_ranking_beats_random_and_worse():
    best = faithfulness_scores(WEIGHTS, additive, candidates=[1, 2, 3, 4])
    worst = faithfulness_scores(-WEIGHTS, additive, candidates=[1, 2, 3, 4])
    random = faithfulness_many({}, additive, candidates=[1, 2, 3, 4], rng=3, random_repeats=50, n_tokens=6)["random"]
    assert best.aopc_comprehensiveness > random.aopc_comprehensiveness > worst.aopc_comprehensiveness
    assert best.aopc_sufficiency < random.aopc_sufficiency < worst.aopc_sufficiency


def test_random_baseline_is_seeded():
    def run(seed):
        out = faithfulness_many({}, additive, candidates=[1, 2, 3, 4], rng=seed, n_tokens=6)
        return out["random"].comprehensiveness

    np.testing.assert_array_equal(run(7), run(7))
    assert any(not np.array_equal(run(0), run(s)) for s in range(1, 10))


@pytest.mark.parametrize("m", range(1, 40))
def test_n_removed_is_exact_ceiling(m):
    for k in (10, 20, 30, 40, 50, 33, 100):
        assert n_removed(k, m) == int(np.ceil(k * m / 100 - 1e-12))  # e.g. 30 % of 10 is 3, not 4
        assert 1 <= n_removed(k, m) <= m


def test_removal_order_ties_and_nan():
    assert removal_order([5, 1, 1, np.nan, 2], [1, 2, 3, 4]).tolist() == [4, 1, 2, 3]


def test_removal_masks_by_hand():
    comp, suff = removal_masks([3, 1, 2], 5, [33, 67])  # 33 % of 3 candidates is 1 token, 67 % is 3
    assert comp.astype(int).tolist() == [[1, 1, 1, 0, 1], [1, 0, 0, 0, 1]]
    assert suff.astype(int).tolist() == [[1, 0, 0, 1, 1], [1, 1, 1, 1, 1]]


@pytest.mark.parametrize("percents", [[], [0], [101], [10.5], ["x"], [True]])
def test_bad_percents(percents):
    with pytest.raises(AttnflowError, match="percents"):
        check_percents(percents)
