"""Streamed capture equals the capture that keeps what output_attentions=True returns, on every architecture.

The reference is ``_capture_batch_returned``: the model returns every layer's weights
(``output_attentions=True``) and they are converted to float64 afterwards, which is
what attnflow did before capture was streamed. Fusing its heads with
:func:`attnflow.graph.fuse_heads` is the independent reference for ``heads="mean"``
/ ``"max"`` / ``"min"``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnflow import AttnflowError
from attnflow.capture import capture_attention, eager_attention, load_model
from attnflow.capture._hooks import attention_hooks
from attnflow.capture._reduce import reduce_layer
from attnflow.capture.text import _capture_batch_returned, _encode
from attnflow.graph import fuse_heads
from tests.capture.test_hooks import megatron_loaded
from tests.tiny_models import foreign_hooks
from tests.tolerances import EPS32, float32_sum_bound, model_float32_bound

TEXTS = [
    "The keys to the cabinet are on the table.",
    "Attention flows.",
    "Hello world, the quick fox jumps over the lazy dog!",
]


def _reference(loaded, texts=TEXTS):
    encoded = [_encode(loaded, text, False, None) for text in texts]
    with eager_attention(loaded.model), torch.no_grad():
        return _capture_batch_returned(loaded, encoded)


def _check_equal(loaded):
    reference = _reference(loaded)
    atol = model_float32_bound(loaded.model.config)  # other batch shapes: another reduction order
    every = capture_attention(TEXTS, loaded, heads="all")
    for got, want in zip(every, reference, strict=True):
        assert got.head_fusion is None and got.attentions.dtype == np.float64
        np.testing.assert_allclose(got.attentions, want, atol=atol, rtol=0)
        # a softmax row of n float32 terms sums to 1 within n * eps32
        assert got.row_correction <= float32_sum_bound(want.shape[-1])
    for fusion in ("mean", "max", "min"):
        fused = capture_attention(TEXTS, loaded, heads=fusion, batch_size=2)
        for got, want in zip(fused, reference, strict=True):
            assert got.head_fusion == fusion and got.attentions.dtype == np.float32
            assert got.attentions.shape == (want.shape[0], 1, *want.shape[2:])
            assert got.model_heads == want.shape[1]
            np.testing.assert_allclose(got.fused, fuse_heads(want, fusion), atol=atol, rtol=0)
    assert foreign_hooks(loaded.model) == {}


def test_streamed_equals_returned(tiny_loaded):
    """BERT, RoBERTa, DistilBERT, GPT-2, Llama (tiny random models), padded batches included."""
    _check_equal(tiny_loaded)


def test_streamed_equals_returned_megatron():
    """MegatronBert, the architecture of the bundled sva model (no _can_record_outputs)."""
    _check_equal(megatron_loaded())


def test_streamed_equals_returned_minilm(minilm):
    _check_equal(minilm)


@pytest.fixture(scope="module")
def vision_models(tmp_path_factory):
    from tests.vision import tiny_vision

    root = tmp_path_factory.mktemp("stream_vision")
    return [
        tiny_vision.save_vit(root / "vit"),
        tiny_vision.save_deit(root / "deit"),
        tiny_vision.save_dinov2_registers(root / "dinov2"),
    ]


@pytest.mark.parametrize("fusion", ["all", "mean", "max"])
def test_hook_reduction_equals_returned_on_image_models(vision_models, fusion):
    """ViT, DeiT, DINOv2: the per-layer reduction in the hooks equals fusing what the model returns."""
    for path in vision_models:
        loaded = load_model(path)
        size = loaded.model.config.image_size
        height, width = (size, size) if isinstance(size, int) else size
        generator = torch.Generator().manual_seed(0)
        pixels = torch.randn(1, loaded.model.config.num_channels, height, width, generator=generator)
        streamed: list = []
        with eager_attention(loaded.model), torch.no_grad():
            returned = loaded.model(pixel_values=pixels, output_attentions=True).attentions
            def keep(call, kept=streamed):
                kept.append(reduce_layer(call.weights[0], fusion))

            with attention_hooks(loaded.model, keep):
                loaded.model(pixel_values=pixels)
        want = np.stack([layer[0].double().numpy() for layer in returned])
        got = np.stack([reduced.numpy() for reduced, _ in streamed])
        if fusion != "all":
            want = fuse_heads(want, fusion)
        # two float32 runs; the hooks' float32 fusion adds an H-term sum, far below the model's bound
        np.testing.assert_allclose(got, want, atol=model_float32_bound(loaded.model.config), rtol=0)
        assert foreign_hooks(loaded.model) == {}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_rows_renormalised_and_reported(tiny_loaded, dtype):
    """Half-precision rows are off by ~1e-3; capture renormalises them in float64 and reports the size."""
    reference = capture_attention(TEXTS, tiny_loaded, heads="mean")
    tiny_loaded.model.to(dtype)
    for heads in ("mean", "all"):
        for got, want in zip(capture_attention(TEXTS, tiny_loaded, heads=heads), reference, strict=True):
            assert 1e-5 < got.row_correction < 2e-2
            # renormalised in float64, then kept in float32 (mean: each weight rounded) and summed here in float32
            n = got.attentions.shape[-1]
            np.testing.assert_allclose(got.attentions.sum(-1), 1.0, rtol=0, atol=float32_sum_bound(n, depth=2))
            # Against float32: an observed size, not a bound. The worst-case bound in the half type's epsilon,
            # layers * hidden * 2**-8 for bfloat16 = 0.25, says nothing about weights in [0, 1].
            np.testing.assert_allclose(got.fused, want.fused, atol=3e-2)


def test_reduce_layer_reference():
    """Renormalising head by head in float64 equals numpy's per-head division, for every fusion."""
    rng = np.random.default_rng(0)
    raw = rng.random((3, 5, 5))
    weights = raw / raw.sum(-1, keepdims=True) * (1 + rng.uniform(-3e-3, 3e-3, (3, 5, 1)))
    normalised = weights / weights.sum(-1, keepdims=True)
    tensor = torch.tensor(weights, dtype=torch.float32)
    heads, n = weights.shape[0], weights.shape[-1]
    for fusion, want in (("mean", normalised.mean(0)), ("max", normalised.max(0)), ("min", normalised.min(0))):
        got, correction = reduce_layer(tensor, fusion)
        # the float32 input's rounding (half an ulp in a weight and in its row sum), then a float32 H-term mean
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=float32_sum_bound(heads + 1))
        # the row sums of float32-rounded weights: n half-ulps
        assert correction == pytest.approx(np.abs(weights.sum(-1) - 1).max(), rel=0, abs=float32_sum_bound(n))
    got, _ = reduce_layer(tensor, "all")
    np.testing.assert_allclose(got.numpy(), normalised, rtol=0, atol=EPS32)  # the input's rounding only
    assert reduce_layer(torch.full((1, 2, 2), float("nan")), "mean") is None


@pytest.mark.parametrize("heads", ["mean", "all"])
def test_nan_weights_are_a_clear_error(tiny_loaded, heads):
    """NaN hidden states reach the attention of layer 1; both capture paths name the fix (--dtype)."""
    sites = []
    with attention_hooks(tiny_loaded, lambda call: None) as found:
        sites.extend(found)

    def poisoned(module, args, kwargs):
        if args:
            return (args[0] * float("nan"), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] * float("nan")}

    handle = sites[0].module.register_forward_pre_hook(poisoned, with_kwargs=True)
    try:
        with pytest.raises(AttnflowError, match="NaN or infinite attention weights.*--dtype"):
            capture_attention("Attention flows.", tiny_loaded, heads=heads)
    finally:
        handle.remove()
    assert foreign_hooks(tiny_loaded.model) == {}


@pytest.mark.parametrize("heads", ["fused", None, 3, "sum"])
def test_bad_heads(tiny_bert_path, heads):
    with pytest.raises(AttnflowError, match="'heads' parameter must be one of all, mean, max, min"):
        capture_attention("hello", tiny_bert_path, heads=heads)
