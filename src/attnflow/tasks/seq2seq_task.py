"""The bundled ``reverse`` model: a tiny Marian encoder–decoder that writes a digit sequence backwards.

Source: 3 to 8 distinct digits separated by spaces (``"7 2 9"``); target: the same
digits reversed (``"9 2 7"``). The aligned source token of every target token is
known: target token ``k`` (0-based) copies source token ``n - 1 - k``. That makes
it a known answer for the combined encoder–decoder graph (docs/seq2seq.md): a
method is *plausible* on a target token when the source token it ranks first is
the aligned one.

The model is a ``MarianMTModel`` (2 encoder and 2 decoder layers, 2 heads, width
64, sinusoidal positions) with a word-level tokenizer over the ten digits,
trained here on the CPU in about four minutes (``train_report.json``) by
:func:`train` with its defaults::

    attnflow train reverse DIR                  # the bundled model
    attnflow reproduce reverse --out DIR        # plausibility and correlations

The second command writes the report that docs/seq2seq.md's tables are made from
(``docs/results/seq2seq-reverse.json``).
"""

from __future__ import annotations

import json
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..capture import load_model, quiet_transformers
from ..capture.seq2seq import capture_seq2seq
from ..errors import AttnflowError
from ..explainers.seq2seq import seq2seq_scores
from ..report.stacking import StackingTable

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

EOS, UNK, PAD = "</s>", "<unk>", "<pad>"
DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
MIN_LENGTH, MAX_LENGTH = 3, 8
MAX_POSITIONS = 16


@dataclass(frozen=True)
class Example:
    """One reversal: ``source`` digits, ``target`` the same reversed."""

    source: tuple[str, ...]

    @property
    def target(self) -> tuple[str, ...]:
        return tuple(reversed(self.source))

    @property
    def source_text(self) -> str:
        return " ".join(self.source)

    @property
    def target_text(self) -> str:
        return " ".join(self.target)

    def aligned(self, k: int) -> int:
        """The source position (0-based, among the digits) that target token ``k`` copies."""
        return len(self.source) - 1 - k


def make_examples(count: int, seed: int = 0) -> list[Example]:
    """``count`` random reversals of 3 to 8 distinct digits, reproducible from ``seed``.

    Examples
    --------
    >>> ex = make_examples(1, seed=3)[0]
    >>> ex.source_text, ex.target_text, ex.aligned(0) == len(ex.source) - 1
    ('9 8 2 7', '7 2 8 9', True)
    """
    rng = random.Random(seed)
    return [Example(tuple(rng.sample(DIGITS, rng.randint(MIN_LENGTH, MAX_LENGTH)))) for _ in range(count)]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer: ``</s>`` 0, ``<unk>`` 1, ``<pad>`` 2, digits 3-12; appends ``</s>``.

    Examples
    --------
    >>> tok = build_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("7 2 9")["input_ids"])
    ['7', '2', '9', '</s>']
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate([EOS, UNK, PAD, *DIGITS])}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, 0)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, unk_token=UNK, pad_token=PAD, model_max_length=MAX_POSITIONS
    )


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> PreTrainedModel:
    """The untrained ``MarianMTModel``: 2 + 2 layers, 2 heads, width 64, feed-forward 128."""
    import torch
    import transformers as tf

    config = tf.MarianConfig(
        vocab_size=len(tokenizer), d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id, forced_eos_token_id=tokenizer.eos_token_id,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, scale_embedding=True,
        architectures=["MarianMTModel"],
    )
    torch.manual_seed(seed)
    return tf.MarianMTModel(config)


@dataclass
class TrainReport:
    """What :func:`train` measured: exact-match accuracy of greedy decoding on held-out sources."""

    seed: int
    steps: int
    batch_size: int
    learning_rate: float
    test_examples: int
    exact_match: float
    token_accuracy: float
    seconds: float
    torch_version: str
    python: str


def _batch(tokenizer: Any, examples: Sequence[Example]) -> dict[str, Any]:
    sources = tokenizer([e.source_text for e in examples], padding=True, return_tensors="pt")
    labels = tokenizer(text_target=[e.target_text for e in examples], padding=True, return_tensors="pt")["input_ids"]
    labels[labels == tokenizer.pad_token_id] = -100
    return {"input_ids": sources["input_ids"], "attention_mask": sources["attention_mask"], "labels": labels}


