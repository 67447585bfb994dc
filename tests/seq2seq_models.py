"""Tiny random-weight encoder–decoder models (T5, BART, Marian) with real tokenizers, built offline.

Hidden size 32, 2 encoder and 2 decoder layers (Marian: 3 decoder layers, so the two
stacks differ in depth), 2-4 heads. Tokenizers are real and trained here on a few
sentences with the ``tokenizers`` library:

- T5: a sentencepiece-style Unigram model (``▁`` word marks), ``</s>`` appended;
- BART: a byte-level BPE (any text tokenizes), ``<s> ... </s>``, decoder start ``</s>``;
- Marian: a WordPiece-free WordLevel vocabulary on whitespace words with ``<unk>``,
  ``</s>`` appended, decoder start ``<pad>``.

Weights are drawn with a fixed seed and a large init range so that attention is far
from uniform. Nothing is downloaded::

    path = save_seq2seq_model("t5", tmp_path / "t5")
    loaded = attnflow.capture.load_model(path)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SEQ2SEQ_ARCHITECTURES: tuple[str, ...] = ("t5", "bart", "marian")
MAX_POSITIONS = 64

TRAINING_SENTENCES: tuple[str, ...] = (
    "the cat sat on the mat",
    "a dog ran to the park",
    "le chat est assis sur le tapis",
    "un chien court vers le parc",
    "attention flows from the source to the target",
    "numbers like 42 and 2020 appear too",
)


def _post(single: str, specials: list[tuple[str, int]]) -> Any:
    from tokenizers import processors

    return processors.TemplateProcessing(single=single, special_tokens=specials)


def build_seq2seq_tokenizer(architecture: str) -> Any:
    """A working tokenizer for ``architecture`` (one of :data:`SEQ2SEQ_ARCHITECTURES`), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if architecture == "t5":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        trainer = trainers.UnigramTrainer(
            vocab_size=150, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
        )
        tok.train_from_iterator(TRAINING_SENTENCES, trainer)
        tok.post_processor = _post("$A </s>", [("</s>", tok.token_to_id("</s>"))])
        specials = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    elif architecture == "bart":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(TRAINING_SENTENCES, trainer)
        tok.post_processor = _post("<s> $A </s>", [("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
        specials = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                    "mask_token": "<mask>"}
    elif architecture == "marian":
        words = sorted({w for sentence in TRAINING_SENTENCES for w in sentence.split()})
        vocab = {"</s>": 0, "<unk>": 1, "<pad>": 2, **{w: i + 3 for i, w in enumerate(words)}}
        tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
        tok.post_processor = _post("$A </s>", [("</s>", 0)])
        specials = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    else:
        raise ValueError(f"unknown seq2seq architecture {architecture!r}; available: {SEQ2SEQ_ARCHITECTURES}")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=MAX_POSITIONS, **specials)
    return tokenizer


def build_seq2seq_model(architecture: str, tokenizer: Any, *, seed: int = 0) -> Any:
    """A tiny random-weight ``...ForConditionalGeneration`` / ``MarianMTModel`` for ``tokenizer``."""
    import torch
    import transformers as tf

    vocab = len(tokenizer)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if architecture == "t5":
        config = tf.T5Config(
            vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
            pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad, initializer_factor=2.0,
        )
        cls = tf.T5ForConditionalGeneration
    elif architecture == "bart":
        config = tf.BartConfig(
            vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_position_embeddings=MAX_POSITIONS, pad_token_id=pad, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=eos, decoder_start_token_id=eos, forced_eos_token_id=None, init_std=0.2,
        )
        cls = tf.BartForConditionalGeneration
    elif architecture == "marian":
        config = tf.MarianConfig(
            vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_position_embeddings=MAX_POSITIONS, pad_token_id=pad, eos_token_id=eos,
            decoder_start_token_id=pad, init_std=0.2,
        )
        cls = tf.MarianMTModel
    else:
        raise ValueError(f"unknown seq2seq architecture {architecture!r}; available: {SEQ2SEQ_ARCHITECTURES}")
    torch.manual_seed(seed)
    model = cls(config)
    model.eval()
    return model


def save_seq2seq_model(architecture: str, folder: str | Path, *, seed: int = 0) -> Path:
    """Build a tiny ``architecture`` encoder–decoder model with its tokenizer and save both to ``folder``."""
    from attnflow.capture import quiet_transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_seq2seq_tokenizer(architecture)
    with quiet_transformers():
        model = build_seq2seq_model(architecture, tokenizer, seed=seed)
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    return folder
