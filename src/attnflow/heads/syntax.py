"""Dependency arcs for syntactic heads: where they come from, how they meet the model's tokens, how heads are scored.

A :class:`Parse` is one sentence's words and its labelled arcs ``(head, dependent,
relation)``, word indices from 0. The head :data:`OUTPUT` (``-1``) stands for the
model's prediction position ([CLS] for encoders, the last token for decoders): the
SVA generator uses it for the agreement link, whose verb is not in the input.

Sources of parses:

- the SVA generator (:meth:`attnflow.tasks.sva.SVAExample.parse`), exact by construction;
- a CoNLL-U file (:func:`read_conllu`), e.g. a treebank or the output of any parser;
- spaCy (:func:`spacy_parses`), an optional extra, with an English pipeline the user
  has installed (``pip install 'attnflow[syntax]'`` and one of spaCy's official
  pipelines; none is published on PyPI by spaCy's authors, so attnflow installs none);
- a JSON-lines data file with ``arcs`` (and optionally ``words``) fields (:func:`parses_from_jsonl`).

Scoring (Voita et al. 2019): for every arc of a relation and each direction, a head
*hits* when its maximum attention from the first token of one word falls on a token
of the other word. An arc from the prediction position (:data:`OUTPUT`) is scored in
one direction only, from that position to the word: the other way would reward every
head that parks its attention on [CLS] (a sink), not the link. A head's accuracy is
the share of arcs it hits; the relation's baseline always predicts the token at the
most frequent relative position (in tokens) for that relation and direction. A head is
syntactic for the relation when, in a scored direction, its accuracy beats the
baseline by at least a margin.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..data import read_jsonl
from ..errors import AttnflowError
from . import roles

#: The head index of an arc that starts at the model's prediction position.
OUTPUT = -1
#: The relations the issue of syntactic heads names first (Voita et al. report them).
VOITA_RELATIONS: tuple[str, ...] = ("nsubj", "dobj", "amod", "advmod")
#: Relation names that mean the same in the two common English label sets (UD and ClearNLP/spaCy).
ALIASES: dict[str, str] = {"obj": "dobj", "dobj": "obj"}
SPACY_HINT = (
    "install spaCy (pip install 'attnflow[syntax]') and one of spaCy's official English pipelines "
    "(python -m spacy download en_core_web_sm), or give the arcs as a CoNLL-U file"
)


@dataclass(frozen=True)
class Parse:
    """One sentence's words and dependency arcs ``(head, dependent, relation)`` (word indices; head may be OUTPUT).

    Examples
    --------
    >>> p = Parse(("the", "dog", "sleeps"), ((1, 0, "det"), (2, 1, "nsubj")))
    >>> p.relations, p.text
    (('det', 'nsubj'), 'the dog sleeps')
    """

    words: tuple[str, ...]
    arcs: tuple[tuple[int, int, str], ...] = ()

    def __post_init__(self) -> None:
        n = len(self.words)
        for arc in self.arcs:
            head, dependent, relation = arc
            if not (head == OUTPUT or 0 <= head < n) or not 0 <= dependent < n or not str(relation):
                raise AttnflowError(f"The arc {tuple(arc)!r} does not fit a sentence of {n} words.")

    @property
    def text(self) -> str:
        """The words joined by single spaces."""
        return " ".join(self.words)

    @property
    def relations(self) -> tuple[str, ...]:
        """The relations of the arcs, sorted, each once."""
        return tuple(sorted({arc[2] for arc in self.arcs}))


# --------------------------------------------------------------------------- sources


def read_conllu(path: str | os.PathLike[str]) -> list[Parse]:
    """The sentences of a CoNLL-U file: FORM as the words, HEAD and DEPREL as the arcs (the root arc left out).

    Multiword-token ranges (``1-2``) and empty nodes (``1.1``) are skipped; comments are ignored.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "s.conllu"
    >>> _ = f.write_text("# text = Dogs bark\\n1\\tDogs\\tdog\\tNOUN\\t_\\t_\\t2\\tnsubj\\t_\\t_\\n"
    ...                  "2\\tbark\\tbark\\tVERB\\t_\\t_\\t0\\troot\\t_\\t_\\n\\n")
    >>> read_conllu(f)
    [Parse(words=('Dogs', 'bark'), arcs=((1, 0, 'nsubj'),))]
    """
    file = Path(path)
    try:
        content = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AttnflowError(f"Cannot read the CoNLL-U file {os.fspath(path)!r}: {exc}") from None
    parses: list[Parse] = []
    rows: list[tuple[int, list[str]]] = []

    def close() -> None:
        if not rows:
            return
        ids = [int(fields[0]) for _, fields in rows]
        if ids != list(range(1, len(ids) + 1)):
            raise AttnflowError(f"{file.name} line {rows[0][0]}: word ids must run 1, 2, 3, ...; got {ids}.")
        words = tuple(fields[1] for _, fields in rows)
        arcs = []
        for line, fields in rows:
            try:
                head = int(fields[6])
            except ValueError:
                raise AttnflowError(f"{file.name} line {line}: HEAD must be a number; got {fields[6]!r}.") from None
            if not 0 <= head <= len(words):
                raise AttnflowError(f"{file.name} line {line}: HEAD {head} is not a word of the sentence.")
            if head:
                arcs.append((head - 1, int(fields[0]) - 1, fields[7]))
        parses.append(Parse(words, tuple(arcs)))
        rows.clear()

    for number, raw in enumerate(content.split("\n"), start=1):  # not splitlines: U+2028 is no line break
        line = raw.rstrip("\r\n")
        if not line.strip():
            close()
            continue
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise AttnflowError(
                f"{file.name} line {number}: a CoNLL-U word line has 10 tab-separated fields; got {len(fields)}."
            )
        if "-" in fields[0] or "." in fields[0]:
            continue
        if not fields[0].isdigit():
            raise AttnflowError(f"{file.name} line {number}: ID must be a number; got {fields[0]!r}.")
        rows.append((number, fields))
    close()
    if not parses:
        raise AttnflowError(f"The CoNLL-U file {os.fspath(path)!r} holds no sentence.")
    return parses


def parses_from_records(records: Sequence[Mapping[str, Any]], where: str = "the data") -> list[Parse]:
    """Parses from records with an ``arcs`` field (``[[head, dependent, relation], ...]``, head ``-1`` = OUTPUT)
    and a ``words`` list or a ``text`` (split on whitespace).

    Examples
    --------
    >>> parses_from_records([{"text": "the dog", "arcs": [[1, 0, "det"]]}])
    [Parse(words=('the', 'dog'), arcs=((1, 0, 'det'),))]
    """
    parses = []
    for index, record in enumerate(records):
        if "arcs" not in record:
            raise AttnflowError(
                f"Record {index} of {where} has no 'arcs' field: syntactic roles need each example's dependency "
                "arcs (write SVA data with sva.write_jsonl(..., arcs=True), or give a CoNLL-U file)."
            )
        words = record.get("words")
        words = tuple(str(w) for w in words) if words is not None else tuple(str(record.get("text", "")).split())
        try:
            arcs = tuple((int(h), int(d), str(r)) for h, d, r in record["arcs"])
        except (TypeError, ValueError):
            raise AttnflowError(
                f"Record {index} of {where}: 'arcs' must be a list of [head, dependent, relation]."
            ) from None
        try:
            parses.append(Parse(words, arcs))
        except AttnflowError as exc:
            raise AttnflowError(f"Record {index} of {where}: {exc}") from None
    return parses


def parses_from_jsonl(path: str | os.PathLike[str]) -> list[Parse]:
    """:func:`parses_from_records` on a JSON-lines file (blank lines skipped)."""

    records = [record for _, record in read_jsonl(path)]
    return parses_from_records(records, repr(os.fspath(path)))


def spacy_parses(texts: Iterable[str], pipeline: str = "en_core_web_sm") -> list[Parse]:
    """Parse texts with an installed spaCy pipeline: its tokens as the words, ``token.dep_`` as the relations.

    Raises AttnflowError, saying how to install them, when spaCy or the pipeline is missing.
    """
    try:
        import spacy  # type: ignore[import-not-found]
    except ImportError:
        raise AttnflowError(f"Syntactic roles on arbitrary text need a dependency parser: {SPACY_HINT}.") from None
    try:
        nlp = spacy.load(pipeline)
    except (OSError, ImportError, ValueError) as exc:
        raise AttnflowError(
            f"spaCy cannot load the pipeline {pipeline!r} ({str(exc).splitlines()[0][:120]}): {SPACY_HINT}."
        ) from None
    if "parser" not in getattr(nlp, "pipe_names", ()):
        raise AttnflowError(f"The spaCy pipeline {pipeline!r} has no dependency parser: {SPACY_HINT}.")
    parses = []
    for text in texts:
        doc = nlp(text)
        words = tuple(token.text for token in doc)
        arcs = tuple((token.head.i, token.i, token.dep_) for token in doc if token.head.i != token.i)
        parses.append(Parse(words, arcs))
    return parses


# --------------------------------------------------------------------------- words to tokens


def word_tokens(
    text: str, words: Sequence[str], offsets: Sequence[tuple[int, int]], *, allow_missing: bool = False
) -> list[tuple[int, ...]]:
    """The token positions of each word: tokens whose character span overlaps the word's span in ``text``.

    Words are found left to right in ``text``; ``offsets`` are the tokenizer's
    ``(start, end)`` character spans, ``(0, 0)`` for special tokens. A word that covers
    no token (cut off by truncation) is an error, or ``()`` with ``allow_missing``.

    Examples
    --------
    >>> word_tokens("the dogs", ["the", "dogs"], [(0, 0), (0, 3), (4, 7), (7, 8), (0, 0)])
    [(1,), (2, 3)]
    """
    spans = []
    cursor = 0
    for word in words:
        start = text.find(word, cursor)
        if start < 0:
            raise AttnflowError(f"The word {word!r} of the parse is not in the text {text[:60]!r} (after {cursor}).")
        spans.append((start, start + len(word)))
        cursor = start + len(word)
    out = []
    for (start, end), word in zip(spans, words, strict=True):
        tokens = tuple(i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start)
        if not tokens and not allow_missing:
            raise AttnflowError(f"The word {word!r} of the parse covers no token of the model's tokenizer.")
        out.append(tokens)
    return out


class TokenArc(NamedTuple):
    """One arc on the model's tokens; ``from_output`` when its head is the prediction position."""

    relation: str
    head: tuple[int, ...]
    dependent: tuple[int, ...]
    from_output: bool = False


