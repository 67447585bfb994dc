"""Attention flow (Abnar & Zuidema 2020, §3 of "Quantifying Attention Flow"), exact.

``F[l][t, j]`` is the value of the maximum flow from input node ``(0, j)`` to node
``(l, t)`` in the layered attention graph (docs/design.md §3, §5): one
single-source, single-sink problem per entry, solved exactly in float64 by the
compiled kernel in :mod:`._maxflow_kernel`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..graph import AttentionGraph, HeadFusion, layer_list
from ..outputs import resolve_output
from .registry import register_method

FlowFunc = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Progress = Callable[[int, int], None]

#: Problems are handed to the kernel in chunks of about this many seconds of
#: work per thread, so progress is reported and Ctrl-C honoured that often.
_CHUNK_SECONDS = 0.25
#: Rough cost of one problem per edge of its graph, in seconds (measured, high side).
_SECONDS_PER_EDGE = 1e-9
#: A flow the kernel found must satisfy every capacity and conservation to within this.
_VIOLATION_LIMIT = 1e-9


def attention_flow(
    attentions: Any,
    *,
    outputs: int | str | Sequence[int | str] | None = None,
    layers: int | Sequence[int] | None = None,
    residual: float = 0.5,
    head_fusion: HeadFusion | np.ndarray = "mean",
    normalize: bool = True,
    flow_func: FlowFunc | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Exact attention flow: maximum flow from each input token to each output position.

    Parameters
    ----------
    attentions
        ``(L, H, n, n)``, fused ``(L, n, n)`` or a list of per-layer arrays; numpy
        or torch. Rows must sum to 1 (softmax weights, padding removed).
    outputs
        Which positions ``t`` to compute: a token index (negative counts from the
        end), ``"cls"``, ``"last"``, a sequence of those, or ``None`` for every
        token. ``"mean"`` asks instead for the flow into a super-sink fed by
        every token of the layer with capacity ``1/n`` (a mean-pooled output).
    layers
        Which layers ``l`` (1-based; negative counts from the top) to compute;
        ``None`` for all.
    residual
        Weight ``r`` of the residual connection: ``Ahat = rownorm((1-r) Abar + r I)``.
    head_fusion
        ``"mean"`` (the paper), ``"max"``, ``"min"``, or head weights ``(L, H)``.
    normalize
        Divide each computed row by its sum, as the paper reports flow. With
        ``False`` the raw maximum-flow values are returned.
    flow_func
        The max-flow solver. ``None`` uses the compiled kernel (exact in float64,
        parallel over the cores); the default may change. Any callable
        ``flow_func(capacities, sink_capacities, sources) -> values`` works,
        for example ``attnflow.methods._flow_reference.edmonds_karp_flow``: it is
        called once per output position and layer with that layer's graph
        ``capacities`` ``(D, n, n)``, the capacities ``(n,)`` of the edges from its
        top layer into the sink, and every token as a source.
    progress
        Called as ``progress(done, total)`` (numbers of max-flow problems) after
        every chunk of work, about four times a second, for a progress bar.
        Work runs in such chunks, so a ``KeyboardInterrupt`` (Ctrl-C) stops the
        computation between two of them and leaves nothing behind.

    Returns
    -------
    ndarray ``(L, n, n)``, or ``(L, n)`` for ``outputs="mean"``
        ``[l-1, t, j]`` is the flow from input token ``j`` to position ``t`` at
        layer ``l`` (``[l-1, j]`` for the mean output). Entries not asked for
        through ``outputs`` and ``layers`` are NaN. Computed rows sum to 1 when
        ``normalize`` is true; raw values lie in ``[0, 1]``.

    Raises
    ------
    AttnflowError
        For malformed attention or options.

    Notes
    -----
    Each entry is a separate maximum-flow problem on a graph of ``l * n^2``
    edges; the kernel stops a problem as soon as its flow reaches
    ``min(1, sum_i Ahat[1][i, j])``, which bounds it, and on graphs a few
    layers deep most problems do (docs/design.md §5). Raw flow into layer 1 equals
    ``Ahat[1]`` exactly.

    Examples
    --------
    >>> a = np.array([[[0.0, 1.0], [0.0, 1.0]]] * 2)   # two layers, everyone attends to token 1
    >>> attention_flow(a)[-1]
    array([[0.33333333, 0.66666667],
           [0.        , 1.        ]])
    >>> attention_flow(a, outputs=0, layers=-1, normalize=False)[-1]
    array([[0.5, 1. ],
           [nan, nan]])
    """
    if not isinstance(normalize, (bool, np.bool_)):
        raise AttnflowError(f"The 'normalize' parameter must be True or False; got {normalize!r}.")
    solution = solve_flow(
        attentions, outputs=outputs, layers=layers, residual=residual, head_fusion=head_fusion,
        flow_func=flow_func, progress=progress, keep_cuts=False,
    )
    return solution.normalized() if normalize else solution.values.copy()


