"""The HTML report over context-mixing graphs: each graph's methods join the page as ``GRAPH/METHOD``.

The page switches between whatever scores the data holds, so a method over the ALTI
graph is one more entry beside ``rollout`` and ``flow`` (``alti/rollout``, ``alti/flow``),
computed for every output by the explain core (:func:`attnflow.core.score_capture`) as the
attention methods are. The graph the page draws (the
layered graph, its routes and flow cuts) stays the attention graph; a note says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..core import OutputScores
from ..errors import AttnflowError
from ..explanation import Explanation
from ..methods.attribution import available_attributions, is_attribution
from ..mixing import ATTENTION, context_mixing, get_graph, result_key, split_key
from .data import ReportData, report_data_from_capture

#: The note the page carries when a context-mixing graph is in it.
DRAWN_NOTE = (
    "Methods named GRAPH/METHOD run over that context-mixing graph (docs/mixing.md); the layered graph drawn "
    "below, its routes and flow cuts, are the attention graph's."
)
#: The notes of attribution methods (core._add_at_output), which belong to no graph and are not prefixed with one.
_INPUT_NOTES = tuple(f"Method {name} scores the input" for name in available_attributions())


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
    captured: Any, graphs: Sequence[str], methods: Sequence[str], explanation: Explanation, *, layer: int = -1,
    **options: Any,
) -> ReportData:
    """Report data for ``captured`` with every method over each of ``graphs`` (keys as :func:`result_key` names them).

    ``explanation`` is what ``attnflow.explain(..., graph=graphs, every_output="auto")``
    computed: its :attr:`~attnflow.Explanation.every_output` holds each graph's scores for
    every output (:func:`attnflow.core.score_capture`), which the page shows as they are;
    nothing is computed here. ``options`` (``residual``, ``head_fusion``) are the attention
    graph's, for the graph the page draws.

    Examples
    --------
    >>> import attnflow
    >>> from attnflow.capture import capture_attention, load_model
    >>> lm = load_model()
    >>> c = capture_attention("Norms count.", lm)
    >>> e = attnflow.explain("Norms count.", lm, ["rollout"], graph=["attention", "norm"], captured=c,
    ...                      every_output="auto")
    >>> report_with_graphs(c, ["attention", "norm"], ["rollout"], e).methods
    ['rollout', 'norm/rollout']
    """

    chosen = [get_graph(name).name for name in dict.fromkeys(graphs)]
    computed = explanation.every_output
    if any(name not in computed for name in chosen):
        raise AttnflowError(
            "The explanation holds no scores for every output: explain with every_output='auto' for a report."
        )
    keep = ATTENTION in chosen
    first = computed[ATTENTION] if keep else OutputScores(outputs=computed[chosen[0]].outputs, scores={})
    data = report_data_from_capture(captured, methods=list(methods), output=explanation.output, layer=layer,
                                    explanation=graph_part(explanation, ATTENTION) if keep else None,
                                    computed=first, **options)
    others = context_mixing(chosen)
    if not others:
        return data
    scores = dict(data.scores) if keep else {}
    notes = list(data.notes) if keep else []
    for name in others:  # an attribution method (scores of the input, in no graph) keeps its own name
        scores.update({key if is_attribution(key) else result_key(name, key): value
                       for key, value in computed[name].scores.items()})
        notes.extend(note if note.startswith(_INPUT_NOTES) else f"{name} graph: {note}"
                     for note in computed[name].notes)
    notes.append(DRAWN_NOTE)
    return dataclasses.replace(data, scores=scores, notes=notes, flow_cuts=data.flow_cuts if keep else None,
                               shares=data.shares)
