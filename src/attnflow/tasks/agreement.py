"""Subject-verb agreement in a pretrained causal language model: the paper's question on a real LM.

The paper (Abnar & Zuidema 2020) judges rollout and flow on one small model trained for
agreement. This task asks the same of a pretrained decoder (the bundled ``smollm2``) that
was never trained for it: does it prefer the verb form that agrees with the subject, and
which input tokens does each explanation method say that preference rests on?

The task, so that anyone can rerun it
-------------------------------------
- **Sentences.** The SVA grammar's sentences (:func:`attnflow.tasks.sva.generate`, any
  split, seeded), cut before the main verb, written as English writes them: the first
  letter capitalised, punctuation joined to the word before it (``"The keys, the"``).
  Each keeps the grammar's subject and attractors (nouns of the other number between
  the subject and the verb).
- **Score.** At the last position, ``log p(plural form) - log p(singular form)``, signed
  so that positive means correct: the contrast target ``"are|is"`` for a plural subject,
  ``"is|are"`` for a singular one (:mod:`attnflow.capture.targets`). The main pair is
  ``" are"/" is"``; ``" were"/" was"`` and ``" have"/" has"`` are secondary pairs, each
  used only where both forms are single tokens of the model's vocabulary
  (:func:`contrast_pairs` says which were skipped).
- **Beginning of sequence.** Each sentence is preceded by the tokenizer's beginning of
  sequence (:func:`beginning_token`), the position a decoder parks its attention on (an
  attention sink). It is not scored; its scores are reported separately.

Examples
--------
>>> english(("the", "keys", "to", "the", "cabinet", ",", "surely"))[0]
'The keys to the cabinet, surely'
>>> [s.text for s in sentences(2, seed=0)]  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..capture import load_model
from ..capture._eager import eager_attention
from ..capture.targets import model_head
from ..errors import AttnflowError
from ..evaluate import evaluate
from ..methods.flow import CUT_KINDS
from ..mixing import ATTENTION, available_graphs, context_mixing, get_graph, result_key
from . import sva
from .reproduce import _jsonable

#: The verb pairs scored, ``name -> (plural form, singular form)``; the first is the main one.
PAIRS: dict[str, tuple[str, str]] = {
    "are/is": (" are", " is"),
    "were/was": (" were", " was"),
    "have/has": (" have", " has"),
}
MAIN_PAIR = "are/is"
#: The most sentences :func:`sentences` draws: the grammar has far more distinct sentences than
#: this, but each one costs a model pass per token, so a larger request is a typo.
MAX_SENTENCES = 100_000
_PUNCTUATION = frozenset(",.;:!?")


def english(words: Sequence[str]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The words as English writes them, and each word's character span in that text.

    The first letter is capitalised and punctuation is joined to the word before it.

    >>> english(("the", "dog", ",", "quickly"))
    ('The dog, quickly', ((0, 3), (4, 7), (7, 8), (9, 16)))
    """
    text, spans = "", []
    for word in words:
        if text and word not in _PUNCTUATION:
            text += " "
        spans.append((len(text), len(text) + len(word)))
        text += word
    return text[:1].upper() + text[1:], tuple(spans)


@dataclass(frozen=True)
class AgreementSentence:
    """One sentence of the task: the grammar's example and its English text.

    >>> s = AgreementSentence.of(sva.SVAExample(("the", "keys", "to", "the", "cabinet"), 1, 1, (4,)))
    >>> s.text, s.contrast, s.has_attractor
    ('The keys to the cabinet', 'are|is', True)
    """

    example: sva.SVAExample
    text: str
    spans: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, example: sva.SVAExample) -> AgreementSentence:
        text, spans = english(example.words)
        return cls(example, text, spans)

    @property
    def plural(self) -> bool:
        return self.example.label == sva.PLURAL

    @property
    def has_attractor(self) -> bool:
        return self.example.has_attractor

    @property
    def contrast(self) -> str:
        """The main pair's contrast target, signed so that positive means correct."""
        return self.contrast_of(MAIN_PAIR)

    def contrast_of(self, pair: str) -> str:
        plural, singular = (form.strip() for form in PAIRS[pair])
        return f"{plural}|{singular}" if self.plural else f"{singular}|{plural}"


