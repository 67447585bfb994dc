"""Target specs: parsing, resolution against each kind of model, and the errors for targets a model cannot give."""

from __future__ import annotations

import pytest
import torch

from attnflow.capture.targets import TargetSpec, parse_target, resolve_target
from attnflow.errors import AttnflowError
from tests.evaluate.toy import tiny_loaded
from tests.tolerances import float32_sum_bound, model_float32_bound


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
    # another float32 run: p = softmax(z) moves by p times twice a logit's difference
    rel = 2 * model_float32_bound(classifier.model.config, scale=max(1.0, float(logits.abs().max())))
    assert bound.value == pytest.approx(float(torch.softmax(logits.double(), -1).max()), rel=rel)
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
    # a text is its own nearest reference: a float32 cosine, a D-term dot product over two D-term norms
    assert same.value == pytest.approx(1.0, abs=float32_sum_bound(2 * encoder.model.config.hidden_size + 2))
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


def test_contrast_target_is_the_log_probability_difference(causal):
    """'are|is': log p(' are') - log p(' is') at the last position, computed here from the logits in float64."""
    target = resolve_target("are|is", causal)
    are, is_ = (causal.tokenizer(f" {w}", add_special_tokens=False)["input_ids"][0] for w in ("are", "is"))
    assert target.kind == "contrast" and (target.index, target.versus) == (are, is_)
    ids = causal.tokenizer("The keys to the cabinet")["input_ids"]
    bound = target.bind(causal, ids)
    with torch.no_grad():
        log_p = torch.log_softmax(causal.model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)
    expected = float(log_p[are] - log_p[is_])
    # the logit difference in float32 against log-softmax in float64: two float32 logits of size |z|
    assert bound.value == pytest.approx(expected, abs=4 * torch.finfo(torch.float32).eps * float(log_p.abs().max()))
    assert resolve_target("is|are", causal).bind(causal, ids).value == pytest.approx(-bound.value)
    assert bound.describe()["token_ids"] == [are, is_]
    assert resolve_target(f"{are}|{is_}", causal).index == are  # token ids work too


@pytest.mark.parametrize("bad, message", [("are|", "two next tokens"), ("a|b|c", "two next tokens"),
                                          ("are|are", "same token"), ("cabinet|is", "pieces|tokens")])
def test_contrast_target_errors(causal, bad, message):
    with pytest.raises(AttnflowError, match=message):
        resolve_target(bad, causal)


def test_contrast_form_of_several_tokens_names_its_pieces(causal):
    with pytest.raises(AttnflowError, match=r"' cabinet' is 3 tokens .*\('Ġc"):
        resolve_target("cabinet|is", causal)


def test_contrast_target_needs_a_causal_lm():
    with pytest.raises(AttnflowError, match="causal language model"):
        resolve_target("are|is", tiny_loaded("bert", "base"))
