"""Stochastic-gate pruning: gates close on heads made useless, stay open on the ones the output needs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnflow.errors import AttnflowError
from attnflow.heads import gates
from tests.evaluate.toy import tiny_loaded

TEXTS = [
    "the keys to the cabinet", "a cat sat on the mat", "dogs bark at night", "the old man smiles",
    "my friends like the new songs", "her brother reads books", "the children run home", "a tall tree fell",
]
USELESS = [(0, 1), (0, 3), (1, 0), (1, 2)]  # (layer, head) from 0


@pytest.fixture(scope="module")
def classifier():
    """A tiny 2-layer x 4-head BERT classifier whose heads USELESS write nothing: their columns of the attention
    output projection are zero, so nothing downstream can depend on them. The classifier's bias is moved so that
    it predicts each class for half of TEXTS, and scaled up: without heads every input looks the same to [CLS]
    (one class for all), so the remaining heads decide half the predictions."""
    loaded = tiny_loaded("bert", "classification")
    width = loaded.model.config.hidden_size // loaded.model.config.num_attention_heads
    with torch.no_grad():
        for layer, head in USELESS:
            dense = loaded.model.bert.encoder.layer[layer].attention.output.dense
            dense.weight[:, head * width:(head + 1) * width] = 0.0
        logits = loaded.model(**loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
        loaded.model.classifier.bias[0] -= float((logits[:, 0] - logits[:, 1]).median()) + 1e-3
        loaded.model.classifier.weight.mul_(30.0)
        loaded.model.classifier.bias.mul_(30.0)
    return loaded


def test_hard_concrete_gates_are_exactly_zero_or_one_with_mass_at_the_ends():
    generator = torch.Generator().manual_seed(0)
    draws = torch.stack([gates.sample_gates(torch.zeros(1000, dtype=torch.float64), generator) for _ in range(2)])
    assert float(draws.min()) == 0.0 and float(draws.max()) == 1.0
    share_zero = float((draws == 0).double().mean())
    expected = 1 - float(gates.l0_probability(torch.tensor(0.0)))
    assert abs(share_zero - expected) < 0.03  # P(g = 0) = 1 - P(g != 0)


@pytest.mark.slow
def test_gates_close_on_useless_heads_and_a_large_penalty_closes_all(classifier):
    sweep = gates.gate_pruning(TEXTS, TEXTS, classifier, penalties=(0.0, 0.05, 50.0), steps=60,
                               learning_rate=0.2, batch_size=4, importance=np.arange(8.0).reshape(2, 4))
    assert sweep.labels == "the unpruned model's predictions" and sweep.unpruned_accuracy == 1.0
    free, moderate, huge = sweep.rows
    assert free["n_kept"] == 8 and free["accuracy"] == 1.0  # no penalty: nothing to gain by closing a gate
    kept = np.array(moderate["kept"])
    assert not any(kept[layer, head] for layer, head in USELESS), moderate["gates"]
    assert kept.sum() >= 1 and moderate["accuracy"] == 1.0  # the useless heads go, the output stays
    assert huge["n_kept"] == 0
    # the ranking comparison keeps as many heads, the most important (here: the highest numbers) first
    assert moderate["ranking_accuracy"] is not None
    data = json.loads(json.dumps(sweep.to_dict()))
    assert data["format"] == "attnflow.head_gates" and "frozen" in data["settings"]["model"]
    assert sweep.to_markdown().splitlines()[2].startswith("| 0 | 8 / 8 | 1.000 |")
    assert sweep.plot().axes[0].get_xlabel() == "heads kept (of 8)"
    # the model is handed back as it was: frozen for the run only
    assert all(p.requires_grad for p in classifier.model.parameters())


def test_models_that_cannot_be_gated_get_one_line():
    with pytest.raises(AttnflowError, match="text sequence classifier"):
        gates.gate_pruning(["a b"], ["a b"], tiny_loaded("gpt2", "causal-lm"), steps=1)
    with pytest.raises(AttnflowError, match="sequence classifier"):
        gates.gate_pruning(["a b"], ["a b"], tiny_loaded("bert", "base"), steps=1)
    with pytest.raises(AttnflowError, match="penalties"):
        gates.gate_pruning(["a b"], ["a b"], tiny_loaded("bert", "classification"), penalties=(-1,))
    with pytest.raises(AttnflowError, match="no examples"):
        gates.gate_pruning([], ["a b"], tiny_loaded("bert", "classification"))


@pytest.mark.slow
def test_fine_tuning_with_the_gates_learns_what_frozen_gates_cannot_and_restores_the_model():
    """Gold labels that contradict every prediction of the model: gates on a frozen model cannot flip them
    (closing heads only moves every input towards one class), fine-tuning the model with the gates can. Each
    penalty starts from the original weights, and those are handed back bit for bit."""
    loaded = tiny_loaded("bert", "classification")
    with torch.no_grad():
        logits = loaded.model(**loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
        loaded.model.classifier.bias[0] -= float((logits[:, 0] - logits[:, 1]).median()) + 1e-3
        predicted = loaded.model(**loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.argmax(-1)
    assert 0 < int(predicted.sum()) < len(TEXTS)
    flipped = [(text, loaded.model.config.id2label[1 - int(p)]) for text, p in zip(TEXTS, predicted, strict=True)]
    before = {key: value.clone() for key, value in loaded.model.state_dict().items()}
    options = dict(steps=60, learning_rate=0.2, batch_size=4, model_learning_rate=1e-2)
    frozen = gates.gate_pruning(flipped, flipped, loaded, penalties=(0.0,), **options)
    tuned = gates.gate_pruning(flipped, flipped, loaded, penalties=(50.0, 0.0), fine_tune=True, **options)
    assert frozen.labels == tuned.labels == "gold labels" and frozen.unpruned_accuracy == 0.0
    assert frozen.rows[0]["accuracy"] < 0.5 and not frozen.fine_tune and "all_heads_accuracy" not in frozen.rows[0]
    huge, free = tuned.rows
    assert free["accuracy"] == 1.0 and free["all_heads_accuracy"] == 1.0  # the fine-tuned model fits the labels
    assert huge["n_kept"] == 0 and huge["accuracy"] == 0.5  # no head: every input looks the same to [CLS]
    assert all(torch.equal(before[key], value) for key, value in loaded.model.state_dict().items())
    assert all(p.requires_grad for p in loaded.model.parameters())
    # the penalty 0 run after the penalty 50 one started from the original weights: the same as run alone
    alone = gates.gate_pruning(flipped, flipped, loaded, penalties=(0.0,), fine_tune=True, **options).rows[0]
    assert alone["gates"] == free["gates"] and alone["final_loss"] == free["final_loss"]
    data = json.loads(json.dumps(tuned.to_dict()))
    assert data["fine_tune"] is True and data["settings"]["model"].startswith("fine-tuned with the gates")
    with pytest.raises(AttnflowError, match="model_learning_rate"):
        gates.gate_pruning(flipped, flipped, loaded, fine_tune=True, model_learning_rate=0)
