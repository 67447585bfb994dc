"""``explain --generate N`` (and ``generate=N``): a decoder continues the prompt, each answer token is explained.

The references are computed here, independently of :mod:`attnflow.generation`:
the continuation by transformers' own ``generate``; each answer token's attention
and gradients by one plain forward and backward pass of the model on the whole
sequence (eager attention, ``output_attentions=True``), not on the prefix the
library differentiates; and, where the generated text tokenizes back to the same
ids, by ``attnflow.explain`` on the full text at the predicting position.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import attnflow
from attnflow.cli import main
from attnflow.errors import AttnflowError
from attnflow.generation import SPAN_RULE, explain_generation, generate
from tests.helpers import patch_everywhere
from tests.printed import printouts_differ
from tests.report.conftest import browser  # noqa: F401  (the session's headless chromium, for the page test)
from tests.tolerances import EPS64, model_float32_bound, rounded_bound

pytestmark = pytest.mark.e2e

PROMPT = "The keys to the cabinet"
#: Prompts whose greedy 4-token answer tokenizes back to the same ids (checked in the test), per tiny model.
ROUND_TRIP = {"gpt2": "Hello world, this is", "llama": "The quick brown fox"}
METHODS = ("raw", "rollout", "grad-rollout")


def _transformers(path: Path):
    """The tiny model and tokenizer loaded by transformers alone (eager attention)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    model.eval()
    return model, AutoTokenizer.from_pretrained(path)


def _reference(path: Path, ids: list[int], position: int, token: int) -> tuple[np.ndarray, np.ndarray]:
    """Attention ``(L, H, n, n)`` of the whole sequence and ``d logit(token at position) / dA`` by one backward pass."""
    import torch

    model, _ = _transformers(path)
    out = model(torch.tensor([ids]), output_attentions=True)
    attentions = out.attentions
    for layer in attentions:
        layer.retain_grad()
    out.logits[0, position, token].backward()
    stack = lambda layers: np.stack([layer[0].detach().double().numpy() for layer in layers])  # noqa: E731
    return stack(attentions), stack([layer.grad for layer in attentions])


@pytest.fixture(params=["gpt2", "llama"])
def decoder(request, tiny_model_paths) -> tuple[str, Path]:
    return request.param, tiny_model_paths[request.param]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---------------------------------------------------------------------------- the continuation


def test_the_answer_is_what_model_generate_gives_greedily(decoder):
    import torch

    _, path = decoder
    model, tokenizer = _transformers(path)
    ids = tokenizer(PROMPT)["input_ids"]
    expected = model.generate(
        torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=5,
        do_sample=False, num_beams=1, pad_token_id=tokenizer.eos_token_id,
    )[0].tolist()
    found = generate(PROMPT, str(path), 5)
    assert found.prompt_ids == ids and found.input_ids == expected
    assert found.answer == tokenizer.decode(expected[len(ids):], skip_special_tokens=True)
    assert found.stopped == "length" and len(found.answer_ids) == 5
    assert found.predicting_positions == [len(ids) - 1 + k for k in range(5)]


def test_generation_stops_at_the_end_of_sequence_token_and_keeps_it(decoder):
    """Make the model's own end-of-sequence token its greedy choice: the answer is that one token, kept."""
    import torch

    from attnflow.capture import load_model

    _, path = decoder
    loaded = load_model(path)
    eos = loaded.model.config.eos_token_id
    head = loaded.model.get_output_embeddings()
    with torch.no_grad():
        head.weight[eos] = 0
        head.bias = None
        head.weight[eos, 0] = 1e4  # the first hidden unit is never exactly 0 after the final norm
        hidden = loaded.model(torch.tensor([loaded.tokenizer(PROMPT)["input_ids"]]), output_hidden_states=True)
        sign = float(torch.sign(hidden.hidden_states[-1][0, -1, 0]))
        head.weight[eos, 0] = 1e4 * sign
    found = generate(PROMPT, loaded, 4)
    assert found.answer_ids == [eos] and found.stopped == "eos"


