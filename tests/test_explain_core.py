"""The explain core: one capture in, scores out; the model runs once per input and each flow problem is solved once."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import attnflow
import attnflow.capture
from attnflow.capture import CapturedAttention
from attnflow.cli import main
from attnflow.core import score_capture
from attnflow.methods import _maxflow_kernel
from tests.helpers import patch_everywhere, random_attention
from tests.tolerances import EPS64, assert_within, flow_bound, model_float32_bound

# 36 tokens on the bundled MiniLM, [CLS] and [SEP] included
SENTENCE = (
    "The old keys that the children found under the heavy wooden cabinet near the kitchen door last winter are "
    "finally back on the big table where they belong today, said Anna Lee."
)


@pytest.fixture
def counted(monkeypatch):
    """Forward passes of every model ``attnflow.capture.load_model`` loads, and the kernel's flow problems."""
    counts = {"forward": 0, "problems": []}
    load = attnflow.capture.load_model

    def load_and_count(*args, **kwargs):
        loaded = load(*args, **kwargs)
        if not getattr(loaded.model, "_counted_here", False):
            loaded.model.register_forward_hook(lambda *_: counts.__setitem__("forward", counts["forward"] + 1))
            loaded.model._counted_here = True
        return loaded

    solve = _maxflow_kernel.LayeredMaxFlow.solve_certified

    def solve_and_count(self, depths, rows, sources, sink_caps, **kwargs):
        # one problem: its depth (layer - 1), its sink's capacities (the output) and its source
        counts["problems"].extend(
            (int(d), np.asarray(sink_caps[r]).tobytes(), int(s)) for d, r, s in zip(depths, rows, sources, strict=True)
        )
        return solve(self, depths, rows, sources, sink_caps, **kwargs)

    patch_everywhere(monkeypatch, attnflow.capture, "load_model", load_and_count)
    monkeypatch.setattr(_maxflow_kernel.LayeredMaxFlow, "solve_certified", solve_and_count)
    return counts


