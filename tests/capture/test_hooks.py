"""attention_sites / attention_hooks: the right module per layer on every architecture, hooks always removed."""

from __future__ import annotations

import pytest
import torch

from attnflow.capture import load_model
from attnflow.capture._hooks import attention_hooks, attention_output_projections, attention_sites
from attnflow.errors import AttnflowError
from tests.tiny_models import build_tokenizer, foreign_hooks

TEXT = "The keys to the cabinet are on the table."

SITE_CLASSES = {
    "bert": "BertSelfAttention",
    "roberta": "RobertaSelfAttention",
    "distilbert": "DistilBertSelfAttention",
    "gpt2": "GPT2Attention",
    "llama": "LlamaAttention",
}


def megatron_loaded():
    """A 2-layer MegatronBert like the bundled ``sva`` model, random weights."""
    from attnflow.tasks.sva_model import build_model

    tokenizer = build_tokenizer("bert")
    model = build_model(
        len(tokenizer), num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
        initializer_range=0.2,
    ).eval()
    return load_model(model, tokenizer)


def _inputs(loaded, text=TEXT):
    return loaded.tokenizer(text, return_tensors="pt")


def test_sites_are_the_modules_transformers_records(tiny_loaded, tiny_arch):
    """The hooked weights are exactly what output_attentions=True returns, layer by layer."""
    sites = attention_sites(tiny_loaded.model)
    assert [type(s.module).__name__ for s in sites] == [SITE_CLASSES[tiny_arch]] * 2
    assert [s.layer for s in sites] == [0, 1]
    seen = []
    inputs = _inputs(tiny_loaded)
    with attention_hooks(tiny_loaded, lambda call: seen.append(call.weights.clone())), torch.no_grad():
        reference = tiny_loaded.model(**inputs, output_attentions=True).attentions
    assert len(seen) == len(reference) == 2
    for mine, theirs in zip(seen, reference, strict=True):
        assert torch.equal(mine, theirs)
    assert foreign_hooks(tiny_loaded.model) == {}


def test_megatron_falls_back_to_self_attention_classes():
    loaded = megatron_loaded()
    sites = attention_sites(loaded.model)
    assert [type(s.module).__name__ for s in sites] == ["MegatronBertSelfAttention"] * 2
    seen = []
    with attention_hooks(loaded, lambda call: seen.append(call.weights.clone())), torch.no_grad():
        reference = loaded.model(**_inputs(loaded), output_attentions=True).attentions
    assert all(torch.equal(a, b) for a, b in zip(seen, reference, strict=True))
    assert len(attention_output_projections(loaded.model)) == 2


def test_vision_sites(vision_paths_for_hooks):
    for name, path in vision_paths_for_hooks.items():
        loaded = load_model(path)
        sites = attention_sites(loaded.model)
        expected = {"vit": "ViTAttention", "deit": "DeiTAttention", "dinov2": "Dinov2WithRegistersAttention"}[name]
        assert {type(s.module).__name__ for s in sites} == {expected}
        assert len(sites) == loaded.model.config.num_hidden_layers


@pytest.fixture(scope="module")
def vision_paths_for_hooks(tmp_path_factory):
    from tests.vision import tiny_vision

    root = tmp_path_factory.mktemp("hooks_vision")
    return {
        "vit": tiny_vision.save_vit(root / "vit"),
        "deit": tiny_vision.save_deit(root / "deit"),
        "dinov2": tiny_vision.save_dinov2_registers(root / "dinov2"),
    }


def test_hooks_removed_after_an_exception_in_the_callback(tiny_loaded):
    model = tiny_loaded.model

    def boom(call):
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"), attention_hooks(model, boom), torch.no_grad():
        model(**_inputs(tiny_loaded))
    assert foreign_hooks(model) == {}
    assert model.config._attn_implementation == "sdpa"


def test_hooks_removed_after_an_exception_in_the_block(tiny_loaded):
    model = tiny_loaded.model
    with pytest.raises(ValueError, match="inside"), attention_hooks(model, lambda call: None):
        assert foreign_hooks(model)  # the hooks are there inside the block
        raise ValueError("inside")
    assert foreign_hooks(model) == {}


def test_a_kernel_without_weights_is_a_clear_error(tiny_loaded):
    """With eager=False on an sdpa model the modules return no weights: say so and name the fix."""
    model = tiny_loaded.model
    with (
        pytest.raises(AttnflowError, match="attn_implementation='eager'"),
        attention_hooks(model, lambda call: None, eager=False),
        torch.no_grad(),
    ):
        model(**_inputs(tiny_loaded))
    assert foreign_hooks(model) == {}


def test_callback_may_replace_the_output(tiny_loaded):
    """A callback returning a new output changes what the model computes (the hook is live)."""
    model = tiny_loaded.model
    inputs = _inputs(tiny_loaded)
    with torch.no_grad():
        plain = model(**inputs)
        with attention_hooks(model, lambda call: (torch.zeros_like(call.output[0]), *call.output[1:])):
            zeroed = model(**inputs)
    assert not torch.allclose(plain.logits if hasattr(plain, "logits") else plain.last_hidden_state,
                              zeroed.logits if hasattr(zeroed, "logits") else zeroed.last_hidden_state)


def test_not_a_transformer():
    with pytest.raises(AttnflowError, match="Cannot find the attention modules"):
        attention_sites(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    with pytest.raises(AttnflowError, match="'kind'"):
        attention_sites(torch.nn.Linear(2, 2), kind="both")  # type: ignore[arg-type]
