"""Words, not pieces: group subword tokens into words and sum their scores.

The rule (the same for WordPiece, byte-level BPE and SentencePiece tokenizers):

- the **words** are the text's whitespace-separated words (``str.split``): a
  word is the run of pieces whose characters fall in one of them. ``"don't"`` is
  one word (WordPiece writes ``don ' t``), ``"world,"`` is one word (the comma
  joins the word it follows), ``"New York"`` is two. The word marks the
  tokenizers write are read, not guessed: byte-level BPE's ``Ġ`` (``Ġke ys`` is
  ``keys``), SentencePiece's ``▁`` (``▁New`` starts a word), WordPiece's ``##``;
- a special token (``[CLS]``, ``<s>``, ``<|endoftext|>``; not ``<unk>``, which
  stands for text) is a group of its own, and so is a piece that is only
  whitespace (a lone ``Ġ`` or ``▁``, a newline ``Ċ`` or ``<0x0A>``): neither is
  part of a word;
- a piece that adds no character by itself (the first bytes of a character that
  byte fallback splits into several pieces) belongs to the word of the piece
  that completes it;
- when a prompt and a generated answer are joined, no word spans the boundary;
- a word's **score** is the sum of its pieces' scores (rollout's shares of a word
  are the shares of its pieces added up, so they still sum to one over the groups).

Where the pieces lie in the text comes from the tokenizer's character offsets
(fast tokenizers) for the text it encoded, and otherwise from decoding the ids
piece by piece (a generated answer has ids, no text): the piece's text is what
decoding one more id adds. Decoding reads BPE's ``Ġ`` and SentencePiece's ``▁``
as spaces exactly as the offsets do; WordPiece's decoder writes a space before
every piece not marked ``##``, so decoded WordPiece ids (no text given) split
``don ' t`` into three words.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .capture.chat import special_tokens_mask
from .errors import AttnflowError

#: The grouping rule, as recorded in every explanation with words.
WORD_RULE = (
    "a word is the run of pieces whose characters fall in one whitespace-separated word of the text; special "
    "tokens and whitespace-only pieces are groups of their own; a word's score is the sum of its pieces' scores"
)


@dataclass(frozen=True)
class WordGroups:
    """Token positions grouped into words.

    Attributes
    ----------
    labels
        Each group's text: the word as written (special tokens and whitespace
        pieces as the tokenizer writes them).
    groups
        Each group's token positions, ascending; together they cover ``0..n-1`` once, in order.
    rule
        The grouping rule (:data:`WORD_RULE`).

    Examples
    --------
    >>> w = WordGroups(["hello", "world"], [[0], [1, 2]])
    >>> w.n_tokens, w.sum_scores(np.array([[0.5, 0.2, 0.3]])).tolist()
    (3, [[0.5, 0.5]])
    """

    labels: list[str]
    groups: list[list[int]]
    rule: str = WORD_RULE

    def __post_init__(self) -> None:
        flat = [p for group in self.groups for p in group]
        if len(self.labels) != len(self.groups) or flat != list(range(len(flat))) or any(not g for g in self.groups):
            raise AttnflowError(
                "Word groups must give one label per group and cover the token positions 0..n-1 once, in order."
            )

    @property
    def n_tokens(self) -> int:
        return sum(len(group) for group in self.groups)

    def sum_scores(self, scores: Any) -> np.ndarray:
        """Sum token scores ``(..., n)`` into word scores ``(..., W)`` (NaN stays NaN).

        Examples
        --------
        >>> WordGroups(["a b"], [[0, 1]]).sum_scores([0.25, 0.5]).tolist()
        [0.75]
        """
        values = np.asarray(scores, dtype=np.float64)
        if values.shape[-1] != self.n_tokens:
            raise AttnflowError(
                f"Word groups cover {self.n_tokens} tokens; the scores have {values.shape[-1]} per row."
            )
        return np.stack([values[..., group].sum(axis=-1) for group in self.groups], axis=-1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"rule", "labels", "groups"}``; :meth:`from_dict` reverses it."""
        return {"rule": self.rule, "labels": list(self.labels), "groups": [list(g) for g in self.groups]}

    @classmethod
    def from_dict(cls, data: Any, n_tokens: int | None = None) -> WordGroups:
        """Read :meth:`to_dict`'s output; malformed groups are one clear error.

        Examples
        --------
        >>> WordGroups.from_dict({"labels": ["ab"], "groups": [[0, 1]]}).groups
        [[0, 1]]
        """
        try:
            labels = [str(label) for label in data["labels"]]
            groups = [[int(p) for p in group] for group in data["groups"]]
            rule = str(data.get("rule", WORD_RULE))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise AttnflowError("The 'words' entry must hold 'labels' and 'groups' (lists of positions).") from None
        words = cls(labels, groups, rule)
        if n_tokens is not None and words.n_tokens != n_tokens:
            raise AttnflowError(f"The 'words' entry covers {words.n_tokens} tokens; there are {n_tokens}.")
        return words


