"""Gradient-weighted rollout: hand-computed values, target dependence, and its place in explain and evaluate."""

from __future__ import annotations

import numpy as np
import pytest

import attnflow
from attnflow import AttnflowError, available_methods, explain_attentions, grad_rollout
from attnflow.capture.gradients import target_gradients
from attnflow.capture.targets import resolve_target
from tests.evaluate.toy import tiny_loaded
from tests.tolerances import model_float64_bound

TEXT = "The keys to the cabinet are on the table."


@pytest.fixture(scope="module")
def classifier():
    """A tiny two-class RoBERTa classifier in float64."""
    return tiny_loaded("roberta", "classification", double=True)


def _by_hand(attentions: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Chefer et al.'s recursion written with explicit loops, independently of the implementation."""
    n_layers, n_heads, n, _ = attentions.shape
    relevance = [[1.0 if i == j else 0.0 for j in range(n)] for i in range(n)]
    out = []
    for layer in range(n_layers):
        fused = [[0.0] * n for _ in range(n)]
        for h in range(n_heads):
            for i in range(n):
                for j in range(n):
                    fused[i][j] += max(0.0, gradients[layer, h, i, j] * attentions[layer, h, i, j]) / n_heads
        update = [[sum(fused[i][k] * relevance[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
        relevance = [[relevance[i][j] + update[i][j] for j in range(n)] for i in range(n)]
        out.append(np.array(relevance))
    return np.stack(out)


def test_two_layers_by_hand():
    a = np.array([[[[0.5, 0.5], [0.0, 1.0]]], [[[1.0, 0.0], [0.5, 0.5]]]])
    g = np.array([[[[-1.0, 2.0], [0.0, 3.0]]], [[[1.0, 5.0], [2.0, -4.0]]]])
    # layer 1: Abar = [[0, 1], [0, 3]], R = I + Abar = [[1, 1], [0, 4]]
    # layer 2: Abar = [[1, 0], [1, 0]], R = R + Abar @ R = [[1, 1], [0, 4]] + [[1, 1], [1, 1]]
    expected = np.array([[[1.0, 1.0], [0.0, 4.0]], [[2.0, 2.0], [1.0, 5.0]]])
    np.testing.assert_allclose(grad_rollout(a, g), expected)


def test_zero_gradients_give_the_identity_and_torch_agrees():
    import torch

    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(4), size=(3, 2, 4))
    np.testing.assert_array_equal(grad_rollout(a, np.zeros_like(a)), np.broadcast_to(np.eye(4), (3, 4, 4)))
    g = rng.normal(size=a.shape)
    np.testing.assert_allclose(grad_rollout(torch.tensor(a), torch.tensor(g)), grad_rollout(a, g))
    np.testing.assert_allclose(grad_rollout(a, g), _by_hand(a, g))


def test_on_a_tiny_model_equals_the_hand_computed_value(classifier):
    ids = classifier.tokenizer(TEXT)["input_ids"]
    bound = resolve_target(1, classifier).bind(classifier, ids)
    found = target_gradients(classifier, bound, ids, head_gradients=False)
    e = attnflow.explain(TEXT, classifier, methods="grad-rollout", target=1)
    expected = _by_hand(found.attentions, found.gradients)[:, 0, :]  # the <s> output, as "cls"
    bound = model_float64_bound(classifier.model.config, scale=np.abs(expected).max(), backward=True)  # two passes
    np.testing.assert_allclose(e.scores["grad-rollout"], expected, rtol=0, atol=bound)
    assert e.target["class"] == 1 and e.target["spec"] == "1"


def test_changes_with_the_target_class_while_rollout_does_not(classifier):
    zero = attnflow.explain(TEXT, classifier, methods=("rollout", "grad-rollout"), target=0)
    one = attnflow.explain(TEXT, classifier, methods=("rollout", "grad-rollout"), target=1)
    np.testing.assert_array_equal(zero.scores["rollout"], one.scores["rollout"])
    assert not np.allclose(zero.scores["grad-rollout"], one.scores["grad-rollout"])
    assert (zero.target["class"], one.target["class"]) == (0, 1)


def test_registered_last_and_refused_without_gradients():
    assert available_methods()[:4] == ("raw", "rollout", "flow", "grad-rollout")
    assert attnflow.get_method("grad-rollout").needs_gradients
    a = np.full((2, 1, 3, 3), 1 / 3)
    with pytest.raises(AttnflowError, match="needs attention gradients"):
        explain_attentions(a, methods="grad-rollout")
    with pytest.raises(AttnflowError, match="shape of the attentions"):
        explain_attentions(a, methods="grad-rollout", gradients=np.zeros((2, 1, 3, 2)))
    with pytest.raises(AttnflowError, match="shape of the attentions"):
        grad_rollout(a, np.zeros((1, 1, 3, 3)))
    with pytest.raises(AttnflowError, match="NaN"):
        grad_rollout(a, np.full(a.shape, np.nan))
    scores = explain_attentions(a, methods=("rollout", "grad-rollout"), gradients=np.ones_like(a))
    np.testing.assert_allclose(scores.scores["grad-rollout"][0], [4 / 3, 1 / 3, 1 / 3])


def test_evaluate_uses_the_gradients_of_the_evaluated_target(classifier):
    result = attnflow.evaluate(
        [TEXT, "Hello world, this is a tiny tokenizer!"], classifier, methods=["rollout", "grad-rollout"],
        target=1, ground_truths=["gradient"], faithfulness=False,
    )
    assert result.methods == ["rollout", "grad-rollout"]
    for example in result.examples:
        ids = classifier.tokenizer(example.text)["input_ids"]
        bound = resolve_target(1, classifier).bind(classifier, ids)
        found = target_gradients(classifier, bound, ids, head_gradients=False)
        want = grad_rollout(found.attentions, found.gradients)[:, 0, :]  # another float64 forward and backward
        np.testing.assert_allclose(example.scores["grad-rollout"], want, rtol=0, atol=model_float64_bound(
            classifier.model.config, scale=np.abs(want).max(), backward=True))


def test_importance_fusion_with_equal_weights_is_the_mean():
    from attnflow.heads import fusion_weights

    rng = np.random.default_rng(1)
    a = rng.dirichlet(np.ones(5), size=(3, 4, 5))
    equal = fusion_weights(np.full((3, 4), 0.7))
    np.testing.assert_allclose(attnflow.rollout(a, head_fusion=equal), attnflow.rollout(a))
    np.testing.assert_allclose(
        attnflow.attention_flow(a, outputs=[0], head_fusion=equal), attnflow.attention_flow(a, outputs=[0]),
        equal_nan=True,
    )
    e = explain_attentions(a, methods=("raw", "rollout", "flow"), head_fusion=equal)
    mean = explain_attentions(a, methods=("raw", "rollout", "flow"))
    for method in ("raw", "rollout", "flow"):
        np.testing.assert_allclose(e.scores[method], mean.scores[method])
    with pytest.raises(AttnflowError, match="importance"):
        explain_attentions(a, methods="rollout", head_fusion="importance")


def test_explain_with_importance_fusion_records_the_weights(classifier):
    e = attnflow.explain(TEXT, classifier, methods=("raw", "rollout"), target=0, head_fusion="importance")
    weights = np.array(e.options["head_importance"])
    assert e.options["head_fusion"] == "importance" and weights.shape == (2, 2)
    ids = classifier.tokenizer(TEXT)["input_ids"]
    found = target_gradients(classifier, resolve_target(0, classifier).bind(classifier, ids), ids,
                             objective="log_probability")
    np.testing.assert_allclose(weights, np.abs(found.head_gradients))
    expected = attnflow.rollout(found.attentions, head_fusion=weights)[:, 0, :]
    # the weights come from another float64 backward pass: relative differences in the fused rows
    np.testing.assert_allclose(e.scores["rollout"], expected, rtol=0,
                               atol=model_float64_bound(classifier.model.config, backward=True))
