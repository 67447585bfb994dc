"""Context-mixing graphs: what each token takes from each other token in every layer, beyond attention weights.

The graph is one choice, the aggregation another: every graph here gives ``(L, n, n)``
matrices with rows summing to 1 and the residual already inside, and raw, rollout and
flow run over them (``attnflow.explain(text, graph="alti")``, ``attnflow explain --graph
alti``). Graphs: ``attention`` (the weights; the methods add the residual), ``norm``
(Kobayashi et al. 2020/2021), ``globenc`` (Modarressi et al. 2022, post-LN encoders),
``alti`` (Ferrando et al. 2022; pre-LN and decoders: Ferrando et al. 2023) and
``value-zeroing`` (Mohebbi et al. 2023). See ``docs/mixing.md``.

Examples
--------
>>> m = mixing_graph("The cat sat.", graph="alti")
>>> m.matrices.shape, m.tokens[0]
((6, 6, 6), '[CLS]')
>>> bool(np.allclose(m.matrices.sum(-1), 1.0))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..capture import capture_attention, load_model
from ..capture.mixing import LayerTensors, MixingCapture, capture_mixing, capture_text
from ..errors import AttnflowError
from .registry import ATTENTION, Graph, available_graphs, context_mixing, get_graph, result_key, split_key

__all__ = [
    "ATTENTION",
    "Graph",
    "LayerTensors",
    "MixingCapture",
    "MixingGraph",
    "available_graphs",
    "capture_mixing",
    "capture_text",
    "context_mixing",
    "get_graph",
    "graph_matrices",
    "graph_names",
    "mixing_graph",
    "result_key",
    "split_key",
]


@dataclass
class MixingGraph:
    """One text's context-mixing matrices: ``matrices[l-1, i, j]`` is ``j``'s share in ``i`` after layer ``l``."""

    graph: str
    matrices: np.ndarray
    tokens: list[str]
    model_name: str


def graph_names(graphs: Sequence[str] | str | None) -> list[str]:
    """``graphs`` as a list of registered names, duplicates dropped (``None``: ``["attention"]``).

    Examples
    --------
    >>> graph_names("alti"), graph_names(None), graph_names(["ALTI", "attention", "alti"])
    (['alti'], ['attention'], ['alti', 'attention'])
    """
    if graphs is None:
        return [ATTENTION]
    if isinstance(graphs, str):
        graphs = [graphs]
    try:
        names = list(graphs)
    except TypeError:
        names = None
    if names is None or not names or not all(isinstance(name, str) for name in names):
        raise AttnflowError(
            f"The 'graph' parameter must be a graph name or a non-empty list of them "
            f"({', '.join(available_graphs())}); got {graphs!r} instead."
        )
    return list(dict.fromkeys(get_graph(name).name for name in names))


def graph_matrices(graph: str, loaded: Any, input_ids: Sequence[int] | None = None, *,
                   capture: MixingCapture | None = None) -> np.ndarray:
    """``(L, n, n)`` matrices of ``graph`` for one text's ``input_ids`` (or an existing ``capture``).

    ``attention`` gives the ``(L, H, n, n)`` weights instead (the methods fuse heads and add
    the residual). Raises :class:`AttnflowError` naming why when the graph is not defined
    for the model's architecture.

    Examples
    --------
    >>> from attnflow.capture import load_model, capture_attention
    >>> lm = load_model()
    >>> ids = capture_attention("Norms count.", lm).input_ids
    >>> graph_matrices("norm", lm, ids).shape
    (6, 5, 5)
    """
    chosen = get_graph(graph)
    if capture is None:
        capture = capture_mixing(loaded, input_ids)
    return chosen.matrices(capture)


def mixing_graph(text: str, model: Any = None, graph: str = "alti", *, tokenizer: Any = None,
                 truncate: bool = False) -> MixingGraph:
    """Build the ``graph`` matrices of ``text`` with ``model`` (default: the bundled MiniLM).

    Examples
    --------
    >>> mixing_graph("Values zeroed.", graph="value-zeroing").matrices.shape
    (6, 6, 6)
    """

    loaded = load_model(model, tokenizer)
    captured = capture_attention(text, loaded, truncate=truncate)
    matrices = graph_matrices(graph, loaded, captured.input_ids)
    return MixingGraph(get_graph(graph).name, matrices, list(captured.tokens), captured.model_name)