# ---------------------------------------------------------------------------- what is explained


def test_each_answer_token_is_explained_over_the_prompt_and_the_tokens_before_it(decoder):
    _, path = decoder
    e = attnflow.explain(PROMPT, str(path), methods=METHODS, generate=4)
    P, G = e.prompt_length, len(e.generation["answer_ids"])
    n = len(e.tokens)
    assert e.output == "answer" and G == 4 and P + G == n and e.n_layers == 2
    assert e.generation["rule"] == SPAN_RULE and e.generation["stopped"] == "length"
    for name in METHODS:
        assert e.answer_scores[name].shape == (G, 2, n) and e.scores[name].shape == (2, n)
        for k in range(G):
            position = P - 1 + k
            values = e.answer_scores[name][k]
            assert np.all(values[:, position + 1 :] == 0), (name, k)  # nothing from the token itself or later
            assert np.all(np.isfinite(values))
            if name == "rollout":
                assert np.allclose(values.sum(axis=-1), 1.0)
            single = e.answer_token(k)
            assert single.output == position and np.array_equal(single.scores[name], values)
            assert single.generation["explained"] == k
        # the span: the mean of the per-token explanations, G float64 terms
        np.testing.assert_allclose(e.scores[name], e.answer_scores[name].mean(axis=0), rtol=0,
                                   atol=G * EPS64 * np.abs(e.answer_scores[name]).max())
    assert e.target["token_ids"] == e.generation["answer_ids"] and len(e.target["logits"]) == G


def test_answer_tokens_equal_an_independent_forward_and_backward_pass(decoder):
    """Raw, rollout and grad-rollout of each answer token, from attention and logit gradients of the whole sequence."""
    _, path = decoder
    e = attnflow.explain(PROMPT, str(path), methods=METHODS, generate=3)
    loaded = attnflow.capture.load_model(path)
    ids = [*loaded.tokenizer(PROMPT)["input_ids"], *e.generation["answer_ids"]]
    per_token = []
    for k, token in enumerate(e.generation["answer_ids"]):
        position = e.prompt_length - 1 + k
        attentions, gradients = _reference(path, ids, position, token)
        expected = attnflow.explain_attentions(
            attentions, e.tokens, methods=METHODS, output=position, gradients=gradients
        )
        per_token.append(expected)
        for name in METHODS:
            atol = _bound(loaded.model.config, name, expected.scores[name])
            np.testing.assert_allclose(e.answer_scores[name][k], expected.scores[name], rtol=0, atol=atol,
                                       err_msg=f"{name} {k}")
        logit = _logit(path, ids, position, token)
        assert e.target["logits"][k] == pytest.approx(logit, abs=model_float32_bound(loaded.model.config,
                                                                                     scale=max(1.0, abs(logit))))
    for name in METHODS:
        scores = [t.scores[name] for t in per_token]
        np.testing.assert_allclose(e.scores[name], np.mean(scores, axis=0), rtol=0,
                                   atol=_bound(loaded.model.config, name, scores), err_msg=name)


def _bound(config, name: str, scores) -> float:
    """Two float32 runs of the model (the library's and a reference's) differ by the model's bound; a
    gradient's by the backward pass's too, relative to the scores' size (grad-rollout's are not O(1))."""
    if name == "grad-rollout":
        return model_float32_bound(config, scale=float(np.abs(scores).max()), backward=True)
    return model_float32_bound(config)


def _logit(path: Path, ids: list[int], position: int, token: int) -> float:
    import torch

    model, _ = _transformers(path)
    with torch.no_grad():
        return float(model(torch.tensor([ids])).logits[0, position, token])