def sentences(n: int, *, seed: int = 0) -> list[AgreementSentence]:
    """``n`` distinct sentences of the SVA grammar (half with plural subjects), as English.

    Raises :class:`AttnflowError` for ``n`` below 1 or above :data:`MAX_SENTENCES`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SENTENCES:
        raise AttnflowError(
            f"The number of agreement sentences must be an integer from 1 to {MAX_SENTENCES}; got {n!r} instead."
        )
    return [AgreementSentence.of(example) for example in sva.generate(n, split=None, seed=seed)]


def beginning_token(tokenizer: Any) -> tuple[str, int] | None:
    """The token put before every sentence, or ``None`` where the tokenizer adds one itself.

    A tokenizer that adds a beginning-of-sequence token (Llama 2, Mistral) needs none
    from here. One that adds none, as SmolLM2's, gets ``<|endoftext|>`` where its
    vocabulary has it (the separator its training documents followed), else its BOS token.
    On 60 sentences SmolLM2 agrees correctly in 80 % after ``<|endoftext|>``, 75 % with
    nothing before the sentence, and 63 % after its chat BOS ``<|im_start|>``.
    """
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    if len(probe) > len(bare):
        return None
    vocab = tokenizer.get_vocab()
    for token in ("<|endoftext|>", getattr(tokenizer, "bos_token", None)):
        if token is not None and token in vocab:
            return token, int(vocab[token])
    return None


def contrast_pairs(tokenizer: Any) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """The pairs whose two forms are single tokens, as ids, and a note for each pair left out."""
    kept: dict[str, tuple[int, int]] = {}
    notes: list[str] = []
    for name, forms in PAIRS.items():
        ids = [tokenizer(form, add_special_tokens=False)["input_ids"] for form in forms]
        if all(len(i) == 1 for i in ids):
            kept[name] = (int(ids[0][0]), int(ids[1][0]))
        else:
            pieces = " and ".join(f"{form!r} is {len(i)} tokens" for form, i in zip(forms, ids, strict=True))
            notes.append(f"pair {name} left out: {pieces}")
    if MAIN_PAIR not in kept:
        raise AttnflowError(f"The agreement task needs ' are' and ' is' as single tokens; {notes[0]}.")
    return kept, notes


def word_tokens(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]], shift: int) -> list[list[int]]:
    """For each word's character span, the token positions whose characters overlap it.

    ``offsets`` are the tokenizer's character offsets of the text's tokens, and ``shift``
    the number of tokens put before them (the beginning of sequence).

    >>> word_tokens([(0, 3), (3, 8), (8, 11)], [(0, 8), (9, 11)], 1)
    [[1, 2], [3]]
    """
    out = []
    for start, end in spans:
        out.append([shift + t for t, (a, b) in enumerate(offsets) if a < end and b > start and b > a])
    return out


def signed_scores(loaded: Any, prompts: Sequence[Sequence[int]], plural: Sequence[bool],
                  pairs: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """Each pair's ``log p(correct) - log p(wrong)`` at the last position of every prompt, ``(N,)``."""
    import torch


    model = loaded.model
    sign = np.where(np.asarray(plural, dtype=bool), 1.0, -1.0)
    out = {name: np.empty(len(prompts)) for name in pairs}
    with eager_attention(model), torch.no_grad():
        for index, ids in enumerate(prompts):  # one at a time: no padding to reason about
            logits = model(torch.tensor([list(ids)]), use_cache=False).logits[0, -1].double()
            for name, (plural_id, singular_id) in pairs.items():
                out[name][index] = float(logits[plural_id] - logits[singular_id])  # the normaliser cancels
    return {name: sign * values for name, values in out.items()}


