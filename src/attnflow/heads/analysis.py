"""Which heads matter, and what do they do? Head analysis over a set of examples (Voita et al. 2019).

For every layer ``l`` and head ``h``, over a set of examples:

- ``confidence``: the mean of the head's largest attention weight per query;
- ``importance``: the mean over examples of ``|dS/dxi[l, h]|``, the gradient of the
  target with respect to a mask ``xi`` that scales the head's output, at ``xi = 1``
  (Michel et al. 2019). ``S`` is the log-probability of the target class or token
  (the negative cross-entropy Michel et al. differentiate), or the cosine / norm
  for pooled-embedding targets;
- role scores, the share of attention on: the previous token, the next token
  (positional heads), the least frequent token of the input (rare-word heads;
  frequencies from a corpus the user gives, or counted over the examples
  themselves: :attr:`HeadReport.frequency_source` says which), and special tokens
  and punctuation (sink heads).

Scores averaged over queries are pooled over all queries of all examples (a
token-weighted mean, as Voita et al. average "over tokens in a set of sentences");
importance is a mean over examples.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..io import to_jsonable
from . import roles

#: The (L, H) arrays of a :class:`HeadReport`, in the order reports show them.
SCORES: tuple[str, ...] = ("importance", "confidence", "previous_token", "next_token", "rare", "sink")
FORMAT_VERSION = 1


@dataclass
class HeadReport:
    """Per-head scores over a set of examples; every array is ``(L, H)``, ``[l-1, h]`` for layer ``l``, head ``h``.

    Attributes
    ----------
    importance
        Mean ``|dS/dxi|`` over examples (Michel et al. 2019); see the module docstring.
    confidence
        Mean over queries of the head's largest attention weight.
    previous_token, next_token, rare, sink
        Mean share of attention on the previous token, the next token, the least
        frequent token, and special tokens plus punctuation.
    model_name, target
        The model and the target's description.
    n_examples, n_tokens
        How many examples and tokens the scores are over.
    frequency_source
        Where the token frequencies of the rare-word score came from.
    role_threshold
        A head takes the role of its largest role score when it is at least this.

    Examples
    --------
    >>> z = np.zeros((1, 2))
    >>> r = HeadReport(np.array([[0.1, 0.9]]), z, np.array([[0.8, 0.0]]), z, z, z)
    >>> r.roles.tolist(), r.top(1)[0]["head"]
    ([['previous', '']], 2)
    """

    importance: np.ndarray
    confidence: np.ndarray
    previous_token: np.ndarray
    next_token: np.ndarray
    rare: np.ndarray
    sink: np.ndarray
    model_name: str = ""
    target: dict[str, Any] = field(default_factory=dict)
    n_examples: int = 0
    n_tokens: int = 0
    frequency_source: str = ""
    role_threshold: float = roles.DEFAULT_ROLE_THRESHOLD

    def __post_init__(self) -> None:
        shape = None
        for name in SCORES:
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim != 2:
                raise AttnflowError(f"HeadReport.{name} must be an (L, H) array; got shape {value.shape}.")
            if shape is not None and value.shape != shape:
                raise AttnflowError(f"HeadReport.{name} has shape {value.shape}; the other scores have {shape}.")
            shape = value.shape
            setattr(self, name, value)

    @property
    def n_layers(self) -> int:
        return int(self.importance.shape[0])

    @property
    def n_heads(self) -> int:
        return int(self.importance.shape[1])

    @property
    def roles(self) -> np.ndarray:
        """``(L, H)`` labels: ``"previous"``, ``"next"``, ``"rare"``, ``"sink"`` or ``""``."""
        return roles.role_labels(
            {name: getattr(self, name) for name in roles.ROLE_LABELS}, threshold=self.role_threshold
        )

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
            "role_threshold": self.role_threshold,
            "importance_definition": "mean over examples of |dS/dxi|, xi a mask scaling the head's output, S the "
            "target's log-probability (cosine / norm for pooled targets); Michel et al. 2019",
            "scores": {name: [[_number(v) for v in row] for row in getattr(self, name)] for name in SCORES},
            "roles": self.roles.tolist(),
            "top": self.top(10),
        }

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """:meth:`to_dict` as JSON text; also written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            from ..io import write_text_atomic

            write_text_atomic(path, text + "\n")
        return text

    def plot(self, ax: Any = None) -> Any:
        """The ``L x H`` importance heatmap with role labels (needs matplotlib); see :func:`plot_head_importance`."""
        from ..report.heads_plot import plot_head_importance

        return plot_head_importance(self, ax=ax)


