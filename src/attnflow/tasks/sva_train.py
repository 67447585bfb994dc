"""Train the subject-verb agreement model on the CPU and save it as a Hugging Face folder.

The folder holds ``config.json``, ``model.safetensors``, a word-level tokenizer
(``tokenizer.json`` + ``tokenizer_config.json``, loaded by ``AutoTokenizer``) and
``train_report.json`` (accuracy overall and with attractors, seed, sizes, time). The
model inside the package (``attnflow/tasks/bundled/sva``) was made by :func:`train`
with its defaults.

Training recipe: AdamW (lr 1e-3, weight decay 0.01), linear warm-up over 5 % of the
steps then linear decay to 0, batches of 64 sentences of similar length, dropout 0.1,
and *word dropout*: each word is replaced by ``[UNK]`` with probability 0.03. The
paper's model also knew ``[UNK]`` (rare words of the corpus); without it, blank-out -
which replaces a word by ``[UNK]`` - would feed the model an embedding it never saw.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..capture.models import quiet_transformers
from ..errors import AttnflowError
from . import sva
from .sva_model import MAX_POSITIONS, build_model

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

PAD, UNK, CLS, MASK = "[PAD]", "[UNK]", "[CLS]", "[MASK]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, MASK)


def build_tokenizer(words: Sequence[str] | None = None) -> PreTrainedTokenizerFast:
    """The word-level tokenizer: lower-cases, splits on whitespace and punctuation, puts ``[CLS]`` first.

    Ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[MASK]`` 3, then ``words`` (default: the
    generator's :func:`attnflow.tasks.sva.vocabulary`) in order.

    Examples
    --------
    >>> tok = build_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("The keys to the cabinet")["input_ids"])
    ['[CLS]', 'the', 'keys', 'to', 'the', 'cabinet']
    >>> tok("the xylophone")["input_ids"][2] == tok.unk_token_id
    True
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = list(sva.vocabulary() if words is None else words)
    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *words])}
    if len(vocab) != len(SPECIAL_TOKENS) + len(words):
        raise AttnflowError("The 'words' parameter must hold distinct words that are not special tokens.")
    core = Tokenizer(WordLevel(vocab, unk_token=UNK))
    core.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A", pair=f"{CLS} $A $B:1", special_tokens=[(CLS, vocab[CLS])]
    )
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token=UNK,
        pad_token=PAD,
        cls_token=CLS,
        mask_token=MASK,
        model_max_length=MAX_POSITIONS,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )


@dataclass
class TrainReport:
    """What :func:`train` measured; saved as ``train_report.json`` next to the model."""

    seed: int
    n_train: int
    n_validation: int
    n_test: int
    epochs: int
    batch_size: int
    learning_rate: float
    unk_rate: float
    threads: int
    steps: int
    #: Wall-clock seconds of the training loop, and the CPU seconds this process spent in it
    #: (all threads): on a shared machine the CPU time is the fairer measure.
    train_seconds: float
    train_cpu_seconds: float
    #: Accuracy on the test split: overall, with at least one attractor, without any.
    test_accuracy: float
    test_accuracy_attractors: float
    test_accuracy_no_attractors: float
    test_attractor_examples: int
    validation_accuracy: float
    #: Validation accuracy after each epoch.
    history: list[float] = field(default_factory=list)
    machine: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """The report as indented JSON."""
        return json.dumps(asdict(self), indent=2) + "\n"