def accuracy(scores: np.ndarray, attractor_counts: Sequence[int]) -> dict[str, Any]:
    """The share of positive scores: overall, without and with attractors, and by attractor count.

    >>> accuracy(np.array([1.0, -1.0, 2.0, 3.0]), [0, 1, 1, 2])["by_attractors"]
    {'0': {'n': 1, 'accuracy': 1.0}, '1': {'n': 2, 'accuracy': 0.5}, '2+': {'n': 1, 'accuracy': 1.0}}
    """
    counts = np.asarray(attractor_counts)
    correct = np.asarray(scores) > 0

    def share(mask: np.ndarray) -> dict[str, Any]:
        return {"n": int(mask.sum()), "accuracy": float(correct[mask].mean()) if mask.any() else None}

    return {
        "overall": share(np.ones(len(counts), bool)),
        "without_attractors": share(counts == 0),
        "with_attractors": share(counts > 0),
        "by_attractors": {"0": share(counts == 0), "1": share(counts == 1), "2+": share(counts >= 2)},
    }


#: The ground truths each method is judged against: blank-out, the paper's input gradient
#: ``|sum_d g|`` and saliency ``||g||`` (the yardstick :mod:`attnflow.evaluate` leads with where the
#: paper's is zero by construction), both at the first layer's input.
GROUND_TRUTHS: tuple[str, ...] = ("blankout", "gradient", "saliency")
#: The blank-out replacement: the space token. Llama's tokenizer has no [UNK] or [MASK];
#: :func:`blank_choice_check` shows on 20 sentences that the choice does not decide the result.
BLANK = "Ġ"
#: The other replacement :func:`blank_choice_check` compares with.
OTHER_BLANK = "<|endoftext|>"
#: The methods judged by default, over the attention graph; every context-mixing graph that
#: runs on the model adds its rollout and flow.
DEFAULT_METHODS: tuple[str, ...] = ("raw", "rollout", "flow", "grad-rollout")
#: The seeded subset whose every number the JSON keeps, for a test to rerun: the first sentences.
SUBSET = 20


@dataclass
class AgreementReproduction:
    """What :func:`reproduce_agreement` found: accuracy, correlations, plausibility and flow's cuts.

    ``evaluation`` is the :class:`attnflow.evaluate.EvaluationResult` of every sentence
    (plural subjects explained on ``are|is``, singular ones on ``is|are``), in sentence order.
    """

    sentences: list[AgreementSentence]
    scores: dict[str, list[float]]
    accuracy: dict[str, dict[str, Any]]
    evaluation: Any
    plausibility: dict[str, Any]
    cuts: dict[str, Any]
    beginning: dict[str, Any]
    seconds: dict[str, float]
    settings: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:

        evaluation = self.evaluation.to_dict()
        return _jsonable({
            "format": "attnflow.agreement",
            "version": 1,
            "settings": self.settings,
            "accuracy": self.accuracy,
            "correlation": evaluation["correlation"],
            "correlation_counts": evaluation.get("correlation_counts"),
            "methods": self.evaluation.methods,
            "ground_truths": self.evaluation.ground_truths,
            "n_layers": self.evaluation.n_layers,
            "plausibility": self.plausibility,
            "cuts": self.cuts,
            "beginning": self.beginning,
            "seconds": self.seconds,
            "subset": self.subset(),
            "sentences": [
                {"text": s.text, "plural": s.plural, "attractors": len(s.example.attractors),
                 **{f"score_{name}": values[i] for name, values in self.scores.items()}}
                for i, s in enumerate(self.sentences)
            ],
        })

    def subset(self, count: int = SUBSET) -> dict[str, Any]:
        """Every top-layer score and ground-truth value of the first ``count`` sentences, token by token."""
        examples = self.evaluation.examples[:count]
        return {
            "n": len(examples),
            "tokens": [e.tokens for e in examples],
            "scores": {m: [e.scores[m][-1].tolist() for e in examples] for m in self.evaluation.methods},
            "ground_truths": {t: [e.ground_truths[t].tolist() for e in examples]
                              for t in self.evaluation.ground_truths},
        }


