"""explain on the head-fused streamed capture, half precision and devices, against the full per-head capture.

The reference is what explain did before: every head captured as float64 ``(L, H, n, n)``
(``capture_attention(text, heads="all")``, given as ``captured=``), then fused by the methods.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import attnflow
from attnflow import AttnflowError
from attnflow.capture import capture_attention, load_model
from attnflow.capture.plan import heads_to_capture
from attnflow.cli import main
from tests.helpers import patch_everywhere
from tests.tolerances import model_float32_bound

TEXTS = ("The keys to the cabinet are on the table.", "Attention flows through every layer of a transformer.")
METHODS = ("raw", "rollout", "flow")
#: Half precision against float32 (docs/capture.md): the largest score difference, relative to the largest
#: float32 score of that method, and the least Spearman correlation of a layer's scores.
TOLERANCE = {"bfloat16": 1e-2, "float16": 1e-3}
MIN_SPEARMAN = 0.98
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")


def _spy(monkeypatch):
    """Record the heads= of every capture explain makes (through its planned pass, capture.plan)."""
    import attnflow.capture as capture_module
    import attnflow.capture.plan as plan_module

    seen: list[str] = []
    real = capture_module.capture_attention

    def spy(*args, **kwargs):
        seen.append(kwargs.get("heads", "all"))
        return real(*args, **kwargs)

    real_outputs = plan_module.capture_with_outputs

    def spy_outputs(*args, **kwargs):  # the planned pass that also binds a target
        seen.append(kwargs.get("heads", "all"))
        return real_outputs(*args, **kwargs)

    patch_everywhere(monkeypatch, capture_module, "capture_attention", spy)
    patch_everywhere(monkeypatch, plan_module, "capture_with_outputs", spy_outputs)
    return seen


@pytest.mark.parametrize(("fusion", "heads"), [("mean", "mean"), ("max", "all"), ("min", "all")])
def test_fused_capture_equals_full_capture(minilm, monkeypatch, fusion, heads):
    seen = _spy(monkeypatch)
    for text in TEXTS:
        full = attnflow.explain(text, minilm, methods=METHODS, captured=capture_attention(text, minilm),
                                head_fusion=fusion)
        fused = attnflow.explain(text, minilm, methods=METHODS, head_fusion=fusion)
        for method in METHODS:
            # the fused and the per-head capture run the model in other batch shapes
            np.testing.assert_allclose(fused.scores[method], full.scores[method], rtol=0,
                                       atol=model_float32_bound(minilm.model.config))
        assert fused.options["head_fusion"] == fusion and fused.tokens == full.tokens
    assert seen == [heads] * len(TEXTS)  # the mean: explain asked for the fused capture, not every head


def test_every_head_when_a_method_needs_them(minilm, monkeypatch):
    seen = _spy(monkeypatch)
    attnflow.explain(TEXTS[0], minilm, methods="rollout", head_fusion=np.ones((6, 12)))
    attnflow.explain(TEXTS[0], minilm, methods="rollout", head_fusion="importance", target="norm")
    assert seen == ["all", "all"]
    assert heads_to_capture(["raw", "grad-rollout"]) == "mean"
    fused = capture_attention(TEXTS[0], minilm, heads="mean")
    with pytest.raises(AttnflowError, match="heads='all'"):
        attnflow.explain(TEXTS[0], minilm, methods="rollout", head_fusion="max", captured=fused)
    with pytest.raises(AttnflowError, match="heads=.all."):
        attnflow.explain(TEXTS[0], minilm, methods="raw", head_fusion="importance", target="norm", captured=fused)


def test_grad_rollout_on_fused_capture_equals_full_gradients(minilm):
    """grad-rollout through explain (fused capture, reduced gradients) against Chefer's formula on every head."""
    from attnflow.capture.gradients import target_gradients
    from attnflow.capture.targets import resolve_target
    from attnflow.methods.grad_rollout import grad_rollout

    text = TEXTS[0]
    got = attnflow.explain(text, minilm, methods="grad-rollout", target="norm")
    ids = capture_attention(text, minilm, heads="mean").input_ids
    g = target_gradients(minilm, resolve_target("norm", minilm).bind(minilm, ids), ids, head_gradients=False)
    want = grad_rollout(g.attentions, g.gradients)[:, 0]
    bound = model_float32_bound(minilm.model.config, scale=np.abs(want).max(), backward=True)  # two float32 passes
    np.testing.assert_allclose(got.scores["grad-rollout"], want, rtol=0, atol=bound)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_within_tolerance(minilm, dtype):
    half = load_model(dtype=dtype)  # its own copy: the shared fixture stays float32
    assert next(half.model.parameters()).dtype == getattr(torch, dtype)
    for text in TEXTS:
        reference = attnflow.explain(text, minilm, methods=METHODS)
        got = attnflow.explain(text, half, methods=METHODS)
        for method in METHODS:
            want, have = reference.scores[method], got.scores[method]
            assert np.abs(have - want).max() <= TOLERANCE[dtype] * np.abs(want).max(), method
            for layer in range(want.shape[0]):
                assert spearmanr(want[layer], have[layer])[0] >= MIN_SPEARMAN, (method, layer)
        note = [n for n in got.notes if "renormalised in float64" in n]
        assert len(note) == 1 and not any("renormalised" in n for n in reference.notes)
        correction = capture_attention(text, half, heads="mean").row_correction
        assert 1e-5 < correction < 1e-2  # half precision leaves rows off by this much; it is corrected, not refused


