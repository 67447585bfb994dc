"""Context-mixing graphs by name: the one list the API, the CLI, the report and the tests read.

A graph gives every layer a token-to-token matrix ``(n, n)``, ``[i, j]`` the share of
position ``i``'s output after the layer that comes from position ``j`` before it. The
aggregations (raw, rollout, flow) run over any graph. ``attention`` is the attention
weights themselves, to which the methods add the residual with weight ``r``; every
other graph already contains the residual stream, and runs with residual weight 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..capture.mixing import LayerTensors, MixingCapture, layout_of, model_type
from ..errors import AttnflowError
from .alti import alti_matrix
from .globenc import globenc_matrix, globenc_norms, globenc_rollout_scores
from .norm import norm_matrix
from .value_zeroing import value_zeroing_matrices

#: The graph methods have always run on; results keep their plain names (``rollout``).
ATTENTION = "attention"


@dataclass(frozen=True)
class Graph:
    """A registered context-mixing graph.

    ``layer_matrix(layer, capture) -> (n, n)`` builds one layer's matrix from captured
    tensors; ``model_matrices(capture) -> (L, n, n)`` builds them all when the graph
    reruns the model (value zeroing). ``layouts`` are the block layouts (``"post-ln"``,
    ``"pre-ln"``, ``None`` for an unknown one) the graph is defined for; ``undefined``
    says why it is not for the others. ``product_matrix``, when set, is the unnormalised
    per-layer matrix whose running product ``rollout`` over this graph is (GlobEnc, as
    its authors aggregate it); raw and flow still run on ``layer_matrix``.

    ``attention_weights`` marks the one graph that is the attention weights themselves
    (``attention``): its capacities come from the attention capture ``(L, H, n, n)``, the
    methods fuse its heads (``head_fusion``), add the residual (``residual``), read
    grad-rollout's gradients and a shared flow solve, and its results keep the methods'
    plain names. Every other graph is context mixing: built from the
    :class:`~attnflow.capture.mixing.MixingCapture`, residual inside, heads summed, results
    under ``graph/method``. Callers ask the graph (:attr:`needs_mixing_capture`,
    :meth:`capacities`, :meth:`method_options`, :meth:`key`), never its name.
    """

    name: str
    summary: str
    reference: str
    residual: str
    normalisation: str
    layouts: frozenset[str | None]
    undefined: str = ""
    layer_matrix: Callable[[LayerTensors, MixingCapture], np.ndarray] | None = None
    model_matrices: Callable[[MixingCapture], np.ndarray] | None = None
    product_matrix: Callable[[LayerTensors, MixingCapture], np.ndarray] | None = None
    attention_weights: bool = False

    def rollout_scores(self, capture: MixingCapture, output: int | str) -> np.ndarray | None:
        """``(L, n)``: rollout of the explained output by the graph's own product, or ``None`` (the method's)."""
        if self.product_matrix is None:
            return None
        self.check(capture)
        norms = np.stack([self.product_matrix(layer, capture) for layer in capture.layers])
        return globenc_rollout_scores(norms, output)

    @property
    def adds_residual(self) -> bool:
        """Whether the methods add the residual themselves (weight ``r``): only for ``attention``."""
        return self.attention_weights

    @property
    def needs_mixing_capture(self) -> bool:
        """Whether the graph is built from a :class:`~attnflow.capture.mixing.MixingCapture` (context mixing)."""
        return not self.attention_weights

    def key(self, method: str) -> str:
        """The name ``method``'s result over this graph is stored under (:func:`result_key`)."""
        return method if self.attention_weights else f"{self.name}/{method}"

    @property
    def note_prefix(self) -> str:
        """What a note from this graph's methods starts with: ``""`` or ``"alti graph: "``."""
        return "" if self.attention_weights else f"{self.name} graph: "

    def method_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` as the methods take them over this graph.

        A context-mixing graph contains the residual and sums every head: ``residual`` is 0
        and ``head_fusion`` is left out.

        Examples
        --------
        >>> get_graph("alti").method_options({"residual": 0.5, "head_fusion": "max", "discard_ratio": 0.1})
        {'discard_ratio': 0.1, 'residual': 0.0}
        """
        if self.attention_weights:
            return dict(options)
        kept = {key: value for key, value in options.items() if key not in ("residual", "head_fusion")}
        kept["residual"] = 0.0
        return kept

    def capacities(self, captured: Any, mixing: MixingCapture | None) -> np.ndarray:
        """What the methods run on: ``captured.attentions`` (the attention capture) or :meth:`matrices` of ``mixing``.

        Examples
        --------
        >>> from attnflow.capture import CapturedAttention
        >>> c = CapturedAttention(np.full((2, 1, 3, 3), 1 / 3), ["a", "b", "c"], [1, 2, 3], (), "toy", False, "a b c")
        >>> get_graph("attention").capacities(c, None).shape
        (2, 1, 3, 3)
        """
        if self.attention_weights:
            return captured.attentions
        if mixing is None:
            raise AttnflowError(
                f"The {self.name} graph needs the input's mixing capture: "
                "pass mixing=attnflow.mixing.capture_mixing(loaded, captured.input_ids)."
            )
        return self.matrices(mixing)

    def check(self, capture: MixingCapture) -> None:
        """Raise :class:`AttnflowError` naming why when the graph is not defined for this model."""
        self._check_layout(capture.layout, capture.model_type)

    def check_model(self, model: Any) -> None:
        """:meth:`check` before any capture: from a transformers model (or ``LoadedModel``) alone.

        Examples
        --------
        >>> from attnflow.capture import load_model
        >>> get_graph("globenc").check_model(load_model("sva"))
        Traceback (most recent call last):
        ...
        attnflow.errors.AttnflowError: The 'globenc' graph is not defined for megatron-bert (pre-ln blocks): \
GlobEnc is defined for post-LN encoders (Modarressi et al. 2022 carry the vectors through the layer norms that \
follow each residual connection); a pre-LN block normalises the branches, not the residual stream, and no \
adaptation has been published. Use alti or norm, which are defined for pre-LN blocks.
        """

        module = getattr(model, "model", model)
        self._check_layout(layout_of(module), model_type(module))

    def _check_layout(self, layout: str | None, kind: str) -> None:
        if layout not in self.layouts:
            described = layout or "of an unknown block layout"
            raise AttnflowError(
                f"The {self.name!r} graph is not defined for {kind} ({described} blocks): {self.undefined}"
            )

    def matrices(self, capture: MixingCapture) -> np.ndarray:
        """``(L, n, n)`` for ``capture`` (``(L, H, n, n)`` attention weights for ``attention``)."""
        self.check(capture)
        if self.attention_weights:
            return capture.attentions
        if self.model_matrices is not None:
            return self.model_matrices(capture)
        return np.stack([self.layer_matrix(layer, capture) for layer in capture.layers])


_REGISTRY: dict[str, Graph] = {}


def register_graph(graph: Graph) -> Graph:
    """Add ``graph`` to the registry (names are unique)."""
    if graph.name in _REGISTRY:
        raise RuntimeError(f"graph {graph.name!r} is registered twice")
    _REGISTRY[graph.name] = graph
    return graph


def available_graphs() -> tuple[str, ...]:
    """Names of every registered graph, ``attention`` first.

    Examples
    --------
    >>> available_graphs()
    ('attention', 'norm', 'globenc', 'globenc-rownorm', 'alti', 'value-zeroing')
    """
    return tuple(_REGISTRY)


def get_graph(name: str) -> Graph:
    """Look a graph up by name, with an error listing the alternatives.

    Examples
    --------
    >>> get_graph("alti").reference.split(";")[0]
    'Ferrando et al. 2022, Measuring the Mixing of Contextual Information in the Transformer'
    """
    if isinstance(name, str) and name.strip().lower() in _REGISTRY:
        return _REGISTRY[name.strip().lower()]
    raise AttnflowError(f"Unknown graph {name!r}; available: {', '.join(available_graphs())}.")


def result_key(graph: str, method: str) -> str:
    """The name a method's result over ``graph`` is stored under: ``rollout``, ``alti/rollout``.

    Examples
    --------
    >>> result_key("attention", "flow"), result_key("alti", "flow")
    ('flow', 'alti/flow')
    """
    return get_graph(graph).key(method)


def context_mixing(names: Iterable[str]) -> list[str]:
    """The registered names among ``names`` of graphs built from the mixing capture, in order.

    Examples
    --------
    >>> context_mixing(["attention", "alti", "norm"]), context_mixing(["attention"])
    (['alti', 'norm'], [])
    """
    return [graph.name for graph in map(get_graph, names) if graph.needs_mixing_capture]


def split_key(key: str) -> tuple[str, str]:
    """``(graph, method)`` of a result name made by :func:`result_key`.

    Examples
    --------
    >>> split_key("alti/flow"), split_key("rollout")
    (('alti', 'flow'), ('attention', 'rollout'))
    """
    graph, _, method = key.rpartition("/")
    return (graph or ATTENTION), method


_ALL = frozenset({"post-ln", "pre-ln", None})
_KNOWN = frozenset({"post-ln", "pre-ln"})
_UNKNOWN_LAYOUT = (
    "attnflow knows where the layer norms sit in BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, DistilBERT "
    "(post-LN) and MegatronBert, GPT-2, Llama, Mistral, Qwen2, ViT, DeiT (pre-LN); value-zeroing needs none."
)

register_graph(Graph(
    ATTENTION,
    "the attention weights (heads fused by head_fusion)",
    "Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers",
    "added by the method: rownorm((1 - r) A + r I), r = --residual (0.5)",
    "softmax rows sum to 1",
    _ALL,
    attention_weights=True,
))
register_graph(Graph(
    "norm",
    "||sum_h alpha_ij v_j W_O + [i=j] x_i||: transformed-vector norms, residual inside",
    "Kobayashi et al. 2020, Attention is Not Only a Weight; residual as in Kobayashi et al. 2021",
    "inside: the residual stream x_i is added to token i's own vector",
    "each row divided by its sum",
    _KNOWN,
    _UNKNOWN_LAYOUT,
    layer_matrix=norm_matrix,
))
_GLOBENC_UNDEFINED = (
    "GlobEnc is defined for post-LN encoders (Modarressi et al. 2022 carry the vectors through the layer norms "
    "that follow each residual connection); a pre-LN block normalises the branches, not the residual stream, "
    "and no adaptation has been published. Use alti or norm, which are defined for pre-LN blocks."
)
_GLOBENC_REFERENCE = (
    "Modarressi et al. 2022, GlobEnc: Quantifying Global Token Attribution by Incorporating the Whole Encoder Layer"
)
register_graph(Graph(
    "globenc",
    "norms carried through both layer norms of the encoder layer (FFN left out); rollout multiplies the raw "
    "matrices, as the authors do",
    _GLOBENC_REFERENCE,
    "inside: residual vector, then both layer norms' linear parts with their actual scales",
    "rollout: none per layer, the explained row divided by its sum for display; raw and flow: each row "
    "divided by its sum (the authors define no flow)",
    frozenset({"post-ln"}),
    _GLOBENC_UNDEFINED,
    layer_matrix=globenc_matrix,
    product_matrix=globenc_norms,
))
register_graph(Graph(
    "globenc-rownorm",
    "globenc's matrices with each layer's rows normalised before rollout multiplies them (not the authors' "
    "aggregation)",
    _GLOBENC_REFERENCE,
    "inside: residual vector, then both layer norms' linear parts with their actual scales",
    "each row divided by its sum",
    frozenset({"post-ln"}),
    _GLOBENC_UNDEFINED,
    layer_matrix=globenc_matrix,
))
register_graph(Graph(
    "alti",
    "max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1): Manhattan distance of each token's vector to the output",
    "Ferrando et al. 2022, Measuring the Mixing of Contextual Information in the Transformer; "
    "pre-LN / decoders: Ferrando et al. 2023, Explaining How Transformers Use Context to Build Predictions",
    "inside: token i's vector carries the residual x_i",
    "clipped at 0, each row divided by its sum",
    _KNOWN,
    _UNKNOWN_LAYOUT,
    layer_matrix=alti_matrix,
))
register_graph(Graph(
    "value-zeroing",
    "1 - cos(x~_i, x~_i with token j's value vector zeroed): the whole layer rerun, batched",
    "Mohebbi et al. 2023, Quantifying Context Mixing in Transformers",
    "inside: zeroing j's value leaves its residual stream",
    "each row divided by its sum",
    _ALL,
    model_matrices=value_zeroing_matrices,
))