def reproduce_agreement(
    n: int = 500,
    *,
    model: Any = "smollm2",
    seed: int = 0,
    methods: Sequence[str] | None = None,
    graphs: Sequence[str] | None = None,
    blank: str = BLANK,
    ground_truths: Sequence[str] = GROUND_TRUTHS,
    cuts: bool = True,
    progress: Any = None,
) -> AgreementReproduction:
    """Judge every method on subject-verb agreement in a causal LM, layer by layer.

    Parameters
    ----------
    n
        Sentences (:func:`sentences`), half with plural subjects.
    model
        A causal language model (default the bundled ``smollm2``).
    methods
        Methods over the attention graph (default :data:`DEFAULT_METHODS`).
    graphs
        Context-mixing graphs whose rollout and flow are judged too; default every
        registered graph that is defined for the model.
    blank
        The blank-out replacement token (default :data:`BLANK`, the space token).
    ground_truths
        The yardsticks (default :data:`GROUND_TRUTHS`).
    cuts
        Also find the kind of every flow value's minimum cut, per layer (:func:`flow_cut_kinds`).
    progress
        Called as ``progress(done, total)`` after each sentence.

    Returns
    -------
    AgreementReproduction
    """
    import time


    items = sentences(n, seed=seed)
    names = list(DEFAULT_METHODS if methods is None else methods)
    loaded = load_model(model)
    if model_head(loaded.model) != "causal_lm":
        raise AttnflowError(
            f"The agreement task scores the next token, so it needs a causal language model; the model "
            f"{loaded.name!r} is a {model_head(loaded.model)}."
        )
    tokenizer = loaded.tokenizer
    pairs, pair_notes = contrast_pairs(tokenizer)
    if graphs is None:
        graphs = []
        for name in context_mixing(available_graphs()):
            try:
                get_graph(name).check_model(loaded)
            except AttnflowError:
                continue
            graphs.append(name)
    else:
        graphs = context_mixing(graphs)
        for name in graphs:
            get_graph(name).check_model(loaded)
    begin = beginning_token(tokenizer)
    prefix = begin[0] if begin else ""
    texts = [prefix + s.text for s in items]
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    prompts = [tokenizer(text, add_special_tokens=True)["input_ids"] for text in texts]
    scores = signed_scores(loaded, prompts, [s.plural for s in items], pairs)
    seconds["scores"] = time.perf_counter() - start

    start = time.perf_counter()
    done = [0]

    def step(_done: int, _total: int) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], len(items))

    want_cuts = bool(cuts and "flow" in names)  # evaluate keeps what its flow solve found: no second solve
    parts = {}
    for plural in (True, False):
        chosen = [i for i, s in enumerate(items) if s.plural == plural]
        contrast = items[chosen[0]].contrast if chosen else None
        if not chosen:
            continue
        parts[plural] = (chosen, evaluate(  # one pass and one set of yardsticks per sentence for every graph
            [texts[i] for i in chosen], loaded, methods=names, target=contrast,
            ground_truths=list(ground_truths), faithfulness=False, with_special_tokens=True,
            graphs=[ATTENTION, *graphs] if graphs else None, graph_methods={g: ["rollout", "flow"] for g in graphs},
            blank=blank, progress=step, flow_details=want_cuts,
        ))
    seconds["evaluate"] = time.perf_counter() - start
    evaluation = _in_sentence_order(parts, len(items))
    evaluation.target = {"spec": "are|is for plural subjects, is|are for singular ones",
                         "kind": "contrast",
                         "measure": "log p(correct form) - log p(wrong form) of the next token"}

    start = time.perf_counter()
    positions = [_word_positions(tokenizer, text, s, prefix) for text, s in zip(texts, items, strict=True)]
    plausibility = subject_above_attractor(evaluation, items, positions)
    cut_kinds = flow_cut_kinds(evaluation) if want_cuts else {}
    seconds["plausibility_and_cuts"] = time.perf_counter() - start
    begin_info = _beginning_scores(evaluation, begin)
    counts = [len(s.example.attractors) for s in items]
    return AgreementReproduction(
        sentences=items,
        scores={name: values.tolist() for name, values in scores.items()},
        accuracy={name: accuracy(values, counts) for name, values in scores.items()},
        evaluation=evaluation,
        plausibility=plausibility,
        cuts=cut_kinds,
        beginning=begin_info,
        seconds=seconds,
        settings={
            "n": n, "seed": seed, "model": loaded.name, "pairs": {k: list(PAIRS[k]) for k in pairs},
            "pairs_left_out": pair_notes, "blank": blank, "output": "last", "methods": names,
            "graphs": [result_key(g, m) for g in graphs for m in ("rollout", "flow")],
            "beginning_token": prefix or None, "ground_truths": list(ground_truths),
            "yardsticks": evaluation.options.get("yardsticks"),
        },
    )