@dataclass
class FlowSolution:
    """Exact attention flow with its proof: each value, and the minimum cut that certifies it.

    ``values`` are the raw maximum-flow values, laid out as :func:`attention_flow`
    returns them (``(L, n, n)``, or ``(L, n)`` for the mean output; NaN where not
    asked for). Problem ``(layer, output, source)`` is the flow from input node
    ``(0, source)`` to ``(layer, output)`` (``output=None``: the mean super-sink).
    For each, ``cut_capacities[g, source]`` (``g`` indexing ``groups``) holds the
    capacity of its canonical minimum cut (the nodes still reachable from the
    source in the final residual graph) as the kernel computed it, and
    ``violations`` the largest violation of a capacity or of conservation its
    flow showed. ``cuts`` keeps each cut's source side as bits (``None`` unless
    asked for): :meth:`source_side` unpacks one. :func:`verify_flow` checks the
    lot against the graph.

    Examples
    --------
    >>> a = np.array([[[0.0, 1.0], [0.0, 1.0]]] * 2)
    >>> solution = solve_flow(a, outputs=0, layers=-1)
    >>> solution.values[-1, 0].tolist(), solution.cut_kinds(2, 0)
    ([0.5, 1.0], ['source', 'output'])
    """

    values: np.ndarray
    capacities: np.ndarray
    groups: list[tuple[int, int | None]]
    cut_capacities: np.ndarray
    violations: np.ndarray
    cuts: np.ndarray | None = None
    certified: bool = True

    @property
    def n_tokens(self) -> int:
        return int(self.capacities.shape[-1])

    def normalized(self) -> np.ndarray:
        """Each computed row divided by its sum, as the paper reports flow."""
        totals = self.values.sum(axis=-1, keepdims=True)
        safe = np.where(totals > 0, totals, 1.0)
        return np.where(totals > 0, self.values / safe, self.values)

    def _group(self, layer: int, output: int | str | None) -> int:
        key = (int(layer), None if output is None or output == "mean" else int(output))
        try:
            return self.groups.index(key)
        except ValueError:
            raise AttnflowError(
                f"This flow solution has no problems for layer {layer}, output {output!r}; it has "
                f"{self.groups[:6]}{' ...' if len(self.groups) > 6 else ''}."
            ) from None

    def row(self, layer: int, output: int | str | None) -> np.ndarray:
        """The raw values of one layer and output, ``(n,)``."""
        self._group(layer, output)
        return self.values[layer - 1] if output is None or output == "mean" else self.values[layer - 1, int(output)]

    def sink_capacities(self, layer: int, output: int | str | None) -> np.ndarray:
        """The capacities into the sink of ``(layer, output)``'s problems, ``(n,)``."""
        if output is None or output == "mean":
            return np.full(self.n_tokens, 1.0 / self.n_tokens)
        return self.capacities[layer - 1, int(output)]

    @staticmethod
    def depth(layer: int, output: int | str | None) -> int:
        """Node layers between the source and the sink in ``(layer, output)``'s problems."""
        return int(layer) if output is None or output == "mean" else int(layer) - 1

    def source_sides(self, layer: int, output: int | str | None) -> np.ndarray:
        """``(n, depth + 1, n)`` booleans: ``[j, k, a]`` is node ``(k, a)`` on source ``j``'s side of its cut."""
        if self.cuts is None:
            raise AttnflowError("This flow solution kept no cuts: solve it with solve_flow(..., keep_cuts=True).")
        g = self._group(layer, output)
        n = self.n_tokens
        depth = self.depth(layer, output)
        bits = np.unpackbits(self.cuts[g * n : (g + 1) * n], axis=1, bitorder="little")[:, : depth * n]
        sides = np.zeros((n, depth + 1, n), dtype=bool)
        sides[np.arange(n), 0, np.arange(n)] = True
        sides[:, 1:] = bits.reshape(n, depth, n).astype(bool)
        return sides

    def source_side(self, layer: int, output: int | str | None, source: int) -> np.ndarray:
        """``(depth + 1, n)`` booleans: which nodes lie on ``source``'s side of its canonical cut."""
        return self.source_sides(layer, output)[source]

    def cut_breakdowns(self, layer: int, output: int | str | None) -> np.ndarray:
        """``(n, depth + 1)``: ``[j, k]`` is the capacity of source ``j``'s cut arcs leaving node layer ``k``.

        Column 0 is the source's own arcs (into layer 1), the last column the arcs
        into the sink; a row sums to the cut's capacity. Recomputed from the graph,
        in time linear in each cut's edges.
        """
        return _crossing(self.capacities, self.sink_capacities(layer, output), self.source_sides(layer, output))

    def cut_breakdown(self, layer: int, output: int | str | None, source: int) -> np.ndarray:
        """One row of :meth:`cut_breakdowns`."""
        return self.cut_breakdowns(layer, output)[source]

    def cut_kinds(
        self, layer: int, output: int | str | None, *, tolerance: float = 1e-9, breakdowns: np.ndarray | None = None
    ) -> list[str]:
        """What bounds each source's flow: ``"source"``, ``"output"`` or ``"inside"``.

        ``"source"``: the canonical cut is the source's own arcs, so the flow is
        the attention the token receives in layer 1 (its first-layer column sum)
        and says nothing more; ``"output"``: the flow equals the capacity into the
        output, which bounds every token alike; ``"inside"``: a real bottleneck
        in between (:meth:`cut_breakdown` gives the layers its cut crosses).
        Where two apply (a tie), the first in this order is given. ``breakdowns``:
        :meth:`cut_breakdowns` of the same layer and output, when already computed.
        """
        sink_total = float(self.sink_capacities(layer, output).sum())
        values = self.row(layer, output)
        if breakdowns is None:
            breakdowns = self.cut_breakdowns(layer, output)
        kinds = []
        for source, parts in enumerate(breakdowns):
            if parts.sum() - parts[0] <= tolerance:
                kinds.append("source")
            elif abs(values[source] - sink_total) <= tolerance:
                kinds.append("output")
            else:
                kinds.append("inside")
        return kinds

    def details(self, output: int | str | None) -> FlowDetails:
        """What a task reads of one output's flow at every layer: raw values, cut kinds, source bounds.

        Every layer ``1..L`` must have been solved for ``output``. Far smaller than the solution,
        which keeps every cut: per layer ``n`` float64 values and ``n`` int8 codes.

        >>> a = np.full((3, 1, 4, 4), 0.25)
        >>> found = solve_flow(a, outputs=0).details(0)
        >>> found.values[-1].tolist(), found.kind_names(3), found.source_bound.tolist()
        ([1.0, 0.875, 0.875, 0.875], ['source', 'inside', 'inside', 'inside'], [1.0, 1.0, 1.0, 1.0])
        """
        n_layers = self.capacities.shape[0]
        values = np.stack([self.row(layer, output) for layer in range(1, n_layers + 1)]).astype(np.float64)
        codes = np.array(
            [[CUT_KINDS.index(kind) for kind in self.cut_kinds(layer, output)] for layer in range(1, n_layers + 1)],
            dtype=np.int8,
        ).reshape(n_layers, self.n_tokens)
        bound = np.minimum(1.0, self.capacities[0].sum(axis=0))
        return FlowDetails(values=values, kinds=codes, source_bound=bound)


