"""Certified attention flow: an interval ``[lower, upper]`` around every value, for long prompts.

Exact flow costs ``l * n^2`` arcs a problem and ``n`` problems an output, which
is out of reach at thousands of tokens. Real attention puts most of a row's
mass on a few keys, so most arcs carry almost nothing; this module solves on a
sparse graph and proves how far its answer can be from the exact one:

- **lower bound**: the maximum flow of the sparse graph (each row's arcs of at
  least ``drop * capacity / n``, the heaviest few). A flow of a subgraph is a flow of the full graph, so its value is
  at most the exact one. The kernel checks it (capacities, conservation).
- **upper bound**: the sparse problem's canonical minimum cut, its capacity
  recounted in the full graph. Every cut bounds every flow.
- the gap is the dropped capacity crossing that cut. Exactly those arcs are
  added back and the problems still too wide are solved again, until every
  width is at most the tolerance; when no dropped arc crosses a cut, the two
  bounds meet and the value is exact.

:func:`attnflow.verify_flow` checks a :class:`FlowBounds` as it checks exact flow:
the lower bounds' flows passed the kernel's check, and every upper bound is
the capacity, recomputed from the full graph, of the cut kept for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from ..errors import AttnflowError
from ..graph import AttentionGraph, HeadFusion, layer_list
from .flow import FlowSolution, Progress, _output_list

#: One ulp of float64 at 1: a sum of ``m`` non-negative terms is off by at most ``m`` of them times its value.
_ULP = 2.0**-52
#: A lower bound's flow must satisfy every capacity and conservation to within this (as exact flow's).
_VIOLATION_LIMIT = 1e-9
#: The first sparse graph keeps each row's arcs of at least this much over n of the output's capacity.
#: Starting sparse and adding back only the arcs that cross the cuts was fastest on SmolLM2 attention
#: (256 and 1024 tokens, docs/flow.md): the first graph keeps about a tenth of the arcs.
DEFAULT_DROP = 0.9
#: Problems are handed to the kernel in chunks of about this many arcs of work, so the budget is checked often.
_CHUNK_ARCS = 2e8


@dataclass
class FlowBounds(FlowSolution):
    """Certified intervals ``lower <= exact flow <= upper`` for every problem, with their proofs.

    Laid out as :class:`FlowSolution` (``(L, n, n)`` or ``(L, n)`` for the mean
    output, NaN where not asked for). ``lower``: the value of a flow of the
    full graph (a sparse graph's maximum flow), checked by the kernel
    (``violations``); ``upper``: the capacity in the full graph of the cut whose
    source side ``cuts`` keeps (so the cut methods of :class:`FlowSolution`, such
    as :meth:`cut_kinds`, describe the cut that bounds each value from above);
    ``cut_capacities`` holds the same upper bounds per problem. ``values`` is the
    middle of each interval, not a proven value. ``complete`` is false when a
    time budget stopped the refinement: the intervals are then still proven,
    only wider than asked. ``rounds``: sparse solves; ``arcs_first`` and
    ``arcs``: arcs of the first and the last sparse graph, of ``arcs_full`` in
    the full one (those below the largest depth).

    Examples
    --------
    >>> a = np.full((3, 1, 4, 4), 0.25)
    >>> bounds = solve_flow_bounds(a, outputs=0, layers=-1, tolerance=1e-3)
    >>> bounds.lower[-1, 0].tolist()
    [1.0, 0.875, 0.875, 0.875]
    >>> bool(np.all(bounds.upper[-1, 0] - bounds.lower[-1, 0] < 1e-14))  # upper: rounded up, a few ulps
    True
    """

    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    tolerance: float = 0.0
    complete: bool = True
    rounds: int = 0
    arcs_first: int = 0
    arcs: int = 0
    arcs_full: int = 0

    def details(self, output: int | str | None) -> Any:
        """Refused: intervals have no exact values (solve exact flow, ``flow_tolerance=0``, for details)."""
        raise AttnflowError(
            "Certified flow intervals have no exact values to give details of; solve exact flow (flow_tolerance=0)."
        )

    def widths(self) -> np.ndarray:
        """``upper - lower`` (NaN where not asked for)."""
        return self.upper - self.lower

    def normalized_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Intervals of the normalized values ``v_j / sum_i v_i``, which the scores show.

        ``v_j / (v_j + rest)`` grows with ``v_j`` and falls with ``rest``, so
        ``lower_j / (lower_j + sum of the others' upper)`` and
        ``upper_j / (upper_j + sum of the others' lower)`` bound it.
        """
        return _normalized(self.lower, self.upper)

    def score_bounds(self, output: int | str | None) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``, each ``(L, n)``: :meth:`normalized_bounds` of one output (``None``: the mean)."""
        if output is None or output == "mean":
            return _normalized(self.lower, self.upper)
        return _normalized(self.lower[:, int(output), :], self.upper[:, int(output), :])


def _normalized(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`FlowBounds.normalized_bounds` of arrays whose last axis is the sources."""
    others_up = np.nansum(upper, axis=-1, keepdims=True) - upper
    others_low = np.maximum(np.nansum(lower, axis=-1, keepdims=True) - lower, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(lower > 0, lower / (lower + others_up), 0.0)
        high = np.where(upper > 0, np.minimum(upper / (upper + others_low), 1.0), 0.0)
    nan = np.isnan(lower)
    return np.where(nan, np.nan, low), np.where(nan, np.nan, high)


def solve_flow_bounds(
    attentions: Any,
    *,
    outputs: int | str | Sequence[int | str] | None = None,
    layers: int | Sequence[int] | None = None,
    residual: float = 0.5,
    head_fusion: HeadFusion | np.ndarray = "mean",
    tolerance: float = 1e-3,
    seconds: float | None = None,
    progress: Progress | None = None,
    graph: AttentionGraph | None = None,
    drop: float | None = None,
) -> FlowBounds:
    """Attention flow as certified intervals of width at most ``tolerance`` times the output's capacity.

    Parameters are those of :func:`attnflow.solve_flow`, and:

    tolerance
        The widest interval asked for, as a fraction of the output's capacity
        (the sum of its in-arcs, 1 for a token): in ``(0, 1)``.
    seconds
        A time budget: when it runs out the refinement stops between two chunks
        of problems and every interval is the best proven so far (``complete``
        false). ``None``: no budget.
    graph
        The :class:`~attnflow.graph.AttentionGraph` of ``attentions``, when already built.
    drop
        The first sparse graph leaves out the arcs below ``drop / n`` of the
        output's capacity (at most ``drop`` of a row's mass); ``None``:
        :data:`DEFAULT_DROP`. A larger value starts sparser and adds more back.

    Examples
    --------
    >>> from attnflow import verify_flow
    >>> rng = np.random.default_rng(0)
    >>> a = rng.dirichlet(np.full(12, 0.1), size=(4, 2, 12))   # peaky rows, like real attention
    >>> bounds = solve_flow_bounds(a, outputs="cls", layers=-1, tolerance=1e-6)
    >>> bool(np.nanmax(bounds.widths()) <= 1e-6) and bounds.complete
    True
    >>> verify_flow(bounds) <= 1e-9
    True
    """
    from ._maxflow_kernel import LayeredMaxFlow

    tolerance = check_flow_tolerance(tolerance, "tolerance", allow_zero=False)
    if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
        raise AttnflowError(f"The 'seconds' parameter must be a positive number of seconds or None; got {seconds!r}.")
    deadline = math.inf if seconds is None else time.perf_counter() + float(seconds)
    if graph is None:
        graph = AttentionGraph.from_attentions(attentions, residual=residual, head_fusion=head_fusion)
    cap = graph.capacities
    n_layers, n = graph.n_layers, graph.n_tokens
    wanted_layers = layer_list(layers, n_layers)
    positions = _output_list(outputs, n)
    mean = positions == "mean"
    groups: list[tuple[int, int | None]] = []
    sink_rows = []
    for layer in sorted(wanted_layers, reverse=True):  # the top first: a budget is spent where users look
        if mean:
            groups.append((layer, None))
            sink_rows.append(np.full(n, 1.0 / n))
        else:
            groups.extend((layer, t) for t in positions)
            sink_rows.extend(cap[layer - 1, t] for t in positions)
    sinks = np.ascontiguousarray(np.stack(sink_rows))
    depths = np.repeat([FlowSolution.depth(layer, t) for layer, t in groups], n)
    rows = np.repeat(np.arange(len(groups)), n)
    sources = np.tile(np.arange(n), len(groups))
    m = sources.size
    max_depth = int(depths.max())
    full = np.ascontiguousarray(cap[:max_depth])
    widest = tolerance * sinks.sum(axis=1)[rows]

    # Trivial bounds, both proven: the zero flow, and the cheaper of the source's own arcs
    # (source side {source}: no bits) and the sink's arcs (every node on the source side).
    lower = np.zeros(m)
    violations = np.zeros(m)
    out_caps = cap[0].sum(axis=0)[sources] if max_depth else sinks[rows, sources]
    sink_totals = sinks.sum(axis=1)[rows]
    upper = np.minimum(out_caps, sink_totals)
    n_bytes = (max(max_depth, 1) * n + 7) // 8
    cuts = np.zeros((m, n_bytes), np.uint8)
    at_sink = (sink_totals < out_caps) & (depths > 0)
    for p in np.flatnonzero(at_sink):
        cuts[p] = _all_ones(int(depths[p]) * n, n_bytes)
    upper = upper * (1.0 + n * _ULP)  # each a sum of at most n capacities

    # Depth 0: the value is the sink's arc from the source, exactly.
    flat = depths == 0
    lower[flat] = upper[flat] = np.where(sinks[rows[flat], sources[flat]] > 0, sinks[rows[flat], sources[flat]], 0.0)

    drop = DEFAULT_DROP if drop is None else check_flow_tolerance(drop, "drop", allow_zero=False)
    kept = full >= drop * sinks.sum(axis=1).min() / n
    rounds = 0
    arcs = arcs_first = int(np.count_nonzero(kept))
    pending = np.flatnonzero(upper - lower > widest)
    while pending.size and time.perf_counter() < deadline:
        rounds += 1
        layer_k, head, tail = np.nonzero(kept)
        solver = LayeredMaxFlow.from_arcs(max_depth, n, layer_k, head, tail, full[layer_k, head, tail])
        arcs = solver.n_arcs
        del layer_k, head, tail
        add = np.zeros(full.shape, dtype=bool)
        done = 0
        while done < pending.size and time.perf_counter() < deadline:
            size = max(solver.n_workers, int(_CHUNK_ARCS / max(1, solver.n_arcs)))
            chunk = pending[done : done + size]
            part = solver.solve_certified(depths[chunk], rows[chunk], sources[chunk], sinks, upper[chunk],
                                          certify=True, check=True, keep_cuts=True)
            bad = np.flatnonzero(~(part.violations <= _VIOLATION_LIMIT))
            if bad.size:
                p = int(chunk[bad[0]])
                layer, t = groups[p // n]
                raise AttnflowError(
                    f"Attention flow failed its own check (layer {layer}, output {'mean' if t is None else t}, "
                    f"source {p % n}: violation {part.violations[bad[0]]:.2e}); please report this with the attention."
                )
            better = part.values > lower[chunk]
            lower[chunk[better]] = part.values[better]
            violations[chunk[better]] = part.violations[better]
            capacity, _ = _full_cuts(full, kept, depths[chunk], sinks, rows[chunk], sources[chunk], part.cuts,
                                     upper[chunk] - lower[chunk] > widest[chunk], add)
            tighter = capacity < upper[chunk]
            upper[chunk[tighter]] = capacity[tighter]
            cuts[chunk[tighter], : part.cuts.shape[1]] = part.cuts[tighter]
            done += chunk.size
            if progress is not None:
                progress(int(np.count_nonzero(upper - lower <= widest)), m)
        pending = np.flatnonzero(upper - lower > widest)
        if not add.any():  # no dropped arc crosses any cut: nothing more to gain (bounds met)
            break
        kept |= add
    complete = not pending.size
    return _bounds(graph, groups, mean, n, lower, upper, cuts, violations, tolerance, complete, rounds,
                   (arcs_first, arcs, int(np.count_nonzero(full > 0))))


def _bounds(graph, groups, mean, n, lower, upper, cuts, violations, tolerance, complete, rounds, arcs):
    """Lay the per-problem bounds out as :class:`FlowSolution` does."""
    n_layers = graph.n_layers
    shape = (n_layers, n) if mean else (n_layers, n, n)
    low, high = np.full(shape, np.nan), np.full(shape, np.nan)
    for g, (layer, t) in enumerate(groups):
        part = slice(g * n, (g + 1) * n)
        if mean:
            low[layer - 1], high[layer - 1] = lower[part], upper[part]
        else:
            low[layer - 1, t], high[layer - 1, t] = lower[part], upper[part]
    return FlowBounds(
        values=(low + high) / 2,
        capacities=graph.capacities,
        groups=groups,
        cut_capacities=upper.reshape(len(groups), n),
        violations=violations.reshape(len(groups), n),
        cuts=cuts,
        certified=True,
        lower=low,
        upper=high,
        tolerance=tolerance,
        complete=complete,
        rounds=rounds,
        arcs_first=arcs[0],
        arcs=arcs[1],
        arcs_full=arcs[2],
    )


def _all_ones(bits: int, n_bytes: int) -> np.ndarray:
    """Packed bits, the first ``bits`` of them set."""
    out = np.zeros(n_bytes * 8, dtype=bool)
    out[:bits] = True
    return np.packbits(out, bitorder="little")


def check_flow_tolerance(value: Any, name: str = "--flow-tolerance", *, allow_zero: bool = True) -> float:
    """``value`` as a width tolerance in ``[0, 1)`` (``(0, 1)`` without ``allow_zero``), or one clear error.

    Examples
    --------
    >>> check_flow_tolerance(1e-3)
    0.001
    >>> check_flow_tolerance(float("nan"))
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: --flow-tolerance must be a number in [0, 1) (0: exact flow); got nan.
    """
    low = "[0, 1) (0: exact flow)" if allow_zero else "(0, 1)"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (0.0 <= number < 1.0) or (number == 0.0 and not allow_zero):
        raise AttnflowError(f"{name} must be a number in {low}; got {value!r}.")
    return number


@nb.njit(parallel=True, cache=True)
def _full_cuts(full, kept, depths, sinks, rows, sources, cuts, wide, add):  # pragma: no cover - compiled
    """Each cut's capacity in the full graph, rounded up; marks in ``add`` the dropped arcs crossing wide ones.

    ``cuts[p]``: source side of problem ``p`` as bits (node ``(k, a)``, ``k >= 1``,
    is bit ``(k-1) * n + a``; ``(0, sources[p])`` is on it). Returns the
    capacities and the number of arcs each crosses. The sum of ``m`` arcs
    is rounded up by ``m`` ulps of itself, so it is never below the exact sum.
    """
    m = depths.shape[0]
    n = full.shape[1]
    capacity = np.empty(m)
    terms = np.zeros(m, np.int64)
    for p in nb.prange(m):
        depth = depths[p]
        side = np.zeros((depth + 1) * n, np.bool_)
        side[sources[p]] = True
        for bit in range(depth * n):
            side[n + bit] = (cuts[p, bit >> 3] >> (bit & 7)) & 1
        inside = np.empty(n, np.int64)
        total = 0.0
        count = 0
        for k in range(depth):
            size = 0
            for a in range(n):
                if side[k * n + a]:
                    inside[size] = a
                    size += 1
            if size == 0:
                continue
            for i in range(n):
                if side[(k + 1) * n + i]:
                    continue
                row = full[k, i]
                for q in range(size):
                    c = row[inside[q]]
                    if c > 0.0:
                        total += c
                        count += 1
                        if wide[p] and not kept[k, i, inside[q]]:
                            add[k, i, inside[q]] = True
        sink = sinks[rows[p]]
        for a in range(n):
            if side[depth * n + a] and sink[a] > 0.0:
                total += sink[a]
                count += 1
        capacity[p] = total * (1.0 + count * _ULP)
        terms[p] = count
    return capacity, terms
