"""``attnflow.evaluate`` end to end on toy and tiny models: known answers, both call forms, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attnflow
import attnflow.evaluate
from attnflow.errors import AttnflowError
from attnflow.evaluate import EvaluationResult
from attnflow.evaluate.runner import evaluate
from tests.evaluate.toy import POSITION, one_token_model, tiny_loaded, toy_probability
from tests.tolerances import EPS64

TOY_TEXTS = ["a b c d e", "the keys to the cabinet are on the table", "one two three"]


@pytest.fixture(scope="module")
def toy():
    return one_token_model()


@pytest.fixture(scope="module")
def toy_result(toy) -> EvaluationResult:
    return evaluate(TOY_TEXTS, toy, methods=["raw", "rollout"])


def test_the_one_token_model_is_explained_perfectly(toy_result):
    # The toy reads only POSITION and every query attends only to it: methods and ground truths
    # all single it out, so every correlation is exactly 1 at every layer with sd 0.
    for truth in ("blankout", "gradient", "saliency", "grad_x_input", "integrated_gradients"):
        for method in ("raw", "rollout"):
            stats = toy_result.correlation(truth, method)
            np.testing.assert_allclose(stats[:, 0], 1.0)
            # the sd of correlations that are each 1 up to the float64 rounding of a rank sum over n tokens
            n = max(len(example.tokens) for example in toy_result.examples)
            np.testing.assert_allclose(stats[:, 1], 0.0, atol=n * EPS64)
    for example in toy_result.examples:
        for values in example.ground_truths.values():
            assert int(np.nanargmax(values)) == POSITION
            assert np.isnan(values[list(example.special_positions)]).all()  # special tokens: never scored


def test_faithfulness_by_hand_on_the_toy(toy, toy_result):
    example = toy_result.examples[0]  # [CLS] a b c d e [SEP]; the toy reads position 2
    assert example.tokens == ["[CLS]", "a", "b", "c", "d", "e", "[SEP]"]
    cls = example.target["class"]
    ids = toy.tokenizer("a b c d e")["input_ids"]
    cls_id, a, b, c, d, e, sep = ids

    def p(seq):
        return toy_probability(toy, seq, cls)

    full = p(ids)
    # raw attention ranks b first, then (ties, by position) a, c, d, e; of 5 tokens
    # 10 % and 20 % remove 1, 30 % and 40 % remove 2, 50 % removes 3 (rounded up)
    comp = [full - p([cls_id, a, c, d, e, sep])] * 2 + [full - p([cls_id, c, d, e, sep])] * 2
    comp += [full - p([cls_id, d, e, sep])]
    suff = [full - p([cls_id, b, sep])] * 2 + [full - p([cls_id, a, b, sep])] * 2 + [full - p([cls_id, a, b, c, sep])]
    scores = example.faithfulness["raw"]
    # the same float64 toy on the same ids, batched differently: a difference of two probabilities,
    # each from a hidden_size-term reduction
    bound = 2 * toy.model.config.hidden_size * EPS64
    np.testing.assert_allclose(scores.comprehensiveness, comp, atol=bound)
    np.testing.assert_allclose(scores.sufficiency, suff, atol=bound)
    np.testing.assert_allclose(suff[2:], 0.0, atol=bound)  # b kept in place: the output is unchanged
    assert scores.aopc_comprehensiveness == pytest.approx(np.mean(comp))
    assert "random" in example.faithfulness


def test_both_call_forms_agree(toy):
    assert callable(attnflow.evaluate)
    assert attnflow.evaluate.evaluate is evaluate and attnflow.evaluate.spearman  # still a module
    kwargs = {"methods": ["rollout"], "ground_truths": ["blankout"], "seed": 3}
    by_module = attnflow.evaluate(TOY_TEXTS[:2], toy, **kwargs)
    by_function = evaluate(TOY_TEXTS[:2], toy, **kwargs)
    assert by_module.to_dict() == by_function.to_dict()


def test_outputs_are_complete_and_json(toy_result):
    data = json.loads(toy_result.to_json())
    assert data["n_examples"] == 3 and data["model"] == "OneTokenForSequenceClassification"
    assert data["target"]["spec"] == "auto (predicted)" and data["output"] == "cls"
    assert set(data["correlation"]) == {"blankout", "gradient", "saliency", "grad_x_input", "integrated_gradients"}
    yardsticks = data["options"]["yardsticks"]  # the toy has no layers: gradients at its embedding's output
    assert yardsticks["point"].startswith("output of the input embedding") and yardsticks["gradient_defined"]
    assert len(data["correlation"]["blankout"]["raw"]) == 2  # one [mean, sd] per layer
    faith = data["faithfulness"]
    assert faith["layer"] == 2 and faith["percents"] == [10, 20, 30, 40, 50]
    assert set(faith["methods"]) == {"raw", "rollout", "random"}
    assert set(faith["methods"]["raw"]["comprehensiveness"]) == {"10", "20", "30", "40", "50"}
    assert "special tokens" in data["special_tokens"]
    frame = toy_result.to_dataframe()
    assert len(frame) == 3 * 2 * 2  # examples x methods x layers
    assert frame["target_class"].notna().all()
    top = frame[frame.layer == 2]
    assert top["aopc_comprehensiveness"].notna().all()
    assert frame[frame.layer == 1]["aopc_comprehensiveness"].isna().all()


def test_random_baseline_is_reproducible(toy):
    first = evaluate(TOY_TEXTS, toy, methods=["raw"], ground_truths=["blankout"], seed=5)
    again = evaluate(TOY_TEXTS, toy, methods=["raw"], ground_truths=["blankout"], seed=5)
    assert first.faithfulness_summary() == again.faithfulness_summary()


@pytest.mark.slow
@pytest.mark.parametrize("architecture, head", [("bert", "classification"), ("gpt2", "causal-lm"), ("roberta", "base")])
def test_tiny_models(architecture, head):
    loaded = tiny_loaded(architecture, head)
    target = "cosine:a tiny reference" if head == "base" else None
    result = evaluate(["The quick brown fox jumps.", "Hello world, this is it!"], loaded, target=target,
                      methods=["raw", "rollout"], ig_steps=8)
    assert result.n_examples == 2 and result.n_layers == 2
    assert result.output == {"classification": "cls", "causal-lm": "last", "base": "mean"}[head]
    for truth in result.ground_truths:
        stats = result.correlation(truth, "rollout")
        assert np.all(np.abs(stats[:, 0][np.isfinite(stats[:, 0])]) <= 1.0)
    json.loads(result.to_json())


def test_gold_labels_and_their_errors():
    loaded = tiny_loaded("bert", "classification")
    result = evaluate([("The cat.", 1), ("A dog.", "LABEL_0")], loaded, target="gold", methods=["raw"],
                      ground_truths=["blankout"], faithfulness=False)
    assert [e.target["class"] for e in result.examples] == [1, 0]
    with pytest.raises(AttnflowError, match=r"Example 1 .*label 'banana' does not exist.*LABEL_0"):
        evaluate([("The cat.", 1), ("A dog.", "banana")], loaded, methods=["raw"])
    with pytest.raises(AttnflowError, match="needs a label"):
        evaluate(["The cat."], loaded, target="gold")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"target": "predicted"}, "bare encoder"),
        ({"methods": ["nope"]}, "Unknown method 'nope'"),
        ({"ground_truths": ["attention"]}, "Unknown ground truth"),
        ({"removal": "drop"}, "removal"),
        ({"percents": [0]}, "percents"),
        ({"faithfulness_layer": 9}, "faithfulness_layer"),
        ({"blank": "mask-me"}, "blank"),
        ({"methods": ["raw"], "residual": 0.3}, "Unknown option"),
    ],
)
def test_bad_arguments_fail_before_any_example_runs(kwargs, message, monkeypatch):
    loaded = tiny_loaded("bert", "base")
    from attnflow.capture import perturb

    def never(*args, **kw):
        raise AssertionError("a model run started before the arguments were checked")

    monkeypatch.setattr(perturb, "blankout", never)
    with pytest.raises(AttnflowError, match=message):
        evaluate(["The cat sat."], loaded, **kwargs)


def test_too_long_text_fails_before_any_model_run(monkeypatch):
    loaded = tiny_loaded("bert", "base")  # 64 positions
    from attnflow.capture import perturb

    monkeypatch.setattr(perturb, "blankout", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    long_text = " ".join(["word"] * 100)
    with pytest.raises(AttnflowError, match="Example 1 .* accepts at most 64; pass truncate=True"):
        evaluate(["Short.", long_text], loaded, methods=["raw"])
    monkeypatch.undo()
    result = evaluate(["Short.", long_text], loaded, methods=["raw"], truncate=True, ground_truths=["blankout"],
                      faithfulness=False)
    assert len(result.examples[1].tokens) == 64


def test_integrated_gradients_report_their_delta_and_warn_when_it_is_large(monkeypatch):
    """The relative delta is kept per example and summarised; a delta over 5 % warns, one under does not."""
    from attnflow.capture import perturb
    from attnflow.evaluate.runner import IG_DELTA_WARNING, IG_STEPS, IntegratedGradientsWarning

    assert IG_STEPS >= 50
    import inspect

    from attnflow.commands.evaluate import evaluate as command

    assert inspect.signature(command).parameters["ig_steps"].default == IG_STEPS
    loaded = tiny_loaded("bert", "classification")
    real = perturb.integrated_gradients
    for relative, warns in ((0.2, True), (0.01, False)):
        def fake(*args, relative=relative, **kwargs):
            out = real(*args, **kwargs)
            return perturb.IntegratedGradients(out.importance, relative * 3.0, relative)

        monkeypatch.setattr(perturb, "integrated_gradients", fake)
        with pytest.warns(IntegratedGradientsWarning, match="raise ig_steps") if warns else _no_ig_warning():
            result = evaluate(["The cat sat.", "A dog."], loaded, methods=["raw"],
                              ground_truths=["integrated_gradients"], faithfulness=False)
        deltas = result.ig_deltas()
        np.testing.assert_allclose(deltas[:, 1], relative)
        summary = result.to_dict()["ig_delta"]
        assert summary["n_above_warning"] == (2 if relative > IG_DELTA_WARNING else 0)
        assert summary["relative_max"] == pytest.approx(relative)
        assert list(result.to_dataframe()["ig_relative_delta"].unique()) == [relative]


class _no_ig_warning:
    def __enter__(self):
        import warnings

        from attnflow.evaluate.runner import IntegratedGradientsWarning

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error", IntegratedGradientsWarning)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def test_special_token_protocol_scores_cls_too(toy):
    """with_special_tokens: ground truths at [CLS]/[SEP] as well, a second set of correlations over every token;
    the default correlations are unchanged."""
    plain = evaluate(TOY_TEXTS, toy, methods=["raw", "rollout"], ground_truths=["blankout", "gradient"],
                     faithfulness=False)
    both = evaluate(TOY_TEXTS, toy, methods=["raw", "rollout"], ground_truths=["blankout", "gradient"],
                    faithfulness=False, with_special_tokens=True)
    assert not plain.has_special_protocol and both.has_special_protocol
    for truth in ("blankout", "gradient"):
        np.testing.assert_array_equal(plain.correlation(truth, "raw"), both.correlation(truth, "raw"))
    for example in both.examples:
        for name, values in example.ground_truths_all.items():
            assert np.all(np.isfinite(values)), name  # special positions have values too
            content = example.content_positions
            np.testing.assert_array_equal(values[content], example.ground_truths[name][content])
        # the second set is the Spearman correlation over every position, computed here independently
        from scipy.stats import spearmanr

        scores = example.scores["rollout"][-1]
        truth = example.ground_truths_all["gradient"]
        expected = spearmanr(scores, truth).statistic if np.ptp(scores) and np.ptp(truth) else np.nan
        np.testing.assert_allclose(example.correlations_all["gradient"]["rollout"][-1], expected, equal_nan=True)
    d = both.to_dict()
    assert set(d["correlation_with_special_tokens"]) == {"blankout", "gradient"}
    with pytest.raises(AttnflowError, match="with_special_tokens=True"):
        plain.correlation("blankout", "raw", special_tokens=True)
    with pytest.raises(AttnflowError, match="True or False"):
        evaluate(TOY_TEXTS, toy, methods=["raw"], with_special_tokens="yes")
