"""Subject-verb agreement in a causal LM: the task's definitions, the command's errors, and the committed run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnflow.errors import AttnflowError
from attnflow.tasks import agreement, sva
from tests.tolerances import EPS64, model_float32_bound

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "agreement-smollm2.json"


def test_sentences_are_written_as_english():
    for s in agreement.sentences(40, seed=3):
        words = s.example.words
        assert s.text[0].isupper() and s.text[0].lower() + s.text[1:] == " ".join(words).replace(" ,", ",")
        assert [s.text[a:b].lower() for a, b in s.spans] == [w.lower() for w in words]
        assert s.contrast == ("are|is" if s.example.label == sva.PLURAL else "is|are")
        assert s.contrast_of("were/was") == ("were|was" if s.plural else "was|were")


def test_sentences_are_the_grammars_first_n_whatever_n():
    assert [s.text for s in agreement.sentences(5)] == [s.text for s in agreement.sentences(30)[:5]]


@pytest.mark.parametrize("bad", [0, -1, agreement.MAX_SENTENCES + 1, 2.0, True])
def test_sentence_count_is_checked(bad):
    with pytest.raises(AttnflowError, match="number of agreement sentences"):
        agreement.sentences(bad)


def test_word_tokens_cover_each_word_once():
    offsets = [(0, 3), (3, 4), (4, 9), (9, 10), (11, 14)]  # "The" "k" "eys t" ... split mid-word on purpose
    assert agreement.word_tokens(offsets, [(0, 3), (4, 8), (9, 10), (11, 14)], 1) == [[1], [3], [4], [5]]


def test_accuracy_splits_by_attractors():
    found = agreement.accuracy(np.array([0.5, -0.1, 2.0, -3.0, 1.0]), [0, 0, 1, 2, 3])
    assert found["overall"] == {"n": 5, "accuracy": 0.6}
    assert found["without_attractors"] == {"n": 2, "accuracy": 0.5}
    assert found["by_attractors"]["2+"] == {"n": 2, "accuracy": 0.5}


def test_reproduce_agreement_refuses_bad_options(capsys):
    from attnflow.cli import main

    assert main(["reproduce", "agreement", "--n", "0"]) == 2
    assert main(["reproduce", "agreement", "--retrain"]) == 2
    assert "--retrain is not for agreement" in " ".join(capsys.readouterr().err.split())
    assert main(["reproduce", "sva", "--model", "smollm2"]) == 2
    assert "--model is for agreement" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_smollm2_pairs_are_single_tokens_and_it_knows_agreement(smollm2):
    pairs, notes = agreement.contrast_pairs(smollm2.tokenizer)
    assert set(pairs) == set(agreement.PAIRS) and notes == []
    assert agreement.beginning_token(smollm2.tokenizer) == ("<|endoftext|>", 0)
    items = agreement.sentences(20)
    prompts = [[0, *smollm2.tokenizer(s.text, add_special_tokens=False)["input_ids"]] for s in items]
    scores = agreement.signed_scores(smollm2, prompts, [s.plural for s in items], pairs)["are/is"]
    assert (scores > 0).mean() > 0.6  # far above chance (0.5) on sentences it never saw


@pytest.mark.slow
@pytest.mark.e2e
def test_the_committed_run_reproduces_on_its_seeded_subset(smollm2):
    """The first 20 sentences of docs/results/agreement-smollm2.json, rerun: the attention methods' scores, blank-out.

    The gradient methods and yardsticks are left out of the rerun to keep the suite's time down: they
    share the target (the signed contrast) that the signed scores check, and their own code has its tests.
    """
    committed = json.loads(RESULTS.read_text(encoding="utf-8"))
    settings = committed["settings"]
    methods = [m for m in ("raw", "rollout", "flow") if m in committed["subset"]["scores"]]
    rerun = agreement.reproduce_agreement(agreement.SUBSET, model=smollm2, seed=settings["seed"], methods=methods,
                                          graphs=[], blank=settings["blank"], ground_truths=["blankout"], cuts=False)
    found = rerun.to_dict()
    subset = committed["subset"]
    assert found["subset"]["tokens"] == subset["tokens"]
    # both runs are float32 passes of one model in other batch shapes: depth * hidden * eps32 of the scale
    bound = model_float32_bound(smollm2.model.config)
    for method in methods:
        for got, want in zip(found["subset"]["scores"][method], subset["scores"][method], strict=True):
            np.testing.assert_allclose(got, want, atol=bound, rtol=0, err_msg=method)
    for truth in found["subset"]["ground_truths"]:
        values = subset["ground_truths"][truth]
        for got, want in zip(found["subset"]["ground_truths"][truth], values, strict=True):
            got, want = np.array(got, dtype=float), np.array(want, dtype=float)
            scale = np.nanmax(np.abs(want)) if np.isfinite(want).any() else 1.0
            np.testing.assert_allclose(got, want, atol=bound * max(scale, 1.0), rtol=0, err_msg=truth)
    signed = np.array([s["score_are/is"] for s in committed["sentences"][: agreement.SUBSET]])
    np.testing.assert_allclose(rerun.scores["are/is"], signed, atol=bound * max(1.0, np.abs(signed).max()))


def test_cut_kinds_read_the_flow_evaluate_solved_and_run_no_pass_or_solve_of_their_own(monkeypatch, tiny_gpt2_path):
    """reproduce_agreement's cut kinds come from evaluate's flow solve: once the last evaluate returns, the
    model does not run and no flow problem is solved; within evaluate each problem is solved once, L * n a sentence."""
    import attnflow.evaluate
    from attnflow.capture import load_model
    from tests.counting import counted_work, spans_of

    loaded = load_model(tiny_gpt2_path)
    with counted_work(loaded.model, monkeypatch) as counts:
        evaluations = spans_of(monkeypatch, attnflow.evaluate, "evaluate", counts)
        run = agreement.reproduce_agreement(3, model=loaded, methods=["flow"], graphs=[], ground_truths=["blankout"])
    problems = counts["problems"]
    assert evaluations[-1][1] == (counts["forward"], len(problems))
    examples = run.evaluation.examples
    n_layers = run.evaluation.n_layers
    assert len(problems) == len(set(problems)) == sum(n_layers * len(e.tokens) for e in examples)
    cuts = run.cuts
    assert cuts["kinds"] == list(agreement.CUT_KINDS) and len(cuts["per_layer"]) == n_layers
    assert cuts["n_tokens"] == sum(len(e.content_positions) for e in examples)
    # each layer's shares: counts of at most n_tokens terms divided by their total, in float64
    np.testing.assert_allclose(np.sum(cuts["per_layer"], axis=1), 1.0, rtol=0, atol=cuts["n_tokens"] * EPS64)
    # the shares are those of the kept cut kinds of the scored tokens
    kinds = np.concatenate([e.details_of("flow").kinds[:, e.content_positions] for e in examples], axis=1)
    expected = [[float(np.mean(row == code)) for code in range(3)] for row in kinds]
    np.testing.assert_allclose(cuts["per_layer"], expected, rtol=0, atol=cuts["n_tokens"] * EPS64)


def test_agreement_with_a_graph_evaluates_each_sentence_once(monkeypatch, tiny_gpt2_path):
    """--graph: every graph's rollout and flow come from the same evaluation as the attention methods (one
    evaluate call per verb group, one planned pass and one blank-out per sentence), not a second one."""
    import attnflow.evaluate
    from attnflow.capture import load_model
    from tests.counting import counted_work, spans_of

    loaded = load_model(tiny_gpt2_path)
    n = 3
    with counted_work(loaded.model, monkeypatch) as counts:
        evaluations = spans_of(monkeypatch, attnflow.evaluate, "evaluate", counts)
        run = agreement.reproduce_agreement(n, model=loaded, methods=["raw", "rollout"], graphs=["norm"],
                                            ground_truths=["blankout"], cuts=False)
    assert 1 <= len(evaluations) <= 2  # one per verb group (plural and singular subjects)
    inside = sum(end[0] - start[0] for start, end in evaluations)
    assert inside == 2 * n  # per sentence: the planned pass, and blank-out's one batch
    assert run.evaluation.methods == ["raw", "rollout", "norm/rollout", "norm/flow"]
    for example in run.evaluation.examples:
        assert set(example.correlations["blankout"]) == set(run.evaluation.methods)
