"""Voita et al.'s roles on real models: the bundled SVA model with the generator's arcs, MiniLM's subwords."""

from __future__ import annotations

import numpy as np
import pytest

from attnflow.capture import capture_attention, load_model
from attnflow.errors import AttnflowError
from attnflow.heads import analyze_heads
from attnflow.tasks import sva


@pytest.fixture(scope="module")
def sva_model():
    return load_model("sva")


@pytest.fixture(scope="module")
def sva_report(sva_model):
    data = sva.generate(40, split="test", seed=11)
    report = analyze_heads([(e.text, e.label) for e in data], sva_model, "gold", dependencies=data)
    return data, report


@pytest.mark.slow
def test_sva_syntactic_scores_equal_a_direct_count_on_captured_attention(sva_model, sva_report):
    data, report = sva_report
    captured = capture_attention([e.text for e in data], sva_model)
    hits = np.zeros((6, 8))
    for example, found in zip(data, captured, strict=True):
        # the agreement link: from the prediction position ([CLS], token 0) to the subject (word i = token i + 1)
        hits += found.attentions[:, :, 0, :].argmax(axis=-1) == example.subject + 1
    np.testing.assert_allclose(report.syntactic["agreement"].accuracy["head->dependent"], hits / len(data))
    det_hits, n_det = np.zeros((6, 8)), 0
    for example, found in zip(data, captured, strict=True):
        for head, dependent, relation in example.arcs:
            if relation == "det":  # dependent -> head: from the determiner to its noun
                det_hits += found.attentions[:, :, dependent + 1, :].argmax(axis=-1) == head + 1
                n_det += 1
    assert report.syntactic["det"].n_arcs == n_det
    np.testing.assert_allclose(report.syntactic["det"].accuracy["dependent->head"], det_hits / n_det)
    assert report.syntactic["det"].offset["dependent->head"] == 1  # "the dog": the noun right after, mostly
    previous = np.zeros((6, 8))
    n_queries = 0
    for found in captured:
        n = found.attentions.shape[-1]
        previous += (found.attentions[:, :, 1:, :].argmax(axis=-1) == np.arange(n - 1)).sum(axis=-1)
        n_queries += n - 1
    np.testing.assert_allclose(report.previous_max, previous / n_queries)


@pytest.mark.slow
def test_sva_the_most_important_heads_carry_the_agreement_link(sva_report):
    """Voita et al.'s finding on the bundled model: the important heads are the specialised ones. The SVA
    model's five most important heads are all in layer 1, and they point from [CLS] to the subject."""
    _, report = sva_report
    for entry in report.top(3):
        assert entry["layer"] == 1 and "agreement" in entry["role"].split(","), entry
    gain = report.syntactic["agreement"].gain()
    assert gain[0].max() > 0.2  # well above always pointing 2 tokens ahead (the most frequent subject position)
    assert report.syntactic["agreement"].baseline["head->dependent"] < 0.6
    assert not any("previous" in r or "next" in r for r in report.roles.ravel())  # no positional head here
    with pytest.raises(AttnflowError, match="'xcomp' does not occur in the dependencies"):
        analyze_heads(["the dog"], "sva", "predicted", relations=["xcomp"],
                      dependencies=[sva.SVAExample(("the", "dog"), 0, 1, (), ((1, 0, "det"),))])


@pytest.mark.slow
def test_arcs_meet_minilm_subwords_and_the_cls_position():
    text = "the aardvarks near the cabinets"
    data = [sva.SVAExample(tuple(text.split()), 1, 1, (), ((1, 0, "det"), (-1, 1, "agreement")))]
    report = analyze_heads([text], None, "norm", dependencies=data)
    loaded = load_model(None)
    tokens = loaded.tokenizer.tokenize(text)
    assert len(tokens) > 5  # "aardvarks" is split into subwords
    found = capture_attention(text, loaded)
    first = 2  # [CLS] the aard...: the first subword of the subject
    noun = [first]
    while tokens[noun[-1]].startswith("##"):  # tokens[p] is the token at position p + 1
        noun.append(noun[-1] + 1)
    assert len(noun) > 1
    hits = np.isin(found.attentions[:, :, 0, :].argmax(axis=-1), noun)
    np.testing.assert_allclose(report.syntactic["agreement"].accuracy["head->dependent"], hits.astype(float))
    from_det = np.isin(found.attentions[:, :, 1, :].argmax(axis=-1), noun)
    np.testing.assert_allclose(report.syntactic["det"].accuracy["dependent->head"], from_det.astype(float))
    with pytest.raises(AttnflowError, match="1 sentences but there are 2 examples"):
        analyze_heads([text, text], None, "norm", dependencies=data)
