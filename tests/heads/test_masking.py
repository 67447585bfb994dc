"""The pruning experiment on a tiny classifier: nothing pruned changes nothing; everything pruned is one model."""

from __future__ import annotations

import numpy as np
import pytest

from attnflow.errors import AttnflowError
from attnflow.heads import prune_order, pruning_experiment
from tests.evaluate.toy import tiny_loaded

TEXTS = ["The keys to the cabinet are on the table.", "A cat sat on the warm mat.", "Dogs bark loudly at night."]


def test_pruning_rows_and_their_invariants():
    loaded = tiny_loaded("bert", "classification", double=True)
    importance = np.arange(8.0).reshape(2, 4)
    result = pruning_experiment(TEXTS, loaded, target="predicted", importance=importance, fractions=(0, 0.25, 1))
    assert result.accuracy_measure == "agreement with the unpruned model's prediction"
    assert len(result.rows) == 9
    for order in ("least", "most", "random"):
        assert result.row(order, 0)["value_change"] == 0 and result.row(order, 0)["accuracy"] == 1.0
        assert result.row(order, 0.25)["n_pruned"] == 2
    assert result.row("least", 1)["value"] == pytest.approx(result.row("most", 1)["value"])
    assert result.row("least", 0.25)["value"] != pytest.approx(result.row("most", 0.25)["value"])
    table = result.to_markdown()
    assert table.splitlines()[0].startswith("| heads pruned | least important first") and "25 % (2)" in table
    gold = pruning_experiment([(t, 1) for t in TEXTS], loaded, target=1, importance=importance, fractions=(0,))
    assert gold.accuracy_measure == "accuracy against the gold labels"


def test_prune_orders_and_bad_input():
    assert prune_order(np.array([[3.0, 1.0, 2.0]]), "most").tolist() == [0, 2, 1]
    random_order = prune_order(np.zeros((2, 2)), "random", 1)
    np.testing.assert_array_equal(random_order, prune_order(np.zeros((2, 2)), "random", 1))
    assert sorted(random_order.tolist()) == [0, 1, 2, 3]
    with pytest.raises(AttnflowError, match="order"):
        prune_order(np.zeros(2), "sideways")
    loaded = tiny_loaded("bert", "classification")
    with pytest.raises(AttnflowError, match="fractions"):
        pruning_experiment(TEXTS, loaded, importance=np.ones((2, 4)), fractions=(1.5,))
    with pytest.raises(AttnflowError, match=r"H = 4"):
        pruning_experiment(TEXTS, loaded, importance=np.ones((2, 3)))
