"""Head role scores from attention arrays alone (Voita et al. 2019): no model, no torch.

Every function takes the attention of one input, ``(L, H, n, n)`` laid out
``[layer, head, query, key]``, and returns ``(L, H)``: a mean over the queries.

- :func:`confidence`: the mean of each query's largest attention weight;
- :func:`previous_token_share`, :func:`next_token_share`: the weight on the token
  just before / after the query (positional heads);
- :func:`share_on`: the weight on a set of keys: the least frequent token
  (rare-word heads) or [CLS], [SEP] and punctuation (sink heads).

:func:`role_labels` names each head's strongest role when its share passes a threshold.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..graph import as_attention_array

#: Role scores and the label each gives a head, in the order ties are broken.
ROLE_LABELS: dict[str, str] = {
    "previous_token": "previous",
    "next_token": "next",
    "rare": "rare",
    "sink": "sink",
}
#: Default share of attention above which a head is given a role.
DEFAULT_ROLE_THRESHOLD = 0.5
_SUBWORD_MARKS = ("##", "Ġ", "▁", "Ċ")


def confidence(attentions: Any) -> np.ndarray:
    """The mean, over queries, of each head's largest attention weight: ``(L, H)``.

    Examples
    --------
    >>> a = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    >>> confidence(a)
    array([[0.75]])
    """
    return as_attention_array(attentions).max(axis=-1).mean(axis=-1)


def previous_token_share(attentions: Any) -> np.ndarray:
    """The mean weight each query gives the token just before it: ``(L, H)``, over queries ``1..n-1``.

    NaN for inputs of one token.

    Examples
    --------
    >>> a = np.array([[[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]]])
    >>> previous_token_share(a)
    array([[0.75]])
    """
    array = as_attention_array(attentions)
    n = array.shape[-1]
    if n < 2:
        return np.full(array.shape[:2], np.nan)
    rows = np.arange(1, n)
    return array[..., rows, rows - 1].mean(axis=-1)


def next_token_share(attentions: Any) -> np.ndarray:
    """The mean weight each query gives the token just after it: ``(L, H)``, over queries ``0..n-2``.

    Always 0 for causal models. NaN for inputs of one token.

    Examples
    --------
    >>> a = np.array([[[[0.0, 1.0], [0.0, 1.0]]]])
    >>> next_token_share(a)
    array([[1.]])
    """
    array = as_attention_array(attentions)
    n = array.shape[-1]
    if n < 2:
        return np.full(array.shape[:2], np.nan)
    rows = np.arange(n - 1)
    return array[..., rows, rows + 1].mean(axis=-1)


def share_on(attentions: Any, positions: Iterable[int]) -> np.ndarray:
    """The mean, over queries, of the weight on the keys at ``positions``: ``(L, H)``.

    An empty set of positions gives NaN (the role cannot be judged on this input).

    Examples
    --------
    >>> a = np.array([[[[0.2, 0.8], [0.6, 0.4]]]])
    >>> share_on(a, [0])
    array([[0.4]])
    """
    array = as_attention_array(attentions)
    keys = sorted({int(p) for p in positions})
    n = array.shape[-1]
    if any(not 0 <= p < n for p in keys):
        raise AttnflowError(f"The 'positions' parameter must lie in 0..{n - 1}; got {keys}.")
    if not keys:
        return np.full(array.shape[:2], np.nan)
    return array[..., keys].sum(axis=-1).mean(axis=-1)


def is_punctuation(token: str) -> bool:
    """Whether a token (subword marks ``##``, ``Ġ``, ``▁`` removed) is made of punctuation only.

    Examples
    --------
    >>> is_punctuation("."), is_punctuation("Ġ,"), is_punctuation("##s"), is_punctuation("▁")
    (True, True, False, False)
    """
    text = token
    for mark in _SUBWORD_MARKS:
        text = text.replace(mark, "")
    text = text.strip()
    return bool(text) and all(unicodedata.category(ch).startswith("P") for ch in text)


def sink_positions(tokens: Sequence[str], special_positions: Iterable[int]) -> list[int]:
    """Positions of the tokens sink heads attend to: special tokens ([CLS], [SEP], ...) and punctuation.

    Examples
    --------
    >>> sink_positions(["[CLS]", "hi", ",", "there", "[SEP]"], (0, 4))
    [0, 2, 4]
    """
    special = {int(p) for p in special_positions}
    return [i for i, token in enumerate(tokens) if i in special or is_punctuation(token)]


def rarest_position(
    tokens: Sequence[str], counts: Mapping[str, float], special_positions: Iterable[int] = ()
) -> int | None:
    """The position of the least frequent non-special token (the first one on ties); ``None`` if there is none.

    Tokens missing from ``counts`` count 0.

    Examples
    --------
    >>> rarest_position(["[CLS]", "the", "aardvark", "the"], {"the": 50, "aardvark": 1}, (0,))
    2
    """
    special = {int(p) for p in special_positions}
    candidates = [i for i in range(len(tokens)) if i not in special]
    if not candidates:
        return None
    return min(candidates, key=lambda i: (counts.get(tokens[i], 0), i))


def role_scores(
    attentions: Any, *, rare_position: int | None = None, sinks: Iterable[int] = ()
) -> dict[str, np.ndarray]:
    """Every role score of one input: ``{"previous_token", "next_token", "rare", "sink"}``, each ``(L, H)``.

    Examples
    --------
    >>> a = np.array([[[[1.0, 0.0], [1.0, 0.0]]]])
    >>> {k: v.tolist() for k, v in role_scores(a, rare_position=1, sinks=[0]).items()}
    {'previous_token': [[1.0]], 'next_token': [[0.0]], 'rare': [[0.0]], 'sink': [[1.0]]}
    """
    array = as_attention_array(attentions)
    return {
        "previous_token": previous_token_share(array),
        "next_token": next_token_share(array),
        "rare": share_on(array, [] if rare_position is None else [rare_position]),
        "sink": share_on(array, sinks),
    }


def role_labels(scores: Mapping[str, Any], threshold: float = DEFAULT_ROLE_THRESHOLD) -> np.ndarray:
    """Each head's role: the label of its largest role score if that is at least ``threshold``, else ``""``.

    ``scores`` maps the names of :data:`ROLE_LABELS` to ``(L, H)`` arrays (NaN is ignored);
    ties go to the role listed first.

    Examples
    --------
    >>> role_labels({"previous_token": np.array([[0.9, 0.1]]), "sink": np.array([[0.05, 0.3]])}).tolist()
    [['previous', '']]
    """
    if not 0.0 < float(threshold) <= 1.0:
        raise AttnflowError(f"The 'threshold' parameter must be in (0, 1]; got {threshold!r} instead.")
    names = [name for name in ROLE_LABELS if name in scores]
    if not names:
        raise AttnflowError(f"The 'scores' parameter must hold some of {list(ROLE_LABELS)}; got {list(scores)}.")
    stacked = np.stack([np.nan_to_num(np.asarray(scores[name], dtype=np.float64), nan=-1.0) for name in names])
    best = stacked.argmax(axis=0)
    top = stacked.max(axis=0)
    labels = np.array([ROLE_LABELS[name] for name in names], dtype=object)[best]
    labels[top < threshold] = ""
    return labels


# --------------------------------------------------------------------------- Voita et al.'s definitions
#
# Voita et al. (2019) judge a head by where its *maximum* attention points, not by
# how much weight it spreads: a head is positional when its maximum attention goes to
# the same adjacent token in at least 90 % of cases, rare-word when it goes to the
# least frequent token, syntactic for a dependency relation when it points from one
# word of the relation to the other more often than the most frequent relative
# position for that relation does.

#: Voita et al.'s threshold for positional heads: the share of queries whose maximum
#: attention is on the same adjacent token.
POSITIONAL_THRESHOLD = 0.9
#: Our threshold for rare-word heads (the paper states none): the share of queries
#: whose maximum attention is on the least frequent token.
RARE_THRESHOLD = 0.5
#: The margin, in accuracy, by which a syntactic head must beat the positional
#: baseline of its relation (the paper's 10 %, read as 10 percentage points).
SYNTACTIC_MARGIN = 0.1
#: The two directions of a dependency arc a head can point along.
DIRECTIONS: tuple[str, ...] = ("dependent->head", "head->dependent")


def max_positions(attentions: Any) -> np.ndarray:
    """The key each query's maximum attention points to: ``(L, H, n)`` integers (the first key on ties).

    Examples
    --------
    >>> max_positions(np.array([[[[0.1, 0.9], [0.6, 0.4]]]])).tolist()
    [[[1, 0]]]
    """
    return as_attention_array(attentions).argmax(axis=-1)


def adjacent_max_share(attentions: Any, offset: int) -> np.ndarray:
    """The share of queries whose maximum attention is on the token at ``offset`` from them: ``(L, H)``.

    ``offset=-1`` is the previous token, ``+1`` the next; only queries that have a token
    at that offset count (NaN when none does).

    Examples
    --------
    >>> a = np.array([[[[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.2, 0.8]]]])
    >>> adjacent_max_share(a, -1)  # query 1 points to 0, query 2 to itself
    array([[0.5]])
    """
    pointers = max_positions(attentions)
    n = pointers.shape[-1]
    queries = np.arange(n)
    valid = (queries + offset >= 0) & (queries + offset < n)
    if not valid.any():
        return np.full(pointers.shape[:2], np.nan)
    return (pointers[..., valid] == (queries + offset)[valid]).mean(axis=-1)


def max_share_on(attentions: Any, position: int | None) -> np.ndarray:
    """The share of queries whose maximum attention is on the key at ``position``: ``(L, H)``; NaN for ``None``.

    Examples
    --------
    >>> max_share_on(np.array([[[[0.2, 0.8], [0.6, 0.4]]]]), 1)
    array([[0.5]])
    """
    pointers = max_positions(attentions)
    if position is None:
        return np.full(pointers.shape[:2], np.nan)
    if not 0 <= int(position) < pointers.shape[-1]:
        raise AttnflowError(f"The 'position' parameter must lie in 0..{pointers.shape[-1] - 1}; got {position}.")
    return (pointers == int(position)).mean(axis=-1)


def arc_hits(attentions: Any, query: int, targets: Sequence[int]) -> np.ndarray:
    """Whether each head's maximum attention from token ``query`` falls on one of ``targets``: ``(L, H)`` booleans.

    ``targets`` are the token positions of the other word of a dependency arc (several
    when the tokenizer split it into subwords).

    Examples
    --------
    >>> a = np.array([[[[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [1.0, 0.0, 0.0]], [[1/3] * 3] * 3]])
    >>> arc_hits(a, 1, [2]).tolist()
    [[True, False]]
    """
    pointers = max_positions(attentions)
    n = pointers.shape[-1]
    if not 0 <= int(query) < n or any(not 0 <= int(t) < n for t in targets):
        raise AttnflowError(f"Arc positions must lie in 0..{n - 1}; got query {query} and targets {list(targets)}.")
    return np.isin(pointers[..., int(query)], np.asarray(list(targets), dtype=int))


def positional_labels(
    previous: Any, following: Any, threshold: float = POSITIONAL_THRESHOLD
) -> np.ndarray:
    """``"previous"``, ``"next"`` or ``""`` per head: the adjacent token its maximum attention points to in at
    least ``threshold`` of the queries (Voita et al.: 90 %).

    Examples
    --------
    >>> positional_labels(np.array([[0.95, 0.5, 0.1]]), np.array([[0.0, 0.4, 0.92]])).tolist()
    [['previous', '', 'next']]
    """
    _check_fraction("threshold", threshold)
    prev = np.nan_to_num(np.asarray(previous, dtype=np.float64), nan=-1.0)
    nxt = np.nan_to_num(np.asarray(following, dtype=np.float64), nan=-1.0)
    labels = np.full(prev.shape, "", dtype=object)
    labels[nxt >= threshold] = "next"
    labels[prev >= threshold] = "previous"  # both cannot pass a threshold above 0.5
    return labels


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise AttnflowError(f"The '{name}' parameter must be in (0, 1]; got {value!r} instead.")
    return float(value)
