"""attnflow's registered attention function: the model's own eager attention, one key/value group at a time.

Independent references: the model run with plain eager attention (its outputs), and
the weights it returns with ``output_attentions=True`` fused by
:func:`attnflow.graph.fuse_heads` (the fused result). Every architecture in
``STREAMED_MODULES`` is built here from a small config, Mistral's sliding window and
Qwen2's included, and run on a padded batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers as tf

from attnflow import AttnflowError
from attnflow.capture import capture_attention, eager_attention, load_model
from attnflow.capture._fused_attention import IMPLEMENTATION, STREAMED_MODULES, fused_attention, streamable
from attnflow.capture._hooks import attention_sites
from attnflow.capture._reduce import LayerAccumulator
from attnflow.capture.text import _batch_inputs, _encode
from attnflow.graph import fuse_heads
from tests.capture.test_hooks import megatron_loaded
from tests.tiny_models import foreign_hooks
from tests.tolerances import model_float32_bound

TEXTS = ["The keys to the cabinet are on the table.", "Attention flows."]


def _decoder(kind: str) -> tf.PreTrainedModel:
    common = dict(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64,
    )
    torch.manual_seed(0)
    if kind == "mistral":
        config = tf.MistralConfig(**common, sliding_window=5)
        model = tf.MistralForCausalLM(config)
    else:
        config = tf.Qwen2Config(**common, sliding_window=None)
        model = tf.Qwen2ForCausalLM(config)
    return model.eval()


def _vision(kind: str) -> tf.PreTrainedModel:
    torch.manual_seed(0)
    common = dict(
        image_size=16, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64,
    )
    if kind == "vit":
        return tf.ViTModel(tf.ViTConfig(**common)).eval()
    if kind == "deit":
        return tf.DeiTModel(tf.DeiTConfig(**common)).eval()
    return tf.Dinov2Model(tf.Dinov2Config(**common, num_register_tokens=0)).eval()


class _Recording(LayerAccumulator):
    """A mean accumulator that remembers the shape of every group of heads it was given."""

    def __init__(self, n: int) -> None:
        super().__init__("mean", n)
        self.shapes: list[tuple[int, ...]] = []

    def add(self, weights, start=0):
        self.shapes.append((*weights.shape, start))
        super().add(weights, start)


def _run_fused(model, inputs, lengths):
    n_layers = len(attention_sites(model))
    layers = [[_Recording(n) for n in lengths] for _ in range(n_layers)]
    with eager_attention(model), torch.no_grad():
        eager = model(**inputs, output_attentions=True)
        with fused_attention(model, layers):
            fused = model(**inputs)
    return eager, fused, layers


def _check_model(model, inputs, lengths, group=1):
    assert streamable(model)
    eager, fused, layers = _run_fused(model, inputs, lengths)
    first = "logits" if "logits" in eager else "last_hidden_state"
    # two float32 runs whose attention reduces in other shapes (one group of heads at a time)
    scale = max(1.0, float(eager[first].abs().max()))
    np.testing.assert_allclose(fused[first].numpy(), eager[first].numpy(), rtol=0,
                               atol=model_float32_bound(model.config, scale=scale))
    heads = eager.attentions[0].shape[1]
    for layer, returned in enumerate(eager.attentions):
        for row, n in enumerate(lengths):
            accumulator = layers[layer][row]
            want = fuse_heads(returned[row, :, :n, :n].double().numpy()[None], "mean")[0]
            np.testing.assert_allclose(accumulator.out.numpy(), want, atol=model_float32_bound(model.config), rtol=0)
            assert accumulator.count == heads
            assert {shape[0] for shape in accumulator.shapes} == {group}
            assert sum(shape[-1] == 0 for shape in accumulator.shapes) == heads // group
            rows_seen = sum(shape[1] for shape in accumulator.shapes)
            assert rows_seen == returned.shape[2] * heads // group
    return layers


@pytest.mark.parametrize("kind", ["mistral", "qwen2"])
def test_grouped_query_decoders(kind):
    """Four query heads over two key/value heads: each call sees two heads, never the layer's four."""
    model = _decoder(kind)
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    _check_model(model, {"input_ids": ids, "attention_mask": mask, "use_cache": False}, [12, 7], group=2)


@pytest.mark.parametrize("kind", ["mistral", "qwen2"])
def test_query_rows_in_blocks(kind, monkeypatch):
    """A long input's query rows go to eager attention in blocks; outputs and fused weights do not change."""
    import attnflow.capture._fused_attention as fused_module

    monkeypatch.setattr(fused_module, "CALL_ELEMENTS", 2 * 12 * 5)
    model = _decoder(kind)
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0
    layers = _check_model(model, {"input_ids": ids, "attention_mask": mask, "use_cache": False}, [9, 12], group=2)
    assert {shape[1] for layer in layers for acc in layer for shape in acc.shapes} == {5, 2}