def test_dtype_and_device_errors():
    with pytest.raises(AttnflowError, match="'dtype' parameter must be one of bfloat16, float16, float32"):
        load_model(dtype="int8")
    with pytest.raises(AttnflowError, match="'device' parameter"):
        load_model(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(AttnflowError, match="needs a CUDA GPU.*device='cpu'"):
            attnflow.explain("hi", device="cuda")


@pytest.mark.e2e
def test_cli_dtype_and_device(capsys):
    status = main(["explain", TEXTS[0], "--method", "rollout", "--dtype", "bfloat16", "--device", "cpu"])
    out = " ".join(capsys.readouterr().out.split())  # the table wraps its notes
    assert status == 0 and "renormalised in float64" in out and "rollout" in out
    status = main(["explain", "hi", "--dtype", "int4"])
    assert status == 2 and "--dtype" in capsys.readouterr().err
    if not torch.cuda.is_available():
        status = main(["explain", "hi", "--device", "cuda"])
        err = capsys.readouterr().err
        assert status != 0 and "needs a CUDA GPU" in err and "Traceback" not in err


@CUDA
def test_cuda_equals_cpu(minilm):
    """On a GPU the model and the per-layer reduction run there; only the fused array comes back."""
    gpu = load_model(device="cuda")
    assert next(gpu.model.parameters()).device.type == "cuda"
    for text in TEXTS:
        want = attnflow.explain(text, minilm, methods=METHODS + ("grad-rollout",), target="norm")
        got = attnflow.explain(text, gpu, methods=METHODS + ("grad-rollout",), target="norm")
        for method in want.scores:  # float32 on two devices; grad-rollout through a backward pass too
            bound = model_float32_bound(gpu.model.config, scale=max(1.0, np.abs(want.scores[method]).max()),
                                        backward=method == "grad-rollout")
            np.testing.assert_allclose(got.scores[method], want.scores[method], rtol=0, atol=bound)
    fused = capture_attention(TEXTS[0], gpu, heads="mean")
    assert isinstance(fused.attentions, np.ndarray) and fused.attentions.dtype == np.float32


@CUDA
def test_cuda_bfloat16():
    got = attnflow.explain(TEXTS[0], device="cuda", dtype="bfloat16", methods=METHODS)
    assert any("renormalised" in note for note in got.notes)
