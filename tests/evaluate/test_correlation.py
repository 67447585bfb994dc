"""Spearman correlation per layer and mean ± sd: against scipy and a hand-written rank correlation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from attnflow.errors import AttnflowError
from attnflow.evaluate import layer_correlations, mean_sd, spearman
from tests.tolerances import EPS64


def _by_hand(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of average ranks: Spearman's definition with ties."""
    rx, ry = rankdata(x, method="average"), rankdata(y, method="average")
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / np.sqrt((rx**2).sum() * (ry**2).sum()))


@pytest.mark.parametrize("seed", range(20))
def test_agrees_with_scipy_and_by_hand_on_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 15))
    x = rng.integers(0, 4, n).astype(float)  # few distinct values: many ties
    y = rng.integers(0, 4, n).astype(float)
    if np.all(x == x[0]) or np.all(y == y[0]):
        assert np.isnan(spearman(x, y))
        return
    ours = spearman(x, y)
    bound = 3 * n * EPS64  # Pearson on ranks: three n-term float64 sums (a covariance, two variances)
    assert ours == pytest.approx(spearmanr(x, y).statistic, abs=bound)
    assert ours == pytest.approx(_by_hand(x, y), abs=bound)


def test_known_values():
    assert spearman([1, 2, 3], [2, 4, 9]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # ties: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    expected = _by_hand(np.array([1, 2.5, 2.5, 4]), np.arange(4))
    assert spearman([0.1, 0.5, 0.5, 0.9], [1, 2, 3, 4]) == pytest.approx(expected)


@pytest.mark.parametrize(
    "x, y",
    [([1, 1, 1], [1, 2, 3]), ([1, 2, 3], [5, 5, 5]), ([1], [2]), ([], []), ([1, np.nan, 3], [1, 2, 3])],
)
def test_undefined_is_nan_without_warnings(x, y):
    with _no_warnings():
        assert np.isnan(spearman(x, y))


def test_length_mismatch_raises():
    with pytest.raises(AttnflowError, match="same length"):
        spearman([1, 2, 3], [1, 2])


def test_layer_correlations_use_only_the_given_positions():
    scores = np.array([[9.0, 0.1, 0.2, 0.3, -9.0], [9.0, 0.3, 0.2, 0.1, -9.0]])
    truth = np.array([np.nan, 1.0, 2.0, 3.0, np.nan])  # special tokens at 0 and 4 carry no ground truth
    np.testing.assert_allclose(layer_correlations(scores, truth, [1, 2, 3]), [1.0, -1.0])
    assert np.all(np.isnan(layer_correlations(scores, truth)))  # NaN ground truth: undefined


def test_mean_sd_matches_numpy_and_skips_nan():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(7, 4))
    values[2, 1] = np.nan
    values[:, 3] = np.nan
    values[1:, 2] = np.nan
    out = mean_sd(values)
    np.testing.assert_allclose(out[:2, 0], np.nanmean(values[:, :2], axis=0))
    np.testing.assert_allclose(out[:2, 1], np.nanstd(values[:, :2], axis=0, ddof=1))
    assert out[2, 0] == values[0, 2] and np.isnan(out[2, 1])  # one value: a mean, no sd
    assert np.all(np.isnan(out[3]))  # no value


class _no_warnings:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)
