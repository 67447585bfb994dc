"""networkx max-flow on the layered attention graph: the reference for tests and benchmarks.

A solver, for :func:`attnflow.attention_flow`'s ``flow_func``, is any callable

    flow_func(capacities, sink_capacities, sources) -> ndarray

where ``capacities`` is ``(D, n, n)`` (``capacities[k, i, j]`` the capacity of the
edge ``(k, j) -> (k+1, i)``), ``sink_capacities`` is ``(n,)`` (node ``(D, a)`` feeds
the sink through an edge of that capacity) and ``sources`` holds token indices
``j``; it returns the maximum flow value from node ``(0, j)`` to the sink for
each. This is what the paper's authors computed, with networkx's Edmonds–Karp,
one problem at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from ..errors import AttnflowError

SINK = "sink"


def _networkx() -> Any:
    """networkx, an optional dependency (the reference solver only), with the install command if missing."""
    try:
        import networkx
    except ImportError:

        raise AttnflowError(
            "The networkx reference solver needs networkx: pip install 'attnflow[reference]' "
            "(or pip install networkx). attnflow's own flow solver does not need it."
        ) from None
    return networkx


def layered_graph(capacities: np.ndarray, sink_capacities: np.ndarray) -> Any:
    """The flow network as a ``networkx.DiGraph``: nodes ``(k, j)`` and ``"sink"``.

    Edges of capacity zero are left out (networkx treats them as absent anyway).

    Examples
    --------
    >>> g = layered_graph(np.array([[[1.0, 0.0], [0.5, 0.5]]]), np.array([0.0, 1.0]))
    >>> sorted(g.edges(data="capacity"))[:2]
    [((0, 0), (1, 0), 1.0), ((0, 0), (1, 1), 0.5)]
    """
    nx = _networkx()

    capacities = np.asarray(capacities, dtype=np.float64)
    depth = capacities.shape[0]
    graph = nx.DiGraph()
    for k in range(depth):
        heads, tails = np.nonzero(capacities[k])
        graph.add_edges_from(
            ((k, int(j)), (k + 1, int(i)), {"capacity": float(capacities[k, i, j])})
            for i, j in zip(heads, tails, strict=True)
        )
    for a in np.flatnonzero(sink_capacities):
        graph.add_edge((depth, int(a)), SINK, capacity=float(sink_capacities[a]))
    return graph


def networkx_flow(
    capacities: np.ndarray,
    sink_capacities: np.ndarray,
    sources: Sequence[int] | np.ndarray,
    *,
    algorithm: Callable[..., Any] | None = None,
) -> np.ndarray:
    """Maximum flow values by ``networkx.maximum_flow_value``, one source at a time.

    ``algorithm`` is a networkx flow function (``edmonds_karp``, ``preflow_push``,
    ``dinitz``, ...); ``None`` lets networkx choose (preflow-push today).

    Examples
    --------
    >>> cap = np.array([[[0.5, 0.5], [0.0, 1.0]]])
    >>> networkx_flow(cap[:0], cap[0, 1], [0, 1])
    array([0., 1.])
    """
    nx = _networkx()
    graph = layered_graph(capacities, sink_capacities)
    values = np.zeros(len(sources))
    for position, source in enumerate(sources):
        node = (0, int(source))
        if node in graph and SINK in graph:
            values[position] = nx.maximum_flow_value(graph, node, SINK, flow_func=algorithm)
    return values


def _named(algorithm_name: str) -> Callable[..., np.ndarray]:
    from networkx.algorithms import flow

    return partial(networkx_flow, algorithm=getattr(flow, algorithm_name))


def edmonds_karp_flow(capacities, sink_capacities, sources) -> np.ndarray:
    """:func:`networkx_flow` with Edmonds–Karp, the paper's choice."""
    return _named("edmonds_karp")(capacities, sink_capacities, sources)


def preflow_push_flow(capacities, sink_capacities, sources) -> np.ndarray:
    """:func:`networkx_flow` with preflow-push (highest label, global relabelling)."""
    return _named("preflow_push")(capacities, sink_capacities, sources)
