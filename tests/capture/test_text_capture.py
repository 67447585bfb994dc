"""capture_attention on tiny models of every architecture: invariants, references, failures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnflow import AttnflowError
from attnflow.capture import CapturedAttention, capture_attention, eager_attention, load_model
from tests.tiny_models import DECODERS, UNCASED, foreign_hooks, hook_snapshot
from tests.tolerances import float32_sum_bound, model_float32_bound

TEXTS = [
    "Hello world, the quick fox!",
    "Attention flows.",
    "The keys to the cabinet are on the table, said the author of the books.",
    "x",
]


def _eager_twin(loaded):
    """The same weights loaded independently with eager attention, as a LoadedModel."""
    twin = type(loaded.model).from_pretrained(loaded.path, attn_implementation="eager")
    twin.eval()
    return load_model(twin, loaded.tokenizer)


def _attention_module(model):
    """The last self-attention module (every supported architecture flags it with is_causal)."""
    modules = [m for _, m in model.named_modules() if hasattr(m, "is_causal")]
    assert modules, "no attention module found"
    return modules[-1]


# --- invariants -------------------------------------------------------------------------


def test_shapes_and_rows_sum_to_one(tiny_arch, tiny_loaded):
    config = tiny_loaded.model.config
    for cap in capture_attention(TEXTS, tiny_loaded):
        n = len(cap.tokens)
        assert cap.attentions.dtype == np.float64
        assert cap.attentions.shape == (config.num_hidden_layers, config.num_attention_heads, n, n)
        assert len(cap.input_ids) == n
        np.testing.assert_allclose(cap.attentions.sum(-1), 1.0, rtol=0, atol=float32_sum_bound(n))  # n float32 terms
        assert cap.attentions.min() >= 0
        assert cap.model_name == str(tiny_loaded.name)
        assert cap.is_causal == (tiny_arch in DECODERS)


def test_decoder_rows_are_causal(tiny_decoder_arch, tiny_model_paths):
    loaded = load_model(tiny_model_paths[tiny_decoder_arch])
    assert loaded.is_decoder
    for cap in capture_attention(TEXTS, loaded):
        upper = np.triu(np.ones((cap.n_tokens, cap.n_tokens), bool), k=1)
        assert np.all(cap.attentions[..., upper] == 0)
        lower_sums = np.tril(cap.attentions).sum(-1)
        np.testing.assert_allclose(lower_sums, 1.0, rtol=0, atol=float32_sum_bound(cap.n_tokens))  # n float32 terms


def test_encoders_are_not_causal(tiny_encoder_arch, tiny_model_paths):
    loaded = load_model(tiny_model_paths[tiny_encoder_arch])
    assert not loaded.is_decoder
    cap = capture_attention(TEXTS[0], loaded)
    upper = np.triu(np.ones((cap.n_tokens, cap.n_tokens), bool), k=1)
    assert cap.attentions[..., upper].max() > 0.01  # random weights attend forward too


def test_single_text_gives_one_sequence_gives_list(tiny_loaded):
    one = capture_attention("Attention flows.", tiny_loaded)
    many = capture_attention(("Attention flows.",), tiny_loaded)
    assert isinstance(one, CapturedAttention)
    assert isinstance(many, list) and len(many) == 1
    np.testing.assert_array_equal(one.attentions, many[0].attentions)
    assert one.text == "Attention flows."


# --- references -------------------------------------------------------------------------


def test_sdpa_model_equals_eager_model_and_is_restored(tiny_loaded):
    assert tiny_loaded.model.config._attn_implementation == "sdpa"
    eager = _eager_twin(tiny_loaded)
    got = capture_attention(TEXTS, tiny_loaded)
    want = capture_attention(TEXTS, eager)
    for a, b in zip(got, want, strict=True):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(a.attentions, b.attentions, atol=model_float32_bound(tiny_loaded.model.config))
    assert tiny_loaded.model.config._attn_implementation == "sdpa"
    assert eager.model.config._attn_implementation == "eager"


def test_equals_a_plain_eager_forward(tiny_loaded):
    """No padding, no attnflow: what the eager model itself returns for one text."""
    eager = _eager_twin(tiny_loaded)
    for text in TEXTS:
        encoded = tiny_loaded.tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            out = eager.model(**encoded, output_attentions=True)
        want = torch.stack(out.attentions, 1)[0].double().numpy()
        got = capture_attention(text, tiny_loaded).attentions
        np.testing.assert_allclose(got, want, atol=model_float32_bound(tiny_loaded.model.config))


def test_flash_attention_model_is_switched_and_restored(tiny_loaded):
    """A model configured for flash attention (not runnable on CPU) still gives eager weights."""
    want = capture_attention(TEXTS[:2], tiny_loaded)
    config = tiny_loaded.model.config
    config._attn_implementation_internal = "flash_attention_2"
    got = capture_attention(TEXTS[:2], tiny_loaded)
    assert config._attn_implementation == "flash_attention_2"
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.attentions, b.attentions, atol=model_float32_bound(config))


@pytest.mark.parametrize("batch_size", [1, 2, 3, 16])
def test_batch_equals_one_at_a_time(tiny_loaded, batch_size):
    singles = [capture_attention(text, tiny_loaded) for text in TEXTS]
    batched = capture_attention(TEXTS, tiny_loaded, batch_size=batch_size)
    assert len({s.n_tokens for s in singles}) > 1  # lengths really differ: padding is exercised
    for single, batch in zip(singles, batched, strict=True):
        assert single.tokens == batch.tokens and single.input_ids == batch.input_ids
        assert single.special_positions == batch.special_positions
        atol = model_float32_bound(tiny_loaded.model.config)  # padding changes the reduction order
        np.testing.assert_allclose(batch.attentions, single.attentions, atol=atol)


WORDS = st.sampled_from(["the", "keys", "to", "cabinet", "are", "on", "table", "fox", ",", "!", "42"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(WORDS, min_size=1, max_size=12).map(" ".join), min_size=1, max_size=5))
def test_batch_equals_singles_on_random_texts(tiny_model_paths, texts):
    loaded = _cached_load(tiny_model_paths["bert"])
    batched = capture_attention(texts, loaded, batch_size=4)
    for text, batch in zip(texts, batched, strict=True):
        single = capture_attention(text, loaded)
        np.testing.assert_allclose(batch.attentions, single.attentions, atol=model_float32_bound(loaded.model.config))


_LOADED: dict = {}


def _cached_load(path):
    if path not in _LOADED:
        _LOADED[path] = load_model(path)
    return _LOADED[path]


# --- tokens -----------------------------------------------------------------------------


def test_tokens_round_trip_the_text(tiny_arch, tiny_loaded):
    tokenizer = tiny_loaded.tokenizer
    for text in TEXTS:
        cap = capture_attention(text, tiny_loaded)
        assert cap.tokens == tokenizer.convert_ids_to_tokens(cap.input_ids)
        content = [cap.tokens[i] for i in cap.content_positions]
        back = tokenizer.convert_tokens_to_string(content)
        if tiny_arch in UNCASED:  # WordPiece lowercases and spaces out punctuation
            assert "".join(back.split()) == "".join(text.lower().split())
        else:
            assert back == text


def test_special_positions(tiny_arch, tiny_loaded):
    cap = capture_attention("Attention flows.", tiny_loaded)
    tokenizer = tiny_loaded.tokenizer
    if tiny_arch in ("bert", "distilbert"):
        assert cap.tokens[0] == "[CLS]" and cap.tokens[-1] == "[SEP]"
        assert cap.special_positions == (0, cap.n_tokens - 1)
    elif tiny_arch == "roberta":
        assert cap.tokens[0] == "<s>" and cap.tokens[-1] == "</s>"
        assert cap.special_positions == (0, cap.n_tokens - 1)
    elif tiny_arch == "llama":
        assert cap.tokens[0] == "<s>" and cap.special_positions == (0,)
    elif tiny_arch == "gpt2":
        assert cap.special_positions == ()
    specials = set(tokenizer.all_special_ids)
    assert cap.special_positions == tuple(i for i, t in enumerate(cap.input_ids) if t in specials)


# --- restoration and hooks --------------------------------------------------------------


def test_model_restored_and_no_hooks_after_exception(tiny_loaded, monkeypatch):
    model = tiny_loaded.model
    model.train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    grads = [p.requires_grad for p in model.parameters()]
    assert hook_snapshot(model) == {}

    def boom(*args, **kwargs):
        raise RuntimeError("boom inside the model")

    monkeypatch.setattr(_attention_module(model), "forward", boom)
    with pytest.raises(AttnflowError, match="boom inside the model"):
        capture_attention(TEXTS[:2], tiny_loaded)

    assert model.config._attn_implementation == "sdpa"
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == grads
    assert foreign_hooks(model) == {}

    # the model still works, gives the same as a twin, and capture leaves no hooks of its own
    monkeypatch.undo()
    model.eval()
    before = hook_snapshot(model)
    got = capture_attention(TEXTS[:2], tiny_loaded)
    assert hook_snapshot(model) == before
    for a, b in zip(got, capture_attention(TEXTS[:2], _eager_twin(tiny_loaded)), strict=True):
        np.testing.assert_allclose(a.attentions, b.attentions, atol=model_float32_bound(tiny_loaded.model.config))


def test_exception_inside_eager_block_restores(tiny_loaded):
    model = tiny_loaded.model
    with pytest.raises(KeyError), eager_attention(model):
        assert model.config._attn_implementation == "eager"
        raise KeyError("user code")
    assert model.config._attn_implementation == "sdpa"
    assert foreign_hooks(model) == {}


def test_forward_without_attentions_is_an_error(tiny_loaded, monkeypatch):
    from transformers.modeling_outputs import BaseModelOutput

    def no_attention(*args, **kwargs):
        return BaseModelOutput(last_hidden_state=torch.zeros(1, 3, 32), attentions=None)

    monkeypatch.setattr(tiny_loaded.model, "forward", no_attention)
    with pytest.raises(AttnflowError, match="returned no attention weights"):
        capture_attention("Attention flows.", tiny_loaded)
    assert tiny_loaded.model.config._attn_implementation == "sdpa"


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "texts, message",
    [
        ("", "empty or only whitespace"),
        ("  \n\t ", "empty or only whitespace"),
        (["fine", " "], r"text 1\) is empty"),
        ([], "empty sequence"),
        (["fine", 3], "must hold strings; got int"),
        (None, "string or a sequence of strings; got NoneType"),
        (b"bytes", "string or a sequence of strings; got bytes"),
    ],
)
def test_bad_texts(tiny_bert_path, texts, message):
    with pytest.raises(AttnflowError, match=message):
        capture_attention(texts, tiny_bert_path)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_bad_batch_size(tiny_bert_path, batch_size):
    with pytest.raises(AttnflowError, match="batch_size"):
        capture_attention("hello", tiny_bert_path, batch_size=batch_size)


def test_too_long_text_and_truncate(tiny_arch, tiny_loaded):
    limit = tiny_loaded.max_length
    assert limit == 64
    text = " ".join(["table"] * 100)
    n_tokens = len(tiny_loaded.tokenizer(text)["input_ids"])
    with pytest.raises(AttnflowError) as info:
        capture_attention(text, tiny_loaded)
    message = str(info.value)
    assert f"has {n_tokens} tokens" in message and f"at most {limit}" in message
    assert "truncate=True" in message and "--truncate" in message
    with pytest.raises(AttnflowError, match="Text 1 has"):
        capture_attention(["short", text], tiny_loaded)

    cap = capture_attention(text, tiny_loaded, truncate=True)
    assert cap.truncated and cap.n_tokens == limit
    assert cap.attentions.shape[-1] == limit
    np.testing.assert_allclose(cap.attentions.sum(-1), 1.0, rtol=0, atol=float32_sum_bound(limit))  # n float32 terms
    assert not capture_attention("short", tiny_loaded, truncate=True).truncated


def test_text_of_exactly_max_length_is_accepted(tiny_bert_path):
    loaded = load_model(tiny_bert_path)
    text = " ".join(["table"] * (loaded.max_length - 2))  # + [CLS] and [SEP]
    assert capture_attention(text, loaded).n_tokens == loaded.max_length


def test_not_a_model(tiny_bert_path):
    with pytest.raises(AttnflowError, match="must be a transformers model"):
        capture_attention("hello", object())
    with pytest.raises(AttnflowError, match="must be a transformers model"):
        capture_attention("hello", torch.nn.Linear(2, 2))
    with pytest.raises(AttnflowError, match="only from transformers models"), eager_attention(
        torch.nn.Linear(2, 2)
    ):
        pass


def test_captured_attention_checks_shapes():
    with pytest.raises(AttnflowError, match=r"\(L, H, n, n\)"):
        CapturedAttention(np.ones((2, 2)), ["a", "b"], [1, 2], (), "m", False, "a b")
    with pytest.raises(AttnflowError, match="2 tokens but 1 tokens"):
        CapturedAttention(np.full((1, 1, 2, 2), 0.5), ["a"], [1, 2], (), "m", False, "a b")
    with pytest.raises(AttnflowError, match="special_positions"):
        CapturedAttention(np.full((1, 1, 2, 2), 0.5), ["a", "b"], [1, 2], (2,), "m", False, "a b")


# --- dtypes and devices -----------------------------------------------------------------


def test_half_precision_model_gives_float64(tiny_arch, tiny_loaded):
    reference = capture_attention(TEXTS[0], tiny_loaded)
    tiny_loaded.model.to(torch.bfloat16)
    cap = capture_attention(TEXTS[0], tiny_loaded)
    assert cap.attentions.dtype == np.float64
    # Literal, observed sizes: the worst-case bound in bfloat16's epsilon (layers * hidden * 2**-8 = 0.25)
    # says nothing about weights in [0, 1].
    np.testing.assert_allclose(cap.attentions.sum(-1), 1.0, atol=2e-2)
    np.testing.assert_allclose(cap.attentions, reference.attentions, atol=5e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_equals_cpu(tiny_arch, tiny_loaded):
    reference = capture_attention(TEXTS, tiny_loaded)
    tiny_loaded.model.to("cuda")
    got = capture_attention(TEXTS, tiny_loaded)
    assert tiny_loaded.model.config._attn_implementation == "sdpa"
    for a, b in zip(got, reference, strict=True):
        np.testing.assert_allclose(a.attentions, b.attentions, rtol=0,
                                   atol=model_float32_bound(tiny_loaded.model.config))  # float32 on two devices
