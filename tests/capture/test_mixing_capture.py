"""The context-mixing capture (capture/mixing.py): its hooks never outlive it, and the architecture table it reads."""

from __future__ import annotations

import importlib

import pytest

from attnflow.capture.architectures import ARCHITECTURES, architecture, streamed_modules
from attnflow.capture.mixing import capture_mixing, layer_modules, layout_of
from attnflow.errors import AttnflowError
from tests.capture.test_hooks import megatron_loaded
from tests.evaluate.toy import tiny_loaded
from tests.tiny_models import ARCHITECTURES as TINY
from tests.tiny_models import foreign_hooks

TEXT = "The keys to the cabinet are on the table."


def _ids(loaded):
    return loaded.tokenizer(TEXT)["input_ids"]


@pytest.mark.parametrize("name", TINY)
def test_no_hook_survives_a_capture(name):
    loaded = tiny_loaded(name, "base")
    before = foreign_hooks(loaded.model)
    capture = capture_mixing(loaded, _ids(loaded))
    assert capture.n_layers == 2 and capture.layout == architecture(name).layout
    assert foreign_hooks(loaded.model) == before


@pytest.mark.parametrize("name", ["bert", "llama"])
def test_no_hook_survives_a_model_that_fails_half_way(name, monkeypatch):
    loaded = tiny_loaded(name, "base")
    before = foreign_hooks(loaded.model)
    second = layer_modules(loaded.model)[1].block

    def broken(*args, **kwargs):
        raise RuntimeError("layer 2 broke")

    monkeypatch.setattr(second, "forward", broken)
    with pytest.raises(AttnflowError, match="layer 2 broke"):
        capture_mixing(loaded, _ids(loaded))
    assert foreign_hooks(loaded.model) == before


@pytest.mark.parametrize("name", [*TINY, "megatron-bert"])
def test_the_table_names_modules_each_model_has(name):
    """Every layer norm the table names exists under each layer block, and the layout read from it is the table's."""
    loaded = megatron_loaded() if name == "megatron-bert" else tiny_loaded(name, "base")
    entry = architecture(loaded.model.config.model_type)
    assert entry is ARCHITECTURES[name] and layout_of(loaded.model) == entry.layout
    for layer in layer_modules(loaded.model):
        norms = (layer.ln1, layer.ln2) if entry.layout == "post-ln" else (layer.ln_after_attention,)
        assert all(norm is not None and hasattr(norm, "weight") for norm in norms)
        assert len(norms) == len(entry.norms)


def test_every_streamed_module_has_an_eager_attention_function():
    """The streamed capture calls each listed module's eager_attention_forward: it must exist in transformers."""
    for name in sorted(streamed_modules()):
        assert callable(getattr(importlib.import_module(name), "eager_attention_forward", None)), name


def test_an_architecture_outside_the_table_has_no_entry():
    assert [architecture(t) for t in ("t5", "bart", "")] == [None, None, None]
