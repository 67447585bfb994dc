"""Subject-verb agreement data: English-like sentences cut just before the main verb.

The paper's evidence (Abnar & Zuidema 2020, after Linzen et al. 2016) is a model that
reads the start of a sentence and predicts whether the next verb is singular or plural.
The original data set is not reachable offline, so this module generates its own from a
small, seeded grammar.

The grammar
-----------
::

    sentence  = [intro] subject_np [adverb]                       (cut before the verb)
    intro     = adverb | PREP DET [ADJ] NOUN "," | CONJ DET NOUN VERB_INTRANS ","
    np        = DET [ADJ [ADJ]] NOUN [modifier]
    modifier  = PREP np                                           (prepositional phrase)
              | REL VERB_TRANS np | REL VERB_INTRANS              (subject relative clause)
              | REL DET [ADJ] NOUN VERB_TRANS                     (object relative clause)

- Determiners are number-neutral (``the``, ``my``, ``their``, ...): only nouns and
  present-tense verbs carry number. Past-tense verbs are number-neutral.
- Every present-tense verb agrees with its own subject, so a subject relative clause
  ("the dog that chases the cats") repeats the subject's number, and an object relative
  clause ("the dog that the cats chase") repeats the attractor's.
- Nouns inside modifiers take the opposite number of the noun they modify half of the
  time: these are the *attractors* (Linzen et al.: nouns of the other number between
  the subject and the verb). Nouns in the introduction precede the subject; they are
  not attractors.
- Sentences have ``min_words`` to ``max_words`` words (5 to 30 by default); the
  vocabulary has about 370 words (:func:`vocabulary`).

Positions are *word* indices into :attr:`SVAExample.words` (0-based). With the bundled
``sva`` tokenizer, which puts ``[CLS]`` first and maps each word to one token, the token
index of word ``i`` is ``i + 1`` (:meth:`SVAExample.token_positions`).

Dependency arcs
---------------
Every example also carries the dependency arcs inside its input
(:attr:`SVAExample.arcs`, ``(head, dependent, relation)`` word indices; labels as
spaCy's English parser writes them), recorded while the sentence is built, so they are
exact: ``det`` and ``amod`` (noun -> determiner / adjective), ``prep`` (modified noun ->
preposition) and ``pobj`` (preposition -> its noun), ``relcl`` (modified noun -> the
relative clause's verb), ``nsubj`` and ``dobj`` inside relative clauses and the
introductory clause (the relative pronoun is the verb's subject in a subject relative
and its object in an object relative), ``advmod`` (verb -> adverb inside an object
relative clause), ``mark`` (the introductory clause's verb -> its conjunction) and
``agreement``: from the prediction position (head ``-1``, the ``[CLS]`` token of the
bundled model) to the subject, standing for the link to the main verb, which is not in
the input. Arcs whose head would be the missing main verb (an opening adverb or
prepositional phrase, a final adverb, the commas) are left out. Recording them draws no
random numbers: the sentences, labels and splits are those of the generator without arcs.

Splits
------
A sentence's split follows from a stable hash of its words (:func:`split_of`): 80 %
train, 10 % validation, 10 % test. Splits therefore never share a sentence, whatever the
seeds and sizes used to draw them, and test sentences drawn later with a new seed are
still unseen in training.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AttnflowError
from ..heads.syntax import Parse

if TYPE_CHECKING:  # pragma: no cover
    from ..heads.syntax import Parse

SINGULAR, PLURAL = 0, 1
#: Label index -> name, as saved in the model's ``config.id2label``.
LABELS: dict[int, str] = {SINGULAR: "singular", PLURAL: "plural"}
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Share of all possible sentences in each split (by hash).
SPLIT_FRACTIONS: dict[str, float] = {"train": 0.8, "validation": 0.1, "test": 0.1}
MIN_WORDS, MAX_WORDS = 5, 30

# --------------------------------------------------------------------------- lexicon

_NOUNS: tuple[tuple[str, str], ...] = tuple(
    tuple(pair.split("/"))  # type: ignore[misc]
    for pair in (
        "dog/dogs cat/cats key/keys cabinet/cabinets table/tables boy/boys girl/girls man/men "
        "woman/women child/children teacher/teachers student/students doctor/doctors nurse/nurses "
        "farmer/farmers author/authors painter/painters singer/singers pilot/pilots lawyer/lawyers "
        "senator/senators officer/officers soldier/soldiers king/kings queen/queens friend/friends "
        "neighbor/neighbors customer/customers manager/managers driver/drivers person/people "
        "baby/babies lady/ladies mouse/mice wolf/wolves goose/geese horse/horses bird/birds "
        "house/houses car/cars book/books letter/letters picture/pictures box/boxes bottle/bottles "
        "chair/chairs window/windows door/doors garden/gardens tree/trees flower/flowers river/rivers "
        "bridge/bridges road/roads city/cities village/villages school/schools church/churches "
        "office/offices shop/shops market/markets museum/museums library/libraries hospital/hospitals "
        "company/companies committee/committees report/reports idea/ideas story/stories song/songs "
        "game/games plan/plans rule/rules machine/machines computer/computers phone/phones "
        "knife/knives cup/cups party/parties country/countries army/armies island/islands"
    ).split()
)
_ADJECTIVES: tuple[str, ...] = tuple(
    "old new young small big large little tall short red blue green white black dark bright quiet "
    "loud happy sad angry famous strange friendly busy empty heavy rich poor clever kind brave tired "
    "broken hidden wooden modern ancient local foreign beautiful".split()
)
_DETERMINERS: tuple[str, ...] = ("the",) * 6 + tuple("my your his her our their".split())
_PREPOSITIONS: tuple[str, ...] = tuple(
    "of to near behind beside under above with without in on from for by about around across "
    "inside outside".split()
)
# (singular present, plural present, past): the past is number-neutral.
_TRANSITIVE: tuple[tuple[str, str, str], ...] = tuple(
    tuple(triple.split("/"))  # type: ignore[misc]
    for triple in (
        "likes/like/liked sees/see/saw knows/know/knew finds/find/found remembers/remember/remembered "
        "follows/follow/followed meets/meet/met helps/help/helped watches/watch/watched "
        "visits/visit/visited owns/own/owned wants/want/wanted needs/need/needed "
        "describes/describe/described mentions/mention/mentioned admires/admire/admired "
        "avoids/avoid/avoided prefers/prefer/preferred hides/hide/hid builds/build/built "
        "paints/paint/painted fixes/fix/fixed carries/carry/carried buys/buy/bought sells/sell/sold "
        "loves/love/loved hates/hate/hated"
    ).split()
)
_INTRANSITIVE: tuple[tuple[str, str, str], ...] = tuple(
    tuple(triple.split("/"))  # type: ignore[misc]
    for triple in (
        "sleeps/sleep/slept waits/wait/waited laughs/laugh/laughed arrives/arrive/arrived "
        "leaves/leave/left works/work/worked sings/sing/sang runs/run/ran smiles/smile/smiled "
        "falls/fall/fell"
    ).split()
)
_RELATIVES: tuple[str, ...] = ("that", "that", "who", "which")
_ADVERBS: tuple[str, ...] = tuple(
    "often always never also still usually sometimes rarely probably certainly clearly really".split()
)
_OPENERS: tuple[str, ...] = tuple(
    "yesterday today tonight perhaps apparently meanwhile however unfortunately luckily sadly".split()
)
_CONJUNCTIONS: tuple[str, ...] = tuple("when while because after before if although".split())

_NOUN_NUMBER: dict[str, int] = {}
for _sg, _pl in _NOUNS:
    _NOUN_NUMBER[_sg] = SINGULAR
    _NOUN_NUMBER[_pl] = PLURAL


def vocabulary() -> list[str]:
    """Every word the generator can produce, sorted, without special tokens.

    Examples
    --------
    >>> words = vocabulary()
    >>> len(words) > 300, "keys" in words, "cabinet" in words
    (True, True, True)
    """
    words: set[str] = {",", *_ADJECTIVES, *_DETERMINERS, *_PREPOSITIONS, *_RELATIVES}
    words.update(_ADVERBS, _OPENERS, _CONJUNCTIONS, _NOUN_NUMBER)
    for forms in (*_TRANSITIVE, *_INTRANSITIVE):
        words.update(forms)
    return sorted(words)


def noun_number(word: str) -> int | None:
    """``0`` (singular) or ``1`` (plural) for a noun of the grammar, ``None`` for other words.

    Examples
    --------
    >>> noun_number("keys"), noun_number("cabinet"), noun_number("the")
    (1, 0, None)
    """
    return _NOUN_NUMBER.get(word)


# --------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class SVAExample:
    """One sentence cut before its main verb, with the verb's number and where the nouns are.

    ``subject`` and ``attractors`` are word indices into ``words``; ``attractors`` are the
    nouns of the other number than the subject that stand between the subject and the
    verb, in order. ``label`` is ``0`` (singular verb) or ``1`` (plural verb).

    Examples
    --------
    >>> ex = SVAExample(("the", "keys", "to", "the", "cabinet"), 1, 1, (4,))
    >>> ex.text, ex.label_name, ex.has_attractor, ex.token_positions()
    ('the keys to the cabinet', 'plural', True, (2, (5,)))

    ``arcs`` (see the module docstring) take no part in equality: examples read back
    from records written without them still equal the generated ones.
    """

    words: tuple[str, ...]
    label: int
    subject: int
    attractors: tuple[int, ...] = ()
    arcs: tuple[tuple[int, int, str], ...] = field(default=(), compare=False)

    @property
    def text(self) -> str:
        """The sentence, words joined by single spaces."""
        return " ".join(self.words)

    @property
    def label_name(self) -> str:
        """``"singular"`` or ``"plural"``."""
        return LABELS[self.label]

    @property
    def has_attractor(self) -> bool:
        """Whether at least one attractor stands between the subject and the verb."""
        return bool(self.attractors)

    def token_positions(self, offset: int = 1) -> tuple[int, tuple[int, ...]]:
        """``(subject, attractors)`` as token indices, for a tokenizer that adds ``offset`` tokens first.

        The bundled ``sva`` tokenizer adds one (``[CLS]``) and maps each word to one token.
        """
        return self.subject + offset, tuple(a + offset for a in self.attractors)

    def parse(self) -> Parse:
        """The words and arcs as an :class:`attnflow.heads.syntax.Parse`, for syntactic roles.

        Examples
        --------
        >>> generate(1, seed=0)[0].parse().relations
        ('agreement', 'amod', 'det', 'dobj', 'nsubj', 'relcl')
        """

        return Parse(self.words, self.arcs)

    def to_record(self, *, arcs: bool = False) -> dict[str, Any]:
        """A JSON-ready dict: ``text``, ``label`` (name), ``subject``, ``attractors`` (and ``arcs`` if asked)."""
        record: dict[str, Any] = {
            "text": self.text,
            "label": self.label_name,
            "subject": self.subject,
            "attractors": list(self.attractors),
        }
        if arcs:
            record["arcs"] = [list(arc) for arc in self.arcs]
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> SVAExample:
        """The inverse of :meth:`to_record`."""
        label = record["label"]
        label_index = label if isinstance(label, int) else {v: k for k, v in LABELS.items()}[label]
        return cls(
            tuple(str(record["text"]).split()),
            int(label_index),
            int(record["subject"]),
            tuple(int(a) for a in record.get("attractors", ())),
            tuple((int(h), int(d), str(r)) for h, d, r in record.get("arcs", ())),
        )


class _Builder:
    """Accumulates words and remembers where the nouns went."""

    def __init__(self) -> None:
        self.words: list[str] = []
        # (position, number) of every noun, in order
        self.nouns: list[tuple[int, int]] = []
        # (head, dependent, relation) word indices; head -1 is the prediction position
        self.arcs: list[tuple[int, int, str]] = []

    def add(self, word: str) -> int:
        self.words.append(word)
        return len(self.words) - 1

    def arc(self, head: int, dependent: int, relation: str) -> None:
        self.arcs.append((head, dependent, relation))

    def noun(self, number: int, rng: random.Random) -> int:
        position = len(self.words)
        self.words.append(rng.choice(_NOUNS)[number])
        self.nouns.append((position, number))
        return position


def _other(number: int) -> int:
    return 1 - number


def _modifier_number(head: int, rng: random.Random) -> int:
    return _other(head) if rng.random() < 0.5 else head


def _verb(forms: tuple[str, str, str], number: int, rng: random.Random) -> str:
    return forms[2] if rng.random() < 0.3 else forms[number]


# Chance that a noun phrase at each depth gets a modifier (depth 0 is the subject).
_MODIFIER_RATE = (0.7, 0.45, 0.3)
_MAX_DEPTH = len(_MODIFIER_RATE)


def _noun_phrase(b: _Builder, number: int, depth: int, rng: random.Random) -> int:
    """Append ``DET [ADJ [ADJ]] NOUN [modifier]``; return the head noun's position."""
    det = b.add(rng.choice(_DETERMINERS))
    adjectives = []
    for _ in range(2):
        if rng.random() < 0.3:
            adjectives.append(b.add(rng.choice(_ADJECTIVES)))
        else:
            break
    head = b.noun(number, rng)
    b.arc(head, det, "det")
    for adjective in adjectives:
        b.arc(head, adjective, "amod")
    if depth < _MAX_DEPTH and rng.random() < _MODIFIER_RATE[depth]:
        _modifier(b, number, depth + 1, rng, head)
        if depth == 0 and rng.random() < 0.25:  # a second modifier on the subject
            _modifier(b, number, depth + 1, rng, head)
    return head


