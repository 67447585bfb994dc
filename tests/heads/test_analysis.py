"""analyze_heads end to end: a built positional head is found, importance is the mean |head-mask gradient|."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnflow.capture.gradients import target_gradients
from attnflow.capture.targets import resolve_target
from attnflow.errors import AttnflowError
from attnflow.heads import HeadReport, analyze_heads
from tests.evaluate.toy import tiny_loaded
from tests.heads.toy_heads import positional_model
from tests.tolerances import model_float64_bound

TEXTS = ["The keys to the cabinet are on the table.", "A cat sat on the warm mat.", "Dogs bark loudly at night."]


def test_a_head_built_to_attend_to_the_previous_token_is_found_positional():
    report = analyze_heads(TEXTS, positional_model(), target="predicted")
    assert report.roles[0, 0] == "previous"
    assert report.roles[0, 1] != "previous"
    assert report.previous_max[0, 0] == 1.0  # every query's maximum is on the token before it
    assert report.previous_max[0, 1] < 0.3
    assert report.share_roles[0, 0] == "previous"
    assert report.previous_share[0, 0] > 0.99
    assert report.previous_share[0, 1] < 0.3
    assert report.importance.shape == (1, 2) and np.all(report.importance > 0)


@pytest.fixture(scope="module")
def classifier():
    return tiny_loaded("bert", "classification", double=True)


def test_importance_is_the_mean_absolute_head_mask_gradient(classifier):
    report = analyze_heads(TEXTS, classifier, target=1)
    expected = np.zeros((2, 4))
    shares = np.zeros((2, 4))
    largest, smallest_sum = 0.0, np.inf
    for text in TEXTS:
        ids = classifier.tokenizer(text)["input_ids"]
        bound = resolve_target(1, classifier).bind(classifier, ids)
        gradient = np.abs(target_gradients(classifier, bound, ids, objective="log_probability").head_gradients)
        expected += gradient
        shares += gradient / gradient.sum(axis=1, keepdims=True)
        largest, smallest_sum = max(largest, gradient.max()), min(smallest_sum, gradient.sum(axis=1).min())
    # another float64 forward and backward pass per text: each gradient within the model's bound; a share
    # g / S moves by (1 + H) times that over S
    error = model_float64_bound(classifier.model.config, scale=largest, backward=True)
    np.testing.assert_allclose(report.importance, expected / len(TEXTS), rtol=0, atol=error)
    np.testing.assert_allclose(report.relevance, shares / len(TEXTS), rtol=0, atol=(1 + 4) * error / smallest_sum)
    np.testing.assert_allclose(report.relevance.sum(axis=1), 1.0)
    assert report.target["class"] == 1 and report.n_examples == 3
    for name in ("confidence", "previous_share", "next_share", "rare_share", "sink_share", "previous_max",
                 "next_max", "rare_max"):
        values = getattr(report, name)
        assert values.shape == (2, 4) and np.all((values >= 0) & (values <= 1 + 1e-9))


def test_frequencies_from_the_data_a_mapping_or_a_corpus(classifier, tmp_path):
    own = analyze_heads(TEXTS, classifier, target=0)
    assert own.frequency_source.startswith("counted over the data set itself (3 examples")
    given = analyze_heads(TEXTS, classifier, target=0, frequencies={"the": 9, "cat": 1})
    assert given.frequency_source == "given by the user (2 tokens)"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the the the cat\nkeys table\n")
    from_file = analyze_heads(TEXTS, classifier, target=0, frequencies=corpus)
    assert from_file.frequency_source.startswith(f"counted over the corpus {str(corpus)!r} (6 tokens")
    np.testing.assert_allclose(own.importance, given.importance)  # only the rare-word score depends on them
    with pytest.raises(AttnflowError, match="frequency corpus"):
        analyze_heads(TEXTS, classifier, target=0, frequencies=tmp_path / "missing.txt")


def test_report_to_dict_top_and_plot():
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(size=(2, 3)) for _ in range(6)]
    arrays[-1][0, 1] = np.nan
    report = HeadReport(*arrays, model_name="toy", target={"spec": "norm"}, n_examples=4)
    data = json.loads(report.to_json())
    assert data["format"] == "attnflow.heads" and data["scores"]["sink_share"][0][1] is None
    assert data["scores"]["previous_max"] == [[None] * 3] * 2  # not computed: NaN, no role
    assert data["roles"] == [[[]] * 3] * 2 and data["thresholds"]["positional"] == 0.9
    top = report.top(2)
    flat = np.argsort(-arrays[0].ravel(), kind="stable")[:2]
    assert [(e["layer"] - 1) * 3 + e["head"] - 1 for e in top] == flat.tolist()
    fig = report.plot()
    assert fig.axes[0].get_ylabel() == "layer"
    with pytest.raises(AttnflowError, match="shape"):
        HeadReport(np.zeros((2, 3)), np.zeros((2, 2)), *arrays[2:])
