"""Target specs: parsing, resolution against each kind of model, and the errors for targets a model cannot give."""

from __future__ import annotations

import pytest
import torch

from attnflow.capture.targets import TargetSpec, parse_target, resolve_target
from attnflow.errors import AttnflowError
from tests.evaluate.toy import tiny_loaded


@pytest.mark.parametrize(
    "given, expected",
    [
        (None, TargetSpec("auto")),
        ("", TargetSpec("auto")),
        ("predicted", TargetSpec("predicted")),
        ("Predicted ", TargetSpec("predicted")),
        (1, TargetSpec("index", 1)),
        ("3", TargetSpec("index", 3)),
        ("gold", TargetSpec("gold")),
        ("norm", TargetSpec("norm")),
        ("cosine:A cat sat.", TargetSpec("cosine", "A cat sat.")),
        ("COS: x", TargetSpec("cosine", "x")),
        ("positive", TargetSpec("label", "positive")),
        ("label:norm", TargetSpec("label", "norm")),
    ],
)
def test_parse(given, expected):
    assert parse_target(given) == expected
    assert parse_target(expected.text) == expected or expected.kind == "auto"


@pytest.mark.parametrize("bad", [-1, "-2", "cosine:", "cosine:   ", True, 1.5, "label:"])
def test_parse_errors(bad):
    with pytest.raises(AttnflowError, match="target"):
        parse_target(bad)


@pytest.fixture(scope="module")
def classifier():
    lm = tiny_loaded("bert", "classification")
    lm.model.config.id2label = {0: "negative", 1: "positive"}
    lm.model.config.label2id = {"negative": 0, "positive": 1}
    return lm


@pytest.fixture(scope="module")
def encoder():
    return tiny_loaded("bert", "base")


@pytest.fixture(scope="module")
def causal():
    return tiny_loaded("gpt2", "causal-lm")


def test_classifier_targets(classifier):
    assert resolve_target(None, classifier).describe()["spec"] == "auto (predicted)"
    assert resolve_target("positive", classifier).index == 1
    assert resolve_target("NEGATIVE", classifier).index == 0
    assert resolve_target(1, classifier).describe()["label"] == "positive"
    assert resolve_target("norm", classifier).kind == "norm"  # pooled targets work on any model
    with pytest.raises(AttnflowError, match=r"class 2 does not exist.*0='negative', 1='positive'"):
        resolve_target(2, classifier)
    with pytest.raises(AttnflowError, match="label 'neutral' does not exist"):
        resolve_target("neutral", classifier)


def test_predicted_is_fixed_on_the_unperturbed_input(classifier):
    target = resolve_target("predicted", classifier)
    ids = classifier.tokenizer("the cat sat")["input_ids"]
    bound = target.bind(classifier, ids)
    with torch.no_grad():
        logits = classifier.model(input_ids=torch.tensor([ids])).logits[0]
    assert bound.index == int(logits.argmax())
    assert bound.value == pytest.approx(float(torch.softmax(logits.double(), -1).max()), rel=1e-6)
    assert bound.describe()["class"] == bound.index


def test_gold_labels(classifier):
    target = resolve_target("gold", classifier)
    assert target.resolve_label("positive") == 1 and target.resolve_label("0") == 0 and target.resolve_label(1) == 1
    with pytest.raises(AttnflowError, match="label 'banana' does not exist"):
        target.resolve_label("banana")
    with pytest.raises(AttnflowError, match="needs a label"):
        target.resolve_label(None)


@pytest.mark.parametrize("spec", ["predicted", 0, "positive", "gold"])
def test_bare_encoder_cannot_give_a_class(encoder, spec):
    with pytest.raises(AttnflowError, match="bare encoder; use 'cosine:REFERENCE TEXT' or 'norm'"):
        resolve_target(spec, encoder)


def test_bare_encoder_scalars(encoder):
    ids = encoder.tokenizer("the cat sat")["input_ids"]
    assert resolve_target(None, encoder).kind == "norm"
    same = resolve_target("cosine:the cat sat", encoder).bind(encoder, ids)
    assert same.value == pytest.approx(1.0, abs=1e-5)  # a text is its own nearest reference
    other = resolve_target("cosine:numbers like 42", encoder).bind(encoder, ids)
    assert -1.0 <= other.value < 0.9999


def test_causal_lm_targets(causal):
    target = resolve_target(None, causal)
    assert target.kind == "next_token"
    ids = causal.tokenizer("The quick brown fox")["input_ids"]
    bound = target.bind(causal, ids)
    with torch.no_grad():
        logits = causal.model(input_ids=torch.tensor([ids])).logits[0, -1]
    assert bound.index == int(logits.argmax())
    token = causal.tokenizer.convert_ids_to_tokens(5)
    assert resolve_target(causal.tokenizer.convert_tokens_to_string([token]), causal).index == 5
    with pytest.raises(AttnflowError, match="vocabulary"):
        resolve_target(10**6, causal)
    with pytest.raises(AttnflowError, match="single token"):
        resolve_target("quick brown fox jumps", causal)
    with pytest.raises(AttnflowError, match="needs a classifier"):
        resolve_target("gold", causal)