def test_answer_tokens_equal_explain_on_the_full_text(decoder):
    """Where prompt + answer tokenizes back to the same ids, ``explain(full text, output=P-1+k)`` is answer token k."""
    arch, path = decoder
    prompt = ROUND_TRIP[arch]
    loaded = attnflow.capture.load_model(path)
    found = explain_generation(prompt, loaded, 4, methods=METHODS)
    g = found.generation
    full = loaded.tokenizer.decode(g.input_ids, skip_special_tokens=True)
    assert loaded.tokenizer(full)["input_ids"] == g.input_ids, "the chosen prompt no longer round-trips"
    spans = {name: [] for name in METHODS}
    for k, token in enumerate(g.answer_ids):
        position = g.prompt_length - 1 + k
        attention = attnflow.explain(full, loaded, methods=("raw", "rollout"), output=position)
        prefix = loaded.tokenizer.decode(g.input_ids[: g.prompt_length + k], skip_special_tokens=True)
        if loaded.tokenizer(prefix)["input_ids"] == g.input_ids[: g.prompt_length + k]:
            # grad-rollout of the next token after the prefix, zero-padded to the whole sequence
            gradient = attnflow.explain(prefix, loaded, methods="grad-rollout", target=token).scores["grad-rollout"]
            padded = np.zeros((gradient.shape[0], len(g.input_ids)))
            padded[:, : gradient.shape[1]] = gradient
            np.testing.assert_allclose(found.explanation.answer_scores["grad-rollout"][k], padded, rtol=0,
                                       atol=_bound(loaded.model.config, "grad-rollout", padded), err_msg=str(k))
        for name in ("raw", "rollout"):
            np.testing.assert_allclose(found.explanation.answer_scores[name][k], attention.scores[name], rtol=0,
                                       atol=model_float32_bound(loaded.model.config))
            spans[name].append(attention.scores[name])
    for name in ("raw", "rollout"):
        np.testing.assert_allclose(found.explanation.scores[name], np.mean(spans[name], axis=0), rtol=0,
                                   atol=model_float32_bound(loaded.model.config))


def test_the_span_of_raw_and_rollout_is_the_method_on_the_mean_predicting_row(decoder):
    """The docs' remark: both are linear in the output row, so the span is the method applied to the rows' mean."""
    _, path = decoder
    found = explain_generation(PROMPT, str(path), 3, methods=("raw", "rollout"))
    P, G = found.generation.prompt_length, 3
    rows = slice(P - 1, P - 1 + G)
    fused = found.captured.attentions.astype(np.float64).mean(axis=1)  # (L, n, n), head mean
    raw = fused[:, rows].mean(axis=1)
    rolled = attnflow.rollout(found.captured.attentions)[:, rows].mean(axis=1)
    L, H, n = fused.shape[0], found.captured.attentions.shape[1], fused.shape[-1]
    atol = (H + L * n + G) * EPS64  # float64 from the same float32 weights: head mean, L n-term products, row mean
    np.testing.assert_allclose(found.explanation.scores["raw"], raw, rtol=0, atol=atol)
    np.testing.assert_allclose(found.explanation.scores["rollout"], rolled, rtol=0, atol=atol)


def test_the_head_fused_capture_gives_the_scores_of_every_head(decoder, monkeypatch):
    """Mean fusion while the model runs (float32 ``(L, 1, n, n)``) equals capturing every head, within float32."""
    import attnflow.capture.plan as plan

    _, path = decoder
    loaded = attnflow.capture.load_model(path)
    methods = ("raw", "rollout", "flow", "grad-rollout")
    fused = explain_generation(PROMPT, loaded, 3, methods=methods)
    patch_everywhere(monkeypatch, plan, "heads_to_capture", lambda *args, **kwargs: "all")
    full = explain_generation(PROMPT, loaded, 3, methods=methods)
    assert fused.captured.head_fusion == "mean" and fused.captured.attentions.dtype == np.float32
    assert full.captured.head_fusion is None and full.captured.attentions.shape[1] == 4
    assert fused.captured.attentions.shape[1] == 1 and fused.captured.model_heads == 4
    assert fused.generation.answer_ids == full.generation.answer_ids
    config = loaded.model.config
    for name in methods:
        atol = _bound(config, name, full.explanation.answer_scores[name])
        np.testing.assert_allclose(fused.explanation.answer_scores[name], full.explanation.answer_scores[name],
                                   rtol=0, atol=atol, err_msg=name)
        np.testing.assert_allclose(fused.explanation.scores[name], full.explanation.scores[name], rtol=0, atol=atol,
                                   err_msg=name)
    logits = full.explanation.target["logits"]
    assert fused.explanation.target["logits"] == pytest.approx(
        logits, abs=model_float32_bound(config, scale=max(1.0, *np.abs(logits))))


