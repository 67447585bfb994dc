"""The result of ``attnflow.explain``: tokens, per-method scores and where they came from."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import AttnflowError
from .image_maps import patch_scores
from .io import check_format, read_json, to_jsonable, write_text_atomic
from .words import WordGroups

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
        The explained output: a token position, ``"mean"``, or ``"answer"`` for a
        generated answer explained as a span (see ``generation``).
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
    generation
        For a prompt a decoder continued (:func:`attnflow.generation.explain_generation`,
        ``attnflow explain --generate N``): ``{"prompt_length": P, "answer", "answer_ids",
        "stopped", "decoding", "rule"}``; ``tokens[:P]`` are the prompt, ``tokens[P:]`` the
        answer. ``None`` otherwise.
    answer_scores
        With ``generation``: ``{method: ndarray (G, L, n)}``, the scores for each of the
        ``G`` answer tokens, explained at the position that predicted it
        (:meth:`answer_token`); ``scores`` holds their mean (``output="answer"``).
    words
        Word groups (:class:`attnflow.words.WordGroups`) when asked for (``--words``):
        :meth:`word_scores` sums the pieces' scores into words.
    bounds
        ``{method: (lower, upper)}``, each ``(L, n)`` like ``scores``: proven bounds
        around scores that are certified rather than exact (flow with
        ``--flow-tolerance``); the JSON holds them as ``METHOD_lower`` and
        ``METHOD_upper`` (``flow_lower``, ``flow_upper``).
    solutions
        ``{method: solution}``: what a method's computation leaves for later views,
        in memory only, never written to JSON (flow: its
        :class:`~attnflow.methods.flow.FlowSolution`, whose minimum cuts the HTML
        report draws).
    every_output
        ``{graph: OutputScores}``: every output's scores per graph, what the HTML report
        shows (:class:`attnflow.core.OutputScores`), when ``explain`` was asked for them
        (``every_output=``); in memory only, never written to JSON.

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
    generation: dict[str, Any] | None = None
    answer_scores: dict[str, np.ndarray] = field(default_factory=dict)
    words: Any = None
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    every_output: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if self.words is not None:

            words = self.words if isinstance(self.words, WordGroups) else WordGroups.from_dict(self.words, n)
            if words.n_tokens != n:
                raise AttnflowError(f"The word groups cover {words.n_tokens} tokens; the explanation has {n}.")
            self.words = words
        self.scores = {name: _score_array(name, value) for name, value in self.scores.items()}
        self._check_generation(n)
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

    def _check_generation(self, n: int) -> None:
        if self.generation is None:
            if self.output == "answer" or self.answer_scores:
                raise AttnflowError("Output 'answer' and answer scores need a generation (prompt length and answer).")
            return
        record = self.generation
        length = record.get("prompt_length") if isinstance(record, dict) else None
        answer = record.get("answer_ids") if isinstance(record, dict) else None
        if (
            isinstance(length, bool) or not isinstance(length, int) or not isinstance(answer, list)
            or not 1 <= length < n or length + len(answer) != n
        ):
            raise AttnflowError(
                f"An explanation's 'generation' must give 'prompt_length' P >= 1 and 'answer_ids' filling the "
                f"{n} tokens after it; got {record!r:.80}."
            )
        self.answer_scores = {name: _score_array(name, value) for name, value in self.answer_scores.items()}
        for name, value in self.answer_scores.items():
            if name not in self.scores or value.shape != (len(answer),) + self.scores[name].shape:
                raise AttnflowError(
                    f"Answer scores of method {name!r} must have shape (G, L, n) = "
                    f"{(len(answer),) + self.scores.get(name, np.zeros((0, n))).shape}; got {value.shape}."
                )

    @property
    def prompt_length(self) -> int | None:
        """``P``: how many leading tokens are the prompt, for a generated answer; else ``None``."""
        return None if self.generation is None else int(self.generation["prompt_length"])

    def answer_token(self, k: int) -> Explanation:
        """The explanation of answer token ``k`` (0-based) alone, at the position that predicted it.

        Examples
        --------
        >>> e = Explanation(tokens=["a", "b", "c"], scores={"raw": [[0.5, 0.5, 0.0]]}, output="answer",
        ...                 generation={"prompt_length": 2, "answer_ids": [7]},
        ...                 answer_scores={"raw": [[[0.5, 0.5, 0.0]]]})
        >>> e.answer_token(0).output
        1
        """
        if self.generation is None or not self.answer_scores:
            raise AttnflowError("This explanation holds no generated answer tokens (explain with generate=N).")
        count = len(self.generation["answer_ids"])
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not -count <= k < count:
            raise AttnflowError(f"The answer has {count} tokens; answer token {k!r} does not exist (0 to {count - 1}).")
        k = int(k) % count
        position = int(self.generation["prompt_length"]) - 1 + k
        target = self.target
        if isinstance(target, dict) and "token_ids" in target:
            target = {key: value for key, value in target.items()
                      if key not in ("token_ids", "log_probabilities", "logits")}
            target["token_id"] = self.target["token_ids"][k]
            for many, one in (("logits", "logit"), ("log_probabilities", "log_probability")):
                if len(self.target.get(many) or []) == count:
                    target[one] = self.target[many][k]
        options = dict(self.options)
        if isinstance(options.get("head_importance"), list) and len(options["head_importance"]) == count:
            options["head_importance"] = options["head_importance"][k]
        return Explanation(
            tokens=list(self.tokens),
            scores={name: value[k] for name, value in self.answer_scores.items()},
            output=position,
            target=target,
            model_name=self.model_name,
            special_positions=self.special_positions,
            text=self.text,
            options=options,
            notes=list(self.notes),
            generation={**self.generation, "explained": k},
            words=self.words,
        )

    def word_scores(self, method: str, layer: int = -1) -> np.ndarray:
        """Scores ``(W,)`` of one method after ``layer``, summed from pieces to words (needs ``words``).

        Examples
        --------
        >>> e = Explanation(tokens=["a", "##b"], scores={"raw": [[0.25, 0.5]]}, output=0,
        ...                 words={"labels": ["ab"], "groups": [[0, 1]]})
        >>> e.word_scores("raw").tolist()
        [0.75]
        """
        if self.words is None:
            raise AttnflowError("This explanation has no word groups; explain with words=True (CLI: --words).")
        return self.words.sum_scores(self.layer_scores(method, layer))

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

        return patch_scores(self.layer_scores(method, layer), self.image["patch_positions"], self.image["grid"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``Explanation.from_dict`` reverses it."""
        extra: dict[str, Any] = {} if self.image is None else {"image": to_jsonable(self.image)}
        if self.token_labels:
            extra["token_labels"] = {name: list(labels) for name, labels in self.token_labels.items()}
        for name, (lower, upper) in self.bounds.items():
            extra[f"{name}_lower"], extra[f"{name}_upper"] = to_jsonable(lower), to_jsonable(upper)
        if self.generation is not None:
            extra["generation"] = to_jsonable(self.generation)
            if self.answer_scores:
                extra["answer_scores"] = {name: to_jsonable(value) for name, value in self.answer_scores.items()}
        if self.words is not None:
            extra["words"] = {
                **self.words.to_dict(),
                "scores": {name: to_jsonable(self.words.sum_scores(value)) for name, value in self.scores.items()},
            }
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
        named = output in ("mean", "answer")
        if not named and (isinstance(output, bool) or not isinstance(output, int) or not 0 <= output < n):
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
        generation = data.get("generation")
        if generation is not None and not isinstance(generation, dict):
            raise AttnflowError("This attnflow explanation's 'generation' must be an object.")
        answers = data.get("answer_scores") or {}
        if not isinstance(answers, dict):
            raise AttnflowError("This attnflow explanation's 'answer_scores' must map each method to (G, L, n) scores.")
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
            generation=generation,
            answer_scores={name: _score_array(name, value) for name, value in answers.items()},
            words=data.get("words"),
            bounds=_read_bounds(data, scores),
        )

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the explanation to ``path`` atomically (no partial file on failure)."""

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=False))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Explanation:
        """Read an explanation written by :meth:`to_json` (strict JSON: no NaN or Infinity)."""

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


def _read_bounds(data: dict[str, Any], scores: dict[str, Any]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The ``METHOD_lower`` / ``METHOD_upper`` pairs of :meth:`Explanation.to_dict`, shaped like the scores."""
    bounds = {}
    for name, values in scores.items():
        if f"{name}_lower" not in data and f"{name}_upper" not in data:
            continue
        try:
            pair = tuple(np.asarray(data[f"{name}_{end}"], dtype=np.float64) for end in ("lower", "upper"))
        except (KeyError, TypeError, ValueError):
            pair = ()
        if len(pair) != 2 or any(end.shape != np.shape(values) for end in pair):
            raise AttnflowError(
                f"This attnflow explanation's '{name}_lower' and '{name}_upper' must both be numbers shaped like "
                f"its '{name}' scores."
            )
        bounds[name] = pair
    return bounds