def _modifier(b: _Builder, head: int, depth: int, rng: random.Random, attach: int) -> None:
    """Append a modifier of the noun at position ``attach``, whose number is ``head``."""
    kind = rng.random()
    if kind < 0.5:  # prepositional phrase
        prep = b.add(rng.choice(_PREPOSITIONS))
        noun = _noun_phrase(b, _modifier_number(head, rng), depth, rng)
        b.arc(attach, prep, "prep")
        b.arc(prep, noun, "pobj")
    elif kind < 0.75:  # subject relative clause: the verb agrees with the head noun
        relative = b.add(rng.choice(_RELATIVES))
        if rng.random() < 0.2:
            verb = b.add(_verb(rng.choice(_INTRANSITIVE), head, rng))
        else:
            verb = b.add(_verb(rng.choice(_TRANSITIVE), head, rng))
            b.arc(verb, _noun_phrase(b, _modifier_number(head, rng), depth, rng), "dobj")
        b.arc(verb, relative, "nsubj")
        b.arc(attach, verb, "relcl")
    else:  # object relative clause: the verb agrees with the embedded subject
        relative = b.add(rng.choice(_RELATIVES))
        det = b.add(rng.choice(_DETERMINERS))
        adjective = b.add(rng.choice(_ADJECTIVES)) if rng.random() < 0.3 else None
        embedded = _modifier_number(head, rng)
        noun = b.noun(embedded, rng)
        adverb = b.add(rng.choice(_ADVERBS)) if rng.random() < 0.15 else None
        verb = b.add(_verb(rng.choice(_TRANSITIVE), embedded, rng))
        b.arc(noun, det, "det")
        if adjective is not None:
            b.arc(noun, adjective, "amod")
        b.arc(verb, noun, "nsubj")
        b.arc(verb, relative, "dobj")
        if adverb is not None:
            b.arc(verb, adverb, "advmod")
        b.arc(attach, verb, "relcl")