# ---------------------------------------------------------------------------- the command line


@pytest.mark.slow
def test_cli_table_marks_the_prompt_and_the_answer_and_json_keeps_them(capsys, tmp_path, tiny_gpt2_path):
    path = tmp_path / "answer.json"
    status, out, err = run_cli(
        capsys, "explain", PROMPT, "--model", str(tiny_gpt2_path), "--generate", "3", "--method", "rollout",
        "--method", "grad-rollout", "--head-fusion", "importance", "--json", str(path),
    )
    assert status == 0, err
    expected = attnflow.explain(
        PROMPT, str(tiny_gpt2_path), methods=("rollout", "grad-rollout"), generate=3, head_fusion="importance"
    )
    P = expected.prompt_length
    assert f"answer (3 tokens, greedy): {expected.generation['answer']!r}" in out
    assert "mean over its 3 tokens" in out and "answer: " + SPAN_RULE[:40] in " ".join(out.split())
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert len(rows) == len(expected.tokens)
    parts = [row.split("│")[3].strip() for row in rows]
    assert parts == ["prompt"] * P + ["answer"] * 3  # a span explains no single token: no ▸ mark
    data = json.loads(path.read_text())
    assert data["output"] == "answer" and data["generation"]["prompt_length"] == P
    assert data["generation"]["answer_ids"] == expected.generation["answer_ids"]
    assert np.allclose(data["scores"]["rollout"], expected.scores["rollout"])
    assert np.array(data["answer_scores"]["grad-rollout"]).shape == (3, 2, len(expected.tokens))
    assert np.array(data["options"]["head_importance"]).shape == (3, 2, 4)  # one (L, H) grid per answer token
    back = attnflow.Explanation.from_json(path)
    assert back.answer_token(2).output == P + 1 and back.answer_token(2).target["token_id"] == data["target"][
        "token_ids"][2]


def test_cli_answer_each_prints_one_table_per_answer_token(capsys, tiny_llama_path):
    status, out, err = run_cli(
        capsys, "explain", PROMPT, "--model", str(tiny_llama_path), "--generate", "3", "--answer", "each",
        "--method", "raw",
    )
    assert status == 0, err
    e = attnflow.explain(PROMPT, str(tiny_llama_path), methods="raw", generate=3)
    P = e.prompt_length
    flat = " ".join(out.split())  # titles wrap at the terminal's width
    titles = re.findall(r"Scores for answer token (\d) of 3 \(token (\d+), .*?\), predicted at token (\d+)", flat)
    assert [tuple(map(int, t)) for t in titles] == [(k + 1, P + k, P - 1 + k) for k in range(3)]
    tables = out.split("Scores for ")[1:]
    for k, table in enumerate(tables):
        rows = [row for row in table.splitlines() if row.startswith("│")]
        parts = [row.split("│")[3].strip() for row in rows]
        # the explained token (answer token k, at position P + k) is marked ▸
        assert parts == ["prompt"] * P + ["answer ▸" if j == k else "answer" for j in range(3)]
        raw = [float(row.split("│")[4]) for row in rows]
        np.testing.assert_allclose(raw, e.answer_scores["raw"][k][-1], rtol=0, atol=rounded_bound(3))  # printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "minilm", "--generate", "2"], "Cannot generate with 'minilm' (BertModel): it is an encoder"),
        (["--model", "digits-vit", "--generate", "2"], "(ViTForImageClassification): it is an image model"),
        (["--generate", "0"], "--generate"),
        (["--generate", "2", "--output", "last"], "--output cannot be given with --generate"),
        (["--generate", "2", "--target", "predicted"], "--target cannot be given with --generate"),
        (["--answer", "each"], "--answer chooses how a generated answer is explained; give --generate N too."),
    ],
)
def test_cli_mistakes_are_one_line(capsys, tiny_gpt2_path, args, message):
    model = [] if "--model" in args else ["--model", str(tiny_gpt2_path)]
    status, out, err = run_cli(capsys, "explain", PROMPT, *model, *args)
    assert status != 0 and message in " ".join(err.split()), err
    assert "Traceback" not in out + err and len(err.strip().splitlines()) <= 3, err