def encode(examples: Sequence[sva.SVAExample], vocab: dict[str, int]) -> list[list[int]]:
    """Token ids of each example, ``[CLS]`` first; the same as the tokenizer gives, much faster.

    Examples
    --------
    >>> tok = build_tokenizer()
    >>> ex = sva.generate(1, seed=0)[0]
    >>> encode([ex], tok.get_vocab())[0] == tok(ex.text)["input_ids"]
    True
    """
    unk = vocab[UNK]
    return [[vocab[CLS], *(vocab.get(w, unk) for w in ex.words)] for ex in examples]


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of indices with similar lengths, in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def _tensors(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def predict(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[sva.SVAExample],
    *,
    batch_size: int = 256,
) -> list[int]:
    """The predicted label (0 singular, 1 plural) of each example.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> lm = load_model("sva")
    >>> predict(lm.model, lm.tokenizer, [sva.SVAExample(("the", "keys", "to", "the", "cabinet"), 1, 1, (4,))])
    [1]
    """
    import torch

    vocab = tokenizer.get_vocab()
    ids = encode(examples, vocab)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    predictions = [0] * len(ids)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                input_ids, mask = _tensors([ids[i] for i in chunk], vocab[PAD])
                logits = model(input_ids=input_ids, attention_mask=mask).logits
                for i, label in zip(chunk, logits.argmax(-1).tolist(), strict=True):
                    predictions[i] = int(label)
    finally:
        model.train(was_training)
    return predictions


def accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, examples: Sequence[sva.SVAExample]
) -> dict[str, float | int]:
    """Accuracy overall, on examples with at least one attractor and on those without.

    Returns a dict with ``accuracy``, ``accuracy_attractors``, ``accuracy_no_attractors``
    (NaN when a group is empty), ``n`` and ``n_attractors``.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> lm = load_model("sva")
    >>> acc = accuracy(lm.model, lm.tokenizer, sva.generate(50, split="test", seed=7))
    >>> acc["n"], acc["accuracy"] > 0.8
    (50, True)
    """
    predictions = predict(model, tokenizer, examples)
    right = [int(p == ex.label) for p, ex in zip(predictions, examples, strict=True)]

    def mean(values: list[int]) -> float:
        return sum(values) / len(values) if values else float("nan")

    with_attractors = [r for r, ex in zip(right, examples, strict=True) if ex.has_attractor]
    without = [r for r, ex in zip(right, examples, strict=True) if not ex.has_attractor]
    return {
        "accuracy": mean(right),
        "accuracy_attractors": mean(with_attractors),
        "accuracy_no_attractors": mean(without),
        "n": len(examples),
        "n_attractors": len(with_attractors),
    }


