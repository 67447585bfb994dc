"""eager_attention: switch to eager, restore everything, even through exceptions."""

from __future__ import annotations

import pytest

from attnflow.capture import eager_attention, load_model
from tests.tiny_models import foreign_hooks


def test_switches_and_restores(tiny_loaded):
    model = tiny_loaded.model
    with eager_attention(model) as inside:
        assert inside is model
        assert model.config._attn_implementation == "eager"
        assert not any(m.training for m in model.modules())
    assert model.config._attn_implementation == "sdpa"


def test_restores_mixed_training_modes_and_grad_flags(tiny_loaded):
    model = tiny_loaded.model
    model.train()
    modules = list(model.modules())
    modules[len(modules) // 2].eval()
    params = list(model.parameters())
    params[0].requires_grad_(False)
    training = [m.training for m in modules]
    grads = [p.requires_grad for p in params]
    with pytest.raises(ValueError, match="inside"), eager_attention(model):
        raise ValueError("inside")
    assert [m.training for m in modules] == training
    assert [p.requires_grad for p in params] == grads
    assert model.config._attn_implementation == "sdpa"
    assert foreign_hooks(model) == {}


def test_already_eager_stays_eager(tiny_bert_path):
    from transformers import AutoModel

    loaded = load_model(AutoModel.from_pretrained(tiny_bert_path, attn_implementation="eager"))
    with eager_attention(loaded.model):
        assert loaded.model.config._attn_implementation == "eager"
    assert loaded.model.config._attn_implementation == "eager"


def test_restores_unrunnable_implementation(tiny_loaded):
    config = tiny_loaded.model.config
    config._attn_implementation_internal = "flash_attention_2"
    with eager_attention(tiny_loaded.model):
        assert config._attn_implementation == "eager"
    assert config._attn_implementation == "flash_attention_2"


def test_nested_blocks(tiny_loaded):
    model = tiny_loaded.model
    with eager_attention(model):
        with eager_attention(model):
            assert model.config._attn_implementation == "eager"
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
