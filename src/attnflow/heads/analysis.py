"""Which heads matter, and what do they do? Head analysis over a set of examples (Voita et al. 2019).

For every layer ``l`` and head ``h``, over a set of examples:

- roles by Voita et al.'s definitions, which look at where each query's *maximum*
  attention points: ``previous_max`` / ``next_max``, the share of queries whose
  maximum is on the token just before / after them (positional when at least 90 %);
  ``rare_max``, the share whose maximum is on the least frequent token (rare-word);
  and, given dependency parses, per relation the accuracy of the maximum-attention
  pointer from one word of each arc to the other against the relation's
  most-frequent-relative-position baseline (syntactic: :mod:`.syntax`);
- ``confidence``: the mean of the head's largest attention weight per query;
- ``importance``: the mean over examples of ``|dS/dxi[l, h]|``, the gradient of the
  target with respect to a mask ``xi`` that scales the head's output, at ``xi = 1``
  (Michel et al. 2019). ``S`` is the log-probability of the target class or token
  (the negative cross-entropy Michel et al. differentiate), or the cosine / norm
  for pooled-embedding targets;
- attention *shares* (the mean weight, not the maximum; attnflow's earlier role
  scores, kept under names that say so): ``previous_share``, ``next_share``,
  ``rare_share`` and ``sink_share`` (special tokens and punctuation).

Token frequencies for the rare-word scores come from a corpus the user gives, or are
counted over the examples themselves: :attr:`HeadReport.frequency_source` says which.

Scores averaged over queries are pooled over all queries of all examples (a
token-weighted mean, as Voita et al. average "over tokens in a set of sentences");
importance is a mean over examples.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..capture import load_model
from ..capture.gradients import batch_head_gradients
from ..capture.targets import resolve_target
from ..capture.text import _encode
from ..data import as_examples
from ..errors import AttnflowError
from ..io import to_jsonable, write_text_atomic
from . import roles, syntax
from .plots import plot_head_importance
from .syntax import RelationScores

#: The (L, H) arrays of a :class:`HeadReport`, in the order reports show them.
SCORES: tuple[str, ...] = (
    "importance", "relevance", "confidence", "previous_max", "next_max", "rare_max",
    "previous_share", "next_share", "rare_share", "sink_share",
)
#: The share scores and the names :func:`roles.role_labels` knows them by.
_SHARE_NAMES = {
    "previous_share": "previous_token", "next_share": "next_token", "rare_share": "rare", "sink_share": "sink",
}
FORMAT_VERSION = 2


@dataclass
class HeadReport:
    """Per-head scores over a set of examples; every array is ``(L, H)``, ``[l-1, h]`` for layer ``l``, head ``h``.

    Attributes
    ----------
    importance
        Mean ``|dS/dxi|`` over examples (Michel et al. 2019); see the module docstring.
    confidence
        Mean over queries of the head's largest attention weight.
    previous_share, next_share, rare_share, sink_share
        Mean share of attention on the previous token, the next token, the least
        frequent token, and special tokens plus punctuation.
    previous_max, next_max, rare_max
        Share of queries whose maximum attention is on the previous token, the next
        token, the least frequent token (Voita et al.'s positional and rare-word scores;
        NaN when not computed).
    relevance
        Mean over examples of each head's share of its layer's ``|gradient x head
        output|`` (the head-mask gradient at 1 is exactly the head's output times the
        gradient of ``S`` with respect to it, summed): Voita et al.'s relevance,
        normalised per layer as they do, but with gradient x output, not LRP.
    syntactic
        Per dependency relation, the :class:`~attnflow.heads.syntax.RelationScores`
        (empty without parses).
    model_name, target
        The model and the target's description.
    n_examples, n_tokens
        How many examples and tokens the scores are over.
    frequency_source, dependency_source
        Where the token frequencies and the dependency arcs came from.
    positional_threshold, rare_threshold, syntactic_margin
        The thresholds of :attr:`roles` (0.9 as Voita et al.; 0.5 and 0.1 documented choices).
    share_threshold
        The threshold of :attr:`share_roles`.

    Examples
    --------
    >>> z = np.zeros((1, 2))
    >>> r = HeadReport(np.array([[0.1, 0.9]]), z, np.array([[0.8, 0.0]]), z, z, z,
    ...                previous_max=np.array([[0.95, 0.1]]), next_max=z, rare_max=np.array([[0.0, 0.6]]))
    >>> r.roles.tolist(), r.share_roles.tolist(), r.top(1)[0]["head"]
    ([['previous', 'rare']], [['previous', '']], 2)
    """

    importance: np.ndarray
    confidence: np.ndarray
    previous_share: np.ndarray
    next_share: np.ndarray
    rare_share: np.ndarray
    sink_share: np.ndarray
    previous_max: np.ndarray | None = None
    next_max: np.ndarray | None = None
    rare_max: np.ndarray | None = None
    relevance: np.ndarray | None = None
    syntactic: dict[str, RelationScores] = field(default_factory=dict)
    model_name: str = ""
    target: dict[str, Any] = field(default_factory=dict)
    n_examples: int = 0
    n_tokens: int = 0
    frequency_source: str = ""
    dependency_source: str = ""
    positional_threshold: float = roles.POSITIONAL_THRESHOLD
    rare_threshold: float = roles.RARE_THRESHOLD
    syntactic_margin: float = roles.SYNTACTIC_MARGIN
    share_threshold: float = roles.DEFAULT_ROLE_THRESHOLD

    def __post_init__(self) -> None:
        shape = np.asarray(self.importance).shape
        for name in SCORES:
            raw = getattr(self, name)
            value = np.full(shape, np.nan) if raw is None else np.asarray(raw, dtype=np.float64)
            if value.ndim != 2:
                raise AttnflowError(f"HeadReport.{name} must be an (L, H) array; got shape {value.shape}.")
            if value.shape != shape:
                raise AttnflowError(f"HeadReport.{name} has shape {value.shape}; the importance has {shape}.")
            setattr(self, name, value)
        for name in ("positional_threshold", "rare_threshold", "share_threshold"):
            roles._check_fraction(name, getattr(self, name))
        if not 0.0 <= float(self.syntactic_margin) <= 1.0:
            raise AttnflowError(f"The 'syntactic_margin' must be in [0, 1]; got {self.syntactic_margin!r}.")

    @property
    def n_layers(self) -> int:
        return int(self.importance.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.importance.shape[1])

    def role_lists(self) -> list[list[list[str]]]:
        """Every head's roles by Voita et al.'s definitions, ``[layer][head]`` lists of labels.

        In order: ``"previous"`` or ``"next"`` (positional: the maximum attention on that
        adjacent token in at least ``positional_threshold`` of the queries), ``"rare"``
        (on the least frequent token in at least ``rare_threshold``), then each
        relation the head is syntactic for (accuracy at least ``syntactic_margin`` above
        the relation's baseline), the largest gain first.
        """
        positional = roles.positional_labels(self.previous_max, self.next_max, self.positional_threshold)
        rare = np.nan_to_num(self.rare_max, nan=-1.0) >= self.rare_threshold
        gains = {name: scores.gain() for name, scores in self.syntactic.items()}
        out = []
        for layer in range(self.n_layers):
            row = []
            for head in range(self.n_heads):
                labels = [positional[layer, head]] if positional[layer, head] else []
                if rare[layer, head]:
                    labels.append("rare")
                found = [(g[layer, head], name) for name, g in gains.items()
                         if g[layer, head] >= self.syntactic_margin - 1e-12]
                labels += [name for _, name in sorted(found, key=lambda item: (-item[0], item[1]))]
                row.append(labels)
            out.append(row)
        return out

    @property
    def roles(self) -> np.ndarray:
        """``(L, H)`` strings: each head's roles (:meth:`role_lists`) joined by ``","``; ``""`` for none."""
        out = np.empty((self.n_layers, self.n_heads), dtype=object)
        for layer, row in enumerate(self.role_lists()):
            for head, labels in enumerate(row):
                out[layer, head] = ",".join(labels)
        return out

    @property
    def share_roles(self) -> np.ndarray:
        """``(L, H)`` labels from the attention *shares*: ``"previous"``, ``"next"``, ``"rare"``, ``"sink"`` or ``""``,
        the largest share when it is at least ``share_threshold`` (attnflow's earlier, non-Voita roles)."""
        return roles.role_labels(
            {short: getattr(self, name) for name, short in _SHARE_NAMES.items()}, threshold=self.share_threshold
        )

    def syntactic_heads(self, relation: str) -> list[tuple[int, int]]:
        """``(layer, head)`` pairs, numbered from 1, that are syntactic for ``relation``, the largest gain first."""
        if relation not in self.syntactic:
            raise AttnflowError(
                f"The relation {relation!r} was not scored; scored: {', '.join(self.syntactic) or 'none'}."
            )
        gain = self.syntactic[relation].gain()
        values = gain.ravel()
        order = np.argsort(-values, kind="stable")
        flat = [int(i) for i in order if values[i] >= self.syntactic_margin - 1e-12]
        return [(i // self.n_heads + 1, i % self.n_heads + 1) for i in flat]

    def top(self, k: int = 5, by: str = "importance") -> list[dict[str, Any]]:
        """The ``k`` heads with the highest ``by`` score, best first; layers and heads numbered from 1.

        Each entry: ``layer``, ``head``, ``role`` and every score.
        """
        if by not in SCORES:
            raise AttnflowError(f"The 'by' parameter must be one of {', '.join(SCORES)}; got {by!r} instead.")
        values = np.nan_to_num(getattr(self, by), nan=-np.inf).ravel()
        order = np.argsort(-values, kind="stable")[: max(0, int(k))]
        labels = self.roles
        out = []
        for flat in order:
            layer, head = divmod(int(flat), self.n_heads)
            entry: dict[str, Any] = {"layer": layer + 1, "head": head + 1, "role": labels[layer, head]}
            entry.update({name: _number(getattr(self, name)[layer, head]) for name in SCORES})
            entry["syntactic_gain"] = {name: _number(s.gain()[layer, head]) for name, s in self.syntactic.items()}
            out.append(entry)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as ``null``); arrays as ``[layer][head]`` lists, layer 1 first."""
        return {
            "format": "attnflow.heads",
            "version": FORMAT_VERSION,
            "model": self.model_name,
            "target": to_jsonable(self.target),
            "n_examples": self.n_examples,
            "n_tokens": self.n_tokens,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "frequency_source": self.frequency_source,
            "dependency_source": self.dependency_source,
            "thresholds": {
                "positional": self.positional_threshold,
                "rare": self.rare_threshold,
                "syntactic_margin": self.syntactic_margin,
                "share": self.share_threshold,
            },
            "importance_definition": "mean over examples of |dS/dxi|, xi a mask scaling the head's output, S the "
            "target's log-probability (cosine / norm for pooled targets); Michel et al. 2019",
            "relevance_definition": "mean over examples of |dS/dxi[l, h]| / sum over the heads h' of layer l of "
            "|dS/dxi[l, h']|: gradient x head output, normalised per layer (Voita et al. use LRP instead)",
            "role_definitions": {
                "previous/next": "maximum attention on the token just before/after the query in at least "
                "thresholds.positional of the queries (Voita et al. 2019: 90 %)",
                "rare": "maximum attention on the least frequent token in at least thresholds.rare of the queries",
                "RELATION": "accuracy of the maximum-attention pointer from one word of the relation's arcs to the "
                "other, in its better direction, at least thresholds.syntactic_margin above the baseline of always "
                "pointing to the relation's most frequent relative position",
                "share_roles": "the largest mean attention share (previous, next, rare, sink) when at least "
                "thresholds.share: not Voita et al.'s definition",
            },
            "scores": {name: [[_number(v) for v in row] for row in getattr(self, name)] for name in SCORES},
            "roles": self.role_lists(),
            "share_roles": self.share_roles.tolist(),
            "syntactic": {
                name: {**scores.to_dict(), "syntactic_heads": [list(p) for p in self.syntactic_heads(name)]}
                for name, scores in self.syntactic.items()
            },
            "top": self.top(10),
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """:meth:`to_dict` as JSON text; also written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:

            write_text_atomic(path, text + "\n")
        return text

    def plot(self, ax: Any = None) -> Any:
        """The ``L x H`` importance heatmap with role labels (needs matplotlib); see :func:`plot_head_importance`."""

        return plot_head_importance(self, ax=ax)


def token_counts(
    frequencies: Mapping[str, float] | str | os.PathLike[str] | None, loaded: Any, token_lists: list[list[str]]
) -> tuple[Mapping[str, float], str]:
    """The token frequencies of the rare-word score and a sentence saying where they came from.

    ``None``: counted over ``token_lists`` (the examples' non-special tokens);
    a mapping: used as given (tokens as the tokenizer writes them; missing ones count 0);
    a path: a UTF-8 text corpus, tokenized line by line with the model's tokenizer.
    """
    if frequencies is None:
        counts = Counter(token for tokens in token_lists for token in tokens)
        total = sum(counts.values())
        return counts, f"counted over the data set itself ({len(token_lists)} examples, {total} tokens)"
    if isinstance(frequencies, Mapping):
        return frequencies, f"given by the user ({len(frequencies)} tokens)"
    if isinstance(frequencies, (str, os.PathLike)):
        path = Path(frequencies)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AttnflowError(f"Cannot read the frequency corpus {str(path)!r}: {exc}") from None
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            if line.strip():
                ids = loaded.tokenizer(line, add_special_tokens=False)["input_ids"]
                counts.update(loaded.tokenizer.convert_ids_to_tokens(ids))
        if not counts:
            raise AttnflowError(f"The frequency corpus {str(path)!r} holds no text.")
        return counts, f"counted over the corpus {str(path)!r} ({sum(counts.values())} tokens)"
    raise AttnflowError(
        "The 'frequencies' parameter must be None (count over the examples), a mapping token -> count, or the "
        f"path of a text corpus; got {type(frequencies).__name__} instead."
    )


def load_parses(dependencies: Any, texts: list[str]) -> tuple[list[Any] | None, str]:
    """The parses of the examples and a sentence saying where they came from.

    ``dependencies``: ``None`` (no syntactic roles); a sequence of
    :class:`~attnflow.heads.syntax.Parse` (or objects with a ``parse()`` method, such
    as SVA examples), one per example; ``"spacy"`` or ``"spacy:PIPELINE"`` (parse the
    texts with an installed spaCy pipeline, ``en_core_web_sm`` by default); or the path
    of a ``.conllu`` file or of a ``.jsonl`` file with ``arcs`` fields, one sentence per
    example, in order.
    """

    if dependencies is None:
        return None, ""
    if isinstance(dependencies, str) and (dependencies == "spacy" or dependencies.startswith("spacy:")):
        pipeline = dependencies.partition(":")[2] or "en_core_web_sm"
        return syntax.spacy_parses(texts, pipeline), f"parsed with the spaCy pipeline {pipeline!r}"
    if isinstance(dependencies, (str, os.PathLike)):
        path = Path(dependencies)
        if path.suffix.lower() == ".conllu":
            parses, source = syntax.read_conllu(path), f"the CoNLL-U file {str(path)!r}"
        elif path.suffix.lower() == ".jsonl":
            parses, source = syntax.parses_from_jsonl(path), f"the 'arcs' of {str(path)!r}"
        else:
            raise AttnflowError(
                f"The dependencies {str(dependencies)!r} must be a .conllu or .jsonl file, 'spacy' or "
                "'spacy:PIPELINE'."
            )
    else:
        parses = [d.parse() if hasattr(d, "parse") else d for d in dependencies]
        if not all(isinstance(p, syntax.Parse) for p in parses):
            raise AttnflowError("The 'dependencies' parameter must hold a Parse (or an SVA example) per example.")
        source = f"given parses ({len(parses)})"
    if len(parses) != len(texts):
        raise AttnflowError(
            f"The dependencies have {len(parses)} sentences but there are {len(texts)} examples; "
            "give one parse per example, in order."
        )
    return parses, source


def analyze_heads(
    examples: Any,
    model: Any = None,
    target: Any = None,
    frequencies: Mapping[str, float] | str | os.PathLike[str] | None = None,
    *,
    dependencies: Any = None,
    relations: Sequence[str] | None = None,
    tokenizer: Any = None,
    positional_threshold: float = roles.POSITIONAL_THRESHOLD,
    rare_threshold: float = roles.RARE_THRESHOLD,
    syntactic_margin: float = roles.SYNTACTIC_MARGIN,
    share_threshold: float = roles.DEFAULT_ROLE_THRESHOLD,
    truncate: bool = False,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 8,
) -> HeadReport:
    """Score every head of a model over a set of examples: importance, confidence and roles.

    Parameters
    ----------
    examples
        Texts, ``(text, label)`` pairs, dicts, a DataFrame or a ``.txt``/``.jsonl``/``.csv``
        path (as :func:`attnflow.evaluate`).
    model
        Anything :func:`attnflow.capture.load_model` accepts; ``None`` is the bundled MiniLM.
    target
        What importance is measured for: any target spec (``"predicted"``, a class,
        ``"gold"``, ``"cosine:TEXT"``, ``"norm"``, a next token); the model's default
        when ``None``.
    frequencies
        Token frequencies for the rare-word scores: ``None`` to count them over the
        examples themselves, a mapping ``token -> count``, or the path of a text corpus.
    dependencies
        Dependency parses for syntactic roles, one per example (see :func:`load_parses`);
        ``None`` leaves them out.
    relations
        The relations to score (``None``: every relation in the parses); a relation
        the parses never produce is an error.
    positional_threshold, rare_threshold, syntactic_margin
        The thresholds of the roles (:class:`HeadReport`).
    share_threshold
        The share of attention a share-based role (:attr:`HeadReport.share_roles`) needs.
    progress
        Called as ``progress(done, total)`` after each example.
    batch_size
        Examples per forward and backward pass (padded; the same numbers as one at a
        time, :func:`attnflow.capture.gradients.batch_head_gradients`).

    Returns
    -------
    HeadReport

    Examples
    --------
    >>> r = analyze_heads(["The cat sat on the mat.", "Dogs bark."], target="norm")
    >>> r.importance.shape, r.n_examples
    ((6, 12), 2)
    >>> r.frequency_source
    'counted over the data set itself (2 examples, 10 tokens)'
    """

    items = as_examples(examples)
    for name, value in (("positional_threshold", positional_threshold), ("rare_threshold", rare_threshold),
                        ("share_threshold", share_threshold)):
        roles._check_fraction(name, value)
    if isinstance(syntactic_margin, bool) or not isinstance(syntactic_margin, (int, float)) or not (
        0.0 <= float(syntactic_margin) <= 1.0
    ):
        raise AttnflowError(f"The 'syntactic_margin' parameter must be in [0, 1]; got {syntactic_margin!r} instead.")
    parses, dependency_source = load_parses(dependencies, [item.text for item in items])
    if parses is None and relations is not None:
        raise AttnflowError("The 'relations' parameter needs dependencies (a parse per example) to score them.")
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code)
    resolved = resolve_target(target, loaded)
    encoded = [_encode(loaded, item.text, truncate, index) for index, item in enumerate(items)]
    if resolved.uses_gold:
        for index, item in enumerate(items):
            try:
                resolved.resolve_label(item.label)
            except AttnflowError as exc:
                raise AttnflowError(f"Example {index} ({item.text[:40]!r}): {exc}") from None
    token_lists = []
    for enc in encoded:
        tokens = loaded.tokenizer.convert_ids_to_tokens(enc.input_ids)
        token_lists.append([t for t, special in zip(tokens, enc.special_mask, strict=True) if not special])
    counts, source = token_counts(frequencies, loaded, token_lists)
    arcs_per_example = None
    if parses is not None:
        arcs_per_example = [
            _aligned_arcs(loaded, item.text, enc, parse, index)
            for index, (item, enc, parse) in enumerate(zip(items, encoded, parses, strict=True))
        ]
        found = sorted({arc.relation for arcs in arcs_per_example for arc in arcs})
        relations = syntax.resolve_relations(relations, found)

    sums: dict[str, Any] = {}
    weights: dict[str, Any] = {}
    importance = None
    relevance = None
    n_tokens = 0
    counter = syntax.SyntacticCounter()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise AttnflowError(f"The 'batch_size' parameter must be a positive integer; got {batch_size!r} instead.")
    batch: list[Any] = []
    for index, enc in enumerate(encoded):
        if not batch:  # the next batch_size examples, in one padded forward and backward pass that binds the target
            chunk = list(zip(items[index : index + batch_size], encoded[index : index + batch_size], strict=True))
            labels = [i.label if resolved.uses_gold else None for i, _ in chunk]
            batch = batch_head_gradients(loaded, resolved, [e.input_ids for _, e in chunk],
                                         objective="log_probability", labels=labels)
        found_gradients = batch.pop(0)
        attentions = found_gradients.attentions
        n = found_gradients.n_tokens
        n_tokens += n
        gradients = np.abs(found_gradients.head_gradients)
        importance = gradients if importance is None else importance + gradients
        layer_totals = gradients.sum(axis=1, keepdims=True)
        shares = np.divide(gradients, layer_totals, out=np.zeros_like(gradients), where=layer_totals > 0)
        relevance = shares if relevance is None else relevance + shares
        special = [i for i, m in enumerate(enc.special_mask) if m]
        rare_position = roles.rarest_position(found_gradients.tokens, counts, special)
        shares = roles.role_scores(
            attentions, rare_position=rare_position, sinks=roles.sink_positions(found_gradients.tokens, special)
        )
        per_example = {_share: shares[name] for _share, name in _SHARE_NAMES.items()}
        per_example["confidence"] = roles.confidence(attentions)
        per_example["previous_max"] = roles.adjacent_max_share(attentions, -1)
        per_example["next_max"] = roles.adjacent_max_share(attentions, +1)
        per_example["rare_max"] = roles.max_share_on(attentions, rare_position)
        queries = {
            "confidence": n, "rare_share": n, "sink_share": n, "previous_share": n - 1, "next_share": n - 1,
            "previous_max": n - 1, "next_max": n - 1, "rare_max": n,
        }
        for name, value in per_example.items():
            count = queries[name] if np.all(np.isfinite(value)) else 0
            contribution = np.nan_to_num(value) * count
            sums[name] = contribution if name not in sums else sums[name] + contribution
            weights[name] = count + weights.get(name, 0)
        if arcs_per_example is not None:
            counter.add(attentions, [arc for arc in arcs_per_example[index] if arc[0] in relations])
        if progress is not None:
            progress(index + 1, len(items))
    means = {
        name: sums[name] / weights[name] if weights[name] else np.full_like(sums[name], np.nan) for name in sums
    }
    return HeadReport(
        importance=importance / len(items),
        confidence=means["confidence"],
        previous_share=means["previous_share"],
        next_share=means["next_share"],
        rare_share=means["rare_share"],
        sink_share=means["sink_share"],
        previous_max=means["previous_max"],
        next_max=means["next_max"],
        rare_max=means["rare_max"],
        relevance=relevance / len(items),
        syntactic=counter.scores(relations) if arcs_per_example is not None else {},
        model_name=loaded.name,
        target=resolved.describe(),
        n_examples=len(items),
        n_tokens=n_tokens,
        frequency_source=source,
        dependency_source=dependency_source,
        positional_threshold=float(positional_threshold),
        rare_threshold=float(rare_threshold),
        syntactic_margin=float(syntactic_margin),
        share_threshold=float(share_threshold),
    )


def _aligned_arcs(loaded: Any, text: str, enc: Any, parse: Any, index: int) -> list[Any]:
    """One example's arcs as ``(relation, head tokens, dependent tokens)``; arcs past a truncation are left out."""

    tokenizer = loaded.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise AttnflowError(
            f"Syntactic roles need a fast tokenizer (character offsets) to align words with tokens; the model "
            f"{loaded.name!r} has {type(tokenizer).__name__}."
        )
    n = len(enc.input_ids)
    offsets = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True, verbose=False)["offset_mapping"]
    offsets = [tuple(o) for o in offsets[:n]]
    try:
        words = syntax.word_tokens(text, parse.words, offsets, allow_missing=bool(getattr(enc, "truncated", False)))
    except AttnflowError as exc:
        raise AttnflowError(f"Example {index} ({text[:40]!r}): {exc}") from None
    special = [i for i, m in enumerate(enc.special_mask) if m]
    if loaded.is_decoder or not special:
        output = n - 1
    else:
        output = special[0]
    return [arc for arc in syntax.token_arcs(parse, words, output) if max(max(arc[1]), max(arc[2])) < n]


def _number(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