def word_groups(
    tokenizer: Any, input_ids: Sequence[int], text: str | None = None, *, prompt_length: int | None = None
) -> WordGroups:
    """Group the tokens ``input_ids`` into words by :data:`WORD_RULE`.

    Parameters
    ----------
    tokenizer
        The tokenizer that made the ids (a ``transformers`` tokenizer), or an
        :class:`attnflow.capture.LoadedModel`.
    input_ids
        The token ids, special tokens included.
    text
        The text whose encoding starts ``input_ids`` (the prompt): its pieces are
        placed by the tokenizer's character offsets when it gives them. Ids past
        it (a generated answer), or all ids when ``text`` is ``None``, are placed
        by decoding.
    prompt_length
        Where a generated answer starts: no word spans this position (``None``:
        no such boundary).

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> tok = load_model().tokenizer
    >>> ids = tok("Don't panic, New York!")["input_ids"]
    >>> word_groups(tok, ids, "Don't panic, New York!").labels
    ['[CLS]', "Don't", 'panic,', 'New', 'York!', '[SEP]']
    """

    mask = special_tokens_mask(tokenizer, input_ids) if input_ids else []  # a chat template's tokens too
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    ids = [int(i) for i in input_ids]
    if not ids:
        raise AttnflowError("Cannot group an empty token sequence into words.")
    n = len(ids)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    unknown = getattr(tokenizer, "unk_token_id", None)
    special = [bool(m) and ids[i] != unknown for i, m in enumerate(mask)]
    # a piece written as whitespace only (a lone Ġ or ▁, Ċ): a group of its own, whatever its offsets say
    # (SentencePiece gives the ▁ it prepends the first character's offsets; RoBERTa trims Ġ's to nothing)
    alone = [is_special or _blank_piece(piece) for is_special, piece in zip(special, pieces, strict=True)]
    boundary = prompt_length if prompt_length is not None and 0 < prompt_length < n else n
    spans = _offset_spans(tokenizer, ids[:boundary], text) if text is not None else []
    known = len(spans)
    # segments: (first, last + 1, the segment's text, each piece's (start, end) in it); no word spans two
    segments: list[tuple[int, int, str, list[tuple[int, int]]]] = []
    if known:
        segments.append((0, known, text or "", spans))
    for first, last in ((known, boundary), (boundary, n)):
        if first < last:
            segments.append((first, last, *_decoded_spans(tokenizer, ids, first, last, alone)))
    labels: list[str] = []
    groups: list[list[int]] = []
    for first, last, segment_text, segment_spans in segments:
        for group, label in _group_segment(first, segment_text, segment_spans, alone[first:last]):
            groups.append(group)
            labels.append(label if label is not None else pieces[group[0]])
    return WordGroups(labels, groups)