def _in_sentence_order(parts: dict[bool, tuple[list[int], Any]], total: int) -> Any:
    results = [part for _, part in parts.values()]
    merged = results[0]
    slots: list[Any] = [None] * total
    for chosen, part in parts.values():
        for index, example in zip(chosen, part.examples, strict=True):
            example.index = index
            slots[index] = example
    merged.examples = slots
    return merged


def _word_positions(tokenizer: Any, text: str, sentence: AgreementSentence, prefix: str) -> list[list[int]]:
    encoded = tokenizer(sentence.text, add_special_tokens=False, return_offsets_mapping=True)
    shift = len(tokenizer(text, add_special_tokens=True)["input_ids"]) - len(encoded["input_ids"])
    return word_tokens(encoded["offset_mapping"], sentence.spans, shift)


def subject_above_attractor(evaluation: Any, items: Sequence[AgreementSentence],
                            positions: Sequence[list[list[int]]]) -> dict[str, Any]:
    """Per method (and per ground truth), how often the subject's head noun outscores every attractor noun.

    A word's score is the sum of its tokens' scores. Only sentences with an attractor count;
    ``"chance"`` is the rate of a random ranking, ``mean(1 / (attractors + 1))``.
    """
    chosen = [i for i, s in enumerate(items) if s.has_attractor]
    out: dict[str, Any] = {"n_sentences": len(chosen)}
    if not chosen:
        return out
    out["chance"] = float(np.mean([1.0 / (len(items[i].example.attractors) + 1) for i in chosen]))

    def wins(values: np.ndarray, i: int) -> bool:
        words = positions[i]
        subject = values[words[items[i].example.subject]].sum()
        return bool(all(subject > values[words[a]].sum() for a in items[i].example.attractors))

    methods = {}
    for method in evaluation.methods:
        per_layer = []
        for layer in range(evaluation.n_layers):
            per_layer.append(float(np.mean([wins(evaluation.examples[i].scores[method][layer], i) for i in chosen])))
        methods[method] = {"per_layer": per_layer, "top_layer": per_layer[-1]}
    out["methods"] = methods
    out["ground_truths"] = {
        truth: float(np.mean([wins(np.nan_to_num(evaluation.examples[i].ground_truths[truth]), i) for i in chosen]))
        for truth in evaluation.ground_truths
    }
    return out


def flow_cut_kinds(evaluation: Any, key: str = "flow") -> dict[str, Any]:
    """Per layer, the share of scored tokens whose flow into the explained output (the last position)
    is bounded at the source, at the output, or inside the graph (the kind of each token's minimum cut).

    Read from what :func:`attnflow.evaluate` solved (``evaluate(..., flow_details=True)``):
    nothing is captured or solved again.
    """
    counts = np.zeros((evaluation.n_layers, len(CUT_KINDS)))
    for example in evaluation.examples:
        kinds = example.details_of(key).kinds[:, example.content_positions]  # (L, scored tokens)
        for code in range(len(CUT_KINDS)):
            counts[:, code] += (kinds == code).sum(axis=1)
    totals = counts.sum(axis=1, keepdims=True)
    shares = counts / np.where(totals == 0, 1, totals)
    return {"kinds": list(CUT_KINDS), "per_layer": shares.tolist(), "n_tokens": int(totals[0, 0])}