def test_cli_generate_with_an_image_is_refused(capsys, tmp_path):
    from PIL import Image

    picture = tmp_path / "p.png"
    Image.new("RGB", (8, 8)).save(picture)
    status, _, err = run_cli(capsys, "explain", "--image", str(picture), "--generate", "2")
    assert status != 0 and "--generate is for texts, not --image." in " ".join(err.split())
    status, _, err = run_cli(capsys, "explain", "--image", str(picture), "--words")
    assert status != 0 and "--words is for texts, not --image." in " ".join(err.split())


def test_api_mistakes_are_clear_errors(tiny_gpt2_path, minilm):
    with pytest.raises(AttnflowError, match="it is an encoder"):
        attnflow.explain(PROMPT, minilm, generate=2)
    with pytest.raises(AttnflowError, match=r"integer >= 1"):
        attnflow.explain(PROMPT, str(tiny_gpt2_path), generate=0)
    with pytest.raises(AttnflowError, match=r"'output' parameter\(s\) cannot be given with 'generate'"):
        attnflow.explain(PROMPT, str(tiny_gpt2_path), generate=2, output="last")
    with pytest.raises(AttnflowError, match="accepts at most 64 tokens"):
        attnflow.explain(PROMPT, str(tiny_gpt2_path), generate=64)
    long = "word " * 70
    with pytest.raises(AttnflowError, match=r"The prompt has 141 tokens and 4 more are asked for, 145 in all, but the "
                       r"model .* accepts at most 64: ask for at most 0 tokens, shorten the prompt, or pass truncate"):
        attnflow.explain(long, str(tiny_gpt2_path), generate=4)
    cut = attnflow.explain(long, str(tiny_gpt2_path), methods="raw", generate=4, truncate=True)
    assert cut.prompt_length == 60 and len(cut.tokens) == 64  # the prompt is cut, the answer kept whole
    with pytest.raises(AttnflowError, match="Unknown method"):
        attnflow.explain(PROMPT, str(tiny_gpt2_path), methods="nope", generate=2)
    with pytest.raises(AttnflowError, match="does not exist"):
        attnflow.explain(PROMPT, str(tiny_gpt2_path), methods="raw", generate=2).answer_token(2)


def test_a_headless_decoder_is_refused(tmp_path):
    from tests.tiny_models import save_tiny_model

    path = save_tiny_model("gpt2", tmp_path / "base", head="base")
    with pytest.raises(AttnflowError, match="a decoder without a language-model head"):
        generate(PROMPT, str(path), 2)


# ---------------------------------------------------------------------------- the report


def _page_data(path: Path) -> dict:
    block = re.search(r'<script type="application/json" id="[^"]*">(.*?)</script>', path.read_text(), re.S)
    assert block, "no data block in the page"
    return json.loads(block.group(1))


@pytest.fixture(scope="module")
def answer_report(tmp_path_factory, tiny_model_paths):
    """An HTML report of a 3-token answer of the tiny GPT-2, with words, and the library's explanation beside it.

    ``--answer each`` opens the page on the first answer token's predicting position (``span``, the
    default, opens it on the answer span, which has no single predicted token to box).
    """
    folder = tmp_path_factory.mktemp("answer_report")
    path = folder / "answer.html"
    status = main(["explain", "Hello world, this is", "--model", str(tiny_model_paths["gpt2"]), "--generate", "3",
                   "--answer", "each", "--method", "raw", "--method", "rollout", "--words", "--html", str(path)])
    assert status == 0
    e = attnflow.explain("Hello world, this is", str(tiny_model_paths["gpt2"]), methods=("raw", "rollout"),
                         generate=3, words=True)
    return path, e