def _intro(b: _Builder, rng: random.Random) -> None:
    kind = rng.random()
    if kind < 0.4:
        b.add(rng.choice(_OPENERS))
    elif kind < 0.75:  # a prepositional phrase of the main verb: only the arcs inside it
        prep = b.add(rng.choice(_PREPOSITIONS))
        det = b.add(rng.choice(_DETERMINERS))
        adjective = b.add(rng.choice(_ADJECTIVES)) if rng.random() < 0.3 else None
        noun = b.noun(rng.randrange(2), rng)
        b.add(",")
        b.arc(noun, det, "det")
        if adjective is not None:
            b.arc(noun, adjective, "amod")
        b.arc(prep, noun, "pobj")
    else:  # an adverbial clause of the main verb: only the arcs inside it
        conjunction = b.add(rng.choice(_CONJUNCTIONS))
        det = b.add(rng.choice(_DETERMINERS))
        number = rng.randrange(2)
        noun = b.noun(number, rng)
        verb = b.add(_verb(rng.choice(_INTRANSITIVE), number, rng))
        b.add(",")
        b.arc(noun, det, "det")
        b.arc(verb, noun, "nsubj")
        b.arc(verb, conjunction, "mark")


def _sentence(rng: random.Random) -> SVAExample:
    b = _Builder()
    if rng.random() < 0.3:
        _intro(b, rng)
    n_before = len(b.nouns)
    number = rng.randrange(2)
    subject = _noun_phrase(b, number, 0, rng)
    if rng.random() < 0.15:
        b.add(rng.choice(_ADVERBS))
    attractors = tuple(pos for pos, num in b.nouns[n_before:] if pos > subject and num != number)
    b.arc(-1, subject, "agreement")
    arcs = tuple(sorted(b.arcs, key=lambda arc: (arc[1], arc[0])))
    return SVAExample(tuple(b.words), number, subject, attractors, arcs)