#: The kinds of a minimum cut (:meth:`FlowSolution.cut_kinds`), in the order :class:`FlowDetails` codes them.
CUT_KINDS: tuple[str, ...] = ("source", "output", "inside")


@dataclass(frozen=True)
class FlowDetails:
    """One output's exact flow at every layer, as tasks read it (:meth:`FlowSolution.details`).

    ``values``: ``(L, n)`` raw maximum-flow values from each input token into the output
    at each layer. ``kinds``: ``(L, n)`` int8 codes into :data:`CUT_KINDS`, what bounds each
    value (:meth:`FlowSolution.cut_kinds`). ``source_bound``: ``(n,)``, ``min(1, sum_i Ahat[1][i, j])``,
    the most any flow from token ``j`` can be (the sink takes in at most 1).

    Examples
    --------
    >>> d = FlowDetails(np.array([[0.5, 1.0]]), np.array([[0, 2]], dtype=np.int8), np.array([0.5, 1.0]))
    >>> d.kind_names(1), d.at_bound().tolist()
    (['source', 'inside'], [[True, True]])
    """

    values: np.ndarray
    kinds: np.ndarray
    source_bound: np.ndarray

    def kind_names(self, layer: int) -> list[str]:
        """The cut kind of each token's flow at ``layer`` (1-based), as names."""
        return [CUT_KINDS[code] for code in self.kinds[layer - 1]]

    def at_bound(self, tolerance: float = 1e-9) -> np.ndarray:
        """``(L, n)`` booleans: which values lie within ``tolerance`` of their source bound."""
        return np.abs(self.values - self.source_bound[None, :]) <= tolerance


