"""load_model: bundled registry, folders, the local hub cache, model objects, and every bad input."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

from attnflow import AttnflowError
from attnflow.capture import (
    BUNDLED_MODELS,
    LoadedModel,
    capture_attention,
    load_model,
    quiet_transformers,
    register_bundled_model,
    resolve_bundled,
)
from tests.tiny_models import DECODERS, build_model, build_tokenizer, save_tiny_model


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("attnflow tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- registry ---------------------------------------------------------------------------


def test_registry_has_minilm():
    assert "minilm" in BUNDLED_MODELS
    assert "MiniLM" in BUNDLED_MODELS["minilm"]
    folder = resolve_bundled("MiniLM")
    assert (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def test_unknown_bundled_name_lists_available():
    with pytest.raises(AttnflowError, match=r"Unknown bundled model 'nope'; available: minilm"):
        resolve_bundled("nope")


def test_registered_bundle_loads_by_name(tiny_gpt2_path):
    register_bundled_model("tiny-test-gpt2", "a tiny test model", lambda: tiny_gpt2_path)
    try:
        loaded = load_model("tiny-test-gpt2")
        assert loaded.name == "tiny-test-gpt2" and loaded.is_decoder
        assert "tiny-test-gpt2" in BUNDLED_MODELS
    finally:
        from attnflow import bundled

        bundled._BUNDLED.pop("tiny-test-gpt2")
        BUNDLED_MODELS.pop("tiny-test-gpt2")


# --- folders and classes ----------------------------------------------------------------

EXPECTED_CLASSES = {
    "bert": "BertModel",
    "roberta": "RobertaForSequenceClassification",
    "distilbert": "DistilBertModel",
    "gpt2": "GPT2LMHeadModel",
    "llama": "LlamaForCausalLM",
}


def test_folder_loads_class_from_architectures(tiny_arch, tiny_model_path, no_network):
    loaded = load_model(tiny_model_path)
    assert isinstance(loaded, LoadedModel)
    assert type(loaded.model).__name__ == EXPECTED_CLASSES[tiny_arch]
    assert loaded.is_decoder == (tiny_arch in DECODERS)
    assert loaded.max_length == 64
    assert loaded.name == str(tiny_model_path)
    assert loaded.path == tiny_model_path
    assert not loaded.model.training
    assert loaded.model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    "arch, head, expected",
    [
        ("bert", "classification", "BertForSequenceClassification"),
        ("gpt2", "base", "GPT2Model"),
        ("llama", "classification", "LlamaForSequenceClassification"),
    ],
)
def test_other_heads(tmp_path, arch, head, expected):
    folder = save_tiny_model(arch, tmp_path / head, head=head)
    loaded = load_model(folder)
    assert type(loaded.model).__name__ == expected
    assert capture_attention("Attention flows.", loaded).n_layers == 2


def test_prefers_safetensors(tmp_path):
    tokenizer = build_tokenizer("bert")
    with quiet_transformers():
        safe = build_model("bert", tokenizer, seed=2)
        safe.save_pretrained(tmp_path, safe_serialization=True)
    # different weights in the legacy format, side by side (save_pretrained would remove them)
    torch.save(build_model("bert", tokenizer, seed=1).state_dict(), tmp_path / "pytorch_model.bin")
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "pytorch_model.bin").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = load_model(tmp_path)
    for mine, want in zip(loaded.model.state_dict().values(), safe.state_dict().values(), strict=True):
        torch.testing.assert_close(mine, want)


def test_loads_from_the_local_hub_cache(tmp_path, tiny_bert_path, monkeypatch, no_network):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--someone--tiny-bert"
    shutil.copytree(tiny_bert_path, repo / "snapshots" / "0123abc")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    loaded = load_model("someone/tiny-bert")
    assert loaded.name == "someone/tiny-bert"
    assert type(loaded.model).__name__ == "BertModel"
    with pytest.raises(AttnflowError, match="in the local Hugging Face cache"):
        load_model("someone/other-model")


# --- model objects ----------------------------------------------------------------------


def test_model_object_finds_its_tokenizer(tiny_bert_path):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert_path)
    loaded = load_model(model)
    assert loaded.model is model
    assert loaded.tokenizer("hello")["input_ids"][0] == loaded.tokenizer.cls_token_id


def test_model_object_without_source_needs_tokenizer():
    tokenizer = build_tokenizer("gpt2")
    model = build_model("gpt2", tokenizer)
    with pytest.raises(AttnflowError, match="pass tokenizer="):
        load_model(model)
    loaded = load_model(model, tokenizer)
    assert loaded.name == "GPT2LMHeadModel" and loaded.is_decoder and loaded.max_length == 64


def test_tokenizer_as_folder(tiny_bert_path):
    tokenizer = build_tokenizer("bert")
    model = build_model("bert", tokenizer)
    loaded = load_model(model, tiny_bert_path)
    assert loaded.tokenizer.cls_token == "[CLS]"
    with pytest.raises(AttnflowError, match="tokenizer"):
        load_model(model, 42)
    with pytest.raises(AttnflowError, match="No tokenizer at"):
        load_model(model, "/nonexistent/tokenizer")


def test_loaded_model_passes_through(tiny_bert_path):
    loaded = load_model(tiny_bert_path)
    assert load_model(loaded) is loaded
    other = build_tokenizer("distilbert")
    swapped = load_model(loaded, other)
    assert swapped.tokenizer is other and swapped.model is loaded.model


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, message",
    [
        ("/nonexistent/folder", r"No model folder at '/nonexistent/folder'.*does not exist"),
        ("./missing/model", "does not exist"),
        (Path("missing-folder"), "does not exist"),
        ("not-bundled", r"neither a bundled model \(minilm\b.*\).*downloads are off"),
        ("someone/not-cached", "downloads are off"),
        ("", "empty string"),
        ("has spaces in it", "does not exist"),
    ],
)
def test_not_a_model(model, message, no_network):
    with pytest.raises(AttnflowError, match=message):
        load_model(model)


def test_file_and_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(AttnflowError, match="is a file"):
        load_model(tmp_path / "weights.bin")
    with pytest.raises(AttnflowError, match="has no config.json"):
        load_model(tmp_path)


def test_folder_without_weights_or_tokenizer(tmp_path, tiny_bert_path):
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(tiny_bert_path / "config.json", config_only)
    with pytest.raises(AttnflowError, match="Could not load the model"):
        load_model(config_only)

    no_tokenizer = tmp_path / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert_path / name, no_tokenizer)
    with pytest.raises(AttnflowError, match="Could not load a tokenizer.*no tokenizer files.*tokenizer="):
        load_model(no_tokenizer)


def test_remote_code_needs_trust(tmp_path, tiny_bert_path):
    folder = tmp_path / "remote"
    shutil.copytree(tiny_bert_path, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(AttnflowError, match="trust_remote_code=True"):
        load_model(folder)


def test_error_messages_are_one_line(tmp_path, no_network):
    for bad in ("/nonexistent/folder", "not-bundled", str(tmp_path)):
        with pytest.raises(AttnflowError) as info:
            load_model(bad)
        assert "\n" not in str(info.value)
        assert info.value.__cause__ is None  # no chained library traceback
        assert info.value.__context__ is None or info.value.__suppress_context__


# --- logging ----------------------------------------------------------------------------


def test_quiet_transformers_restores_verbosity():
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_info()
    try:
        with quiet_transformers():
            assert hf_logging.get_verbosity() == hf_logging.ERROR
            assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.INFO
        assert hf_logging.is_progress_bar_enabled() == bars
    finally:
        hf_logging.set_verbosity(before)


def test_loading_is_silent(tiny_bert_path, capfd):
    load_model(tiny_bert_path)
    captured = capfd.readouterr()
    assert "Loading weights" not in captured.err + captured.out