def _group_segment(
    first: int, text: str, spans: list[tuple[int, int]], alone: list[bool]
) -> list[tuple[list[int], str | None]]:
    """Group one segment's pieces by the whitespace-separated words of its text; ``None`` labels: the piece's own.

    ``alone[i]``: piece ``i`` is a group of its own (a special token, a whitespace piece).
    """
    word_of = [-1] * len(text)  # each character's word (-1: whitespace)
    count = -1
    for index, char in enumerate(text):
        if not char.isspace():
            if index == 0 or text[index - 1].isspace():
                count += 1
            word_of[index] = count
    # each piece: ("alone", None) for special / whitespace-only, ("word", (lo, hi)) or ("empty", None)
    kinds: list[tuple[str, tuple[int, int] | None]] = []
    for (start, end), by_itself in zip(spans, alone, strict=True):
        if by_itself:
            kinds.append(("alone", None))
            continue
        words = [word_of[c] for c in range(max(start, 0), min(end, len(text))) if word_of[c] >= 0]
        if words:
            kinds.append(("word", (min(words), max(words))))
        elif end > start:
            kinds.append(("alone", None))
        else:
            kinds.append(("empty", None))
    placed = [False] * len(text)  # characters inside some piece's span
    for start, end in spans:
        for char in range(max(start, 0), min(end, len(text))):
            placed[char] = True
    found: list[tuple[list[int], tuple[int, int] | None]] = []  # (positions, word range or None)
    pending: list[int] = []  # empty pieces waiting for the piece that completes them
    for offset, (kind, words) in enumerate(kinds):
        position = first + offset
        if kind == "empty":
            pending.append(position)
            continue
        if kind == "word" and words is not None:
            last = found[-1] if found else None
            if last is not None and last[1] is not None and words[0] <= last[1][1]:
                found[-1] = (last[0] + pending + [position], (last[1][0], max(last[1][1], words[1])))
            else:
                found.append((pending + [position], words))
            pending = []
            continue
        if pending:  # empty pieces before a special or whitespace piece: they end the word before them
            if found and found[-1][1] is not None:
                found[-1] = (found[-1][0] + pending, found[-1][1])
            else:
                found.append((pending, None))
            pending = []
        found.append(([position], None))
    if pending:
        if found and found[-1][1] is not None:
            found[-1] = (found[-1][0] + pending, found[-1][1])
        else:
            found.append((pending, None))
    result: list[tuple[list[int], str | None]] = []
    for positions, words in found:
        if words is None:
            result.append((positions, None))
            continue
        covered = [spans[p - first] for p in positions if spans[p - first][1] > spans[p - first][0]]
        start, end = min(a for a, _ in covered), max(b for _, b in covered)
        # characters of the same word that no piece covers (a combining accent an uncased tokenizer drops)
        while start > 0 and word_of[start - 1] == words[0] and not placed[start - 1]:
            start -= 1
        while end < len(text) and word_of[end] == words[1] and not placed[end]:
            end += 1
        label = text[start:end].strip()
        result.append((positions, label or None))
    return result


#: How byte-level BPE and SentencePiece write whitespace in a piece (space, tab, newlines; SentencePiece's ▁).
_WHITESPACE_MARKS = frozenset("▁ĠĉĊċČč")


def _blank_piece(piece: str) -> bool:
    """Whether a piece, as the tokenizer writes it, is whitespace only (``Ġ``, ``▁``, ``Ċ``, ``" "``)."""
    return bool(piece) and all(c.isspace() or c in _WHITESPACE_MARKS for c in piece)


def _offset_spans(tokenizer: Any, ids: list[int], text: str) -> list[tuple[int, int]]:
    """Character spans of the leading pieces of ``ids`` that encode ``text`` (none without offsets)."""
    try:
        encoding = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True, verbose=False)
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers give no offsets
        return []
    mine = [int(i) for i in encoding["input_ids"]]
    count = 0
    while count < min(len(mine), len(ids)) and mine[count] == ids[count]:
        count += 1
    # only the leading pieces that are this text's encoding are placed by offsets (after a cut, or
    # past the prompt, the rest is decoded)
    return [(int(a), int(b)) for a, b in encoding["offset_mapping"][:count]]


def _decoded_spans(
    tokenizer: Any, ids: list[int], first: int, last: int, alone: list[bool]
) -> tuple[str, list[tuple[int, int]]]:
    """The text pieces ``first..last-1`` decode to, and each piece's span in it (pieces kept alone: empty)."""
    text = ""
    spans: list[tuple[int, int]] = []
    for i in range(first, last):
        surface = "" if alone[i] else _decoded_piece(tokenizer, ids, i, first, last)
        spans.append((len(text), len(text) + len(surface)))
        text += surface
    return text, spans


#: Ids of context on each side when a piece is decoded (a character is at most 4 byte-fallback pieces).
_CONTEXT = 8


def _decoded_piece(tokenizer: Any, ids: list[int], i: int, first: int = 0, last: int | None = None) -> str:
    """What id ``i`` adds to the text the ids around it decode to (a few ids of context on each side).

    Within a window of ids, the text is that of the whole window; the ids up to ``j`` reach as far
    into it as their own decoding agrees with it (never less than the ids before them). An id that
    only starts a character (byte fallback) thereby adds nothing, and the one completing it the
    whole character; SentencePiece's spaces are read with their context.
    """
    last = len(ids) if last is None else last
    start = max(first, i - _CONTEXT)

    def decode(part: list[int]) -> str:
        return str(tokenizer.decode(part, skip_special_tokens=False, clean_up_tokenization_spaces=False))

    window = decode(ids[start : min(last, i + 1 + _CONTEXT)])
    reach = 0
    before = 0
    for j in range(start, i + 1):
        reach = max(reach, _common_prefix(decode(ids[start : j + 1]), window))
        if j == i - 1:
            before = reach
    return window[before:reach]


def _common_prefix(a: str, b: str) -> int:
    count = 0
    while count < min(len(a), len(b)) and a[count] == b[count]:
        count += 1
    return count
