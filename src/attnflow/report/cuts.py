"""The minimum cuts that prove flow's values, in the form the report's graph draws them.

For the explained output, at every layer, each input token's flow comes with its
canonical minimum cut (:class:`attnflow.methods.flow.FlowSolution`): the nodes
still reachable from the token in the final residual graph. The page receives
each cut's source side as flat node indices ``k * n + a`` (node ``a`` of node
layer ``k``, the token itself at ``k = 0`` implied) and what bounds the value
(``source``, ``output`` or ``inside``, :meth:`~attnflow.methods.flow.FlowSolution.cut_kinds`).
It draws the cut's edges, those from a node on the source side to one off it,
as view arithmetic on the capacities it already has; it computes no flow.

A source side holds the token alone when the cut is at the source, so a page
with cuts grows by about ``L * n`` numbers for those and by the side's size
for the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AttnflowError


def flow_cuts(solution: Any, output: int | str, n_layers: int) -> dict[str, Any]:
    """The cuts of ``output``'s flow at every layer, JSON-ready, for the report's graph.

    Returns ``{"output": output, "layers": [{"kinds": [...], "sides": [[...], ...]}, ...]}``,
    one entry per layer ``1..L``; ``sides[j]`` lists the nodes ``k * n + a`` with
    ``k >= 1`` on token ``j``'s side of its cut.

    Examples
    --------
    >>> from attnflow.methods.flow import solve_flow
    >>> a = np.full((2, 1, 3, 3), 1 / 3)
    >>> cuts = flow_cuts(solve_flow(a, outputs=[0]), 0, 2)
    >>> cuts["layers"][1]["kinds"], cuts["layers"][1]["sides"][0]
    (['source', 'inside', 'inside'], [])
    """
    if solution.cuts is None:
        raise AttnflowError("flow_cuts needs a flow solution with its cuts: solve_flow(..., keep_cuts=True).")
    key = None if output == "mean" else int(output)
    n = solution.n_tokens
    layers = []
    for layer in range(1, n_layers + 1):
        sides = solution.source_sides(layer, key)
        breakdowns = solution.cut_breakdowns(layer, key)
        kinds = solution.cut_kinds(layer, key, breakdowns=breakdowns)
        flat = sides[:, 1:, :].reshape(n, -1)
        layers.append(
            {"kinds": kinds, "sides": [(np.flatnonzero(row) + n).tolist() for row in flat]}
        )
    return {"output": output, "layers": layers}


def check_flow_cuts(cuts: Any, n: int, n_layers: int) -> dict[str, Any] | None:
    """Validate cuts read back from report JSON; ``None`` stays ``None``.

    Examples
    --------
    >>> check_flow_cuts({"output": 0, "layers": [{"kinds": ["source"], "sides": [[]]}]}, 1, 1)["output"]
    0
    """
    if cuts is None:
        return None
    try:
        layers = list(cuts["layers"])
        if len(layers) != n_layers:
            raise ValueError(f"{len(layers)} layers of cuts for {n_layers} layers")
        checked = []
        for layer, entry in enumerate(layers, start=1):
            kinds = [str(kind) for kind in entry["kinds"]]
            sides = [[int(node) for node in side] for side in entry["sides"]]
            if len(kinds) != n or len(sides) != n:
                raise ValueError(f"layer {layer} has cuts for {len(sides)} tokens, not {n}")
            if any(not n <= node < (layer + 1) * n for side in sides for node in side):
                raise ValueError(f"layer {layer} names a node outside its problem")
            checked.append({"kinds": kinds, "sides": sides})
        return {"output": cuts["output"], "layers": checked}
    except (KeyError, TypeError, ValueError) as exc:
        raise AttnflowError(f"Malformed flow cuts in the report data: {exc}") from None