def token_arcs(parse: Parse, words: Sequence[tuple[int, ...]], output_position: int) -> list[TokenArc]:
    """``(relation, head tokens, dependent tokens, from_output)`` per arc; the OUTPUT head is ``(output_position,)``.

    Arcs with a word that has no tokens (``()``, see :func:`word_tokens`) are left out.

    Examples
    --------
    >>> [tuple(a) for a in token_arcs(Parse(("a", "b"), ((1, 0, "det"), (-1, 1, "agreement"))), [(1,), (2, 3)], 0)]
    [('det', (2, 3), (1,), False), ('agreement', (0,), (2, 3), True)]
    """
    out = []
    for head, dependent, relation in parse.arcs:
        head_tokens = (int(output_position),) if head == OUTPUT else tuple(words[head])
        if head_tokens and words[dependent]:
            out.append(TokenArc(relation, head_tokens, tuple(words[dependent]), head == OUTPUT))
    return out


# --------------------------------------------------------------------------- scores


@dataclass
class RelationScores:
    """How well each head's maximum attention follows one relation, per direction.

    ``accuracy[direction]`` is ``(L, H)``, the share of the relation's arcs whose other
    word the head's maximum attention points to; ``baseline[direction]`` the share the
    most frequent relative position ``offset[direction]`` (in tokens) gets right. A
    direction that was not scored (``dependent->head`` of arcs from the prediction
    position) has NaN accuracies and baseline and offset ``None``.

    Examples
    --------
    >>> acc = {d: np.array([[0.9, 0.2]]) for d in roles.DIRECTIONS}
    >>> r = RelationScores("det", 10, acc, {d: 0.5 for d in roles.DIRECTIONS}, {d: 1 for d in roles.DIRECTIONS})
    >>> r.gain().tolist(), r.is_syntactic(0.1).tolist()
    ([[0.4, -0.3]], [[True, False]])
    """

    relation: str
    n_arcs: int
    accuracy: dict[str, np.ndarray]
    baseline: dict[str, float]
    offset: dict[str, int | None]

    def _gains(self) -> np.ndarray:
        stacked = np.stack([self.accuracy[d] - self.baseline[d] for d in roles.DIRECTIONS])
        return np.nan_to_num(stacked, nan=-np.inf)

    def gain(self) -> np.ndarray:
        """``(L, H)``: the larger, over the scored directions, of accuracy minus that direction's baseline."""
        return self._gains().max(axis=0)

    def direction(self) -> np.ndarray:
        """``(L, H)``: the direction in which each head beats the baseline by more."""
        return np.array(roles.DIRECTIONS, dtype=object)[self._gains().argmax(axis=0)]

    def is_syntactic(self, margin: float = roles.SYNTACTIC_MARGIN) -> np.ndarray:
        """``(L, H)`` booleans: the head beats the baseline by at least ``margin`` in some direction."""
        return self.gain() >= float(margin) - 1e-12

    def to_dict(self) -> dict[str, Any]:
        def number(value: float) -> float | None:
            return None if not np.isfinite(value) else round(float(value), 6)

        return {
            "relation": self.relation,
            "n_arcs": self.n_arcs,
            "baseline": {d: number(v) for d, v in self.baseline.items()},
            "baseline_offset": dict(self.offset),
            "accuracy": {d: [[number(v) for v in row] for row in self.accuracy[d]] for d in roles.DIRECTIONS},
        }