def solve_flow(
    attentions: Any,
    *,
    outputs: int | str | Sequence[int | str] | None = None,
    layers: int | Sequence[int] | None = None,
    residual: float = 0.5,
    head_fusion: HeadFusion | np.ndarray = "mean",
    flow_func: FlowFunc | None = None,
    progress: Progress | None = None,
    keep_cuts: bool = True,
) -> FlowSolution:
    """Exact attention flow with a certificate for every value: raw values, cuts, flow checks.

    Parameters are those of :func:`attention_flow`. With ``keep_cuts`` (the
    default) the compiled kernel finds each value's canonical cut and keeps its
    source side (``depth * n / 8`` bytes a problem), and checks every flow it
    finds (capacities, conservation) before it lets go of it: an
    :class:`AttnflowError` is raised should one fail, and :func:`verify_flow`
    then checks every cut against the graph. Without it (what
    :func:`attention_flow` does) the values are the same but unproven, and come
    faster where most problems are easy. With a ``flow_func`` there are no
    certificates (``certified`` is false).

    Examples
    --------
    >>> a = np.full((3, 1, 4, 4), 0.25)
    >>> solution = solve_flow(a, outputs="cls", layers=-1)
    >>> solution.row(3, 0).tolist(), solution.cut_kinds(3, 0)
    ([1.0, 0.875, 0.875, 0.875], ['source', 'inside', 'inside', 'inside'])
    >>> verify_flow(solution) <= 1e-9
    True
    """
    graph = AttentionGraph.from_attentions(attentions, residual=residual, head_fusion=head_fusion)
    cap = graph.capacities
    n_layers, n = graph.n_layers, graph.n_tokens
    wanted_layers = layer_list(layers, n_layers)
    positions = _output_list(outputs, n)
    if flow_func is not None and not callable(flow_func):
        raise AttnflowError(
            "The 'flow_func' parameter must be None or a callable "
            f"flow_func(capacities, sink_capacities, sources); got {flow_func!r} instead."
        )
    if progress is not None and not callable(progress):
        raise AttnflowError(
            f"The 'progress' parameter must be None or a callable progress(done, total); "
            f"got {progress!r} instead."
        )

    # One group per computed row: (layer, position or None for "mean", depth, sink capacities).
    mean = positions == "mean"
    groups: list[tuple[int, int | None, int, np.ndarray]] = []
    for layer in wanted_layers:
        if mean:
            groups.append((layer, None, layer, np.full(n, 1.0 / n)))
        else:
            groups.extend((layer, t, layer - 1, cap[layer - 1, t]) for t in positions)
    solved = _solve(cap, groups, n, flow_func, progress, keep_cuts)

    values = np.full((n_layers, n) if mean else (n_layers, n, n), np.nan)
    for g, (layer, t, _, _) in enumerate(groups):
        row = solved.values[g * n : (g + 1) * n]
        if mean:
            values[layer - 1] = row
        else:
            values[layer - 1, t] = row
    return FlowSolution(
        values=values,
        capacities=cap,
        groups=[(layer, t) for layer, t, _, _ in groups],
        cut_capacities=solved.cut_capacities.reshape(len(groups), n),
        violations=solved.violations.reshape(len(groups), n),
        cuts=solved.cuts,
        certified=flow_func is None and keep_cuts,
    )


def verify_flow(solution: FlowSolution, *, tolerance: float = 1e-9) -> float:
    """Check every value of ``solution`` against its certificate; returns the largest discrepancy.

    For each problem: the kernel's check of its flow found no violation of a
    capacity or of conservation above ``tolerance``; and the capacity of its cut,
    recomputed here from the graph in time linear in its edges, equals the value
    within ``tolerance`` plus the kernel's round-off allowance (``CUT_TOL`` per
    arc crossing the cut). A feasible flow and a cut of equal capacity prove
    each other optimal (max-flow min-cut), with no second solver.

    A :class:`~attnflow.methods.flow_bounds.FlowBounds` is checked the same
    way at both ends of each interval: its lower bound's flow passed the
    kernel's check, its upper bound is the recomputed capacity of the cut kept
    for it, and the lower bound does not exceed it.

    Raises
    ------
    AttnflowError
        When a value is not proven, naming the problem.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a = rng.dirichlet(np.ones(6), size=(4, 2, 6))
    >>> verify_flow(solve_flow(a, outputs=[0, 5])) < 1e-12
    True
    """
    from ._maxflow_kernel import CUT_TOL

    if not isinstance(solution, FlowSolution):
        raise AttnflowError(
            f"The 'solution' parameter must be a FlowSolution (solve_flow's result); got {type(solution).__name__}."
        )
    if not solution.certified or solution.cuts is None:
        raise AttnflowError(
            "This flow solution carries no certificates: solve it with solve_flow(..., keep_cuts=True) "
            "and the compiled kernel (no flow_func)."
        )
    bounds = getattr(solution, "upper", None) is not None  # a FlowBounds: check both ends of each interval
    worst = 0.0
    for g, (layer, output) in enumerate(solution.groups):
        values = solution.row(layer, output)
        if bounds:
            values = solution.upper[layer - 1] if output is None else solution.upper[layer - 1, output]
            lower = solution.lower[layer - 1] if output is None else solution.lower[layer - 1, output]
        sides = solution.source_sides(layer, output)
        sink = solution.sink_capacities(layer, output)
        capacities = _crossing(solution.capacities, sink, sides).sum(axis=1)
        arcs = _crossing(solution.capacities > 0, sink > 0, sides, both_ways=True).sum(axis=1)
        allowance = tolerance + CUT_TOL * arcs
        gaps = np.abs(capacities - values)
        if bounds:  # the lower bound is a checked flow's value, so it cannot exceed a cut's capacity
            crossed = np.flatnonzero(~(lower <= capacities + allowance))
            if crossed.size:
                source = int(crossed[0])
                raise AttnflowError(
                    f"Flow layer {layer}, output {'mean' if output is None else output}, source {source}: lower bound "
                    f"{lower[source]!r} above the upper bound's cut capacity {capacities[source]!r}."
                )
        for source in np.flatnonzero(~(solution.violations[g] <= tolerance) | ~(gaps <= allowance)):
            problem = f"layer {layer}, output {'mean' if output is None else output}, source {source}"
            if not solution.violations[g, source] <= tolerance:
                raise AttnflowError(
                    f"Flow {problem}: the flow breaks a capacity or conservation by "
                    f"{solution.violations[g, source]:.2e}."
                )
            raise AttnflowError(
                f"Flow {problem}: value {values[source]!r} but its cut has capacity {capacities[source]!r} "
                f"(difference {gaps[source]:.2e}, allowed {allowance[source]:.2e})."
            )
        worst = max(worst, float(gaps.max(initial=0.0)))
    return worst


