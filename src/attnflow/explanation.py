"""The result of ``attnflow.explain``: tokens, per-method scores and where they came from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import AttnflowError
from .io import to_jsonable

FORMAT_VERSION = 1


@dataclass
class Explanation:
    """Scores of the input tokens for one output, per method and layer.

    Attributes
    ----------
    tokens
        The ``n`` input tokens as the tokenizer writes them, special tokens included.
    scores
        ``{method: ndarray (L, n)}``; row ``l-1`` holds the scores after layer ``l``.
    output
        The explained output: a token position or ``"mean"``.
    target
        What a target-dependent method explained (``None`` when no method needs one).
    model_name
        The model's name or folder.
    special_positions
        Positions of special tokens ([CLS], [SEP], ...).
    text
        The text that was explained.
    options
        Method options used (residual, head fusion, ...).
    notes
        Things a reader should know when interpreting the scores.
    token_labels
        ``{column: [label per token]}``: short per-token annotations a method
        adds, e.g. ``"flow cut"`` (where each token's flow is bounded: ``source``,
        ``output`` or the layers of an inside cut).
    image
        For an explained image (:func:`attnflow.explain_image`), where its tokens lie:
        ``{"source", "grid": [rows, cols], "patch_positions": [...], "size": [height, width],
        "model_size": [height, width], "cropped"}``; ``None`` for text.
    solutions
        ``{method: solution}``: what a method's computation leaves for later views,
        in memory only, never written to JSON (flow: its
        :class:`~attnflow.methods.flow.FlowSolution`, whose minimum cuts the HTML
        report draws).

    Examples
    --------
    >>> e = Explanation(tokens=["a", "b"], scores={"rollout": np.array([[0.7, 0.3]])}, output=0)
    >>> e.n_layers, e.top_tokens("rollout", k=1)
    (1, [('a', 0.7)])
    """

    tokens: list[str]
    scores: dict[str, np.ndarray]
    output: int | str
    target: Any = None
    model_name: str = ""
    special_positions: tuple[int, ...] = ()
    text: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    image: dict[str, Any] | None = None
    token_labels: dict[str, list[str]] = field(default_factory=dict)
    solutions: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.tokens)
        self.scores = {name: _score_array(name, value) for name, value in self.scores.items()}
        layers = {value.shape[0] for value in self.scores.values() if value.ndim == 2}
        for name, value in self.scores.items():
            if value.ndim != 2 or value.shape[1] != n:
                raise AttnflowError(
                    f"Scores of method {name!r} must have shape (L, {n}) for {n} tokens; "
                    f"got {value.shape} instead."
                )
        if len(layers) > 1:
            raise AttnflowError(f"All methods must score the same number of layers; got {sorted(layers)}.")
        self.special_positions = tuple(int(p) for p in self.special_positions)

    @property
    def methods(self) -> list[str]:
        return list(self.scores)

    @property
    def n_layers(self) -> int:
        return next(iter(self.scores.values())).shape[0] if self.scores else 0

    def layer_scores(self, method: str, layer: int = -1) -> np.ndarray:
        """Scores ``(n,)`` of one method after layer ``layer`` (1-based; -1 is the top)."""
        if not isinstance(method, str) or method not in self.scores:
            raise AttnflowError(f"No scores for method {method!r}; this explanation has {self.methods}.")
        n_layers = self.n_layers
        if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
            raise AttnflowError(
                f"The 'layer' parameter must be an integer from 1 to {n_layers} (or -1 for the top); got {layer!r}."
            )
        index = layer - 1 if layer > 0 else n_layers + layer
        if not 0 <= index < n_layers:
            raise AttnflowError(
                f"The 'layer' parameter must be from 1 to {n_layers} (or -1 for the top); got {layer}."
            )
        return self.scores[method][index]

    def top_tokens(self, method: str, layer: int = -1, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` highest-scoring tokens of one method and layer."""
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or k < 0:
            raise AttnflowError(f"The 'k' parameter must be an integer >= 0; got {k!r}.")
        values = self.layer_scores(method, layer)
        order = np.argsort(-values, kind="stable")[:k]
        return [(self.tokens[i], round(float(values[i]), 12)) for i in order]

    def grid_scores(self, method: str, layer: int = -1) -> np.ndarray:
        """For an image: one method's patch scores after ``layer`` on the patch grid, ``(rows, cols)``.

        Examples
        --------
        >>> e = Explanation(tokens=["[CLS]", "p0", "p1"], scores={"raw": np.array([[0.5, 0.2, 0.3]])}, output=0,
        ...                 image={"grid": [1, 2], "patch_positions": [1, 2]})
        >>> e.grid_scores("raw")
        array([[0.2, 0.3]])
        """
        if not self.image:
            raise AttnflowError("This explanation is not about an image; it has no patch grid.")
        from .report.image import patch_scores

        return patch_scores(self.layer_scores(method, layer), self.image["patch_positions"], self.image["grid"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``Explanation.from_dict`` reverses it."""
        extra: dict[str, Any] = {} if self.image is None else {"image": to_jsonable(self.image)}
        if self.token_labels:
            extra["token_labels"] = {name: list(labels) for name, labels in self.token_labels.items()}
        return {
            "format": "attnflow.explanation",
            "version": FORMAT_VERSION,
            "text": self.text,
            "model": self.model_name,
            "tokens": list(self.tokens),
            "special_positions": list(self.special_positions),
            "output": self.output,
            "target": self.target,
            "options": to_jsonable(self.options),
            "notes": list(self.notes),
            "scores": {name: to_jsonable(value) for name, value in self.scores.items()},
            **extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        """Read :meth:`to_dict`'s output back; a newer format version, or no scores, is refused in one line.

        Examples
        --------
        >>> Explanation.from_dict({"format": "attnflow.explanation", "version": 1, "tokens": ["a"],
        ...                        "scores": {"raw": [[1.0]]}, "output": 0}).methods
        ['raw']
        """
        from .io import check_format

        if not isinstance(data, dict) or data.get("format") != "attnflow.explanation":
            raise AttnflowError("This JSON is not an attnflow explanation (missing format marker).")
        check_format(data, "attnflow.explanation", FORMAT_VERSION)
        scores = data.get("scores")
        if not isinstance(scores, dict) or not scores:
            raise AttnflowError(
                "This attnflow explanation holds no scores ('scores' must map each method to its (L, n) scores)."
            )
        if not isinstance(data.get("tokens"), list) or not all(isinstance(t, str) for t in data["tokens"]):
            raise AttnflowError("This attnflow explanation's 'tokens' must be a list of strings.")
        n = len(data["tokens"])
        output = data.get("output")
        if output != "mean" and (isinstance(output, bool) or not isinstance(output, int) or not 0 <= output < n):
            raise AttnflowError(
                f"This attnflow explanation's 'output' must be a token index from 0 to {n - 1} or 'mean'; "
                f"got {output!r}."
            )
        special = data.get("special_positions", [])
        if not isinstance(special, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p < n for p in special
        ):
            raise AttnflowError(f"This attnflow explanation's 'special_positions' must be token indices 0..{n - 1}.")
        for key, kind in (("options", dict), ("notes", list), ("text", str), ("model", str)):
            if key in data and data[key] is not None and not isinstance(data[key], kind):
                raise AttnflowError(f"This attnflow explanation's {key!r} must be a {kind.__name__}.")
        if not all(isinstance(note, str) for note in data.get("notes") or []):
            raise AttnflowError("This attnflow explanation's 'notes' must be strings.")
        labels = data.get("token_labels") or {}
        if not isinstance(labels, dict) or not all(
            isinstance(v, list) and len(v) == n and all(isinstance(x, str) for x in v) for v in labels.values()
        ):
            raise AttnflowError(f"This attnflow explanation's 'token_labels' must map names to {n} strings each.")
        return cls(
            tokens=list(data["tokens"]),
            scores={name: _score_array(name, value) for name, value in scores.items()},
            output=data["output"],
            target=data.get("target"),
            model_name=data.get("model") or "",
            special_positions=tuple(special),
            text=data.get("text") or "",
            options=data.get("options") or {},
            notes=list(data.get("notes") or []),
            image=data.get("image"),
            token_labels={str(k): list(v) for k, v in labels.items()},
        )

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the explanation to ``path`` atomically (no partial file on failure)."""
        from .io import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=False))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Explanation:
        """Read an explanation written by :meth:`to_json` (strict JSON: no NaN or Infinity)."""
        from .io import read_json

        return cls.from_dict(read_json(path, "explanation JSON"))

    def to_dataframe(self) -> Any:
        """Long table: one row per (method, layer, token) with its score.

        Columns: ``method, layer, position, token, special, score``.
        """
        import pandas as pd

        rows = []
        for method, values in self.scores.items():
            for layer_index, layer_values in enumerate(values, start=1):
                for position, (token, score) in enumerate(zip(self.tokens, layer_values, strict=True)):
                    rows.append(
                        (method, layer_index, position, token, position in self.special_positions, score)
                    )
        return pd.DataFrame(rows, columns=["method", "layer", "position", "token", "special", "score"])


def _score_array(name: str, value: Any) -> np.ndarray:
    """One method's scores as float64; ragged or non-numeric lists become one clear error (None is NaN)."""
    if isinstance(value, list):
        value = [[np.nan if v is None else v for v in row] if isinstance(row, list) else row for row in value]
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise AttnflowError(
            f"Scores of method {name!r} must be numbers in equal rows, one per layer (shape (L, n)); "
            "they are ragged or not numeric."
        ) from None
