"""Attribution methods on a generated answer (``explain(..., generate=N)``, ``attnflow explain --generate``):
each answer token's logit, at the position that predicted it, over the tokens before it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import attnflow
from attnflow.cli import main

PROMPT = "Hello world, this is"


def _saliency_by_autograd(path, ids: list[int], position: int) -> np.ndarray:
    """``||d logit / d h_j||``, h the first block's input, by transformers and autograd alone (no Captum)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    model.eval()
    out = model(torch.tensor([ids[:position]]), output_hidden_states=True)
    first = out.hidden_states[0]  # what block 1 reads: token and position embeddings summed
    first.retain_grad()
    out.logits[0, -1, ids[position]].backward()
    return first.grad[0].double().norm(dim=-1).numpy()


def test_each_answer_token_is_scored_on_the_tokens_before_it(tiny_gpt2_path):
    result = attnflow.explain(PROMPT, str(tiny_gpt2_path), methods=["rollout", "saliency", "occlusion"], generate=3)
    record = result.generation
    start = record["prompt_length"]
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_gpt2_path)(PROMPT)["input_ids"] + record["answer_ids"]
    assert len(ids) == len(result.tokens) and start == len(ids) - len(record["answer_ids"])
    assert result.options["input_methods"] == {"saliency": "input", "occlusion": "input"}
    every = np.asarray(result.answer_scores["saliency"])  # (answer tokens, L, n)
    eps32 = float(np.finfo(np.float32).eps)
    for k in range(len(record["answer_ids"])):
        position = start + k
        want = _saliency_by_autograd(tiny_gpt2_path, ids, position)
        # the same float32 graph by two routes: a few float32 roundings per layer of the largest score
        np.testing.assert_allclose(every[k, -1, :position], want, rtol=0, atol=2 * 16 * eps32 * want.max())
        assert np.all(every[k, :, position:] == 0)  # the causal logit cannot depend on the tokens after
        assert np.all(every[k] == every[k, 0])  # the input, the same row at every layer
    # the span: the mean over the answer's tokens, a float64 sum of that many terms
    np.testing.assert_allclose(result.scores["saliency"], every.mean(axis=0), rtol=len(every) * np.finfo(float).eps)


def test_the_generate_report_shows_them_at_the_predicting_positions(tiny_gpt2_path, tmp_path, capsys):
    page, saved = tmp_path / "g.html", tmp_path / "g.json"
    status = main(["explain", PROMPT, "--model", str(tiny_gpt2_path), "--generate", "2", "--method", "rollout",
                   "--method", "occlusion", "--json", str(saved), "--html", str(page)])
    assert status == 0, capsys.readouterr().err
    block = re.search(r'<script type="application/json" id="[^"]*">(.*?)</script>', page.read_text(), re.S).group(1)
    data, explained = json.loads(block), json.loads(saved.read_text())
    shown = np.asarray(data["scores"]["occlusion"], dtype=float)
    start = explained["generation"]["prompt_length"]
    for k, row in enumerate(explained["answer_scores"]["occlusion"]):  # rows of the predicting positions
        np.testing.assert_allclose(shown[:, data["outputs"].index(start - 1 + k)], row, rtol=0, atol=0.5e-6)
    np.testing.assert_allclose(shown[:, data["outputs"].index("answer")], explained["scores"]["occlusion"],
                               rtol=0, atol=0.5e-6)
    assert any(note.startswith("Method occlusion explains each generated token") for note in data["notes"])


@pytest.mark.parametrize("args, message", [
    (["--method", "lime", "--lime-samples", "50", "--max-passes", "10"], "over the limit of 10"),
])
def test_bad_options_with_generate_are_one_line_before_the_model_loads(capsys, args, message):
    status = main(["explain", PROMPT, "--model", "no/such/model", "--generate", "2", *args])
    err = " ".join(capsys.readouterr().err.split())
    assert status != 0 and message in err and "Traceback" not in err