def _crossing(capacities: np.ndarray, sink: np.ndarray, sides: np.ndarray, *, both_ways: bool = False) -> np.ndarray:
    """``(m, depth + 1)``: per cut, the capacity of its arcs leaving each node layer (matrix products).

    ``sides``: ``(m, depth + 1, n)`` source sides. With ``both_ways`` the arcs
    entering the source side count too (for counting the arcs that cross).
    """
    weights = np.asarray(capacities, dtype=np.float64)
    depth = sides.shape[1] - 1
    out = np.empty((sides.shape[0], depth + 1))
    for k in range(depth):
        inside, above = sides[:, k].astype(np.float64), sides[:, k + 1]
        leaving = inside @ weights[k].T  # [m, i]: capacity from the source side of layer k into (k + 1, i)
        out[:, k] = np.where(above, 0.0, leaving).sum(axis=1)
        if both_ways:
            entering = (1.0 - inside) @ weights[k].T
            out[:, k] += np.where(above, entering, 0.0).sum(axis=1)
    out[:, depth] = sides[:, depth].astype(np.float64) @ np.asarray(sink, dtype=np.float64)
    return out


#: Seconds per arc of a problem's graph and per thread, measured on MiniLM attention (high side).
SECONDS_PER_ARC = 1.5e-8
#: Without --flow-tolerance, flow is exact when its estimate is at most this many seconds
#: (or --flow-seconds), else certified intervals of width DEFAULT_TOLERANCE.
EXACT_SECONDS = 60.0
#: Width of the certified intervals flow falls back to when exact flow would be too slow.
DEFAULT_TOLERANCE = 1e-3


def estimate_flow_seconds(
    n_layers: int, n: int, *, outputs: int = 1, layers: Sequence[int] | None = None, threads: int | None = None
) -> float:
    """A rough estimate (high side) of :func:`attention_flow`'s time for ``outputs`` outputs at ``layers``.

    Each output at layer ``l`` is ``n`` problems on a graph of about ``l * n^2``
    arcs; the kernel's time per arc, measured on the attention of real models
    (``benchmarks/flow.py``), is ``SECONDS_PER_ARC`` per thread. Random
    attention is usually much faster (most problems end in the first phase).

    Examples
    --------
    >>> estimate_flow_seconds(6, 128, threads=2) < 1 < estimate_flow_seconds(24, 2048, threads=2)
    True
    """
    import numba

    wanted = range(1, n_layers + 1) if layers is None else layers
    arcs = sum(int(layer) for layer in wanted) * float(n) ** 3 * max(1, int(outputs))
    return arcs * SECONDS_PER_ARC / max(1, threads or numba.get_num_threads())


def flow_is_exact(n_layers: int, n: int, tolerance: float | None, seconds: float | None) -> bool:
    """Whether flow is solved exactly (else as certified intervals): ``tolerance`` 0, or ``None`` with the
    estimate for one output within ``seconds`` (default :data:`EXACT_SECONDS`).

    Examples
    --------
    >>> flow_is_exact(6, 36, None, None), flow_is_exact(6, 36, 0.01, None), flow_is_exact(30, 2048, None, None)
    (True, False, False)
    """
    if tolerance is not None:
        return not tolerance
    return estimate_flow_seconds(n_layers, n) <= (EXACT_SECONDS if seconds is None else float(seconds))