def _payload(path):
    text = path.read_text()
    return json.loads(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', text, re.S).group(1))


@pytest.mark.e2e
@pytest.mark.parametrize("graph", [["alti"], []])
def test_explain_with_a_report_runs_the_model_once_and_solves_each_flow_problem_once(
    counted, capsys, tmp_path, graph
):
    page = tmp_path / "out.html"
    flags = [arg for name in graph for arg in ("--graph", name)]
    status = main(["explain", SENTENCE, "--method", "rollout", "--method", "flow", *flags, "--html", str(page)])
    assert status == 0, capsys.readouterr().err
    payload = _payload(page)
    prefix = "".join(f"{name}/" for name in graph)
    assert list(payload["scores"]) == [f"{prefix}rollout", f"{prefix}flow"]
    n_layers, n = 6, 36
    flow = np.array(payload["scores"][f"{prefix}flow"], dtype=float)
    assert flow.shape == (n_layers, n, n) and np.isfinite(flow).all()  # every output selectable
    assert counted["forward"] == 1
    problems = counted["problems"]
    # the page's flow for every output at every layer is L * n outputs of n sources: each solved once
    assert len(problems) == len(set(problems)) == n_layers * n * n


def test_score_capture_gives_every_output_from_one_solve_and_the_explained_output_from_it():
    attention = random_attention(np.random.default_rng(5), 3, 2, 6)
    captured = CapturedAttention(attention, list("abcdef"), list(range(6)), (), "toy", False, "a b c d e f")
    found = score_capture(captured, ["raw", "rollout", "flow"], output=2, every_output="all", residual=0.4)
    every = found.every_output["attention"]
    assert every.outputs == list(range(6))
    # float64 both ways: flow within the kernel's allowance over the graph's arcs; rollout's L products of
    # n-term row sums
    np.testing.assert_allclose(every.scores["flow"], attnflow.attention_flow(attention, residual=0.4),
                               atol=flow_bound(attention.shape[0] * 6 * 6))
    np.testing.assert_allclose(every.scores["rollout"], attnflow.rollout(attention, residual=0.4),
                               atol=attention.shape[0] * 6 * EPS64)
    alone = attnflow.explain_attentions(attention, methods=("raw", "rollout", "flow"), output=2, residual=0.4)
    for method in alone.methods:  # the explained output: what explain_attentions gives, read from the same solve
        np.testing.assert_array_equal(found.explanation.scores[method], alone.scores[method])
        np.testing.assert_array_equal(every.scores[method][:, 2], alone.scores[method])
    assert found.explanation.token_labels == alone.token_labels and found.explanation.notes == alone.notes
    assert found.explanation.solutions["flow"] is every.flow_solution


def test_score_capture_wants_the_mixing_capture_for_a_context_mixing_graph():
    captured = CapturedAttention(np.full((1, 1, 2, 2), 0.5), ["a", "b"], [1, 2], (), "toy", False, "a b")
    with pytest.raises(attnflow.AttnflowError, match="mixing capture"):
        score_capture(captured, ["rollout"], graphs=["alti"])


@pytest.mark.e2e
def test_explain_on_the_encoder_decoder_model_with_a_report_runs_it_once_and_solves_each_flow_problem_once(
    counted, capsys, tmp_path
):
    page = tmp_path / "out.html"
    status = main(["explain", "7 2 9 4", "--model", "reverse", "--decoder-text", "4 9 2 7", "--method", "rollout",
                   "--method", "flow", "--html", str(page)])
    assert status == 0, capsys.readouterr().err
    payload = _payload(page)
    # 2 encoder layers + 2 decoder layers of 2 sublayers; "7 2 9 4 </s>" and "<pad> 4 9 2 7"
    depth, nt, n = 2 + 2 * 2, 5, 10
    flow = np.array(payload["scores"]["flow"], dtype=float)
    assert flow.shape == (depth, nt, n) and np.isfinite(flow).all()  # every decoder position at every graph layer
    assert counted["forward"] == 1
    problems = counted["problems"]
    # the explanation's flow (decoder layers, explained position) is read from the page's solve, not solved again
    assert len(problems) == len(set(problems)) == depth * nt * n


def test_score_seq2seq_reads_the_explanation_from_the_every_output_solve_and_matches_networkx():
    from types import SimpleNamespace

    from attnflow.core import score_seq2seq
    from tests.seq2seq.test_graph import random_triple, unlayered_flow
    from tests.tolerances import flow_bound

    enc, dec, cross = random_triple(4, 2, 2, 4, 3)
    captured = SimpleNamespace(encoder=enc, decoder=dec, cross=cross, source_tokens=list("abcd"),
                               target_tokens=list("xyz"))
    found = score_seq2seq(captured, ["raw", "rollout", "flow"], 1, every_output="all", residual=0.4)
    every = found.every_output["attention"]
    assert every.outputs == [4, 5, 6] and found.explanation.output == 5
    for method in ("raw", "rollout", "flow"):  # decoder layers 1, 2 are graph layers 4 and 6
        np.testing.assert_array_equal(every.scores[method][[3, 5], 1], found.explanation.scores[method])
    depth, n = 6, 7
    for layer in (1, 2):
        for t in range(3):
            expected = unlayered_flow(enc, dec, cross, layer, t, r=0.4)
            # normalised rows: a max flow over depth * (n^2 + n) arcs, divided by a row sum of at most n of them
            np.testing.assert_allclose(every.scores["flow"][1 + 2 * layer, t], expected / expected.sum(), rtol=0,
                                       atol=2 * n * flow_bound(depth * (n**2 + n)))
    decoder_only = score_seq2seq(captured, ["flow"], 1, every_output="all", layers="decoder", residual=0.4)
    scores = decoder_only.every_output["attention"].scores["flow"]
    assert np.isnan(scores[[0, 1, 2, 4]]).all()  # encoder and self-attention sublayers: not solved
    np.testing.assert_array_equal(scores[[3, 5]], every.scores["flow"][[3, 5]])
    with pytest.raises(attnflow.AttnflowError, match="do not run on encoder-decoder"):
        score_seq2seq(captured, ["globenc"], 1)
    with pytest.raises(attnflow.AttnflowError, match="runs the model on the source and the target prefix"):
        score_seq2seq(captured, ["saliency"], 1)


@pytest.mark.e2e
def test_generate_with_a_report_runs_one_pass_per_decoding_step_and_one_capture_and_solves_flow_once(
    counted, capsys, tmp_path, tiny_gpt2_path
):
    page, record = tmp_path / "out.html", tmp_path / "out.json"
    status = main(["explain", "the cat sat on", "--model", str(tiny_gpt2_path), "--generate", "3", "--method",
                   "rollout", "--method", "flow", "--html", str(page), "--json", str(record)])
    assert status == 0, capsys.readouterr().err
    result = attnflow.Explanation.from_json(record)
    answer, n = len(result.generation["answer_ids"]), len(result.tokens)
    n_layers = result.n_layers
    flow = np.array(_payload(page)["scores"]["flow"], dtype=float)
    assert flow.shape[:2] == (n_layers, n + 1) and np.isfinite(flow[:, :n]).all()  # every output, and the span
    # the decoding steps (one per answer token: the documented passes of --generate), then the one capture
    assert counted["forward"] == answer + 1
    problems = counted["problems"]
    # every output's flow at every layer, solved once: each answer token's flow is read from that solve
    assert len(problems) == len(set(problems)) == n_layers * n * n
    for k in range(answer):
        # the page writes 6 decimals: within half a unit of the last (plus float64 rounding of that decimal)
        np.testing.assert_allclose(result.answer_scores["flow"][k], flow[:, n - answer - 1 + k], rtol=0,
                                   atol=0.5e-6 + 1e-15)


@pytest.mark.e2e
def test_grad_rollout_for_the_predicted_token_runs_the_capture_and_its_own_backward_pass_only(counted, capsys,
                                                                                              tmp_path):
    import torch

    from attnflow.capture.seq2seq import capture_seq2seq

    record = tmp_path / "e.json"
    status = main(["explain", "7 2 9 4", "--model", "reverse", "--decoder-text", "4 9 2 7", "--method", "grad-rollout",
                   "--output", "last", "--target", "predicted", "--json", str(record)])
    assert status == 0, capsys.readouterr().err
    assert counted["forward"] == 2  # the capture (whose logits give the predicted token), the gradient's pass
    loaded = attnflow.capture.load_model("reverse")
    cap = capture_seq2seq("7 2 9 4", loaded, decoder_text="4 9 2 7")
    with torch.no_grad():  # the model's own next-token choice at the last position, from a pass of its own
        logits = loaded.model(input_ids=torch.tensor([cap.source_ids]),
                              decoder_input_ids=torch.tensor([cap.target_ids])).logits
    assert json.loads(record.read_text())["target"]["token_id"] == int(logits[0, -1].argmax())


@pytest.fixture
def passes_on(monkeypatch):
    """``passes_on(ids)``: how many forward passes of a loaded model ran on exactly these token ids (padding removed).

    Passes on inputs_embeds (gradient methods) or on perturbed ids (blank-out) are not counted.
    """
    seen: list[tuple[int, ...]] = []
    load = attnflow.capture.load_model

    def record(module, args, kwargs, output):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        mask = kwargs.get("attention_mask")
        for row in range(ids.shape[0]):
            keep = ids[row] if mask is None else ids[row][mask[row].bool()]
            seen.append(tuple(int(i) for i in keep))

    def load_and_record(*args, **kwargs):
        loaded = load(*args, **kwargs)
        if not getattr(loaded.model, "_recorded_here", False):
            loaded.model.register_forward_hook(record, with_kwargs=True)
            loaded.model._recorded_here = True
        return loaded

    patch_everywhere(monkeypatch, attnflow.capture, "load_model", load_and_record)
    return lambda ids: seen.count(tuple(int(i) for i in ids))


TEXTS = ["The keys to the cabinet are on the table.", "Dogs bark loudly at night."]


@pytest.mark.e2e
def test_evaluate_runs_each_example_once_for_its_attention_graphs_and_target(passes_on):
    """One planned pass per example gives the attention, ALTI's tensors and the target's class and value, which
    took three passes before (a capture, the target's and the graphs')."""
    from attnflow.capture.targets import resolve_target

    found = attnflow.evaluate(TEXTS, methods=["rollout", "flow"], ground_truths=["blankout"], target="norm",
                              faithfulness=False, graphs=["attention", "alti"])
    loaded = attnflow.capture.load_model()
    norm = resolve_target("norm", loaded)
    for example in found.examples:
        ids = loaded.tokenizer(example.text)["input_ids"]
        # the planned pass, and blank-out's batch, which scores the input beside its blanked copies so that
        # their differences share the batch's round-off
        assert passes_on(ids) == 1 + 1
        value = norm.bind(loaded, ids).value  # the target's own pass, for comparison
        # the same eager forward on the same ids, which two runs may round differently: the pooled hidden
        # state, and so its norm, within the model's float32 bound relative to its size
        assert abs(example.target["value"] - value) <= model_float32_bound(loaded.model.config) * abs(value)
        assert set(example.scores) == {"rollout", "flow", "alti/rollout", "alti/flow"}


@pytest.mark.e2e
def test_explain_with_a_graph_and_an_attribution_method_runs_the_input_once(passes_on):
    """explain binds saliency's target from the pass that captured the attention and ALTI's tensors (it ran
    a pass of its own for the target before)."""
    found = attnflow.explain(TEXTS[0], methods=["rollout", "saliency"], graph=["attention", "alti"], target="norm")
    loaded = attnflow.capture.load_model()
    # the planned pass; then saliency's own two: its gradient point's values (beside the blank baseline's)
    # and its gradient pass
    assert passes_on(loaded.tokenizer(TEXTS[0])["input_ids"]) == 1 + 2
    assert found.target["kind"] == "norm" and np.isfinite(found.target["value"])
    assert set(found.scores) == {"rollout", "alti/rollout", "saliency"}


@pytest.mark.e2e
def test_a_batch_shard_with_a_target_and_a_graph_runs_each_row_once(passes_on):
    from attnflow.batch.worker import Shard, ShardWorker, WorkSpec
    from attnflow.data import Example

    spec = WorkSpec(model="minilm", methods=("rollout", "saliency"), graphs=("attention", "alti"), target="norm")
    worker = ShardWorker(spec, own_threads=False)
    shard = Shard(0, tuple(Example(text, row=row) for row, text in enumerate(TEXTS)))
    table = worker.table(shard).to_pandas()
    for text in TEXTS:  # the planned pass, and saliency's own two (as in explain)
        assert passes_on(worker.loaded.tokenizer(text)["input_ids"]) == 1 + 2
    assert set(table["method"]) == {"rollout", "alti/rollout", "saliency"}


@pytest.mark.e2e
def test_analyze_heads_binds_the_predicted_class_in_its_gradient_pass(passes_on):
    """The head analysis fixes each example's predicted class from its padded forward-and-backward pass
    (it ran a pass per example for the target before); the class equals the one Target.bind finds."""
    from attnflow.capture.targets import resolve_target
    from attnflow.heads import analyze_heads

    report = analyze_heads(TEXTS, "sva", target="predicted")
    loaded = attnflow.capture.load_model("sva")
    for text in TEXTS:
        assert passes_on(loaded.tokenizer(text)["input_ids"]) == 1
    assert report.n_examples == 2 and np.isfinite(report.importance).all()
    target = resolve_target("predicted", loaded)
    from attnflow.capture.gradients import batch_head_gradients

    ids = [loaded.tokenizer(text)["input_ids"] for text in TEXTS]
    bound_first = batch_head_gradients(loaded, [target.bind(loaded, i) for i in ids], ids)
    bound_here = batch_head_gradients(loaded, target, ids)
    for first, here in zip(bound_first, bound_here, strict=True):
        assert first.target["class"] == here.target["class"]
        # the same pass and objective, which two runs may round differently: a gradient's float32 bound
        bound = model_float32_bound(loaded.model.config, scale=np.abs(first.head_gradients).max(), backward=True)
        assert_within(here.head_gradients, first.head_gradients, bound)


@pytest.mark.e2e
def test_pruning_heads_reads_its_baseline_from_the_pass_that_binds_the_target(passes_on):
    from attnflow.capture.gradients import count_heads
    from attnflow.heads.masking import pruning_experiment

    loaded = attnflow.capture.load_model("sva")
    shape = (loaded.model.config.num_hidden_layers, count_heads(loaded.model))
    importance = np.arange(np.prod(shape), dtype=float).reshape(shape)
    found = pruning_experiment(TEXTS, loaded, target="predicted", importance=importance, fractions=[0.0, 0.5],
                               orders=["least"])
    for text in TEXTS:  # the unpruned pass (the target, the baseline and pruning nothing), then the half pruned
        assert passes_on(loaded.tokenizer(text)["input_ids"]) == 1 + 1
    unpruned = found.rows[0]
    assert unpruned["n_pruned"] == 0 and unpruned["value_change"] == 0.0 and unpruned["accuracy"] == 1.0


@pytest.mark.e2e
def test_attention_gradients_for_the_predicted_class_runs_one_pass(passes_on):
    from attnflow.capture.gradients import attention_gradients, target_gradients
    from attnflow.capture.targets import resolve_target

    loaded = attnflow.capture.load_model("sva")
    found = attention_gradients(TEXTS[0], loaded, target="predicted")
    ids = loaded.tokenizer(TEXTS[0])["input_ids"]
    assert passes_on(ids) == 1  # the forward pass the gradients go back through fixes the class
    target = resolve_target("predicted", loaded)
    bound_first = target_gradients(loaded, target.bind(loaded, ids), ids)
    assert found.target["class"] == bound_first.target["class"]
    # the same pass and objective, which two runs may round differently: a gradient's float32 bound
    bound = model_float32_bound(loaded.model.config, scale=np.abs(bound_first.gradients).max(), backward=True)
    assert_within(found.gradients, bound_first.gradients, bound)


@pytest.mark.e2e
def test_evaluate_with_a_graph_of_its_own_methods_equals_two_evaluations_from_one_pass(passes_on):
    """graph_methods: raw and rollout over attention beside ALTI's rollout and flow, in one evaluation:
    one planned pass and one blank-out per example, where two evaluations ran each twice."""
    both = attnflow.evaluate(TEXTS, methods=["raw", "rollout"], ground_truths=["blankout"], target="norm",
                             faithfulness=False, graphs=["attention", "alti"], graph_methods={"alti": ["flow"]})
    loaded = attnflow.capture.load_model()
    for text in TEXTS:
        assert passes_on(loaded.tokenizer(text)["input_ids"]) == 1 + 1  # the planned pass, blank-out's batch
    assert both.methods == ["raw", "rollout", "alti/flow"]
    # every method over every graph (what graph_methods spares), from the same kind of pass
    every = attnflow.evaluate(TEXTS, methods=["raw", "rollout", "flow"], ground_truths=["blankout"], target="norm",
                              faithfulness=False, graphs=["attention", "alti"])
    # two runs of the model may round float32 differently (the first pass after loading did here): attention
    # weights differ by b, rollout and flow (L * n arcs into each value, capacities off by b) by the bound below
    b = model_float32_bound(loaded.model.config)
    for example, source in zip(both.examples, every.examples, strict=True):
        n_layers, n = example.scores["raw"].shape
        bounds = {"raw": b, "rollout": 2 * b * (n_layers * n + 1),
                  "alti/flow": 2 * b * (n_layers * n + 1) + flow_bound(n_layers * n * n)}
        for key, bound in bounds.items():
            assert_within(example.scores[key], source.scores[key], bound, key)
        assert set(example.correlations["blankout"]) == {"raw", "rollout", "alti/flow"}
    with pytest.raises(attnflow.AttnflowError, match="not a context-mixing graph"):
        attnflow.evaluate(TEXTS, methods=["rollout"], graphs=["attention"], graph_methods={"attention": ["flow"]})
    with pytest.raises(attnflow.AttnflowError, match="grad-rollout"):
        attnflow.evaluate(TEXTS, methods=["rollout"], graphs=["attention", "alti"],
                          graph_methods={"alti": ["grad-rollout"]})
