"""The HTML report over context-mixing graphs: each graph's methods join the page as ``GRAPH/METHOD``.

The page switches between whatever scores the data holds, so a method over the ALTI
graph is one more entry beside ``rollout`` and ``flow`` (``alti/rollout``, ``alti/flow``),
computed for every output as the attention methods are. The graph the page draws (the
layered graph, its routes and flow cuts) stays the attention graph; a note says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..explanation import Explanation
from .registry import ATTENTION, get_graph, result_key, split_key

#: The note the page carries when a context-mixing graph is in it.
DRAWN_NOTE = (
    "Methods named GRAPH/METHOD run over that context-mixing graph (docs/mixing.md); the layered graph drawn "
    "below, its routes and flow cuts, are the attention graph's."
)


def graph_part(explanation: Explanation | None, graph: str) -> Explanation | None:
    """The part of an explanation over one graph, its keys without the ``GRAPH/`` prefix.

    Examples
    --------
    >>> import numpy as np
    >>> e = Explanation(tokens=["a", "b"], scores={"rollout": np.ones((1, 2)), "alti/rollout": np.zeros((1, 2))},
    ...                 output=0)
    >>> graph_part(e, "alti").scores["rollout"].tolist(), list(graph_part(e, "attention").scores)
    ([[0.0, 0.0]], ['rollout'])
    """
    if explanation is None:
        return None
    scores = {split_key(key)[1]: value for key, value in explanation.scores.items() if split_key(key)[0] == graph}
    solutions = {split_key(key)[1]: value for key, value in explanation.solutions.items()
                 if split_key(key)[0] == graph}
    return Explanation(tokens=list(explanation.tokens), scores=scores, output=explanation.output,
                       solutions=solutions)


def report_with_graphs(
    captured: Any, loaded: Any, graphs: Sequence[str], methods: Sequence[str], *, output: Any = None,
    layer: int = -1, explanation: Explanation | None = None, progress: Any = None, capture: Any = None,
    **options: Any,
) -> Any:
    """Report data for ``captured`` with every method over each of ``graphs`` (keys as :func:`result_key` names them).

    ``explanation`` is what ``attnflow.explain(..., graph=graphs)`` computed for ``output``:
    those scores are kept for that output, the report computes the others. ``options``
    (``residual``, ``head_fusion``) are the attention graph's; the context-mixing graphs
    run with residual weight 0. ``capture`` is a :class:`~attnflow.mixing.MixingCapture`
    of the same input, when there is one.

    Examples
    --------
    >>> from attnflow.capture import capture_attention, load_model
    >>> lm = load_model()
    >>> c = capture_attention("Norms count.", lm)
    >>> d = report_with_graphs(c, lm, ["attention", "norm"], ["rollout"])
    >>> d.methods
    ['rollout', 'norm/rollout']
    """
    from ..report.data import report_data, report_data_from_capture
    from ._capture import capture_mixing

    chosen = [get_graph(name).name for name in dict.fromkeys(graphs)]
    data = report_data_from_capture(captured, methods=list(methods), output=output, layer=layer, progress=progress,
                                    explanation=graph_part(explanation, ATTENTION) if ATTENTION in chosen else None,
                                    **options)
    others = [name for name in chosen if name != ATTENTION]
    if not others:
        return data
    keep = ATTENTION in chosen
    scores = dict(data.scores) if keep else {}
    notes = list(data.notes) if keep else []
    if capture is None:
        capture = capture_mixing(loaded, captured.input_ids)
    for name in others:
        part = report_data(
            get_graph(name).matrices(capture), captured.tokens, methods=list(methods), output=data.output,
            layer=layer, residual=0.0, progress=progress, explanation=graph_part(explanation, name),
            special_positions=captured.special_positions,
        )
        product = get_graph(name).rollout_scores(capture, part.output) if "rollout" in part.scores else None
        if product is not None and graph_part(explanation, name) is None:  # GlobEnc: the authors' product
            part = dataclasses.replace(part, scores={**part.scores, "rollout": product})
        scores.update({result_key(name, key): value for key, value in part.scores.items()})
        notes.extend(f"{name} graph: {note}" for note in part.notes)
    notes.append(DRAWN_NOTE)
    return dataclasses.replace(data, scores=scores, notes=notes, flow_cuts=data.flow_cuts if keep else None,
                               shares=data.shares)