def greedy(model: Any, tokenizer: Any, examples: Sequence[Example]) -> list[tuple[str, ...]]:
    """Greedy decodes (``do_sample=False``) of each example's source, as digit tuples."""
    import torch

    inputs = tokenizer([e.source_text for e in examples], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=MAX_LENGTH + 1, do_sample=False, num_beams=1)
    return [tuple(tokenizer.decode(row, skip_special_tokens=True).split()) for row in out]


def train(
    folder: str | Path,
    *,
    steps: int = 2500,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    test_examples: int = 500,
) -> TrainReport:
    """Train the reversal model and save it (safetensors, tokenizer, ``train_report.json``) to ``folder``.

    Adam with linear warm-up (5 % of the steps) and linear decay; fresh random
    examples every step (seeded); test sources are drawn with another seed.
    """
    import torch


    threads = torch.get_num_threads()
    started = time.perf_counter()
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    rng_seed = seed * 1_000_003 + 17
    for step in range(steps):
        batch = _batch(tokenizer, make_examples(batch_size, seed=rng_seed + step))
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
    model.eval()
    test = make_examples(test_examples, seed=10_000 + seed)
    decoded = greedy(model, tokenizer, test)
    exact = float(np.mean([d == e.target for d, e in zip(decoded, test, strict=True)]))
    tokens = [
        float(np.mean([a == b for a, b in zip(d + ("",) * len(e.target), e.target, strict=False)]))
        for d, e in zip(decoded, test, strict=True)
    ]
    report = TrainReport(
        seed=seed, steps=steps, batch_size=batch_size, learning_rate=learning_rate, test_examples=test_examples,
        exact_match=round(exact, 4), token_accuracy=round(float(np.mean(tokens)), 4),
        seconds=round(time.perf_counter() - started, 1), torch_version=torch.__version__,
        python=platform.python_version(),
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    (folder / "train_report.json").write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    torch.set_num_threads(threads)
    return report


#: The methods the plausibility report compares, in its column order.
PLAUSIBILITY_METHODS: tuple[str, ...] = ("raw", "rollout", "flow", "grad-rollout")


def plausibility(
    model: Any = "reverse",
    *,
    count: int = 200,
    seed: int = 20_000,
    methods: Sequence[str] = PLAUSIBILITY_METHODS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """How often each method ranks the aligned source token first, per decoder layer.

    For ``count`` held-out reversals (drawn with ``seed``; training used seeds below
    10 000 and the test set 10 000 + seed), every target token's prediction is
    explained (teacher forcing on the correct target, residual 0.5, mean over heads)
    with each method on the combined encoder–decoder graph
    (:mod:`attnflow.methods.seq2seq`), and the top-scoring *source digit* (``</s>``
    and the target side left out) is compared with the aligned one; ties count as
    misses unless the aligned digit is the only maximum. Returns a JSON-ready dict:
    ``{"methods": {method: [share per decoder layer]}, "chance", "predictions", ...}``;
    ``chance`` is the share a random ranking of the source digits would get.

    Examples
    --------
    >>> result = plausibility(count=2, methods=("raw", "rollout"))
    >>> result["predictions"], sorted(result["methods"]), len(result["methods"]["rollout"])
    (9, ['raw', 'rollout'], 2)
    """

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise AttnflowError(f"The number of examples must be a positive integer; got {count!r}.")
    unknown = [m for m in methods if m not in PLAUSIBILITY_METHODS]
    if unknown or not methods:
        raise AttnflowError(f"Plausibility is measured for {', '.join(PLAUSIBILITY_METHODS)}; got {list(methods)}.")
    loaded = load_model(model)
    examples = make_examples(count, seed=seed)
    hits: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    confident = predictions = 0
    chance = 0.0
    for index, example in enumerate(examples):
        captured = capture_seq2seq(example.source_text, loaded, decoder_text=example.target_text)
        confident += int(np.sum(np.asarray(captured.log_probabilities[: len(example.target)]) > np.log(0.5)))
        # every decoder position at once, at the decoder layers (the explain core); grad-rollout per position
        every = [m for m in methods if m != "grad-rollout"]
        found = seq2seq_scores(captured, every, 0, every_output="all", layers="decoder") if every else None
        decoder = [captured.n_encoder_layers + 2 * layer - 1 for layer in range(1, captured.n_decoder_layers + 1)]
        table = {m: values[decoder] for m, values in found.every_output["attention"].scores.items()} if found else {}
        n = len(example.source)
        for k in range(len(example.target)):  # decoder position k predicts target token k (0 is the start token)
            predictions += 1
            chance += 1.0 / n
            for method in methods:
                if method in table:
                    scores = table[method][:, k]
                else:
                    scores = seq2seq_scores(captured, [method], k, model=loaded).explanation.scores[method]
                digits = scores[:, :n]  # the digits only: </s> is the last source token
                top = digits.max(axis=1, keepdims=True)
                unique = (digits == top).sum(axis=1) == 1
                hits[method].append((np.argmax(digits, axis=1) == example.aligned(k)) & unique)
        if progress is not None:
            progress(index + 1, count)
    return {
        "format": "attnflow.seq2seq-plausibility",
        "version": 1,
        "model": str(loaded.name),
        "command": "attnflow reproduce reverse --out DIR (writes DIR/results.json; "
        "docs/results/seq2seq-reverse.json is that file)",
        "examples": count,
        "seed": seed,
        "predictions": predictions,
        "model_confident": round(confident / predictions, 4),
        "chance": round(chance / predictions, 4),
        "encoder_layers": int(captured.n_encoder_layers),
        "decoder_layers": int(captured.n_decoder_layers),
        "residual": 0.5,
        "head_fusion": "mean",
        "methods": {m: [round(float(v), 4) for v in np.mean(hits[m], axis=0)] for m in methods},
    }


def plausibility_table(result: dict[str, Any]) -> Any:
    """The terminal table of :func:`plausibility`'s result: one row per method, one column per decoder layer.

    Examples
    --------
    >>> plausibility_table({"methods": {"raw": [0.1, 0.9]}, "examples": 2, "predictions": 9, "chance": 0.2,
    ...                     "model_confident": 1.0}).row_count
    1
    """

    layers = len(next(iter(result["methods"].values())))
    table = StackingTable(
        title=f"Aligned source digit ranked first, per decoder layer ({result['examples']} held-out reversals, "
        f"{result['predictions']} target tokens)",
        caption=f"random ranking {result['chance']:.2f}; the model gives the correct digit p > 0.5 on "
        f"{result['model_confident']:.1%} of the tokens",
        title_justify="left", caption_justify="left", header_style="bold",
    )
    table.add_column("method")
    for layer in range(layers):
        table.add_column(f"L{layer + 1}", justify="right")
    for method, rates in result["methods"].items():
        table.add_row(method, *(f"{rate:.2f}" for rate in rates))
    return table


#: ``attnflow reproduce reverse`` correlates with blank-out and input gradients on this many of its examples.
CORRELATION_EXAMPLES = 50


def correlation_table(result: dict[str, Any]) -> Any:
    """The terminal table of :func:`attnflow.evaluate.seq2seq.evaluate_seq2seq`'s result: mean ± sd per layer.

    Examples
    --------
    >>> correlation_table({"methods": ["raw"], "ground_truths": ["blankout"], "decoder_layers": 1, "examples": 1,
    ...                    "predictions": 3, "correlation": {"blankout": {"raw": [[0.5, 0.1]]}}}).row_count
    1
    """

    table = StackingTable(
        title=f"Spearman ρ of the source scores with each ground truth ({result['examples']} pairs, "
        f"{result['predictions']} target tokens) · mean ± sd",
        title_justify="left", header_style="bold",
    )
    table.add_column("method")
    for truth in result["ground_truths"]:
        for layer in range(result["decoder_layers"]):
            table.add_column(f"{truth} L{layer + 1}", justify="right")
    for method in result["methods"]:
        cells = []
        for truth in result["ground_truths"]:
            for mean, sd in result["correlation"][truth][method]:
                cells.append("–" if mean is None else f"{mean:.2f} ± {0.0 if sd is None else sd:.2f}")
        table.add_row(method, *cells)
    return table
