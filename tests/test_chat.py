"""--chat: the text wrapped in the tokenizer's own chat template, the template's tokens marked as special.

The real chat template is SmolLM2-Instruct's (the bundled ``smollm2``): the reference is the
tokenizer's own ``apply_chat_template`` rendering, tokenized as one string.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from attnflow import Explanation
from attnflow.capture import load_model
from attnflow.capture.chat import ChatTemplate, special_tokens_mask, with_chat
from attnflow.capture.text import _encode
from attnflow.cli import main
from attnflow.errors import AttnflowError
from attnflow.generation import generate
from attnflow.report.terminal import explanation_table

TEXT = "What is the capital of France?"
ids = st.lists(st.integers(0, 20), max_size=6)


@given(ids, ids, st.lists(st.integers(21, 40), min_size=1, max_size=6), ids)
def test_template_positions_are_exactly_the_template_around_the_text(before, text, after, answer):
    """A text without the closing sequence (its ids < 21): the marks are the leading and the closing ids."""
    template = ChatTemplate(tuple(before), tuple(after))
    wrapped = template.wrap(text)
    marked = template.positions(wrapped + answer)
    assert marked == [True] * len(before) + [False] * len(text) + [True] * len(after) + [False] * len(answer)


def test_a_model_without_a_chat_template_is_one_line(minilm, capsys):
    with pytest.raises(AttnflowError, match="has none"):
        with_chat(minilm)
    assert main(["explain", "hello", "--chat"]) != 0
    err = capsys.readouterr().err
    assert "--chat needs a tokenizer with a chat template" in err and len(err.strip().splitlines()) == 1


def test_chat_is_refused_with_an_image(capsys, tmp_path):
    assert main(["explain", "--image", str(tmp_path / "x.png"), "--chat"]) != 0
    assert "--chat is for texts" in capsys.readouterr().err



@pytest.fixture(scope="module")
def chat_model(smollm2):
    return with_chat(smollm2)


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
@pytest.mark.parametrize("text", [TEXT, "assistant", " leading space", "Two\n\nlines  "])
def test_the_prompt_is_the_templates_own_rendering_and_the_texts_tokens_are_unmarked(chat_model, text):
    tok = chat_model.tokenizer
    rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    encoded = _encode(chat_model, text, False, None)
    assert encoded.input_ids == tok(rendered, add_special_tokens=False)["input_ids"]
    own = tok(text, add_special_tokens=False)["input_ids"]
    assert [i for i, m in zip(encoded.input_ids, encoded.special_mask, strict=True) if not m] == own
    assert encoded.special_mask == special_tokens_mask(chat_model, encoded.input_ids)


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_a_chat_prompt_too_long_says_so_and_truncate_cuts_the_text_not_the_template(chat_model):
    text = "word " * 9000
    with pytest.raises(AttnflowError, match=r"accepts at most 8192; pass truncate=True"):
        _encode(chat_model, text, False, None)
    cut = _encode(chat_model, text, True, None)
    chat = chat_model.chat
    assert len(cut.input_ids) == 8192 and cut.truncated
    assert cut.input_ids[-len(chat.after):] == list(chat.after)
    assert cut.input_ids[: len(chat.before)] == list(chat.before)


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_explain_chat_marks_the_template_in_terminal_json_and_html(smollm2, tmp_path, capsys):
    saved, page = tmp_path / "chat.json", tmp_path / "chat.html"
    status = main(["explain", TEXT, "--model", "smollm2", "--chat", "--generate", "2", "--method", "raw",
                   "--method", "rollout", "--json", str(saved), "--html", str(page)])
    assert status == 0, capsys.readouterr().err
    explanation = Explanation.from_json(saved)
    chat = with_chat(smollm2).chat
    P = explanation.prompt_length
    template = [i for i in range(P) if i < len(chat.before) or i >= P - len(chat.after)]
    assert list(explanation.special_positions) == template
    words = smollm2.tokenizer.convert_ids_to_tokens(smollm2.tokenizer(TEXT, add_special_tokens=False)["input_ids"])
    assert explanation.tokens[len(chat.before) : P - len(chat.after)] == words
    block = re.search(r'<script type="application/json" id="[^"]*">(.*?)</script>', page.read_text(), re.S)
    assert json.loads(block.group(1))["special_positions"] == template
    console = Console(record=True, width=160, force_terminal=True, color_system="standard")
    console.print(explanation_table(explanation))
    dim = re.compile(r"\x1b\[2m([^\x1b]*)")
    marked = {piece.strip() for piece in dim.findall(console.export_text(styles=True))}
    assert "<|im_start|>" in marked and "ĠFrance" not in marked


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")
def test_generate_past_the_context_is_one_line_before_the_model_runs(smollm2, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(smollm2.model, "generate", never)
    with pytest.raises(AttnflowError, match="accepts at most 8192 tokens"):
        generate(TEXT, smollm2, 8192)
    with pytest.raises(AttnflowError, match=r"in all, but the model 'smollm2' accepts at most 8192"):
        generate(TEXT, smollm2, 8190)
    with pytest.raises(AttnflowError, match=r"in all, but the model 'smollm2' accepts at most 8192"):
        generate(TEXT, load_model(smollm2, chat=True), 8180)  # the template's 30 tokens count
    monkeypatch.undo()
    assert main(["explain", TEXT, "--model", "smollm2", "--generate", "9000"]) != 0
    err = capsys.readouterr().err
    assert "accepts at most 8192" in err and len(err.strip().splitlines()) == 1
