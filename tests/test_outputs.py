import numpy as np
import pytest

from attnflow import AttnflowError, resolve_output, select_output


@pytest.mark.parametrize(
    "output, expected", [("cls", 0), ("last", 4), ("mean", "mean"), (2, 2), (-1, 4), ("3", 3), ("LAST", 4)]
)
def test_resolve_output(output, expected):
    assert resolve_output(output, 5) == expected


@pytest.mark.parametrize("output", [5, -6, "first", 1.5, True, None])
def test_bad_output_is_rejected(output):
    with pytest.raises(AttnflowError, match="output"):
        resolve_output(output, 5)


def test_select_output_mean_is_mean_of_rows():
    matrices = np.random.default_rng(0).random((3, 4, 4))
    np.testing.assert_allclose(select_output(matrices, "mean"), matrices.mean(axis=1))
    np.testing.assert_array_equal(select_output(matrices, 1), matrices[:, 1])