@pytest.mark.parametrize("kind", ["vit", "deit", "dinov2"])
def test_image_models(kind):
    model = _vision(kind)
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    n = model.embeddings.position_embeddings.shape[1]
    _check_model(model, {"pixel_values": pixels}, [n, n])


def test_tiny_text_models_one_head_at_a_time(tiny_loaded):
    """BERT, RoBERTa, DistilBERT, GPT-2, Llama: model outputs and fused weights as eager gives them."""
    encoded = [_encode(tiny_loaded, text, False, None) for text in TEXTS]
    inputs = _batch_inputs(tiny_loaded, encoded)
    lengths = [len(item.input_ids) for item in encoded]
    config = tiny_loaded.model.config
    heads = getattr(config, "num_attention_heads", None) or config.n_heads
    _check_model(tiny_loaded.model, inputs, lengths, group=heads // getattr(config, "num_key_value_heads", heads))
    assert foreign_hooks(tiny_loaded.model) == {}


def test_capture_takes_the_fused_path(tiny_loaded, monkeypatch):
    """capture_attention(heads='mean') runs the registered function, and its result equals the hooks' one."""
    import attnflow.capture.text as text_module

    entered = []
    original = text_module.fused_attention

    def recording(model, layers):
        entered.append(len(layers))
        return original(model, layers)

    monkeypatch.setattr(text_module, "fused_attention", recording)
    streamed = capture_attention(TEXTS, tiny_loaded, heads="mean", batch_size=2)
    assert entered == [len(attention_sites(tiny_loaded.model))]
    monkeypatch.setattr(text_module, "streamable", lambda model: False)
    hooked = capture_attention(TEXTS, tiny_loaded, heads="mean", batch_size=2)
    assert entered == [len(attention_sites(tiny_loaded.model))]
    for got, want in zip(streamed, hooked, strict=True):
        np.testing.assert_allclose(got.fused, want.fused, atol=model_float32_bound(tiny_loaded.model.config), rtol=0)
        assert got.model_heads == want.model_heads
    assert tiny_loaded.model.config._attn_implementation == "sdpa"


def test_not_streamable_models_fall_back():
    megatron = megatron_loaded()
    assert not streamable(megatron.model)
    with pytest.raises(AttnflowError, match="capture it with forward hooks"):
        with fused_attention(megatron.model, []):
            pass
    gpt2 = tf.GPT2LMHeadModel(tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, reorder_and_upcast_attn=True))
    assert not streamable(gpt2)


def test_outside_the_block_the_name_runs_plain_eager():
    """A model that keeps the registered name after the block (or never had a block) gets its eager attention."""
    model = _decoder("qwen2")
    ids = torch.randint(0, 97, (1, 9), generator=torch.Generator().manual_seed(2))
    with eager_attention(model), torch.no_grad():
        want = model(input_ids=ids).logits
        layers = [[LayerAccumulator("mean", 9)] for _ in range(2)]
        with fused_attention(model, layers):
            pass
        model.config._attn_implementation_internal = IMPLEMENTATION
        got = model(input_ids=ids).logits
    bound = model_float32_bound(model.config, scale=max(1.0, float(want.abs().max())))  # the same eager arithmetic
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=bound)
    assert all(acc.count == 0 for layer in layers for acc in layer)


def test_implementation_restored_after_an_exception(tiny_llama_path):
    loaded = load_model(tiny_llama_path)
    layers = [[LayerAccumulator("mean", 3)] for _ in attention_sites(loaded.model)]
    with pytest.raises(RuntimeError, match="boom"), eager_attention(loaded.model):
        with fused_attention(loaded.model, layers):
            assert loaded.model.config._attn_implementation == IMPLEMENTATION
            raise RuntimeError("boom")
    assert loaded.model.config._attn_implementation == "sdpa"
    assert foreign_hooks(loaded.model) == {}


def test_wrong_layer_count_is_refused(tiny_bert_path):
    loaded = load_model(tiny_bert_path)
    with pytest.raises(AttnflowError, match="one entry per layer"):
        with fused_attention(loaded.model, [[]]):
            pass


def test_streamed_modules_are_real_modules():
    """Every listed modelling module exists and has the eager function the implementation calls."""
    import importlib

    for name in sorted(STREAMED_MODULES):
        module = importlib.import_module(name)
        assert callable(module.eager_attention_forward), name