def train(
    out_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    n_train: int = 60_000,
    n_validation: int = 2_000,
    n_test: int = 2_000,
    epochs: int = 4,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    unk_rate: float = 0.03,
    threads: int | None = 2,
    max_steps: int | None = None,
    log: Callable[[str], None] | None = print,
    **config_overrides: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast, TrainReport]:
    """Generate the data, train the SVA model, measure it, and save it to ``out_dir``.

    Parameters
    ----------
    out_dir
        Folder to save the model, tokenizer and ``train_report.json`` in (created); ``None``
        saves nothing.
    seed
        Seeds the data, the initial weights, the batch order, dropout and word dropout.
    n_train, n_validation, n_test
        Sizes of the three splits (:func:`attnflow.tasks.sva.make_splits`).
    epochs, batch_size, learning_rate
        The optimisation (AdamW, linear warm-up and decay).
    unk_rate
        Chance that a word of a training sentence is replaced by ``[UNK]``.
    threads
        ``torch.set_num_threads`` during training (restored afterwards); ``None`` keeps
        torch's setting.
    max_steps
        Stop after this many steps (smoke tests); ``None`` trains all epochs.
    log
        Called with one line of progress per epoch; ``None`` for silence.
    config_overrides
        Fields of the model config to change (tests use ``num_hidden_layers=1``).

    Returns
    -------
    model, tokenizer, report
        The trained model (evaluation mode), its tokenizer and the :class:`TrainReport`.

    Examples
    --------
    >>> model, tok, report = train(None, n_train=256, n_validation=16, n_test=16, epochs=1,
    ...                            max_steps=2, num_hidden_layers=1, log=None)
    >>> report.steps, 0.0 <= report.test_accuracy <= 1.0
    (2, True)
    """
    import torch

    for name, value in (("n_train", n_train), ("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AttnflowError(f"The '{name}' parameter must be a positive integer; got {value!r} instead.")
    if not 0.0 <= unk_rate < 1.0:
        raise AttnflowError(f"The 'unk_rate' parameter must lie in [0, 1); got {unk_rate!r} instead.")
    say = log or (lambda _line: None)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        splits = sva.make_splits(n_train, n_validation, n_test, seed=seed)
        tokenizer = build_tokenizer()
        vocab = tokenizer.get_vocab()
        model = build_model(len(vocab), seed=seed, pad_token_id=vocab[PAD], **config_overrides)
        report = _fit(model, tokenizer, splits, seed, epochs, batch_size, learning_rate, unk_rate, max_steps, say)
    finally:
        torch.set_num_threads(saved_threads)
    report.threads = int(threads) if threads is not None else saved_threads
    if out_dir is not None:
        save(model, tokenizer, report, out_dir)
        say(f"saved to {out_dir}")
    return model, tokenizer, report


def _fit(
    model: Any,
    tokenizer: Any,
    splits: dict[str, list[sva.SVAExample]],
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    unk_rate: float,
    max_steps: int | None,
    say: Callable[[str], None],
) -> TrainReport:
    import torch

    vocab = tokenizer.get_vocab()
    train_ids = encode(splits["train"], vocab)
    labels = [ex.label for ex in splits["train"]]
    rng = random.Random(f"attnflow-sva-train:{seed}")
    torch.manual_seed(seed)
    steps_per_epoch = -(-len(train_ids) // batch_size)
    total = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    warmup = max(1, total // 20)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
        betas=(0.9, 0.98),
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / max(1, total - warmup)))
    )
    lengths = [len(row) for row in train_ids]
    history: list[float] = []
    step = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    model.train()
    for epoch in range(epochs):
        running, seen = 0.0, 0
        for batch in _batches(lengths, batch_size, rng):
            if step >= total:
                break
            rows = [
                [tok if j == 0 or rng.random() >= unk_rate else vocab[UNK] for j, tok in enumerate(train_ids[i])]
                for i in batch
            ]
            input_ids, mask = _tensors(rows, vocab[PAD])
            target = torch.tensor([labels[i] for i in batch], dtype=torch.long)
            loss = model(input_ids=input_ids, attention_mask=mask, labels=target).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            running += float(loss.detach()) * len(batch)
            seen += len(batch)
            if step % 200 == 0:
                say(f"  step {step}/{total}: loss {running / seen:.4f}, {time.perf_counter() - start:.0f} s")
        validation = accuracy(model, tokenizer, splits["validation"])["accuracy"] if splits["validation"] else 0.0
        history.append(float(validation))
        say(
            f"epoch {epoch + 1}/{epochs}: loss {running / max(seen, 1):.4f}, validation accuracy "
            f"{validation:.4f}, {time.perf_counter() - start:.0f} s"
        )
        if step >= total:
            break
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    model.eval()
    test = accuracy(model, tokenizer, splits["test"]) if splits["test"] else {}
    say(
        f"test accuracy {test.get('accuracy', float('nan')):.4f} (with attractors "
        f"{test.get('accuracy_attractors', float('nan')):.4f}, n={test.get('n_attractors', 0)}); "
        f"trained in {seconds:.0f} s ({cpu_seconds:.0f} s of CPU time)"
    )
    return TrainReport(
        seed=seed,
        n_train=len(splits["train"]),
        n_validation=len(splits["validation"]),
        n_test=len(splits["test"]),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        unk_rate=unk_rate,
        threads=0,
        steps=step,
        train_seconds=round(seconds, 1),
        train_cpu_seconds=round(cpu_seconds, 1),
        test_accuracy=float(test.get("accuracy", float("nan"))),
        test_accuracy_attractors=float(test.get("accuracy_attractors", float("nan"))),
        test_accuracy_no_attractors=float(test.get("accuracy_no_attractors", float("nan"))),
        test_attractor_examples=int(test.get("n_attractors", 0)),
        validation_accuracy=history[-1] if history else float("nan"),
        history=history,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs visible",
        versions=_versions(),
    )


def _versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def save(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    report: TrainReport | None,
    out_dir: str | os.PathLike[str],
) -> Path:
    """Save model (safetensors), tokenizer and report to ``out_dir`` as a Hugging Face folder.

    Examples
    --------
    >>> import tempfile
    >>> from attnflow.capture import load_model
    >>> model, tok, report = train(None, n_train=8, n_validation=0, n_test=0, max_steps=1,
    ...                            num_hidden_layers=1, log=None)
    >>> folder = save(model, tok, report, tempfile.mkdtemp())
    >>> load_model(folder).model.config.num_hidden_layers
    1
    """

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    # transformers 5 writes its own class name, which transformers 4 does not know;
    # PreTrainedTokenizerFast is the name both read.
    config_path = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text(encoding="utf-8"))
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n", encoding="utf-8")
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.iterdir():  # safetensors writes its file private; a model folder is for sharing
        if path.is_file():
            path.chmod(0o666 & ~umask)
    if report is not None:
        (folder / "train_report.json").write_text(report.to_json(), encoding="utf-8")
    return folder