def _output_list(outputs: Any, n: int) -> list[int] | str:
    """Resolve ``outputs`` to sorted distinct positions, or ``"mean"``."""
    if outputs is None:
        return list(range(n))
    if isinstance(outputs, (str, int, np.integer)):
        resolved = _resolve(outputs, n)
        return resolved if resolved == "mean" else [resolved]
    try:
        items = list(outputs)
    except TypeError:
        raise AttnflowError(
            "The 'outputs' parameter must be a token index, 'cls', 'last', 'mean', a sequence of "
            f"token indices or None; got {outputs!r} instead."
        ) from None
    if not items:
        raise AttnflowError("The 'outputs' parameter must name at least one position; got none.")
    resolved_items = [_resolve(item, n) for item in items]
    if "mean" in resolved_items:
        raise AttnflowError(
            "The 'outputs' parameter accepts 'mean' only on its own, not inside a sequence "
            f"of positions; got {outputs!r}."
        )
    return sorted(set(resolved_items))


def _resolve(output: Any, n: int) -> int | str:
    """:func:`resolve_output`, with errors that name this function's parameter."""
    try:
        return resolve_output(output, n)
    except AttnflowError as exc:
        raise AttnflowError(str(exc).replace("'output' parameter", "'outputs' parameter")) from None