def test_the_report_data_marks_the_answer_and_holds_each_answer_tokens_scores(answer_report):
    path, e = answer_report
    data = _page_data(path)
    P = e.prompt_length
    assert data["prompt_length"] == P and data["tokens"] == e.tokens
    assert data["words"]["labels"] == e.words.labels and data["words"]["groups"] == e.words.groups
    outputs = [str(o) for o in data["outputs"]]
    for k in range(3):
        column = outputs.index(str(P - 1 + k))
        for name in ("raw", "rollout"):
            # the page rounds to 6 decimals; the command and the call ran the same float32 arithmetic
            np.testing.assert_allclose(np.array(data["scores"][name])[:, column], e.answer_scores[name][k], rtol=0,
                                       atol=rounded_bound(6))
            words = np.array(data["words"]["scores"][name])[:, column]
            np.testing.assert_allclose(words, e.words.sum_scores(e.answer_scores[name][k]), rtol=0,
                                       atol=rounded_bound(6))


@pytest.mark.slow
@pytest.mark.xdist_group("browser")
def test_the_page_underlines_the_answer_and_boxes_the_predicted_token(browser, answer_report):  # noqa: F811
    from tests.report.conftest import open_page, severe

    path, e = answer_report
    assert not severe(open_page(browser, path))
    P, n = e.prompt_length, len(e.tokens)
    shown = browser.execute_script(
        """
        const first = document.querySelector('.sentence:not(.words)');
        const chips = [...first.querySelectorAll('.tok')];
        const words = [...document.querySelector('.sentence.words').querySelectorAll('.tok')];
        return {
          answer: chips.map(c => c.classList.contains('answer')),
          underline: chips.map(c => getComputedStyle(c).textDecorationLine),
          predicted: chips.map(c => c.classList.contains('is-predicted')),
          border: chips.map(c => getComputedStyle(c).borderTopStyle),
          output: chips.map(c => c.classList.contains('is-output')),
          words: words.map(c => c.textContent),
          wordAnswer: words.map(c => c.classList.contains('answer')),
          caption: document.getElementById('tokens-caption').textContent,
          sentences: document.querySelectorAll('.sentence.words').length,
        };
        """
    )
    assert shown["answer"] == [False] * P + [True] * (n - P)
    assert [u == "underline" for u in shown["underline"]] == shown["answer"]
    output = shown["output"].index(True)  # the report opens on the first answer token's predicting position
    assert output == P - 1
    assert shown["predicted"] == [j == output + 1 for j in range(n)]
    assert shown["border"][output + 1] == "dashed"
    assert shown["words"] == e.words.labels and shown["sentences"] == 2  # a words row per method
    assert shown["wordAnswer"] == [g[0] >= P for g in e.words.groups]
    assert f"The first {P} tokens are the prompt" in shown["caption"] and "Words: " in shown["caption"]



# ---------------------------------------------------------------------------- the docs show what the commands print

DOCS = [Path(__file__).resolve().parents[1] / name for name in ("docs/generation.md", "README.md")]
OUTPUT_BLOCK = re.compile(r"<!-- attnflow-output: (.*?) -->\n```\n(.*?)```", re.S)


#: Runs each command line given in argv with attnflow's CLI, a marker line before each one's output.
_RUNNER = """
import shlex, sys
from attnflow.cli import main
for args in sys.argv[1:]:
    print("@@ attnflow-output", flush=True)
    status = main(shlex.split(args))
    sys.stdout.flush()
    if status:
        sys.exit(f"attnflow {args} failed ({status})")
"""