def fusion_weights(importance: Any) -> np.ndarray:
    """Head weights for ``head_fusion`` from an ``(L, H)`` importance array.

    Negative and NaN entries count 0; a layer whose heads all weigh 0 (a layer the
    target does not depend on) gets equal weights, i.e. the plain mean.

    Examples
    --------
    >>> fusion_weights(np.array([[1.0, 3.0], [0.0, 0.0]]))
    array([[1., 3.],
           [1., 1.]])
    """
    weights = np.nan_to_num(np.asarray(importance, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if weights.ndim != 2:
        raise AttnflowError(f"The 'importance' parameter must be an (L, H) array; got shape {weights.shape}.")
    weights = np.maximum(weights, 0.0)
    empty = weights.sum(axis=1) <= 0
    weights[empty] = 1.0
    return weights


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


def analyze_heads(
    examples: Any,
    model: Any = None,
    target: Any = None,
    frequencies: Mapping[str, float] | str | os.PathLike[str] | None = None,
    *,
    tokenizer: Any = None,
    role_threshold: float = roles.DEFAULT_ROLE_THRESHOLD,
    truncate: bool = False,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
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
        Token frequencies for the rare-word score: ``None`` to count them over the
        examples themselves, a mapping ``token -> count``, or the path of a text corpus.
    role_threshold
        The share of attention a role needs to label a head.
    progress
        Called as ``progress(done, total)`` after each example.

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
    from ..capture import load_model
    from ..capture.gradients import target_gradients
    from ..capture.targets import resolve_target
    from ..capture.text import _encode
    from ..evaluate.data import as_examples

    items = as_examples(examples)
    if not 0.0 < float(role_threshold) <= 1.0:
        raise AttnflowError(f"The 'role_threshold' parameter must be in (0, 1]; got {role_threshold!r} instead.")
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

    sums: dict[str, Any] = {}
    weights: dict[str, Any] = {}
    importance = None
    n_tokens = 0
    for index, (item, enc) in enumerate(zip(items, encoded, strict=True)):
        bound = resolved.bind(loaded, enc.input_ids, item.label if resolved.uses_gold else None)
        found = target_gradients(loaded, bound, enc.input_ids, objective="log_probability")
        n = found.n_tokens
        n_tokens += n
        importance = np.abs(found.head_gradients) if importance is None else importance + np.abs(found.head_gradients)
        special = [i for i, m in enumerate(enc.special_mask) if m]
        per_example = roles.role_scores(
            found.attentions,
            rare_position=roles.rarest_position(found.tokens, counts, special),
            sinks=roles.sink_positions(found.tokens, special),
        )
        per_example["confidence"] = roles.confidence(found.attentions)
        queries = {"confidence": n, "rare": n, "sink": n, "previous_token": n - 1, "next_token": n - 1}
        for name, value in per_example.items():
            count = queries[name] if np.all(np.isfinite(value)) else 0
            contribution = np.nan_to_num(value) * count
            sums[name] = contribution if name not in sums else sums[name] + contribution
            weights[name] = count + weights.get(name, 0)
        if progress is not None:
            progress(index + 1, len(items))
    means = {
        name: sums[name] / weights[name] if weights[name] else np.full_like(sums[name], np.nan) for name in sums
    }
    return HeadReport(
        importance=importance / len(items),
        confidence=means["confidence"],
        previous_token=means["previous_token"],
        next_token=means["next_token"],
        rare=means["rare"],
        sink=means["sink"],
        model_name=loaded.name,
        target=resolved.describe(),
        n_examples=len(items),
        n_tokens=n_tokens,
        frequency_source=source,
        role_threshold=float(role_threshold),
    )


def _number(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
