"""Words, not pieces: group subword tokens into words and sum their scores.

The rule (the same for WordPiece, byte-level BPE and SentencePiece tokenizers):

- a **word** is a maximal run of pieces that no whitespace separates in the text:
  a piece joins the word before it when it starts right where the previous piece
  ends, neither of them touching whitespace there. ``"don't"`` is one word
  (WordPiece writes ``don ' t``), ``"world,"`` is one word (the comma joins the
  word it follows), ``"New York"`` is two;
- a special token (``[CLS]``, ``<s>``, ...) is a group of its own, and so is a
  piece that is only whitespace (a newline token): neither is part of a word;
- when a prompt and a generated answer are joined, no word spans the boundary;
- a word's **score** is the sum of its pieces' scores (rollout's shares of a word
  are the shares of its pieces added up, so they still sum to one over the groups).

Where the pieces lie in the text comes from the tokenizer's character offsets
(fast tokenizers) for the text it encoded, and otherwise from decoding the ids
piece by piece (a generated answer has ids, no text): the piece's text is what
decoding one more id adds. WordPiece's ``##`` marks, byte-level BPE's ``Ġ`` and
SentencePiece's ``▁`` are thereby read the way the tokenizer's own decoder reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import AttnflowError

#: The grouping rule, as recorded in every explanation with words.
WORD_RULE = (
    "a word is a maximal run of pieces no whitespace separates in the text; special tokens and whitespace-only "
    "pieces are groups of their own; a word's score is the sum of its pieces' scores"
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
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    ids = [int(i) for i in input_ids]
    if not ids:
        raise AttnflowError("Cannot group an empty token sequence into words.")
    pieces = tokenizer.convert_ids_to_tokens(ids)
    special = [bool(m) for m in tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)]
    boundary = prompt_length
    spans = _offset_spans(tokenizer, ids, text) if text is not None else None
    # surfaces[i]: the piece's text; joins[i]: whether piece i continues the word of piece i-1
    surfaces: list[str] = []
    joins: list[bool] = []
    known = 0 if spans is None else len(spans)
    for i in range(len(ids)):
        if i < known:
            assert spans is not None and text is not None
            start, end = spans[i]
            surface = text[start:end]
            previous = spans[i - 1] if i else None
            gap = "" if previous is None else text[previous[1] : start]
            contiguous = previous is not None and gap == "" and start >= previous[1]
        else:
            surface = _decoded_piece(tokenizer, ids, i)
            contiguous = i > 0
        joins.append(
            i > 0
            and contiguous
            and not special[i]
            and not special[i - 1]
            and i != boundary
            and bool(surface)
            and not surface[0].isspace()
            and bool(surfaces[i - 1])
            and not surfaces[i - 1][-1].isspace()
        )
        surfaces.append(surface)
    labels: list[str] = []
    groups: list[list[int]] = []
    for i, join in enumerate(joins):
        if join:
            groups[-1].append(i)
            labels[-1] += surfaces[i]
        else:
            groups.append([i])
            labels.append(surfaces[i])
    labels = [
        label.strip() if label.strip() and not special[group[0]] else pieces[group[0]]
        for label, group in zip(labels, groups, strict=True)
    ]
    return WordGroups(labels, groups)


def _offset_spans(tokenizer: Any, ids: list[int], text: str) -> list[tuple[int, int]] | None:
    """Character spans of the leading pieces of ``ids`` that encode ``text``, or ``None`` without offsets."""
    try:
        encoding = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True, verbose=False)
    except (NotImplementedError, ValueError, TypeError):  # slow tokenizers give no offsets
        return None
    mine = [int(i) for i in encoding["input_ids"]]
    count = 0
    while count < min(len(mine), len(ids)) and mine[count] == ids[count]:
        count += 1
    # only the leading pieces that are this text's encoding are placed by offsets (after a cut, or
    # past the prompt, the rest is decoded)
    return [(int(a), int(b)) for a, b in encoding["offset_mapping"][:count]]


def _decoded_piece(tokenizer: Any, ids: list[int], i: int) -> str:
    """What decoding id ``i`` adds to the ids before it (a few ids of context, so SentencePiece keeps its spaces)."""
    start = max(0, i - 4)
    before = tokenizer.decode(ids[start:i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    after = tokenizer.decode(ids[start : i + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if i > start and after.startswith(before):
        return after[len(before) :]
    if i == start:
        return after
    return tokenizer.convert_tokens_to_string([tokenizer.convert_ids_to_tokens(ids[i])])