class SyntacticCounter:
    """Accumulates, example by example, the hits of every head on every arc (see the module docstring).

    Examples
    --------
    >>> a = np.zeros((1, 1, 3, 3)); a[0, 0, :, 0] = 1.0   # every query points to token 0
    >>> c = SyntacticCounter(); c.add(a, [("det", (0,), (1,)), ("det", (0,), (2,))])
    >>> s = c.scores()["det"]
    >>> s.accuracy["dependent->head"].tolist(), s.baseline["dependent->head"]
    ([[1.0]], 0.5)
    """

    def __init__(self) -> None:
        self.hits: dict[tuple[str, str], np.ndarray] = {}
        self.pairs: dict[tuple[str, str], list[tuple[int, tuple[int, ...]]]] = {}

    def add(self, attentions: Any, arcs: Sequence[Sequence[Any]]) -> None:
        """Count one input's arcs ``(relation, head tokens, dependent tokens[, from_output])`` (:class:`TokenArc`)."""
        for arc in arcs:
            relation, head_tokens, dependent_tokens = arc[0], arc[1], arc[2]
            from_output = bool(arc[3]) if len(arc) > 3 else False
            for direction, query, targets in (
                ("dependent->head", dependent_tokens[0], head_tokens),
                ("head->dependent", head_tokens[0], dependent_tokens),
            ):
                if from_output and direction == "dependent->head":
                    continue
                key = (relation, direction)
                hit = roles.arc_hits(attentions, query, targets).astype(np.float64)
                self.hits[key] = hit if key not in self.hits else self.hits[key] + hit
                self.pairs.setdefault(key, []).append((int(query), tuple(int(t) for t in targets)))

    @property
    def relations(self) -> list[str]:
        return sorted({relation for relation, _ in self.hits})

    def scores(self, relations: Iterable[str] | None = None) -> dict[str, RelationScores]:
        """Per relation (all counted ones by default): accuracy, baseline and its offset per direction."""
        chosen = self.relations if relations is None else list(relations)
        out = {}
        for relation in chosen:
            accuracy: dict[str, np.ndarray] = {}
            baseline: dict[str, float] = {}
            offset: dict[str, int | None] = {}
            n_arcs = max(len(self.pairs.get((relation, d), ())) for d in roles.DIRECTIONS)
            shape = next(self.hits[(relation, d)].shape for d in roles.DIRECTIONS if (relation, d) in self.hits)
            for direction in roles.DIRECTIONS:
                pairs = self.pairs.get((relation, direction), [])
                if not pairs:
                    accuracy[direction], baseline[direction], offset[direction] = np.full(shape, np.nan), np.nan, None
                    continue
                offsets = Counter(t - q for q, targets in pairs for t in targets)
                best = min(offsets, key=lambda o: (-offsets[o], abs(o), o))
                accuracy[direction] = self.hits[(relation, direction)] / len(pairs)
                baseline[direction] = sum(q + best in targets for q, targets in pairs) / len(pairs)
                offset[direction] = int(best)
            out[relation] = RelationScores(relation, n_arcs, accuracy, baseline, offset)
        return out


def resolve_relations(wanted: Iterable[str] | None, found: Sequence[str]) -> list[str]:
    """The relations to score: ``wanted`` (aliases such as ``dobj``/``obj`` allowed) or every one ``found``.

    Examples
    --------
    >>> resolve_relations(["dobj", "det"], ["det", "obj", "nsubj"])
    ['obj', 'det']
    >>> resolve_relations(None, ["det", "obj"])
    ['det', 'obj']
    """
    if wanted is None:
        return list(found)
    out = []
    for name in wanted:
        if name in found:
            out.append(name)
        elif ALIASES.get(name) in found:
            out.append(ALIASES[name])
        else:
            raise AttnflowError(
                f"The relation {name!r} does not occur in the dependencies; they have: {', '.join(found) or 'none'}."
            )
    return out