# --------------------------------------------------------------------------- splits


def split_of(words: str | Sequence[str]) -> str:
    """The split a sentence belongs to: ``"train"``, ``"validation"`` or ``"test"``.

    Decided by a stable hash (BLAKE2b) of the words joined by single spaces, so the same
    sentence lands in the same split on every machine and for every seed.

    Examples
    --------
    >>> split_of("the keys to the cabinet") == split_of(["the", "keys", "to", "the", "cabinet"])
    True
    >>> split_of("the keys to the cabinet") in SPLITS
    True
    """
    text = words if isinstance(words, str) else " ".join(words)
    digest = hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=8).digest()
    bucket = int.from_bytes(digest, "big") / 2.0**64
    cumulative = 0.0
    for name in SPLITS:
        cumulative += SPLIT_FRACTIONS[name]
        if bucket < cumulative:
            return name
    return SPLITS[-1]


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AttnflowError(f"The '{name}' parameter must be a non-negative integer; got {value!r} instead.")
    return value


def generate(
    n: int,
    *,
    split: str | None = "train",
    seed: int = 0,
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
    balanced: bool = True,
) -> list[SVAExample]:
    """Draw ``n`` distinct sentences of one split, reproducibly.

    Parameters
    ----------
    n
        How many examples.
    split
        ``"train"``, ``"validation"``, ``"test"`` (only sentences whose hash falls in that
        split, see :func:`split_of`) or ``None`` (any sentence).
    seed
        Seed of the generator (Python's ``random.Random``: the same on every platform).
    min_words, max_words
        Sentence length range in words, both inclusive; sentences outside it are redrawn.
    balanced
        Alternate singular and plural subjects so that exactly half (``n // 2``) are plural.

    Returns
    -------
    list of SVAExample
        No sentence appears twice.

    Raises
    ------
    AttnflowError
        For an unknown split, a negative ``n`` or an empty length range.

    Examples
    --------
    >>> data = generate(4, split="test", seed=1)
    >>> [ex.label_name for ex in data]
    ['singular', 'plural', 'singular', 'plural']
    >>> data == generate(4, split="test", seed=1)
    True
    >>> all(split_of(ex.words) == "test" for ex in data)
    True
    """
    _check_count("n", n)
    if split is not None and split not in SPLITS:
        raise AttnflowError(
            f"The 'split' parameter must be one of {', '.join(SPLITS)} or None; got {split!r} instead."
        )
    _check_count("min_words", min_words)
    _check_count("max_words", max_words)
    if not 1 <= min_words <= max_words:
        raise AttnflowError(
            f"The length range must satisfy 1 <= min_words <= max_words; got min_words={min_words}, "
            f"max_words={max_words} instead."
        )
    rng = random.Random(f"attnflow-sva:{seed}:{split}")
    seen: set[tuple[str, ...]] = set()
    out: list[SVAExample] = []
    attempts = 0
    limit = 200 * n + 10_000
    while len(out) < n:
        attempts += 1
        if attempts > limit:
            raise AttnflowError(
                f"Could only draw {len(out)} of {n} distinct sentences of {min_words} to {max_words} words; "
                "widen the length range or ask for fewer."
            )
        example = _sentence(rng)
        if balanced and example.label != len(out) % 2:
            continue
        if not min_words <= len(example.words) <= max_words or example.words in seen:
            continue
        if split is not None and split_of(example.words) != split:
            continue
        seen.add(example.words)
        out.append(example)
    return out