def command_outputs(commands: list[str], folder: Path) -> list[str]:
    """What ``attnflow ARGS`` prints for each command, run in ``folder`` (where ``tiny-gpt2`` is), 100 columns wide.

    One fresh process runs them all (the width is fixed when the CLI's console is made).
    """
    import subprocess
    import sys

    from tests.printed import cli_env

    run = subprocess.run([sys.executable, "-c", _RUNNER, *commands], capture_output=True, text=True,
                         env=cli_env(100), cwd=folder, timeout=600)
    assert run.returncode == 0, run.stderr
    parts = run.stdout.split("@@ attnflow-output\n")[1:]
    assert len(parts) == len(commands), run.stdout
    return ["\n".join(line.rstrip() for line in part.splitlines()).strip() for part in parts]


@pytest.fixture(scope="module")
def docs_folder(tmp_path_factory) -> Path:
    """A folder holding ``tiny-gpt2``, the model the docs' commands use (as the docs say to build it)."""
    from tests.tiny_models import save_tiny_model

    folder = tmp_path_factory.mktemp("docs")
    save_tiny_model("gpt2", folder / "tiny-gpt2")
    return folder


@pytest.mark.slow
def test_the_docs_show_what_the_commands_print(docs_folder):
    blocks = [(document, args, shown) for document in DOCS
              for args, shown in OUTPUT_BLOCK.findall(document.read_text(encoding="utf-8"))]
    assert {document.name for document, _, _ in blocks} == {"generation.md", "README.md"}, "output blocks lost"
    outputs = command_outputs([args for _, args, _ in blocks], docs_folder)
    for (document, args, shown), output in zip(blocks, outputs, strict=True):
        difference = printouts_differ(output, shown)
        assert difference is None, (
            f"rerun `attnflow {args}` and paste its output into {document.name} (see docs/generation.md): {difference}")


def test_the_report_shows_grad_rollout_for_every_answer_token(capsys, tmp_path, tiny_llama_path):
    """grad-rollout needs the answer token's gradient: the report has it at the predicting positions only."""
    path = tmp_path / "g.html"
    status = main(["explain", PROMPT, "--model", str(tiny_llama_path), "--generate", "2", "--method",
                   "grad-rollout", "--html", str(path)])
    assert status == 0, capsys.readouterr().err
    e = attnflow.explain(PROMPT, str(tiny_llama_path), methods="grad-rollout", generate=2)
    data = _page_data(path)
    outputs = [str(o) for o in data["outputs"]]
    values = np.array(data["scores"]["grad-rollout"], dtype=float)  # (L, outputs, n), NaN: not computed
    predicting = {str(e.prompt_length - 1 + k): k for k in range(2)}
    for column, output in enumerate(outputs):
        if output in predicting:
            np.testing.assert_allclose(values[:, column], e.answer_scores["grad-rollout"][predicting[output]],
                                       rtol=0, atol=rounded_bound(6, scale=values[:, column].max()))  # 6 decimals
        elif output == "answer":  # the span the terminal printed: the mean of the predicting positions'
            np.testing.assert_allclose(values[:, column], e.scores["grad-rollout"], rtol=0,
                                       atol=rounded_bound(6, scale=values[:, column].max()))
        else:
            assert np.all(np.isnan(values[:, column])), output
    assert any("computed at the positions that predicted the answer tokens" in note for note in data["notes"])


def test_attnflow_report_from_the_json_of_an_answer_keeps_the_marks_and_words(capsys, tmp_path, tiny_gpt2_path):
    saved, page = tmp_path / "answer.json", tmp_path / "answer.html"
    assert main(["explain", "Hello world, this is", "--model", str(tiny_gpt2_path), "--generate", "3", "--method",
                 "rollout", "--words", "--json", str(saved)]) == 0
    assert main(["report", str(saved), "-o", str(page)]) == 0, capsys.readouterr().err
    e = attnflow.Explanation.from_json(saved)
    data = _page_data(page)
    P = e.prompt_length
    assert data["prompt_length"] == P and data["words"]["groups"] == e.words.groups
    assert [int(o) for o in data["outputs"]] == [P - 1, P, P + 1]  # one output per answer token
    for k in range(3):
        np.testing.assert_allclose(np.array(data["scores"]["rollout"])[:, k], e.answer_scores["rollout"][k], rtol=0,
                                   atol=rounded_bound(6))  # the page rounds to 6 decimals
