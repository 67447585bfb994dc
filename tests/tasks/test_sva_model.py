"""The bundled subject-verb agreement model: loads offline as a stock Hugging Face model, attends both ways, agrees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnflow.capture import BUNDLED_MODELS, capture_attention, load_model
from attnflow.tasks import bundled_sva_path, sva
from attnflow.tasks.sva_train import accuracy, build_tokenizer, encode, save, train
from tests.tolerances import float32_sum_bound


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
    np.testing.assert_allclose(cap.attentions.sum(-1), 1.0, rtol=0, atol=float32_sum_bound(6))  # 6 float32 terms
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


#: docs/reproduction.md and the README claim test accuracy 1.000 (2000 of 2000, and 1135 of 1135 with attractors).
CLAIMED_ACCURACY = 1.0
#: What the test allows below the claim: 1 %, that is 10 errors in 1000 sentences.
MARGIN = 0.01


def test_accuracy_on_fresh_held_out_sentences_is_the_claimed_one(sva_model) -> None:
    examples = sva.generate(1000, split="test", seed=2024)  # test-split sentences under a seed training never used
    result = accuracy(sva_model.model, sva_model.tokenizer, examples)
    assert result["n"] == 1000 and result["n_attractors"] > 300
    assert result["accuracy"] >= CLAIMED_ACCURACY - MARGIN, result
    assert result["accuracy_attractors"] >= CLAIMED_ACCURACY - MARGIN, result


def test_the_committed_train_report_is_what_the_model_does(sva_model) -> None:
    """The docs' accuracy table comes from train_report.json: the report must state the claimed figure, and
    the model itself must still reach it (minus the margin) on the report's own test sentences (the test
    split, seed 0; the first 500 of its 2000, to keep the suite short; `make reproduce` reruns all)."""
    report = json.loads((bundled_sva_path() / "train_report.json").read_text())
    assert report["seed"] == 0 and report["n_test"] == 2000 and report["train_seconds"] > 0
    assert report["test_accuracy"] >= CLAIMED_ACCURACY and report["test_accuracy_attractors"] >= CLAIMED_ACCURACY
    examples = sva.generate(500, split="test", seed=report["seed"])  # the first 500 of the report's 2000
    result = accuracy(sva_model.model, sva_model.tokenizer, examples)
    assert result["accuracy"] >= report["test_accuracy"] - MARGIN, result
    assert result["accuracy_attractors"] >= report["test_accuracy_attractors"] - MARGIN, result


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
        # literal: same seed, same weights; no rounding bound is meant, two trainings repeat the same arithmetic
        assert np.allclose(a.numpy(), b.numpy(), atol=1e-6), name