def make_splits(
    n_train: int, n_validation: int, n_test: int, *, seed: int = 0, **options: Any
) -> dict[str, list[SVAExample]]:
    """Train, validation and test sets that share no sentence.

    ``options`` go to :func:`generate` (``min_words``, ``max_words``, ``balanced``).

    Examples
    --------
    >>> s = make_splits(20, 5, 5, seed=0)
    >>> {name: len(data) for name, data in s.items()}
    {'train': 20, 'validation': 5, 'test': 5}
    >>> set(e.words for e in s["train"]).isdisjoint(e.words for e in s["test"])
    True
    """
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    return {name: generate(size, split=name, seed=seed, **options) for name, size in sizes.items()}


def write_jsonl(examples: Iterable[SVAExample], path: str | os.PathLike[str], *, arcs: bool = False) -> Path:
    """Write examples as JSON lines (:meth:`SVAExample.to_record`); ``attnflow evaluate`` reads the format.

    With ``arcs=True`` each line also has the dependency arcs, which ``attnflow heads
    --dependencies data`` reads for syntactic roles.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = write_jsonl(generate(2, seed=0), pathlib.Path(tempfile.mkdtemp()) / "sva.jsonl")
    >>> [SVAExample.from_record(r) for r in read_jsonl(path)] == generate(2, seed=0)
    True
    """
    path = Path(path)
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example.to_record(arcs=arcs)) + "\n")
    return path


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read the records :func:`write_jsonl` wrote."""
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
