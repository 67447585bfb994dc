"""Words, not pieces (``--words``): the grouping rule per tokenizer family, and word scores as sums of piece scores.

The rule under test (:data:`attnflow.words.WORD_RULE`): the words are the text's
whitespace-separated words (``str.split``), a word being the run of pieces whose
characters fall in one of them; special tokens and whitespace-only pieces (a lone
``Ġ`` / ``▁``, a newline) are groups of their own; a word's score is the sum of
its pieces'. Tokenizers are built offline: WordPiece with the bundled MiniLM's
vocabulary, byte-level BPE (GPT-2, RoBERTa), SentencePiece-style BPE with byte
fallback (Llama) and a SentencePiece-style Unigram (T5).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import attnflow
from attnflow.cli import main
from attnflow.errors import AttnflowError
from attnflow.words import WORD_RULE, WordGroups, word_groups
from tests.seq2seq_models import build_seq2seq_tokenizer
from tests.tiny_models import build_tokenizer
from tests.tolerances import rounded_bound

FAMILIES = ("bert", "gpt2", "roberta", "llama", "t5")
#: Tokenizers whose decoder writes spaces exactly where the text has them (so decoded ids group as the text does).
DECODABLE = ("gpt2", "roberta", "llama", "t5")


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    found = {name: build_tokenizer(name) for name in FAMILIES if name != "t5"}
    found["t5"] = build_seq2seq_tokenizer("t5")
    return found


def groups_of(tokenizer, text: str, **options) -> tuple[list[str], list[list[int]]]:
    ids = tokenizer(text)["input_ids"]
    words = word_groups(tokenizer, ids, text, **options)
    return words.labels, words.groups


# ---------------------------------------------------------------------------- the rule, family by family


def test_wordpiece_joins_pieces_and_punctuation_no_whitespace_separates(tokenizers):
    tok = tokenizers["bert"]
    assert tok.convert_ids_to_tokens(tok("Don't panic, New York!")["input_ids"]) == [
        "[CLS]", "don", "'", "t", "panic", ",", "new", "york", "!", "[SEP]"]
    assert groups_of(tok, "Don't panic, New York!") == (
        ["[CLS]", "Don't", "panic,", "New", "York!", "[SEP]"], [[0], [1, 2, 3], [4, 5], [6], [7, 8], [9]])
    # ## continuation pieces, and labels keep the text's case although the tokenizer lowercases
    assert tok.convert_ids_to_tokens(tok("Zebras run")["input_ids"]) == ["[CLS]", "zebra", "##s", "run", "[SEP]"]
    assert groups_of(tok, "Zebras run") == (["[CLS]", "Zebras", "run", "[SEP]"], [[0], [1, 2], [3], [4]])


def test_the_bundled_minilm_groups_the_same_way(minilm):
    assert groups_of(minilm.tokenizer, "x-ray 42,000 (a) b.")[0] == ["[CLS]", "x-ray", "42,000", "(a)", "b.", "[SEP]"]


def test_byte_level_bpe_reads_the_space_mark(tokenizers):
    tok = tokenizers["gpt2"]
    text = "The keys to the cabinet  are\non the table."
    assert tok.convert_ids_to_tokens(tok(text)["input_ids"]) == [
        "The", "Ġke", "ys", "Ġto", "Ġthe", "Ġc", "ab", "inet", "Ġ", "Ġare", "Ċ", "on", "Ġthe", "Ġtab", "le", "."]
    labels, groups = groups_of(tok, text)
    # Ġke + ys is "keys"; the lone Ġ of the double space and the newline Ċ are groups of their own
    assert labels == ["The", "keys", "to", "the", "cabinet", "Ġ", "are", "Ċ", "on", "the", "table."]
    assert groups == [[0], [1, 2], [3], [4], [5, 6, 7], [8], [9], [10], [11], [12], [13, 14, 15]]
    # a character split into two bytes (é: Ã ©) is in one word
    labels, groups = groups_of(tok, "Née ok")
    assert labels == ["Née", "ok"] or labels[0] == "Née"


def test_roberta_special_tokens_stay_alone_and_trimmed_spaces_are_whitespace(tokenizers):
    labels, groups = groups_of(tokenizers["roberta"], "  hello there")
    assert labels[0] == "<s>" and labels[-1] == "</s>" and groups[0] == [0] and len(groups[-1]) == 1
    assert labels[1:3] == ["Ġ", "Ġ"] and [label for label in labels if label not in ("Ġ", "<s>", "</s>")] == [
        "hello", "there"]


def test_sentencepiece_reads_the_word_mark_and_byte_fallback(tokenizers):
    tok = tokenizers["llama"]
    text = "Don't panic, Née York!"
    assert tok.convert_ids_to_tokens(tok(text)["input_ids"]) == [
        "<s>", "▁", "<0x44>", "on", "<0x27>", "t", "▁p", "a", "n", "ic", ",", "▁", "N", "<0xC3>", "<0xA9>", "e",
        "▁", "<0x59>", "or", "k", "!"]
    labels, groups = groups_of(tok, text)
    # the lone ▁ SentencePiece writes before a byte-fallback piece is whitespace; the two bytes of é one word
    assert labels == ["<s>", "▁", "Don't", "panic,", "▁", "Née", "▁", "York!"]
    assert groups == [[0], [1], [2, 3, 4, 5], [6, 7, 8, 9, 10], [11], [12, 13, 14, 15], [16], [17, 18, 19, 20]]
    assert groups_of(tok, "the cat sat") == (["<s>", "the", "cat", "▁", "sat"], [[0], [1], [2, 3], [4], [5, 6]])


def test_t5_unigram_unknown_pieces_are_text_not_special(tokenizers):
    tok = tokenizers["t5"]
    ids = tok("Don't panic")["input_ids"]
    assert "<unk>" in tok.convert_ids_to_tokens(ids)
    labels, groups = groups_of(tok, "Don't panic")
    assert labels == ["▁", "Don't", "▁", "panic", "</s>"] and groups[-1] == [len(ids) - 1]
    assert groups_of(tok, "the cat sat") == (["the", "cat", "sat", "</s>"], [[0, 1, 2], [3, 4], [5, 6], [7]])


def test_decoded_ids_group_as_the_text_does_and_wordpiece_decoding_splits_punctuation(tokenizers):
    for name in DECODABLE:
        tok = tokenizers[name]
        text = "Don't panic, Née York!"
        ids = tok(text)["input_ids"]
        assert word_groups(tok, ids).groups == word_groups(tok, ids, text).groups, name
    # WordPiece's decoder writes "don ' t": without the text, its pieces are three words (documented)
    tok = tokenizers["bert"]
    assert word_groups(tok, tok("Don't")["input_ids"]).labels == ["[CLS]", "don", "'", "t", "[SEP]"]


def test_no_word_spans_the_prompt_and_answer_boundary(tokenizers):
    tok = tokenizers["llama"]
    prompt = tok("the ca")["input_ids"]
    answer = tok("t Née", add_special_tokens=False)["input_ids"]
    words = word_groups(tok, prompt + answer, "the ca", prompt_length=len(prompt))
    assert all(not (g[0] < len(prompt) <= g[-1]) for g in words.groups)
    assert words.labels[:3] == ["<s>", "the", "ca"] and "Née" in words.labels  # é's two bytes, decoded, one word
    assert word_groups(tok, prompt + answer, "the ca").groups == words.groups  # the text ends where the answer starts


def test_a_truncated_text_places_the_pieces_it_kept(minilm):
    text = "one two three " * 300
    e = attnflow.explain(text, minilm, methods="raw", truncate=True, words=True)
    assert e.words.labels[0] == "[CLS]" and e.words.labels[-1] == "[SEP]"
    assert e.words.labels[1:4] == ["one", "two", "three"] and e.words.n_tokens == len(e.tokens)


# ---------------------------------------------------------------------------- properties

#: A whitespace piece as the tokenizers write it: byte-level BPE's Ġ / Ċ, SentencePiece's ▁, byte fallback's newline.
WHITESPACE = re.compile(r"[▁ĠĊ]+|<0x0A>")
TEXT = st.text(alphabet=st.sampled_from(list("abcdeNXY zé19',.!-?()  \n")), min_size=1,
               max_size=40).filter(lambda t: t.strip())


@pytest.mark.parametrize("name", FAMILIES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXT, seed=st.integers(0, 2**32 - 1))
@example(text="\n1é", seed=0)  # Llama's byte fallback decodes \n 1 0xC3 as three replacement characters
def test_words_are_the_texts_words_and_word_scores_sum_their_pieces(tokenizers, name, text, seed):
    tok = tokenizers[name]
    if name == "t5":
        text = text.replace("\n", " ") or "a"  # the T5 vocabulary has no newline (an <unk> that is text)
        if not text.strip():
            return
    ids = tok(text)["input_ids"]
    words = word_groups(tok, ids, text)
    n = len(ids)
    # every piece in exactly one group, groups in order
    assert [p for group in words.groups for p in group] == list(range(n))
    special = tok.get_special_tokens_mask(ids, already_has_special_tokens=True)
    pieces = tok.convert_ids_to_tokens(ids)
    for label, group in zip(words.labels, words.groups, strict=True):
        if any(special[p] and ids[p] != tok.unk_token_id for p in group):
            assert len(group) == 1 and label == pieces[group[0]]  # special tokens stay alone
    # the word groups are the text's whitespace-separated words (the rest: special tokens, whitespace pieces)
    kept = [
        label for label, group in zip(words.labels, words.groups, strict=True)
        if not (len(group) == 1 and label == pieces[group[0]] and (special[group[0]] or WHITESPACE.fullmatch(label)))
    ]
    assert kept == text.split()
    if name in DECODABLE:
        assert word_groups(tok, ids).groups == words.groups
    # sums: each word's score is its pieces' sum, and the total is kept (also per layer, per row)
    scores = np.random.default_rng(seed).random((2, 3, n))
    summed = words.sum_scores(scores)
    assert summed.shape == (2, 3, len(words.groups))
    assert np.allclose(summed.sum(axis=-1), scores.sum(axis=-1))
    for w, group in enumerate(words.groups):
        assert np.allclose(summed[..., w], scores[..., group].sum(axis=-1))


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 4), min_size=1, max_size=8), seed=st.integers(0, 2**32 - 1))
def test_word_groups_round_trip_and_reject_what_is_not_a_partition(sizes, seed):
    starts = np.cumsum([0, *sizes])
    groups = [list(range(a, b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    words = WordGroups([f"w{i}" for i in range(len(groups))], groups)
    assert WordGroups.from_dict(json.loads(json.dumps(words.to_dict())), int(starts[-1])) == words
    scores = np.random.default_rng(seed).random(int(starts[-1]))
    assert np.isclose(words.sum_scores(scores).sum(), scores.sum())
    if len(groups) > 1:
        swapped = [groups[1], groups[0], *groups[2:]]
        with pytest.raises(AttnflowError, match="cover the token positions"):
            WordGroups(words.labels, swapped)
    with pytest.raises(AttnflowError, match="cover"):
        WordGroups.from_dict(words.to_dict(), int(starts[-1]) + 1)
    with pytest.raises(AttnflowError, match="scores have"):
        words.sum_scores(np.zeros(int(starts[-1]) + 1))


# ---------------------------------------------------------------------------- explanations, the CLI, the report

SENTENCE = "Don't panic: the keys, unbelievably, are here."


def test_explanation_word_scores_are_the_piece_sums_and_rollout_still_sums_to_one(minilm):
    e = attnflow.explain(SENTENCE, minilm, methods=("raw", "rollout"), words=True)
    assert e.words.rule == WORD_RULE
    assert e.words.labels == ["[CLS]", "Don't", "panic:", "the", "keys,", "unbelievably,", "are", "here.", "[SEP]"]
    for method in ("raw", "rollout"):
        for layer in (1, -1):
            pieces = e.layer_scores(method, layer)
            words = e.word_scores(method, layer)
            assert np.allclose(words, [pieces[g].sum() for g in e.words.groups])
    assert np.isclose(e.word_scores("rollout").sum(), 1.0)
    with pytest.raises(AttnflowError, match="no word groups"):
        attnflow.explain(SENTENCE, minilm, methods="raw").word_scores("raw")


def test_cli_words_table_json_and_report(capsys, tmp_path, minilm):
    json_path, html_path = tmp_path / "w.json", tmp_path / "w.html"
    status = main(["explain", SENTENCE, "--method", "raw", "--method", "rollout", "--words", "--json",
                   str(json_path), "--html", str(html_path)])
    out, err = capsys.readouterr()
    assert status == 0, err
    e = attnflow.explain(SENTENCE, minilm, methods=("raw", "rollout"), words=True)
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert [row.split("│")[2].strip() for row in rows] == e.words.labels  # one row per word
    assert [row.split("│")[1].strip() for row in rows][:3] == ["0", "1-3", "4-5"]  # its token positions
    printed = [float(row.split("│")[5]) for row in rows]
    np.testing.assert_allclose(printed, e.word_scores("rollout"), rtol=0, atol=rounded_bound(3))  # 3 decimals
    assert "words: " + WORD_RULE[:30] in " ".join(out.split())
    data = json.loads(json_path.read_text())
    assert data["words"]["labels"] == e.words.labels and data["words"]["groups"] == e.words.groups
    assert data["words"]["rule"] == WORD_RULE
    assert np.allclose(data["words"]["scores"]["rollout"], e.words.sum_scores(e.scores["rollout"]))
    assert attnflow.Explanation.from_json(json_path).words == e.words
    page = re.search(r'<script type="application/json" id="attnflow-data">(.*?)</script>', html_path.read_text(), re.S)
    shown = json.loads(page.group(1))
    assert shown["words"]["labels"] == e.words.labels
    column = [str(o) for o in shown["outputs"]].index(str(shown["output"]))
    page_words = np.array(shown["words"]["scores"]["rollout"])[:, column]
    np.testing.assert_allclose(page_words, e.words.sum_scores(e.scores["rollout"]), rtol=0,
                               atol=rounded_bound(6))  # the page rounds to 6 decimals


def test_without_words_the_table_has_token_rows(capsys, minilm):
    status = main(["explain", SENTENCE, "--method", "raw"])
    out, _ = capsys.readouterr()
    assert status == 0 and "words:" not in out
    pieces = len(minilm.tokenizer(SENTENCE)["input_ids"])
    assert sum(line.startswith("│") for line in out.splitlines()) == pieces  # one row per piece


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=TEXT, answer=TEXT)
def test_a_prompt_and_a_generated_answer_group_apart(tokenizers, name, prompt, answer):
    """Prompt pieces group by the prompt's offsets, answer pieces by decoding; no word spans the two."""
    tok = tokenizers[name]
    prompt_ids = tok(prompt)["input_ids"]
    answer_ids = tok(answer, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        return
    P = len(prompt_ids)
    words = word_groups(tok, prompt_ids + answer_ids, prompt, prompt_length=P)
    assert all(group[-1] < P or group[0] >= P for group in words.groups)
    head = [g for g in words.groups if g[0] < P]
    assert head == word_groups(tok, prompt_ids, prompt).groups
    tail = [[p - P for p in g] for g in words.groups if g[0] >= P]
    assert tail == word_groups(tok, answer_ids).groups


def test_the_docs_word_table_is_what_the_tokenizers_give(tokenizers):
    import ast
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "generation.md").read_text(encoding="utf-8")
    table = text.split("<!-- word-rule-table")[1].split("\n\n")[0].splitlines()[3:]
    families = {"WordPiece": "bert", "byte-level BPE": "gpt2", "SentencePiece BPE": "llama",
                "SentencePiece Unigram": "t5"}
    assert len(table) == len(families)
    for row in table:
        family, source, pieces, words = (cell.strip() for cell in row.strip("|").split("|"))
        tok = tokenizers[next(name for key, name in families.items() if family.startswith(key))]
        sentence = ast.literal_eval(source.strip("`"))
        ids = tok(sentence)["input_ids"]
        assert " ".join(tok.convert_ids_to_tokens(ids)) == pieces.strip("`"), family
        assert word_groups(tok, ids, sentence).labels == [w.strip("`") for w in words.split(" · ")], family