def _beginning_scores(evaluation: Any, begin: tuple[str, int] | None) -> dict[str, Any]:
    """The beginning-of-sequence token's mean score per method at the top layer (it is not scored)."""
    if begin is None:
        return {"token": None}
    top = {method: float(np.mean([e.scores[method][-1][0] for e in evaluation.examples]))
           for method in evaluation.methods}
    return {"token": begin[0], "mean_top_layer_score": top}


def _cell(pair: Any) -> str:
    if pair is None or pair[0] is None:
        return "–"
    mean, sd = pair
    return f"{mean:+.2f} ± {sd:.2f}" if sd is not None else f"{mean:+.2f}"


def _share(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}"


def accuracy_table(results: dict[str, Any]) -> str:
    """Markdown: each verb pair's accuracy, overall, without and with attractors, by attractor count."""
    lines = ["| pair | overall | no attractor | with attractors | 1 attractor | 2+ attractors |",
             "|---|---:|---:|---:|---:|---:|"]
    for pair, acc in results["accuracy"].items():
        cells = [acc["overall"], acc["without_attractors"], acc["with_attractors"], acc["by_attractors"]["1"],
                 acc["by_attractors"]["2+"]]
        lines.append(f"| {pair} | " + " | ".join(f"{_share(c['accuracy'])} ({c['n']})" for c in cells) + " |")
    return "\n".join(lines)


def correlation_table(results: dict[str, Any], truth: str, layers: Sequence[int] | None = None) -> str:
    """Markdown: Spearman ρ (mean ± sd over sentences) with ``truth`` per layer, one column per method."""
    methods = results["methods"]
    rows = results["correlation"][truth]
    chosen = range(1, results["n_layers"] + 1) if layers is None else layers
    lines = ["| layer | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
    for layer in chosen:
        lines.append(f"| {layer} | " + " | ".join(_cell(rows[m][layer - 1]) for m in methods) + " |")
    return "\n".join(lines)


def plausibility_table(results: dict[str, Any], layers: Sequence[int] | None = None) -> str:
    """Markdown: how often each method puts the subject's head noun above every attractor, per layer."""
    found = results["plausibility"]
    methods = list(found["methods"])
    chosen = range(1, results["n_layers"] + 1) if layers is None else layers
    lines = ["| layer | " + " | ".join(methods) + " |", "|---:|" + "---:|" * len(methods)]
    for layer in chosen:
        lines.append(f"| {layer} | " + " | ".join(_share(found["methods"][m]["per_layer"][layer - 1])
                                             for m in methods) + " |")
    references = ", ".join(f"{truth} {_share(rate)}" for truth, rate in found["ground_truths"].items())
    lines.append("")
    lines.append(f"{found['n_sentences']} sentences with attractors; for reference {references}; "
                 f"a random ranking {_share(found['chance'])}.")
    return "\n".join(lines)


def cut_table(results: dict[str, Any], layers: Sequence[int] | None = None) -> str:
    """Markdown: per layer, the share of scored tokens whose flow is bounded at the source, the output, inside."""
    cuts = results["cuts"]
    chosen = range(1, results["n_layers"] + 1) if layers is None else layers
    lines = ["| layer | " + " | ".join(cuts["kinds"]) + " |", "|---:|" + "---:|" * len(cuts["kinds"])]
    for layer in chosen:
        lines.append(f"| {layer} | " + " | ".join(f"{v:.2f}" for v in cuts["per_layer"][layer - 1]) + " |")
    return "\n".join(lines)


def tables_markdown(results: dict[str, Any]) -> str:
    """Every table of a run (:meth:`AgreementReproduction.to_dict`), as Markdown."""
    parts = [f"# Subject-verb agreement in {results['settings']['model']} "
             f"({results['settings']['n']} sentences, seed {results['settings']['seed']})",
             "## Accuracy", accuracy_table(results)]
    for truth in results["ground_truths"]:
        parts += [f"## Spearman ρ with {truth}", correlation_table(results, truth)]
    parts += ["## Subject above every attractor", plausibility_table(results)]
    if results.get("cuts"):
        parts += ["## Flow's cuts", cut_table(results)]
    return "\n\n".join(parts) + "\n"