def _solve(
    cap: np.ndarray,
    groups: list[tuple[int, int | None, int, np.ndarray]],
    n: int,
    flow_func: FlowFunc | None,
    progress: Progress | None,
    keep_cuts: bool,
) -> Any:
    """Max-flow values (and certificates) for every source of every group, in chunks, reporting progress."""
    from ._maxflow_kernel import LayeredMaxFlow, Solved, warm_blocks

    total = len(groups) * n
    done = 0
    if progress is not None:
        progress(0, total)
    sources = np.arange(n)
    if flow_func is not None:
        values = []
        for _, _, depth, sink_caps in groups:
            row = np.asarray(flow_func(cap[:depth], sink_caps, sources), dtype=np.float64)
            if row.shape != (n,):
                raise AttnflowError(
                    f"The 'flow_func' parameter returned shape {row.shape}; expected ({n},), "
                    "one value per source."
                )
            values.append(row)
            done += n
            if progress is not None:
                progress(done, total)
        unproven = np.full(total, np.nan)
        return Solved(np.concatenate(values), unproven, unproven.copy(), None)

    max_depth = max(depth for _, _, depth, _ in groups)
    solver = LayeredMaxFlow(cap[:max_depth])
    sink_caps = np.stack([caps for _, _, _, caps in groups])
    depths = np.repeat([depth for _, _, depth, _ in groups], n)
    rows = np.repeat(np.arange(len(groups)), n)
    flat_sources = np.tile(sources, len(groups))
    # Chunks end where a warm-start block ends, so the values do not depend on the chunking.
    block_starts = warm_blocks(depths, rows, flat_sources)
    parts = []
    while done < total:
        # Size the chunk by the work it holds: about _CHUNK_SECONDS per thread.
        edges = max(1, int(depths[done]) + 1) * n * n
        size = solver.n_workers * max(1, math.ceil(_CHUNK_SECONDS / (_SECONDS_PER_EDGE * edges)))
        stop = int(block_starts[np.searchsorted(block_starts, min(total, done + size))])
        part = solver.solve_certified(
            depths[done:stop], rows[done:stop], flat_sources[done:stop], sink_caps,
            certify=keep_cuts, check=keep_cuts, keep_cuts=keep_cuts,
        )
        bad = np.flatnonzero(~(part.violations <= _VIOLATION_LIMIT))
        if bad.size:
            p = done + int(bad[0])
            layer, t = groups[p // n][:2]
            raise AttnflowError(
                f"Attention flow failed its own check (layer {layer}, output {'mean' if t is None else t}, "
                f"source {p % n}: violation {part.violations[bad[0]]:.2e}); please report this with the attention."
            )
        parts.append(part)
        done = stop
        if progress is not None:
            progress(done, total)
    return Solved(
        np.concatenate([part.values for part in parts]),
        np.concatenate([part.cut_capacities for part in parts]),
        np.concatenate([part.violations for part in parts]),
        np.concatenate([part.cuts for part in parts]) if keep_cuts else None,
    )


def flow_annotated(
    attentions: np.ndarray,
    output: int | str,
    *,
    flow_tolerance: float | None = None,
    flow_seconds: float | None = None,
    solution: FlowSolution | None = None,
    **options: Any,
) -> tuple[np.ndarray, list[str], dict[str, list[str]], FlowSolution]:
    """Flow scores for one output with what the cuts say about them, from one solve.

    Returns ``(scores (L, n), notes, {"flow cut": label per token}, solution)``,
    ``solution`` the :class:`FlowSolution` of every layer with its cuts. The label
    says what bounds each token's top-layer flow: ``source`` (the attention it
    receives in layer 1), ``output`` (the output's own capacity) or, for a cut
    inside, where most of its capacity lies: ``L4-5 60%`` is 60 % between node
    layers 4 and 5 (layer 0 is the input). The notes say when the flow at the top
    merely restates first-layer attention, or ranks the tokens as it did from
    some lower layer upward.

    ``flow_tolerance``: ``0`` solves exactly; a value in ``(0, 1)`` gives certified
    intervals of at most that width (a fraction of the output's capacity,
    :func:`~attnflow.methods.flow_bounds.solve_flow_bounds`): the scores are then the
    middles of the normalized intervals, the label ``"flow ±"`` gives each half-width
    and ``solution`` is a :class:`~attnflow.methods.flow_bounds.FlowBounds`.
    ``None`` (the default): exact when :func:`estimate_flow_seconds` fits
    ``flow_seconds`` (default :data:`EXACT_SECONDS`), else intervals of width
    :data:`DEFAULT_TOLERANCE`, with a note. ``flow_seconds`` is also the interval
    run's budget: when it runs out, the intervals proven so far are returned, with a note.
    ``solution``: exact flow already solved on these attentions with these options, covering
    ``output`` (:func:`attnflow.core.score_capture` solves every output at once for a report):
    read instead of solved again.

    Examples
    --------
    >>> a = np.full((3, 1, 4, 4), 0.25)
    >>> scores, notes, labels, solution = flow_annotated(a, 0)
    >>> labels["flow cut"]
    ['source', 'L0-1 43%', 'L0-1 43%', 'L0-1 43%']
    """
    from .flow_bounds import check_flow_tolerance

    n = np.shape(attentions)[-1]
    position = resolve_output(output, n)
    outputs: Any = "mean" if position == "mean" else [position]
    notes: list[str] = []
    if flow_tolerance is not None:
        flow_tolerance = check_flow_tolerance(flow_tolerance)
    if flow_seconds is not None and not (isinstance(flow_seconds, (int, float)) and flow_seconds > 0):
        raise AttnflowError(f"--flow-seconds must be a positive number of seconds; got {flow_seconds!r}.")
    if flow_tolerance is None:
        budget = EXACT_SECONDS if flow_seconds is None else float(flow_seconds)
        estimate = estimate_flow_seconds(np.shape(attentions)[0], n, outputs=1)
        flow_tolerance = 0.0 if flow_is_exact(np.shape(attentions)[0], n, None, flow_seconds) else DEFAULT_TOLERANCE
        if flow_tolerance:
            notes.append(
                f"exact flow would take about {estimate:.0f} s, more than the {budget:g} s budget: each value is "
                f"a certified interval of width at most {DEFAULT_TOLERANCE:g} of the output's capacity "
                "(--flow-tolerance 0 forces exact flow)."
            )
    if flow_tolerance:
        return _bounds_annotated(attentions, position, outputs, flow_tolerance, flow_seconds, notes, options)
    if solution is None:
        solution = solve_flow(attentions, outputs=outputs, keep_cuts=True, **options)
    elif (np.shape(attentions)[0], None if position == "mean" else position) not in solution.groups:
        raise AttnflowError(f"The given flow solution does not cover output {position!r}; solve it with that output.")
    raw, scores = solution.values, solution.normalized()
    if position != "mean":
        raw, scores = raw[:, position, :], scores[:, position, :]
    labels, kind_notes = _cut_labels(solution, raw, position, n)
    return scores, notes + kind_notes, {"flow cut": labels}, solution


def _cut_labels(solution: FlowSolution, raw: np.ndarray, position: int | str, n: int) -> tuple[list[str], list[str]]:
    """Each token's top-layer cut label, and the notes on what the cuts and ranks say."""
    n_layers = raw.shape[0]
    key = None if position == "mean" else position
    breakdowns = solution.cut_breakdowns(n_layers, key)  # matrix products over every cut: once
    kinds = solution.cut_kinds(n_layers, key, breakdowns=breakdowns)
    labels = []
    for source, kind in enumerate(kinds):
        if kind != "inside":
            labels.append(kind)
            continue
        parts = breakdowns[source]
        k = int(np.argmax(parts))
        labels.append(f"L{k}-{k + 1} {parts[k] / parts.sum():.0%}")
    notes = []
    if n >= 3 and n_layers >= 2:
        at_source, at_output = kinds.count("source"), kinds.count("output")
        if at_source + at_output >= 0.8 * n:
            notes.append(
                f"flow reaches its upper bound min(1, attention received in layer 1) for {at_source + at_output} "
                f"of {n} input tokens ({at_source} held by the attention they receive in layer 1, {at_output} by "
                "the output's capacity): at the top layer it mostly restates first-layer attention."
            )
        ranks = [tuple(np.argsort(-row, kind="stable")) for row in raw]
        same_from = n_layers
        while same_from > 1 and ranks[same_from - 2] == ranks[-1]:
            same_from -= 1
        if same_from < n_layers:
            notes.append(f"flow ranks the tokens identically from layer {same_from} upward.")
    return labels, notes


def _bounds_annotated(attentions, position, outputs, tolerance, seconds, notes, options):
    """:func:`flow_annotated` for certified intervals."""
    from .flow_bounds import solve_flow_bounds

    bounds = solve_flow_bounds(attentions, outputs=outputs, tolerance=tolerance, seconds=seconds, **options)
    low, high = bounds.score_bounds(position)
    scores = (low + high) / 2
    n = scores.shape[1]
    labels, _ = _cut_labels(bounds, bounds.upper if position == "mean" else bounds.upper[:, position, :],
                            position, n)
    widest = float(np.nanmax(bounds.widths()))
    notes.append(
        f"flow is certified, not exact: each raw value lies in a proven interval of width at most {widest:.1e} "
        f"(asked: {tolerance:g} of the output's capacity); the scores are the middles of the normalized "
        "intervals, 'flow ±' their half-widths, and the JSON keeps both ends (flow_lower, flow_upper)."
    )
    if not bounds.complete:
        notes.append(
            f"the flow budget ({seconds:g} s, --flow-seconds) ran out before every interval was {tolerance:g} wide: "
            "the intervals shown are the best proven so far."
        )
    top_low, top_high = low[-1], high[-1]
    order = np.argsort(-scores[-1], kind="stable")
    # Ranks r and r + 1 are uncertain when the lower token's interval reaches the upper one's.
    overlapping = np.flatnonzero(top_low[order[:-1]] <= top_high[order[1:]])
    if overlapping.size:
        notes.append(
            f"at the top layer the intervals of {overlapping.size} pair(s) of tokens next to each other in the "
            f"ranking overlap (the first at ranks {overlapping[0] + 1} and {overlapping[0] + 2}): their order is "
            "not certain."
        )
    half = (high[-1] - low[-1]) / 2
    return scores, notes, {"flow cut": labels, "flow ±": [f"±{h:.1e}" for h in half]}, bounds


@register_method(
    "flow",
    "attention flow: maximum flow through the attention graph, exact (Abnar & Zuidema 2020)",
    options=("residual", "head_fusion", "progress", "flow_tolerance", "flow_seconds"),
    annotated=flow_annotated,
)
def flow_scores(attentions: np.ndarray, output: int | str, **options: Any) -> np.ndarray:
    """Flow scores of every input token for one output, every layer: ``(L, n)``.

    Solves only the problems that output needs: one row per layer, or the
    super-sink of ``"mean"``. ``options`` are those of :func:`attention_flow`,
    and ``flow_tolerance`` and ``flow_seconds`` as :func:`flow_annotated` takes them.
    """
    tolerance, seconds = options.pop("flow_tolerance", None), options.pop("flow_seconds", None)
    n = np.shape(attentions)[-1]
    if not flow_is_exact(np.shape(attentions)[0], n, tolerance, seconds):
        # certified intervals (flow_annotated decides and checks the options)
        return flow_annotated(attentions, output, flow_tolerance=tolerance, flow_seconds=seconds, **options)[0]
    position = resolve_output(output, n)
    if position == "mean":
        return attention_flow(attentions, outputs="mean", **options)
    return attention_flow(attentions, outputs=[position], **options)[:, position, :]


def saturated_sources(
    attentions: Any,
    output: int | str,
    *,
    residual: float = 0.5,
    head_fusion: HeadFusion | np.ndarray = "mean",
    tolerance: float = 1e-9,
) -> np.ndarray:
    """Which input tokens' flow to ``output`` at the top layer reaches its source bound.

    The raw flow from ``(0, j)`` can never exceed ``min(1, sum_i Ahat[1][i, j])``:
    the sink takes in at most 1 and the source sends out its first-layer column
    sum. Where (almost) every token reaches this bound, flow only restates how
    much attention each token receives in the first layer (docs/design.md), and
    users deserve to be told.

    Returns a boolean array ``(n,)``.

    Examples
    --------
    >>> a = np.full((3, 1, 4, 4), 0.25)   # uniform: only token 0's own input fills the bound
    >>> saturated_sources(a, 0)
    array([ True, False, False, False])
    """
    graph = AttentionGraph.from_attentions(attentions, residual=residual, head_fusion=head_fusion)
    n = graph.n_tokens
    position = resolve_output(output, n)
    outputs: Any = "mean" if position == "mean" else [position]
    raw = attention_flow(
        attentions, outputs=outputs, layers=-1, residual=residual, head_fusion=head_fusion, normalize=False
    )
    top = raw[-1] if position == "mean" else raw[-1, position]
    bound = np.minimum(1.0, graph.capacities[0].sum(axis=0))
    return np.abs(top - bound) <= tolerance
