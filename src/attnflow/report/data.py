"""What a report shows, computed once: tokens, fused attention and every method's scores for every output.

The HTML page and the static figures only draw; everything they draw comes
from a :class:`ReportData`. Shapes, written once:

- ``attention``: ``(L, n, n)`` head-fused attention (no residual), ``[l-1, i, j]``
  the weight query ``i`` gives key ``j`` in layer ``l``; the edge widths of the
  layered attention graph. ``None`` when the source had no attention (an
  ``explain --json`` file).
- ``outputs``: the ``K`` output positions the page can switch between (token
  indices, and ``"mean"`` when that was asked for).
- ``scores[method]``: ``(L, K, n)``; ``[l-1, k, j]`` is input token ``j``'s score
  for output ``outputs[k]`` after layer ``l``. NaN where a method was not
  computed (flow for every output is only computed for modest inputs).
- ``shares``: ``(L, L, K, n)``; ``[l-1, m, k, j]`` is the share of output
  ``outputs[k]`` after layer ``l`` that node ``(m, j)`` (token ``j`` after layer
  ``m``, ``m = 0`` the input) carries, for ``m < l``: the route the attention
  graph highlights (:func:`attnflow.methods.rollout.node_shares`); ``[l-1, 0]``
  is the rollout. NaN above the layer and for outputs not computed.

The page receives all of these rounded to 6 decimals (:meth:`ReportData.to_dict`)
and shows them as they are: it never computes a method's scores itself.

Build it from attention arrays (:func:`report_data`), from a capture
(:func:`report_data_from_capture`), from an :class:`~attnflow.Explanation`
(:func:`report_data_from_explanation`) or from a results JSON file written by
``explain --json``, ``evaluate`` or ``reproduce`` (:func:`load_report_data`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import OutputScores, every_output_scores
from ..errors import AttnflowError
from ..explanation import Explanation
from ..graph import (
    AttentionGraph,
    HeadFusion,
    add_residual,
    as_attention_array,
    check_residual,
    fuse_heads,
    layer_list,
)
from ..io import check_format, read_json, write_text_atomic
from ..methods import get_method, node_shares
from ..methods.attribution import is_attribution
from ..methods.rollout import output_walk
from ..outputs import resolve_output
from ..words import WordGroups
from .cuts import check_flow_cuts, flow_cuts
from .evaluation import evaluation_summary
from .heads_panel import check_heads_panel

FORMAT = "attnflow.report"
FORMAT_VERSION = 1


#: The attention graph's node shares (:func:`attnflow.methods.rollout.node_shares`) are
#: embedded for every output while ``L (L + 1) / 2 * K * n`` numbers stay below this
#: (about 300 tokens for 6 layers, 160 for 12: up to ~17 MB of page), else for the
#: chosen output only.
ROUTE_ALL_OUTPUTS_BUDGET = 2e6

Progress = Callable[[int, int], None]


@dataclass
class ReportData:
    """Everything an attnflow report shows: tokens, attention, scores per method, layer and output.

    Attributes
    ----------
    tokens
        The ``n`` input tokens (empty for an evaluation-only report).
    scores
        ``{method: ndarray (L, K, n)}``: scores of every input token for each of
        the ``K`` ``outputs``, after each layer. NaN where not computed.
    outputs
        The output positions the scores are for: token indices or ``"mean"``.
    output
        The output shown first; one of ``outputs``.
    layer
        The layer shown first, 1-based.
    attention
        ``(L, n, n)`` head-fused attention for the attention graph, or ``None``.
    residual, head_fusion
        The graph's settings: ``Ahat = rownorm((1 - r) * attention + r * I)``.
    special_positions, model_name, text, is_causal, n_heads
        Where the attention came from.
    notes
        Sentences the page shows as they are (what was left out and why).
    evaluation
        The summary of an ``evaluate`` or ``reproduce`` run (its ``correlation``,
        ``faithfulness``, ``target``, ``model``, ``n_examples``), or ``None``.
    source
        What the data was made from, for the page's footer.
    image
        For an explained image, the page's image view (:func:`attnflow.image_maps.image_view`):
        ``{"grid": [rows, cols], "patch_positions": [...], "png": "data:image/png;base64,...",
        "width": w, "height": h}``; ``None`` for text.
    shares
        ``(L, L, K, n)`` node shares of the attention graph (see the module's
        docstring); computed from ``attention`` when not given (for every output
        within ``ROUTE_ALL_OUTPUTS_BUDGET``, else for ``output``), ``None``
        without attention.
    flow_cuts
        The minimum cuts that prove the explained output's flow at every layer
        (:func:`attnflow.report.cuts.flow_cuts`), which the graph draws for a
        chosen input token; ``None`` without flow.
    heads
        The heads panel: every head's roles, importance, relevance and confidence
        (:func:`attnflow.report.heads_panel.heads_panel`), or ``None``.

    Examples
    --------
    >>> d = ReportData(tokens=["a", "b"], scores={"rollout": np.full((1, 2, 2), 0.5)}, outputs=[0, 1])
    >>> d.n_layers, d.n_tokens, d.methods
    (1, 2, ['rollout'])
    """

    tokens: list[str]
    scores: dict[str, np.ndarray]
    outputs: list[int | str]
    output: int | str | None = None
    layer: int | None = None
    attention: np.ndarray | None = None
    residual: float = 0.5
    head_fusion: str = "mean"
    special_positions: tuple[int, ...] = ()
    model_name: str = ""
    text: str = ""
    is_causal: bool = False
    n_heads: int | None = None
    notes: list[str] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None
    source: str = ""
    image: dict[str, Any] | None = None
    shares: np.ndarray | None = None
    flow_cuts: dict[str, Any] | None = None
    #: For a generated answer: tokens ``[:prompt_length]`` are the prompt, the rest the answer (the page marks them).
    prompt_length: int | None = None
    #: Word groups (:class:`attnflow.words.WordGroups` as a dict): the page shows each word's summed score.
    words: dict[str, Any] | None = None
    heads: dict[str, Any] | None = None
    #: For an encoder-decoder model: tokens ``[:source_length]`` are the source, the rest the decoder positions.
    source_length: int | None = None
    #: A name per layer of ``attention`` (an encoder-decoder model's layered graph: encoder layers, sublayers).
    layer_names: list[str] | None = None
    #: The residual weight the explanation ran with, where the page's graph holds it inside its edges (an
    #: encoder-decoder model's layered graph, ``residual`` 0): the page's header shows this one.
    run_residual: float | None = None
    #: Certified intervals around scores (flow with ``--flow-tolerance``): ``{method: {"k": index into outputs,
    #: "lower": (L, n), "upper": (L, n)}}``; the page draws them under the tokens of that output.
    bounds: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        self.tokens = [str(token) for token in self.tokens]
        n = len(self.tokens)
        self.outputs = [_output_key(o, n) for o in self.outputs]
        if len(set(map(str, self.outputs))) != len(self.outputs):
            raise AttnflowError(f"ReportData.outputs must be distinct; got {self.outputs}.")
        self.scores = {str(k): np.asarray(v, dtype=np.float64) for k, v in self.scores.items()}
        layers = set()
        for name, value in self.scores.items():
            if value.ndim != 3 or value.shape[1:] != (len(self.outputs), n):
                raise AttnflowError(
                    f"ReportData.scores[{name!r}] must have shape (L, {len(self.outputs)}, {n}) for "
                    f"{len(self.outputs)} outputs and {n} tokens; got {value.shape} instead."
                )
            layers.add(value.shape[0])
        if self.attention is not None:
            self.attention = np.asarray(self.attention, dtype=np.float64)
            if self.attention.ndim != 3 or self.attention.shape[1:] != (n, n):
                raise AttnflowError(
                    f"ReportData.attention must have shape (L, {n}, {n}); got {self.attention.shape} instead."
                )
            layers.add(self.attention.shape[0])
        if len(layers) > 1:
            raise AttnflowError(f"ReportData's arrays must all have the same number of layers; got {sorted(layers)}.")
        if self.scores and not self.outputs:
            raise AttnflowError("ReportData.outputs must name at least one output when there are scores.")
        if self.output is None:
            self.output = self.outputs[0] if self.outputs else None
        else:
            self.output = _output_key(self.output, n)
            if self.output not in self.outputs:
                raise AttnflowError(f"ReportData.output must be one of {self.outputs}; got {self.output!r}.")
        n_layers = self.n_layers
        if n_layers:
            self.layer = layer_list(-1 if self.layer is None else int(self.layer), n_layers)[0]
        self.special_positions = tuple(int(p) for p in self.special_positions)
        if any(not 0 <= p < n for p in self.special_positions):
            raise AttnflowError(f"ReportData.special_positions must lie in 0..{n - 1}; got {self.special_positions}.")
        self.residual = check_residual(self.residual)
        self.notes = [str(note) for note in self.notes]
        if self.prompt_length is not None and (
            isinstance(self.prompt_length, bool) or not isinstance(self.prompt_length, int)
            or not 1 <= self.prompt_length < n
        ):
            raise AttnflowError(f"ReportData.prompt_length must be from 1 to {n - 1}; got {self.prompt_length!r}.")
        if self.source_length is not None and (
            isinstance(self.source_length, bool) or not isinstance(self.source_length, int)
            or not 1 <= self.source_length < n
        ):
            raise AttnflowError(f"ReportData.source_length must be from 1 to {n - 1}; got {self.source_length!r}.")
        if self.bounds is not None:
            self.bounds = {str(name): _interval_rows(pair, self.n_layers, n, len(self.outputs))
                           for name, pair in self.bounds.items()}
        if self.layer_names is not None:
            self.layer_names = [str(name) for name in self.layer_names]
            if len(self.layer_names) != self.n_layers:
                raise AttnflowError(
                    f"ReportData.layer_names must name each of the {self.n_layers} layers; got {len(self.layer_names)}."
                )
        if self.words is not None:

            self.words = WordGroups.from_dict(self.words, n).to_dict()
        if self.image is not None:
            self.image = _image_view(self.image, n)
        self.flow_cuts = check_flow_cuts(self.flow_cuts, n, n_layers) if self.attention is not None else None
        if self.heads is not None:

            self.heads = check_heads_panel(self.heads)
            if n_layers and self.heads["n_layers"] != n_layers:
                raise AttnflowError(
                    f"The heads panel has {self.heads['n_layers']} layers and this report {n_layers}: "
                    "the head analysis is of another model."
                )
            if self.n_heads and self.heads["n_heads"] != self.n_heads:
                raise AttnflowError(
                    f"The heads panel has {self.heads['n_heads']} heads per layer and this report's model "
                    f"{self.n_heads}: the head analysis is of another model."
                )
        if self.attention is None:
            self.shares = None
        elif self.shares is None:
            self.shares, note = _graph_shares(self.attention, self.residual, self.outputs, self.output)
            if note:
                self.notes.append(note)
        else:
            self.shares = np.asarray(self.shares, dtype=np.float64)
            expected = (n_layers, n_layers, len(self.outputs), n)
            if self.shares.shape != expected:
                raise AttnflowError(f"ReportData.shares must have shape {expected}; got {self.shares.shape} instead.")

    @property
    def methods(self) -> list[str]:
        """The methods with scores, in order."""
        return list(self.scores)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def n_layers(self) -> int:
        """``L``, or 0 for an evaluation-only report."""
        if self.attention is not None:
            return int(self.attention.shape[0])
        return next(iter(self.scores.values())).shape[0] if self.scores else 0

    def output_scores(self, method: str, output: int | str | None = None) -> np.ndarray:
        """``(L, n)``: one method's scores for one output (default: :attr:`output`) after every layer.

        Examples
        --------
        >>> d = ReportData(tokens=["a", "b"], scores={"raw": [[[0.9, 0.1], [0.4, 0.6]]]}, outputs=[0, 1])
        >>> d.output_scores("raw", 1)
        array([[0.4, 0.6]])
        """
        if method not in self.scores:
            raise AttnflowError(f"No scores for method {method!r}; this report has {self.methods}.")
        key = self.output if output is None else _output_key(output, self.n_tokens)
        if key not in self.outputs:
            raise AttnflowError(f"This report has scores for outputs {self.outputs} only; got {output!r}.")
        return self.scores[method][:, self.outputs.index(key), :]

    def graph_capacities(self) -> np.ndarray:
        """``(L, n, n)`` capacities ``Ahat`` of the layered attention graph (the attention plus the residual)."""
        if self.attention is None:
            raise AttnflowError(
                "This report has no attention, so no attention graph: it was made from scores only. "
                "Make it with `attnflow explain TEXT --html FILE` (or report_data(attentions, ...))."
            )
        return add_residual(self.attention, self.residual)

    def route_shares(self, layer: int | None = None, output: int | str | None = None) -> np.ndarray:
        """``(layer + 1, n)``: how much of output ``(layer, output)`` each node carries, row ``m`` for layer ``m``.

        Row 0 is the rollout of that output; the last row is the output itself
        (1 at its position, ``1/n`` everywhere for ``"mean"``). The edge
        ``(m-1, j) -> (m, i)`` carries ``shares[m, i] * graph_capacities()[m-1, i, j]``.

        Examples
        --------
        >>> d = ReportData(tokens=["a", "b"], scores={}, outputs=[0, 1], attention=[[[1.0, 0.0], [0.5, 0.5]]])
        >>> d.route_shares(1, 1)
        array([[0.25, 0.75],
               [0.  , 1.  ]])
        """
        if self.shares is None:
            self.graph_capacities()  # raises: no attention, no graph
        assert self.shares is not None
        level = layer_list(self.layer if layer is None else layer, self.n_layers)[0]
        key = self.output if output is None else _output_key(output, self.n_tokens)
        if key not in self.outputs:
            raise AttnflowError(f"This report has outputs {self.outputs} only; got {output!r}.")
        index = self.outputs.index(key)
        below = self.shares[level - 1, :level, index]
        if np.isnan(below).any():
            raise AttnflowError(f"This report has the attention graph's route for {self._route_outputs()} only.")
        top = np.full(self.n_tokens, 1.0 / self.n_tokens) if key == "mean" else np.eye(self.n_tokens)[key]
        return np.vstack([below, top])

    def _route_outputs(self) -> list[int | str]:
        assert self.shares is not None
        return [key for index, key in enumerate(self.outputs) if not np.isnan(self.shares[0, 0, index]).any()]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as ``null``, values rounded to 6 decimals); :meth:`from_dict` reverses it."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": self.model_name,
            "text": self.text,
            "tokens": list(self.tokens),
            "special_positions": list(self.special_positions),
            "is_causal": bool(self.is_causal),
            "n_heads": self.n_heads,
            "n_layers": self.n_layers,
            "outputs": list(self.outputs),
            "output": self.output,
            "layer": self.layer,
            "residual": self.residual,
            "head_fusion": self.head_fusion,
            "attention": None if self.attention is None else _rounded(self.attention),
            "scores": {name: _rounded(value) for name, value in self.scores.items()},
            "notes": list(self.notes),
            "evaluation": self.evaluation,
            "source": self.source,
            "image": self.image,
            "shares": None if self.shares is None else self._shares_for_json(),
            "flow_cuts": self.flow_cuts,
            "bounds": None if self.bounds is None else {
                name: {"k": pair["k"], "lower": _rounded(pair["lower"]), "upper": _rounded(pair["upper"])}
                for name, pair in self.bounds.items()
            },
            "prompt_length": self.prompt_length,
            "words": None if self.words is None else self._words_for_json(),
            "heads": self.heads,
            "source_length": self.source_length,
            "layer_names": self.layer_names,
            "run_residual": self.run_residual,
        }

    def _words_for_json(self) -> dict[str, Any]:
        """The word groups with every method's scores summed to words, ``(L, K, W)`` (summed here, not in the page)."""

        assert self.words is not None
        groups = WordGroups.from_dict(self.words)
        return {**self.words, "scores": {name: _rounded(groups.sum_scores(v)) for name, v in self.scores.items()}}

    def _shares_for_json(self) -> list[Any]:
        """Per output: ``None`` when not computed, else per layer ``l`` the ``l`` rows of its nodes below."""
        assert self.shares is not None
        return [
            None
            if np.isnan(self.shares[0, 0, index]).any()
            else [_rounded(self.shares[level - 1, :level, index]) for level in range(1, self.n_layers + 1)]
            for index in range(len(self.outputs))
        ]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReportData:
        """Rebuild report data written by :meth:`to_dict`."""
        if data.get("format") != FORMAT:
            raise AttnflowError("This JSON is not attnflow report data (missing format marker 'attnflow.report').")
        try:
            return cls(
                tokens=list(data["tokens"]),
                scores={k: _from_json_array(v) for k, v in data["scores"].items()},
                outputs=list(data["outputs"]),
                output=data.get("output"),
                layer=data.get("layer"),
                attention=None if data.get("attention") is None else _from_json_array(data["attention"]),
                residual=data.get("residual", 0.5),
                head_fusion=str(data.get("head_fusion", "mean")),
                special_positions=tuple(data.get("special_positions", ())),
                model_name=str(data.get("model", "")),
                text=str(data.get("text", "")),
                is_causal=bool(data.get("is_causal", False)),
                n_heads=data.get("n_heads"),
                notes=list(data.get("notes", [])),
                evaluation=evaluation_summary(data["evaluation"]) if data.get("evaluation") else None,
                source=str(data.get("source", "")),
                image=data.get("image"),
                shares=_shares_from_json(data.get("shares"), data),
                flow_cuts=data.get("flow_cuts"),
                prompt_length=data.get("prompt_length"),
                words=data.get("words"),
                heads=data.get("heads"),
                source_length=data.get("source_length"),
                layer_names=data.get("layer_names"),
                run_residual=data.get("run_residual"),
                bounds=data.get("bounds"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, AttnflowError):
                raise
            raise AttnflowError(f"Malformed attnflow report data: {type(exc).__name__}: {exc}") from None

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` to ``path`` atomically; ``attnflow report`` reads it back."""

        write_text_atomic(path, json.dumps(self.to_dict(), allow_nan=False, separators=(",", ":")))


def report_data(
    attentions: Any,
    tokens: Sequence[str] | None = None,
    *,
    methods: Sequence[str] | str = ("raw", "rollout"),
    output: int | str = "cls",
    layer: int = -1,
    residual: float = 0.5,
    head_fusion: HeadFusion = "mean",
    flow_outputs: str = "auto",
    special_positions: Sequence[int] = (),
    model_name: str = "",
    text: str = "",
    is_causal: bool = False,
    progress: Progress | None = None,
    explanation: Explanation | None = None,
    computed: OutputScores | None = None,
) -> ReportData:
    """Compute what a report shows from attention arrays: every method's scores for every output.

    Every score comes from the method registry (:mod:`attnflow.methods.registry`):
    a method registered with ``every_output`` (raw attention, rollout) gives
    every output in one call; any other (flow) is called once per output, for
    every output or only the chosen one (``flow_outputs``). The attention graph's
    node shares come from :func:`attnflow.methods.rollout.node_shares`.

    Parameters
    ----------
    attentions
        ``(L, H, n, n)``, fused ``(L, n, n)`` or a list of per-layer arrays (numpy or torch).
    tokens
        The ``n`` tokens; ``None`` numbers them.
    methods
        Registered method names. Methods with ``every_output`` (raw attention,
        rollout) are computed for every output (cheap); see ``flow_outputs`` for
        the others (flow). Gradient-based methods need ``explanation``.
    output
        The output shown first: an index, ``"cls"``, ``"last"`` or ``"mean"``.
        ``"mean"`` is offered in the page beside every single token.
    layer
        The layer shown first (1-based; -1 is the top).
    residual, head_fusion
        As for :func:`attnflow.rollout`; the graph uses them too.
    flow_outputs
        For methods computed one output at a time (flow): ``"all"``: every
        output; ``"chosen"``: ``output`` only (the page says so); ``"auto"``:
        every output while the input is small enough
        (``L**2 * n**4 <=`` :data:`attnflow.core.FLOW_ALL_OUTPUTS_BUDGET`), else the chosen one.
    special_positions, model_name, text, is_causal
        Shown in the page.
    progress
        ``progress(done, total)`` for flow's progress bar.
    explanation
        What :func:`attnflow.explain` already computed on these attentions for
        ``output`` (same tokens, same options): its scores are used for that output
        as they are, not computed again, and its gradient-based methods
        (``grad-rollout``), which attention alone cannot give, are shown for it.
    computed
        Every output's scores as the explain core computed them
        (:func:`attnflow.core.score_capture` with ``every_output``): shown as they are,
        nothing is computed. Without it, :func:`attnflow.core.every_output_scores`
        computes them from ``attentions``.

    Returns
    -------
    ReportData

    Examples
    --------
    >>> a = np.full((2, 1, 3, 3), 1 / 3)
    >>> d = report_data(a, ["x", "y", "z"], methods=("rollout", "flow"))
    >>> d.scores["flow"].shape, d.output_scores("rollout")[-1].round(3).tolist()
    ((2, 3, 3), [0.5, 0.25, 0.25])
    >>> from attnflow import explain_attentions
    >>> e = explain_attentions(a, ["x", "y", "z"], methods="flow", output=1)
    >>> d = report_data(a, ["x", "y", "z"], methods="flow", output=1, explanation=e)   # output 1: from e
    >>> bool(np.array_equal(d.output_scores("flow"), e.scores["flow"]))
    True
    """
    array = as_attention_array(attentions)
    n_layers, n_heads, n, _ = array.shape
    if tokens is None:
        tokens = [str(i) for i in range(n)]
    tokens = [str(t) for t in tokens]
    if len(tokens) != n:
        raise AttnflowError(
            f"The 'tokens' parameter must hold one token per attention position ({n}); got {len(tokens)} instead."
        )
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise AttnflowError("The 'methods' parameter must name at least one method.")
    if flow_outputs not in ("auto", "all", "chosen"):
        raise AttnflowError(f"The 'flow_outputs' parameter must be auto, all or chosen; got {flow_outputs!r} instead.")
    residual = check_residual(residual)
    position = resolve_output(output, n)
    given = {} if explanation is None else _explained_scores(explanation, tokens, position, n_layers)
    computing = computed is None
    if computed is None:  # the explain core computes what the page shows; the report only draws it
        computed = every_output_scores(
            array, names, position, given=given,
            given_solution=None if explanation is None else explanation.solutions.get("flow"),
            flow_outputs=flow_outputs, progress=progress, residual=residual, head_fusion=head_fusion,
        )
    elif computed.outputs != list(range(n)) + (["mean"] if position == "mean" else []):
        raise AttnflowError("The computed scores are for other outputs than this report's.")
    outputs, scores, notes = list(computed.outputs), dict(computed.scores), list(computed.notes)
    fused = fuse_heads(array, head_fusion)
    cuts = None if computed.flow_solution is None else flow_cuts(computed.flow_solution, position, n_layers)
    if computing and not scores and not any(is_attribution(name) or get_method(name).needs_gradients
                                            for name in names):
        raise AttnflowError(f"None of the methods {names} can be computed from attention alone.")
    return ReportData(
        tokens=tokens,
        scores=scores,
        outputs=outputs,
        output=position,
        layer=layer,
        attention=fused,
        residual=residual,
        head_fusion=str(head_fusion) if isinstance(head_fusion, str) else "weighted",
        special_positions=tuple(special_positions),
        model_name=model_name,
        text=text,
        is_causal=is_causal,
        n_heads=int(n_heads),
        notes=notes,
        source="attention",
        flow_cuts=cuts,
        bounds={name: {"k": outputs.index(position), "lower": lower, "upper": upper}
                for name, (lower, upper) in (explanation.bounds if explanation is not None else {}).items()
                if name in scores} or None,
    )


def report_data_from_capture(
    captured: Any,
    *,
    methods: Sequence[str] | str = ("raw", "rollout"),
    output: int | str | None = None,
    **options: Any,
) -> ReportData:
    """:func:`report_data` for an :class:`attnflow.capture.CapturedAttention` (its tokens, model and text).

    ``output=None`` picks ``"last"`` for decoders and ``"cls"`` otherwise, as
    :func:`attnflow.explain` does; ``options`` go to :func:`report_data`.

    Examples
    --------
    >>> from attnflow.capture import CapturedAttention
    >>> c = CapturedAttention(np.full((1, 1, 2, 2), 0.5), ["[CLS]", "hi"], [101, 7632], (0,), "toy", False, "hi")
    >>> report_data_from_capture(c, methods="rollout").model_name
    'toy'
    """
    if output is None:
        output = "last" if captured.is_causal else "cls"
    return report_data(
        captured.attentions,
        captured.tokens,
        methods=methods,
        output=output,
        special_positions=captured.special_positions,
        model_name=captured.model_name,
        text=captured.text,
        is_causal=captured.is_causal,
        **options,
    )


#: The output key of a generated answer's span: its tokens' scores averaged (``explain(..., generate=N)``).
ANSWER = "answer"


def mark_report(data: ReportData, explanation: Explanation, *, open_on_answer: bool = True) -> ReportData:
    """Add an explanation's prompt/answer marks and word groups to report data of the same tokens.

    An explanation of the whole answer span (``output="answer"``) adds the span as
    one more output, ``"answer"``, with its scores; the page opens on it unless
    ``open_on_answer`` is false.

    For a generated answer, each answer token's scores (``explanation.answer_scores``)
    fill the rows of the positions that predicted them, so gradient methods, which
    attention alone cannot give, are shown for every answer token.

    Examples
    --------
    >>> e = Explanation(tokens=["a", "b", "c"], scores={"raw": [[0.5, 0.5, 0.0]]}, output="answer",
    ...                 generation={"prompt_length": 2, "answer_ids": [7]}, answer_scores={"raw": [[[0.5, 0.5, 0.0]]]})
    >>> mark_report(report_data(np.full((1, 1, 3, 3), 1 / 3), ["a", "b", "c"], methods="raw"), e).prompt_length
    2
    """
    import dataclasses

    if list(explanation.tokens) != list(data.tokens):
        raise AttnflowError("The explanation and the report data must be about the same tokens.")
    scores = {name: value.copy() for name, value in data.scores.items()}
    notes = list(data.notes)
    length = explanation.prompt_length
    for name, values in explanation.answer_scores.items():
        if name not in scores:
            continue
        for k, row in enumerate(values):
            if length - 1 + k in data.outputs:
                scores[name][:, data.outputs.index(length - 1 + k)] = row
        if is_attribution(name) or get_method(name).needs_gradients:
            notes = [note for note in notes if not note.startswith((f"Method {name} explains a target",
                                                                    f"Method {name} scores the input"))]
            notes.append(
                f"Method {name} explains each generated token (its logit) and was computed at the positions "
                "that predicted the answer tokens only (and for the answer span, their mean); other outputs show it "
                "as not computed."
            )
    outputs, output, shares = list(data.outputs), data.output, data.shares
    if explanation.output == ANSWER and ANSWER not in outputs:  # the span the terminal printed: the page opens on it
        outputs.append(ANSWER)
        output = ANSWER if open_on_answer else output
        n_layers, n = data.n_layers, data.n_tokens
        for name in scores:
            span = explanation.scores.get(name)
            column = np.full((n_layers, 1, n), np.nan) if span is None else np.asarray(span, float)[:, None, :]
            scores[name] = np.concatenate([scores[name], column], axis=1)
        if shares is not None:  # no route is drawn for a mean over several outputs
            shares = np.concatenate([shares, np.full(shares.shape[:2] + (1, n), np.nan)], axis=2)
    return dataclasses.replace(
        data, scores=scores, notes=notes, prompt_length=length, outputs=outputs, output=output,
        words=None if explanation.words is None else explanation.words.to_dict(), shares=shares,
    )


def report_data_from_explanation(explanation: Explanation, *, layer: int = -1) -> ReportData:
    """Report data from an :class:`~attnflow.Explanation`: its one output only, and no attention graph.

    Examples
    --------
    >>> e = Explanation(tokens=["a", "b"], scores={"rollout": np.array([[0.7, 0.3]])}, output=0)
    >>> d = report_data_from_explanation(e)
    >>> d.outputs, d.attention is None
    ([0], True)
    """
    options = explanation.options or {}
    output = explanation.output
    label = "the mean of all positions" if output == "mean" else f"token {output}"
    notes = [
        f"Made from saved scores for one output ({label}) only: choosing another output token needs the attention. "
        "Run `attnflow explain TEXT --html FILE` for a report with every output and the attention graph."
    ]
    residual = options.get("residual", 0.5)
    scores = {name: value[:, None, :] for name, value in explanation.scores.items()}
    outputs: list[int | str] = [output]
    if output == "answer":  # a generated answer: one output per answer token, where it was predicted
        if not explanation.answer_scores:
            raise AttnflowError("This explanation of a generated answer holds no per-token scores to show.")
        scores = {name: np.moveaxis(value, 0, 1) for name, value in explanation.answer_scores.items()}
        outputs = [explanation.prompt_length - 1 + k for k in range(len(explanation.generation["answer_ids"]))]
        output = outputs[0]
        notes = [
            "Made from saved scores for the positions that predicted each answer token only: other outputs and the "
            "attention graph need the attention (`attnflow explain TEXT --generate N --html FILE`)."
        ]
    return ReportData(
        tokens=list(explanation.tokens),
        scores=scores,
        outputs=outputs,
        output=output,
        prompt_length=explanation.prompt_length,
        words=None if explanation.words is None else explanation.words.to_dict(),
        layer=layer,
        residual=residual if isinstance(residual, (int, float)) else 0.5,
        head_fusion=str(options.get("head_fusion", "mean")),
        special_positions=explanation.special_positions,
        model_name=explanation.model_name,
        text=explanation.text,
        notes=notes,
        source="explanation",
    )


def report_data_from_results(data: Mapping[str, Any], *, layer: int = -1) -> ReportData:
    """Report data from a parsed results JSON: ``explain --json``, ``evaluate``, ``reproduce`` or report data.

    Anything with a ``correlation`` table (``{ground_truth: {method: [[mean, sd], ...]}}``)
    gives the evaluation section; an explanation (at the top level, or under
    ``"explanation"``) gives the token sections.

    Examples
    --------
    >>> d = report_data_from_results({"correlation": {"blankout": {"rollout": [[0.5, 0.1]]}}, "n_examples": 3})
    >>> d.tokens, d.evaluation["n_examples"]
    ([], 3)
    """
    if not isinstance(data, Mapping):
        raise AttnflowError(
            "A results JSON must hold an object (from explain --json, evaluate or reproduce); "
            f"got {type(data).__name__}."
        )
    marker = data.get("format")
    if isinstance(marker, str) and marker in _READERS:

        check_format(data, marker, _newest_version(marker))
    if marker == FORMAT:
        result = ReportData.from_dict(data)
        if layer != -1 and result.n_layers:
            result.layer = layer_list(layer, result.n_layers)[0]
        return result
    if marker == "attnflow.explanation":
        return report_data_from_explanation(_explanation(data), layer=layer)
    if "correlation" in data:
        evaluation = evaluation_summary(data)
        inner = data.get("explanation")
        if isinstance(inner, Mapping):
            result = report_data_from_results(inner, layer=layer)
            result.evaluation = evaluation
        else:
            result = ReportData(tokens=[], scores={}, outputs=[], evaluation=evaluation, source="evaluation")
        result.model_name = result.model_name or str(data.get("model", ""))
        return result
    raise AttnflowError(
        "This JSON is not an attnflow results file: expected the output of `attnflow explain --json` "
        "(format 'attnflow.explanation'), of `attnflow evaluate` or `attnflow reproduce` (with a "
        f"'correlation' table), or attnflow report data; found keys {sorted(map(str, data))[:8]}."
    )


#: The results formats a report reads (a newer version than this attnflow writes is refused by name).
_READERS = ("attnflow.report", "attnflow.explanation", "attnflow.evaluation")


def _newest_version(marker: str) -> int:
    if marker == "attnflow.explanation":
        from ..explanation import FORMAT_VERSION as version
    elif marker == "attnflow.evaluation":
        from ..evaluate.runner import FORMAT_VERSION as version
    else:
        version = FORMAT_VERSION
    return int(version)


def load_report_data(path: str | os.PathLike[str], *, layer: int = -1) -> ReportData:
    """Read a results JSON file (see :func:`report_data_from_results`) into report data.

    Raises
    ------
    AttnflowError
        When the file is missing, is not JSON or is not an attnflow results file.

    Examples
    --------
    >>> load_report_data("/nonexistent.json")
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: Cannot read results file '/nonexistent.json': it does not exist.
    """

    name = os.fspath(path)
    data = read_json(name)  # strict: NaN and Infinity are refused in one line
    try:
        return report_data_from_results(data, layer=layer)
    except AttnflowError as exc:
        raise AttnflowError(f"{name}: {exc}") from None
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:  # a hand-edited file
        raise AttnflowError(
            f"{name}: malformed attnflow results file (edited by hand?): {type(exc).__name__}: {exc}"
        ) from None


# ---------------------------------------------------------------------------- helpers

_PNG_PREFIX = "data:image/png;base64,"


def _image_view(view: Any, n: int) -> dict[str, Any]:
    """Check an image view: a grid whose patches are tokens, and a base64 PNG data URL (nothing else)."""
    import base64
    import binascii

    problem = "ReportData.image must be {grid: [rows, cols], patch_positions: [...], png: 'data:image/png;base64,...'}"
    if not isinstance(view, Mapping):
        raise AttnflowError(f"{problem}; got {type(view).__name__}.")
    try:
        rows, cols = (int(v) for v in view["grid"])
        positions = [int(p) for p in view["patch_positions"]]
        png = str(view["png"])
        width, height = int(view.get("width", 0)), int(view.get("height", 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise AttnflowError(f"{problem}; {type(exc).__name__}: {exc}.") from None
    if rows < 1 or cols < 1 or len(positions) != rows * cols or any(not 0 <= p < n for p in positions):
        raise AttnflowError(f"{problem}; the grid {rows}x{cols} needs {rows * cols} patch positions in 0..{n - 1}.")
    if not png.startswith(_PNG_PREFIX):
        raise AttnflowError(f"{problem}; the picture is not a PNG data URL.")
    try:
        base64.b64decode(png[len(_PNG_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise AttnflowError(f"{problem}; the picture is not valid base64.") from None
    return {
        "grid": [rows, cols],
        "patch_positions": positions,
        "png": png,
        "width": width,
        "height": height,
        "source": str(view.get("source", "")),
    }


def _output_key(output: Any, n: int) -> int | str:
    if isinstance(output, str) and output.strip().lower() in ("mean", ANSWER):
        return output.strip().lower()
    if n == 0:
        raise AttnflowError(f"An output position needs tokens; got {output!r} for an empty report.")
    return resolve_output(output, n)


def _explained_scores(
    explanation: Explanation, tokens: Sequence[str], position: int | str, n_layers: int
) -> dict[str, np.ndarray]:
    """``{method: (L, n)}``: what ``explain`` computed, checked to be about these tokens, this output and depth."""
    if list(explanation.tokens) != list(tokens):
        raise AttnflowError("The explanation and the report data must be about the same tokens.")
    key = _output_key(explanation.output, len(tokens))
    if key != position:
        raise AttnflowError(
            f"The explanation is for output {key!r} and the report's output is {position!r}; they must be the same."
        )
    for name, values in explanation.scores.items():
        if values.shape[0] != n_layers:
            raise AttnflowError(f"Scores of {name!r} have {values.shape[0]} layers; the attention has {n_layers}.")
    return dict(explanation.scores)


def _graph_shares(
    attention: np.ndarray, residual: float, outputs: list[int | str], output: int | str | None
) -> tuple[np.ndarray, str]:
    """The node shares of :attr:`ReportData.shares`, from the library's rollout, and a note when limited."""
    n_layers, n = attention.shape[0], attention.shape[-1]
    every = node_shares(attention, residual=residual)
    capacities = AttentionGraph.from_attentions(attention, residual=residual).capacities
    everything = n_layers * (n_layers + 1) / 2 * len(outputs) * n <= ROUTE_ALL_OUTPUTS_BUDGET
    shares = np.full((n_layers, n_layers, len(outputs), n), np.nan)
    for index, key in enumerate(outputs):
        if key == output:  # its scores come from rollout_scores, which reads the same walk
            shares[:, :, index] = output_walk(capacities, key)
        elif everything:  # the other outputs' scores come from rollout's matrix products, as these
            shares[:, :, index] = every.mean(axis=2) if key == "mean" else every[:, :, key]
    if everything or not outputs:
        return shares, ""
    label = "the mean output" if output == "mean" else f"output token {output}"
    return shares, (
        f"The attention graph shows the route into {label} only: the route into every output of "
        f"{n} tokens and {n_layers} layers would make the page too large."
    )


def _shares_from_json(value: Any, data: Mapping[str, Any]) -> np.ndarray | None:
    if value is None or data.get("attention") is None:
        return None
    n_layers, n_outputs, n = len(data["attention"]), len(value), len(data["tokens"])
    shares = np.full((n_layers, n_layers, n_outputs, n), np.nan)
    for index, per_output in enumerate(value):
        if per_output is None:
            continue
        if len(per_output) != n_layers:
            raise ValueError(f"shares of output {index} must hold {n_layers} layers")
        for level, rows in enumerate(per_output, start=1):
            shares[level - 1, :level, index] = _from_json_array(rows)
    return shares


def _explanation(data: Mapping[str, Any]) -> Explanation:
    try:
        return Explanation.from_dict(dict(data))
    except AttnflowError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise AttnflowError(f"Malformed attnflow explanation JSON: {type(exc).__name__}: {exc}") from None


def _rounded(value: np.ndarray) -> Any:
    """Nested lists, rounded to 6 decimals, NaN as None (JSON null)."""
    rounded = np.round(np.asarray(value, dtype=np.float64), 6)
    as_object = rounded.astype(object)
    as_object[np.isnan(rounded)] = None
    return as_object.tolist()


def _from_json_array(value: Any) -> np.ndarray:
    array = np.array(value, dtype=object)
    array[array == None] = np.nan  # noqa: E711  (elementwise comparison with None)
    return array.astype(np.float64)


def _interval_rows(pair: Any, n_layers: int, n: int, n_outputs: int) -> dict[str, Any]:
    """One entry of :attr:`ReportData.bounds`, checked: ``k`` an output index, ``lower``/``upper`` ``(L, n)``."""
    try:
        k = pair["k"]
        lower, upper = (np.asarray(pair[end], dtype=np.float64) for end in ("lower", "upper"))
    except (KeyError, TypeError, ValueError):
        k, lower, upper = None, None, None
    if (isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n_outputs
            or any(end is None or end.shape != (n_layers, n) for end in (lower, upper))):
        raise AttnflowError(
            f"ReportData.bounds must give each method an output index 'k' below {n_outputs} and 'lower' and "
            f"'upper' rows of shape ({n_layers}, {n})."
        )
    return {"k": k, "lower": lower, "upper": upper}
