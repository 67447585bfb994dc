"""The bundled subject-verb agreement model: loads offline as a stock Hugging Face model, attends both ways, agrees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnflow.capture import BUNDLED_MODELS, capture_attention, load_model
from attnflow.tasks import bundled_sva_path, sva
from attnflow.tasks.sva_train import accuracy, build_tokenizer, encode, save, train


@pytest.fixture(scope="module")
def sva_model():
    """The bundled model, loaded once for this module. Do not modify it."""
    return load_model("sva")


def test_registered_and_loads_offline_as_the_papers_architecture(sva_model) -> None:
    assert "sva" in BUNDLED_MODELS
    config = sva_model.model.config
    assert type(sva_model.model).__name__ == "MegatronBertForSequenceClassification"
    assert (config.num_hidden_layers, config.num_attention_heads, config.hidden_size) == (6, 8, 128)
    assert config.id2label == {0: "singular", 1: "plural"}
    assert sva_model.is_decoder is False
    assert not getattr(config, "auto_map", None)  # no custom code anywhere


def test_plain_transformers_loads_the_folder_without_attnflow_code() -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = bundled_sva_path()
    model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert type(model).__name__ == "MegatronBertForSequenceClassification"
    assert tokenizer.convert_ids_to_tokens(tokenizer("the keys")["input_ids"]) == ["[CLS]", "the", "keys"]


def test_tokenizer_is_word_level_with_cls_first_and_the_special_tokens(sva_model) -> None:
    tok = sva_model.tokenizer
    assert tok.convert_ids_to_tokens(tok("The keys to the cabinet")["input_ids"]) == [
        "[CLS]", "the", "keys", "to", "the", "cabinet",
    ]
    assert (tok.pad_token, tok.unk_token, tok.cls_token, tok.mask_token) == ("[PAD]", "[UNK]", "[CLS]", "[MASK]")
    assert tok.get_vocab() == build_tokenizer().get_vocab()
    examples = sva.generate(100, split="test", seed=4)
    assert encode(examples, tok.get_vocab()) == [tok(ex.text)["input_ids"] for ex in examples]
    assert all(tok.unk_token_id not in ids for ids in encode(examples, tok.get_vocab()))


def test_capture_gives_six_layers_of_eight_heads_rows_summing_to_one(sva_model) -> None:
    cap = capture_attention("the keys to the cabinet", "sva")
    assert cap.attentions.shape == (6, 8, 6, 6)
    assert cap.tokens == ["[CLS]", "the", "keys", "to", "the", "cabinet"]
    assert cap.special_positions == (0,)
    np.testing.assert_allclose(cap.attentions.sum(-1), 1.0, atol=1e-6)
    assert np.all(cap.attentions >= 0)


def test_attention_is_bidirectional(sva_model) -> None:
    """Queries attend to later tokens too: no causal mask."""
    caps = capture_attention([ex.text for ex in sva.generate(20, split="test", seed=5)], sva_model)
    for cap in caps:
        assert cap.is_causal is False
        n = cap.n_tokens
        later = np.triu(np.ones((n, n)), k=1)  # key j after query i
        mass = (cap.attentions * later).sum(-1)[:, :, : n - 1]  # (L, H, n-1): weight on later tokens
        assert mass.mean() > 0.05
        assert np.all(mass.max(axis=(1, 2)) > 0.2)  # in every layer some query looks ahead


def test_accuracy_on_fresh_test_sentences(sva_model) -> None:
    examples = sva.generate(200, split="test", seed=2024)  # a seed training never used
    result = accuracy(sva_model.model, sva_model.tokenizer, examples)
    assert result["n"] == 200
    assert result["accuracy"] >= 0.9
    assert result["n_attractors"] > 50


def test_train_report_records_the_figures() -> None:
    report = json.loads((bundled_sva_path() / "train_report.json").read_text())
    assert report["test_accuracy"] >= 0.95
    assert 0.0 <= report["test_accuracy_attractors"] <= 1.0
    assert report["n_train"] > 0 and report["seed"] == 0
    assert report["train_seconds"] > 0


@pytest.mark.slow
def test_a_few_training_steps_give_a_folder_attnflow_can_load(tmp_path) -> None:
    model, tokenizer, report = train(
        None, n_train=256, n_validation=16, n_test=16, epochs=1, max_steps=3, num_hidden_layers=2, log=None
    )
    assert report.steps == 3 and report.n_train == 256
    folder = save(model, tokenizer, report, tmp_path / "sva")
    assert {p.name for p in folder.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "train_report.json",
    }
    cap = capture_attention("the keys to the cabinet", folder)
    assert cap.attentions.shape == (2, 8, 6, 6)
    again, _, _ = train(
        None, n_train=256, n_validation=16, n_test=16, epochs=1, max_steps=3, num_hidden_layers=2, log=None
    )
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert np.allclose(a.numpy(), b.numpy(), atol=1e-6), name  # same seed, same weights
