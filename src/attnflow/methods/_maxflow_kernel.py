"""Compiled exact max-flow on the layered attention graph (docs/design.md §3, §5).

Why numba and not a C extension: numba is already a dependency and installs as
a wheel on every platform the project supports; it compiles this module on
first use and ``cache=True`` keeps the machine code next to the module for
later runs. A fresh ``pip install`` from the project's own files therefore
needs no C compiler, no build step and no per-platform wheels of our own. A C
extension would save the one-off compile (seconds) at the price of a build
system; the kernel's speed is the same either way, it is plain loops over arrays.

The problem
-----------
Layers ``0..D`` of ``n`` nodes each and one sink. For ``k < D`` the edge
``(k, j) -> (k+1, i)`` has capacity ``cap[k, i, j]``; node ``(D, a)`` of the top
layer feeds the sink through an edge of capacity ``sink_cap[a]``. One problem
is one source ``(0, j)`` and its maximum flow value.

- Output token ``t`` at layer ``l``: ``D = l - 1`` and ``sink_cap = cap[l-1, t]``
  (the sink *is* node ``(l, t)``; these are its in-edges).
- The mean output at layer ``l``, a super-sink fed by every token of layer ``l``
  with capacity ``1/n``: ``D = l`` and ``sink_cap = 1/n``.

The algorithm
-------------
Exact in float64, one problem after another per worker thread, each from the
maximum flow of the problem before it (same sink, next source: a warm start):

0. Switch sources: layer-1 node ``i`` keeps ``min(old flow into it, the new
   source's capacity into it)``; what it can no longer pass on is withdrawn in
   one sweep up the layers. Most of the flow in the upper layers survives.
1. Blocking flow on the layered graph itself (Dinic's first phase; a layered
   graph is its own level graph, so no search is needed to build it): a
   depth-first search from the source along forward arcs with residual
   capacity, with current arcs and dead-end marks, augmenting along every
   source-to-sink path it finds. On random attention this alone reaches the bound.
2. If that does not reach the bound, a search through the residual graph, from
   the source and from the sink in turns, looks for an augmenting path; where
   there is none, the flow is already maximal (many problems on real attention,
   most on SmolLM2's, end here: the blocking flow found the maximum but could
   not prove it).
   Otherwise Dinic's algorithm goes on in the full residual graph, reverse arcs
   included: each phase labels the nodes by their distance from the source and
   augments along level-raising paths until none is left; on real attention two
   or three phases end it. Should ``DINIC_PHASES`` not suffice, push-relabel
   (Goldberg & Tarjan, highest label first, exact labels recomputed after about
   ``RELABEL_EVERY`` passes over the arcs worth of work, the gap rule) finishes
   from that flow, and its leftover excess is sent back to the source in one
   sweep down the layers (the graph is acyclic).
3. Certificate: the nodes still reachable from the source through arcs with
   residual capacity above ``CUT_TOL`` form the canonical minimum cut (its
   smallest source side); its capacity is computed and, with ``check``, the
   flow is checked (capacities and conservation) while the kernel still holds it.

Every phase stops as soon as the flow reaches ``min(sink in-capacity, source
out-capacity, a known cut's capacity)``: a flow equal to a cut's capacity is
maximal, so stopping there is exact.

Exactness: the value returned is the flow into the sink of a flow that the
check found feasible, and the cut returned has capacity within ``CUT_TOL`` per
cut arc of it (an arc with less residual than that counts as saturated): a
feasible flow and a cut of (nearly) equal capacity prove each other optimal.
``attnflow.verify_flow`` recomputes every cut's capacity from the graph.

Details that make it fast: every node's arcs are sorted once per graph by
capacity, largest first (a fat path is found first), and residual capacities
are stored in that order, so scans read memory sequentially; zero-capacity
arcs (causal masks, exact zeros) are dropped. Each arc's flow is kept twice,
as the residual in its tail's list and as the flow in its head's list, so both
directions scan sequentially. Work runs in blocks of up to ``BLOCK`` problems
(:func:`warm_blocks`), fixed by the problems alone, so the values do not depend
on the number of threads.

Round-off: a residual capacity at or below ``EPS`` counts as zero, so residues
such as ``c - (c - f) - f = 1e-17`` cannot start an endless series of
vanishing augmentations.
"""

from __future__ import annotations

from typing import NamedTuple

import numba as nb
import numpy as np

__all__ = ["BOUND_TOL", "CUT_TOL", "EPS", "LayeredMaxFlow", "Solved", "prepare", "prepare_arcs", "solve_batch"]

#: Residual capacities at or below this count as zero (capacities are at most 1).
EPS = 1e-14
#: Problems solved one after another from a warm start (see :func:`warm_blocks`).
BLOCK = 16
#: A flow within this of its upper bound is declared maximal (the bound is a cut).
BOUND_TOL = 1e-13
#: The canonical cut counts an arc as saturated when its residual capacity is at most this.
CUT_TOL = 1e-13
#: Push-relabel recomputes exact labels after this many passes over the arcs worth of work.
RELABEL_EVERY = 8
#: The search for an augmenting path counts an arc read from the sink's side as this many read from the source's
#: (a scattered read against one in list order) ...
BACKWARD_COST = 4.0
#: ... and the side that did not run dry in the block's last problem as this many times dearer.
LEAN = 8.0
#: What :func:`_reaches_sink` found.
PATH, NO_PATH_SOURCE_SIDE, NO_PATH_SINK_SIDE = 0, 1, 2
#: Dinic phases after the blocking flow before push-relabel takes over (real attention needs two or three).
DINIC_PHASES = 16
#: Batches whose problems span at most this many arc slots run on the calling thread.
SERIAL_WORK = 1 << 20


def prepare(cap: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-graph preprocessing shared by every problem on the graph, from dense capacities.

    ``cap``: ``(L, n, n)`` float64, ``cap[k, i, j]`` the capacity of ``(k, j) -> (k+1, i)``.
    Arcs of capacity at most ``EPS`` are left out. See :func:`prepare_arcs` for
    what is returned.
    """
    cap = np.ascontiguousarray(cap, dtype=np.float64)
    # numpy's vectorised argsort is several times faster than a sort inside numba.
    fwd_order = np.argsort(-cap.transpose(0, 2, 1), axis=-1).astype(np.int32)
    bwd_order = np.argsort(-cap, axis=-1).astype(np.int32)
    return _prepare_sorted(cap, fwd_order, bwd_order)


@nb.njit(cache=True)
def _prepare_sorted(cap, fwd_order, bwd_order):  # pragma: no cover - compiled
    """:func:`prepare` once every node's arcs are sorted: the lists and their cross-references in one pass each.

    ``fwd_order[k, j]``: the heads ``i`` of ``(k, j)``'s arcs, largest capacity
    first; ``bwd_order[k, i]``: the tails ``j`` of ``(k+1, i)``'s arcs, likewise.
    Arcs of capacity at most ``EPS`` sort last and are left out.
    """
    n_layers, n, _ = cap.shape
    fwd_cnt = np.zeros((n_layers, n), np.int32)
    bwd_cnt = np.zeros((n_layers, n), np.int32)
    for k in range(n_layers):
        for i in range(n):
            for j in range(n):
                if cap[k, i, j] > EPS:
                    fwd_cnt[k, j] += 1
                    bwd_cnt[k, i] += 1
    fwd_off = np.empty((n_layers + 1, n), np.int64)
    bwd_off = np.empty((n_layers + 1, n), np.int64)
    f_total = 0
    b_total = 0
    for k in range(n_layers):
        for a in range(n):
            fwd_off[k, a] = f_total
            f_total += fwd_cnt[k, a]
            bwd_off[k, a] = b_total
            b_total += bwd_cnt[k, a]
    fwd_off[n_layers, :] = f_total
    bwd_off[n_layers, :] = b_total
    cap_s = np.empty(f_total)
    fwd_idx = np.empty(f_total, np.int32)
    fwd_back = np.empty(f_total, np.int32)
    bwd_idx = np.empty(b_total, np.int32)
    bwd_fwd = np.empty(b_total, np.int32)
    # position[k, i, j]: where arc (k, j) -> (k+1, i) sits in its head's backward list.
    position = np.empty((n_layers, n, n), np.int32)
    for k in range(n_layers):
        for i in range(n):
            base = bwd_off[k, i]
            for rb in range(bwd_cnt[k, i]):
                j = bwd_order[k, i, rb]
                bwd_idx[base + rb] = j
                position[k, i, j] = rb
    for k in range(n_layers):
        for j in range(n):
            base = fwd_off[k, j]
            for r in range(fwd_cnt[k, j]):
                i = fwd_order[k, j, r]
                cap_s[base + r] = cap[k, i, j]
                fwd_idx[base + r] = i
                fwd_back[base + r] = position[k, i, j]
                bwd_fwd[bwd_off[k, i] + position[k, i, j]] = r
    return cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt


def prepare_arcs(
    n_layers: int, n: int, layer: np.ndarray, head: np.ndarray, tail: np.ndarray, capacity: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Per-graph preprocessing from a list of arcs ``(layer, tail) -> (layer + 1, head)``.

    Arcs of capacity at most ``EPS`` are left out; no arc may appear twice. The
    graph is stored as adjacency lists (memory linear in the arcs), every node's
    lists sorted by capacity, largest first (a fat path is found first).

    Returns ``(cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt)``:

    - ``fwd_off[k, a]``: where node ``(k, a)``'s forward list starts in the flat
      arrays ``cap_s`` (capacity) and ``fwd_idx`` (head ``i``); ``fwd_cnt[k, a]``
      arcs long. ``fwd_off`` has ``L + 1`` rows, the last one the total, so the
      arcs of layers ``< d`` are ``[0, fwd_off[d, 0])``.
    - ``bwd_off[k, i]``, ``bwd_cnt[k, i]``, ``bwd_idx``: the same for the arcs
      into ``(k+1, i)``, ``bwd_idx`` holding their tails.
    - ``fwd_back[p]``: where forward arc ``p`` sits in its head's backward list
      (relative to its start); ``bwd_fwd[p]``: the converse.
    """
    keep = np.asarray(capacity, dtype=np.float64) > EPS
    layer, head, tail = (np.asarray(x, dtype=np.int64)[keep] for x in (layer, head, tail))
    capacity = np.asarray(capacity, dtype=np.float64)[keep]
    f = np.lexsort((-capacity, tail, layer))
    b = np.lexsort((-capacity, head, layer))
    return _link(n_layers, n, layer[f] * n + tail[f], f, head[f], capacity[f], layer[b] * n + head[b], b, tail[b],
                 capacity.size)


def _link(n_layers, n, f_node, f_id, f_head, f_cap, b_node, b_id, b_tail, n_ids):
    """Offsets and cross-references of the sorted forward and backward arc lists (see :func:`prepare_arcs`)."""
    nodes = n_layers * n

    def offsets(node):
        counts = np.bincount(node, minlength=nodes)
        off = np.full((n_layers + 1) * n, counts.sum(), np.int64)
        off[0] = 0
        off[1:nodes] = np.cumsum(counts)[:-1]
        return counts.reshape(n_layers, n).astype(np.int32), off.reshape(n_layers + 1, n)

    fwd_cnt, fwd_off = offsets(f_node)
    bwd_cnt, bwd_off = offsets(b_node)
    position = np.empty(n_ids, np.int32)
    position[b_id] = np.arange(b_id.size) - bwd_off.ravel()[b_node]
    fwd_back = position[f_id]
    position[f_id] = np.arange(f_id.size) - fwd_off.ravel()[f_node]
    bwd_fwd = position[b_id]
    return (np.ascontiguousarray(f_cap, dtype=np.float64), f_head.astype(np.int32), fwd_back, fwd_cnt, fwd_off,
            bwd_off, b_tail.astype(np.int32), bwd_fwd, bwd_cnt)


@nb.njit(cache=True)
def _blocking_flow(s, depth, n, total, target, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, res, flow, sink_res,
                   dead, cur, path_a, path_r):  # pragma: no cover - compiled
    """Phase 1: augment along forward-only paths until none is left or ``target`` is met.

    A depth-first search from the source along forward arcs with residual
    capacity, with current arcs and dead-end marks: the layered graph is its own
    level graph, so this is one blocking-flow phase of Dinic's algorithm. The
    node on the path at depth ``p`` is ``(p, path_a[p])``, so layers need no
    bookkeeping. Returns the flow into the sink.
    """
    for u in range((depth + 1) * n):
        dead[u] = False
        cur[u] = 0
    a = s
    plen = 0
    while True:
        node = plen * n + a
        if plen == depth:
            if sink_res[a] > EPS:
                delta = np.inf
                first = 0
                for p in range(depth):
                    rr = res[fwd_off[p, path_a[p]] + path_r[p]]
                    if rr < delta:
                        delta = rr
                        first = p
                if sink_res[a] < delta:
                    delta = sink_res[a]
                    first = depth
                for p in range(depth):
                    ap = path_a[p]
                    rp = path_r[p]
                    res[fwd_off[p, ap] + rp] -= delta
                    flow[bwd_off[p, fwd_idx[fwd_off[p, ap] + rp]] + fwd_back[fwd_off[p, ap] + rp]] += delta
                sink_res[a] -= delta
                total += delta
                if total >= target:
                    return total
                if first < depth:
                    a = path_a[first]
                plen = first
                continue
            dead[node] = True
            if plen == 0:
                return total
            plen -= 1
            a = path_a[plen]
            continue
        r = cur[node]
        count = fwd_cnt[plen, a]
        base = (plen + 1) * n
        while r < count:
            if res[fwd_off[plen, a] + r] > EPS and not dead[base + fwd_idx[fwd_off[plen, a] + r]]:
                break
            r += 1
        cur[node] = r
        if r < count:
            path_a[plen] = a
            path_r[plen] = r
            plen += 1
            a = fwd_idx[fwd_off[plen - 1, a] + r]
        else:
            dead[node] = True
            if plen == 0:
                return total
            plen -= 1
            a = path_a[plen]


@nb.njit(cache=True)
def _switch_source(old, s, depth, n, sink_cap, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, res, flow,
                   sink_res, gathered, deficit):  # pragma: no cover - compiled
    """Turn a flow from ``(0, old)`` into a flow from ``(0, s)``, keeping what fits.

    Layer-1 node ``i`` keeps ``min(old's flow into it, s's capacity into it)``,
    now drawn from the new source; the rest of what it sent on is withdrawn in
    one sweep up the layers (each node takes its shortfall off its outgoing
    arcs), down to the sink. Returns the flow into the sink that remains.
    """
    for i in range(n):
        gathered[i] = 0.0
    for r in range(fwd_cnt[0, old]):
        i = fwd_idx[fwd_off[0, old] + r]
        gathered[i] = cap_s[fwd_off[0, old] + r] - res[fwd_off[0, old] + r]
        res[fwd_off[0, old] + r] = cap_s[fwd_off[0, old] + r]
        flow[bwd_off[0, i] + fwd_back[fwd_off[0, old] + r]] = 0.0
    for u in range(n, (depth + 1) * n):
        deficit[u] = 0.0
    for r in range(fwd_cnt[0, s]):
        i = fwd_idx[fwd_off[0, s] + r]
        c = cap_s[fwd_off[0, s] + r]
        keep = gathered[i] if gathered[i] < c else c
        res[fwd_off[0, s] + r] = c - keep
        flow[bwd_off[0, i] + fwd_back[fwd_off[0, s] + r]] = keep
        gathered[i] -= keep
    for i in range(n):
        deficit[n + i] = gathered[i]
    for k in range(1, depth + 1):
        for a in range(n):
            u = k * n + a
            short = deficit[u]
            if short <= 0.0:
                continue
            if k == depth:
                rest = sink_res[a] + short
                sink_res[a] = rest if rest < sink_cap[a] else sink_cap[a]
                continue
            for r in range(fwd_cnt[k, a]):
                f = cap_s[fwd_off[k, a] + r] - res[fwd_off[k, a] + r]
                if f <= 0.0:
                    continue
                i = fwd_idx[fwd_off[k, a] + r]
                if f <= short:
                    res[fwd_off[k, a] + r] = cap_s[fwd_off[k, a] + r]
                    flow[bwd_off[k, i] + fwd_back[fwd_off[k, a] + r]] = 0.0
                    delta = f
                else:
                    res[fwd_off[k, a] + r] += short
                    flow[bwd_off[k, i] + fwd_back[fwd_off[k, a] + r]] -= short
                    delta = short
                deficit[(k + 1) * n + i] += delta
                short -= delta
                if short <= 0.0:
                    break


@nb.njit(cache=True)
def _reaches_sink(s, depth, n, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt, res, flow,
                  sink_res, seen_f, seen_b, queue_f, queue_b, cost_f, cost_b):  # pragma: no cover - compiled
    """Whether an augmenting path is left: a residual path (arcs above ``EPS``) from ``(0, s)`` to the sink.

    Two breadth-first searches in turns, one node each: forward from the source
    (forward arcs with residual capacity, reverse arcs of arcs with flow, both
    read in list order) and backward from the sink (push-relabel's exact-label
    search). A node reached by both ends the search with a path; a search that
    runs dry ends it without one, and then the flow is maximal: the nodes that
    search reached bound a cut whose arcs all have residual capacity at most
    ``EPS``, which is how push-relabel ends too. Each side of the cut is small
    on some attention (the source's on MiniLM's, the sink's on SmolLM2's), so
    this costs about twice the smaller side, where push-relabel's first labels
    cost the sink's side in any case. The turns are shared by work: an arc read
    costs ``cost_f`` on the source's side and ``cost_b`` on the sink's.

    Returns ``PATH``, or which side ran dry: ``NO_PATH_SOURCE_SIDE`` or
    ``NO_PATH_SINK_SIDE`` (the next problem of the block, with the same sink,
    usually ends the same way, so the caller makes the other side dearer).
    """
    for u in range(n, (depth + 1) * n):
        seen_f[u] = False
        seen_b[u] = False
    head_f = tail_f = head_b = tail_b = 0
    for r in range(fwd_cnt[0, s]):
        if res[fwd_off[0, s] + r] > EPS:
            v = n + fwd_idx[fwd_off[0, s] + r]
            seen_f[v] = True
            queue_f[tail_f] = v
            tail_f += 1
    for a in range(n):
        if sink_res[a] > EPS:
            v = depth * n + a
            if seen_f[v]:
                return PATH
            seen_b[v] = True
            queue_b[tail_b] = v
            tail_b += 1
    work_f = 0.0
    work_b = 0.0
    while head_f < tail_f and head_b < tail_b:
        if work_f > work_b:
            u = queue_b[head_b]
            head_b += 1
            k = u // n
            i = u - k * n
            if k > 1:  # forward arcs (k-1, b) -> u with residual capacity
                base = bwd_off[k - 1, i]
                work_b += cost_b * bwd_cnt[k - 1, i]
                for rb in range(bwd_cnt[k - 1, i]):
                    b = bwd_idx[base + rb]
                    v = (k - 1) * n + b
                    if not seen_b[v] and res[fwd_off[k - 1, b] + bwd_fwd[base + rb]] > EPS:
                        if seen_f[v]:
                            return PATH
                        seen_b[v] = True
                        queue_b[tail_b] = v
                        tail_b += 1
            if k < depth:  # reverse arcs (k+1, i') -> u, where u -> (k+1, i') carries flow
                base = fwd_off[k, i]
                work_b += cost_b * fwd_cnt[k, i]
                for r in range(fwd_cnt[k, i]):
                    ii = fwd_idx[base + r]
                    v = (k + 1) * n + ii
                    if not seen_b[v] and flow[bwd_off[k, ii] + fwd_back[base + r]] > EPS:
                        if seen_f[v]:
                            return PATH
                        seen_b[v] = True
                        queue_b[tail_b] = v
                        tail_b += 1
            continue
        u = queue_f[head_f]
        head_f += 1
        k = u // n
        a = u - k * n
        work_f += cost_f
        if k < depth:
            work_f += cost_f * fwd_cnt[k, a]
            base = fwd_off[k, a]
            for r in range(fwd_cnt[k, a]):
                if res[base + r] > EPS:
                    v = (k + 1) * n + fwd_idx[base + r]
                    if not seen_f[v]:
                        if seen_b[v]:
                            return PATH
                        seen_f[v] = True
                        queue_f[tail_f] = v
                        tail_f += 1
        if k > 1:
            base = bwd_off[k - 1, a]
            work_f += cost_f * bwd_cnt[k - 1, a]
            for rb in range(bwd_cnt[k - 1, a]):
                if flow[base + rb] > EPS:
                    v = (k - 1) * n + bwd_idx[base + rb]
                    if not seen_f[v]:
                        if seen_b[v]:
                            return PATH
                        seen_f[v] = True
                        queue_f[tail_f] = v
                        tail_f += 1
    return NO_PATH_SOURCE_SIDE if head_f == tail_f else NO_PATH_SINK_SIDE

@nb.njit(cache=True)
def _dinic_phase(s, depth, n, total, target, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt,
                 res, flow, sink_res, level, dead, cur, queue, path_u, path_r):  # pragma: no cover - compiled
    """One phase of Dinic's algorithm in the full residual graph, from the current flow.

    A breadth-first search from the source over forward arcs with residual
    capacity and reverse arcs of arcs with flow gives each node its distance
    ``level``; then a depth-first search with current arcs and dead-end marks
    augments along every path whose levels rise by one at each step (a
    blocking flow of that level graph), reversals included. Returns ``(flow into
    the sink, whether the search reached the sink)``: when it did not, the flow
    is maximal.
    """
    hi = (depth + 1) * n
    for u in range(n, hi):
        level[u] = -1
        dead[u] = False
        cur[u] = 0
    head = 0
    tail = 0
    for r in range(fwd_cnt[0, s]):
        if res[fwd_off[0, s] + r] > EPS:
            v = n + fwd_idx[fwd_off[0, s] + r]
            if level[v] < 0:
                level[v] = 1
                queue[tail] = v
                tail += 1
    sink_level = -1
    while head < tail:
        u = queue[head]
        head += 1
        if sink_level >= 0 and level[u] >= sink_level:
            break
        k = u // n
        a = u - k * n
        if k == depth:
            if sink_res[a] > EPS and sink_level < 0:
                sink_level = level[u] + 1
        else:
            base = fwd_off[k, a]
            for r in range(fwd_cnt[k, a]):
                if res[base + r] > EPS:
                    v = (k + 1) * n + fwd_idx[base + r]
                    if level[v] < 0:
                        level[v] = level[u] + 1
                        queue[tail] = v
                        tail += 1
        if k > 1:
            base = bwd_off[k - 1, a]
            for rb in range(bwd_cnt[k - 1, a]):
                if flow[base + rb] > EPS:
                    v = (k - 1) * n + bwd_idx[base + rb]
                    if level[v] < 0:
                        level[v] = level[u] + 1
                        queue[tail] = v
                        tail += 1
    if sink_level < 0:
        return total, False
    # Depth-first along arcs whose level rises by one: path_u[p] is the node at step p >= 1, path_r[p] the
    # arc taken from it (forward list first, then the reverse arcs of its backward list), src_r the source's.
    src_r = 0
    plen = 0  # number of nodes on the path after the source
    while True:
        if plen == 0:
            while src_r < fwd_cnt[0, s]:
                if res[fwd_off[0, s] + src_r] > EPS:
                    v = n + fwd_idx[fwd_off[0, s] + src_r]
                    if level[v] == 1 and not dead[v]:
                        break
                src_r += 1
            if src_r >= fwd_cnt[0, s]:
                return total, True
            plen = 1
            path_u[1] = n + fwd_idx[fwd_off[0, s] + src_r]
            continue
        u = path_u[plen]
        k = u // n
        a = u - k * n
        if k == depth and level[u] + 1 == sink_level and sink_res[a] > EPS:
            # augment: bottleneck over the source arc, the path's arcs and the sink arc
            delta = res[fwd_off[0, s] + src_r]
            first = 0
            for p in range(1, plen):
                w = path_u[p]
                kw = w // n
                aw = w - kw * n
                r = path_r[p]
                nf = fwd_cnt[kw, aw] if kw < depth else 0
                if r < nf:
                    c = res[fwd_off[kw, aw] + r]
                else:
                    c = flow[bwd_off[kw - 1, aw] + r - nf]
                if c < delta:
                    delta = c
                    first = p
            if sink_res[a] < delta:
                delta = sink_res[a]
                first = plen
            res[fwd_off[0, s] + src_r] -= delta
            i0 = fwd_idx[fwd_off[0, s] + src_r]
            flow[bwd_off[0, i0] + fwd_back[fwd_off[0, s] + src_r]] += delta
            for p in range(1, plen):
                w = path_u[p]
                kw = w // n
                aw = w - kw * n
                r = path_r[p]
                nf = fwd_cnt[kw, aw] if kw < depth else 0
                if r < nf:
                    q = fwd_off[kw, aw] + r
                    res[q] -= delta
                    flow[bwd_off[kw, fwd_idx[q]] + fwd_back[q]] += delta
                else:
                    q = bwd_off[kw - 1, aw] + r - nf
                    flow[q] -= delta
                    b = bwd_idx[q]
                    res[fwd_off[kw - 1, b] + bwd_fwd[q]] += delta
            sink_res[a] -= delta
            total += delta
            if total >= target:
                return total, True
            plen = first
            continue
        nf = fwd_cnt[k, a] if k < depth else 0
        nb_ = bwd_cnt[k - 1, a] if k > 1 else 0
        r = cur[u]
        want = level[u] + 1
        v = -1
        while r < nf + nb_:
            if r < nf:
                q = fwd_off[k, a] + r
                if res[q] > EPS:
                    v = (k + 1) * n + fwd_idx[q]
                    if level[v] == want and not dead[v]:
                        break
            else:
                q = bwd_off[k - 1, a] + r - nf
                if flow[q] > EPS:
                    v = (k - 1) * n + bwd_idx[q]
                    if level[v] == want and not dead[v]:
                        break
            r += 1
        cur[u] = r
        if r < nf + nb_:
            path_r[plen] = r
            plen += 1
            path_u[plen] = v
        else:
            dead[u] = True
            plen -= 1
            if plen == 0:
                src_r += 1


@nb.njit(cache=True)
def _global_relabel(depth, n, n_lab, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt, res,
                    flow, sink_res, excess, label, count, cur, bhead, bnext, queue):  # pragma: no cover
    """Exact distances to the sink in the residual graph; rebuilds the buckets of active nodes.

    Returns the highest label that holds an active node (-1 if none).
    """
    lo = n
    hi = (depth + 1) * n
    for u in range(lo, hi):
        label[u] = n_lab
        cur[u] = 0
    for h in range(n_lab + 1):
        count[h] = 0
        bhead[h] = -1
    head = 0
    tail = 0
    for a in range(n):
        if sink_res[a] > EPS:
            label[depth * n + a] = 1
            queue[tail] = depth * n + a
            tail += 1
    while head < tail:
        v = queue[head]
        head += 1
        k = v // n
        i = v - k * n
        h = label[v] + 1
        if k > 1:  # forward arcs (k-1, b) -> v with residual capacity
            for rb in range(bwd_cnt[k - 1, i]):
                b = bwd_idx[bwd_off[k - 1, i] + rb]
                u = (k - 1) * n + b
                if label[u] == n_lab and res[fwd_off[k - 1, b] + bwd_fwd[bwd_off[k - 1, i] + rb]] > EPS:
                    label[u] = h
                    queue[tail] = u
                    tail += 1
        if k < depth:  # reverse arcs (k+1, i') -> v, where v -> (k+1, i') carries flow
            for r in range(fwd_cnt[k, i]):
                ii = fwd_idx[fwd_off[k, i] + r]
                u = (k + 1) * n + ii
                if label[u] == n_lab and flow[bwd_off[k, ii] + fwd_back[fwd_off[k, i] + r]] > EPS:
                    label[u] = h
                    queue[tail] = u
                    tail += 1
    top = -1
    for u in range(lo, hi):
        d = label[u]
        count[d] += 1
        if d < n_lab and excess[u] > EPS:
            bnext[u] = bhead[d]
            bhead[d] = u
            if d > top:
                top = d
    return top


@nb.njit(cache=True, inline="always")
def _receive(v, delta, d, excess, bhead, bnext):  # pragma: no cover - compiled
    """Node ``v`` (label ``d``) takes in ``delta``; it joins bucket ``d`` when it becomes active."""
    if excess[v] <= EPS and excess[v] + delta > EPS:
        bnext[v] = bhead[d]
        bhead[d] = v
    excess[v] += delta


@nb.njit(cache=True)
def _push_relabel(s, depth, n, total, target, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd,
                  bwd_cnt, res, flow, sink_res, excess, label, count, cur, bhead, bnext,
                  queue):  # pragma: no cover - compiled
    """Phase 2: highest-label push-relabel from the current flow, to a maximum preflow.

    The source's arcs are saturated, which puts excess on layer 1; excess moves
    along admissible arcs (label one lower), nodes are relabelled when stuck,
    labels are recomputed exactly by a backward breadth-first search after
    about one pass over the arcs worth of work, and the gap rule lifts every
    node above an empty label out of reach. Ends when no active node can still
    reach the sink, or when the sink has taken in ``target``. Returns the flow
    into the sink; the excess left on nodes is returned by :func:`_return_excess`.
    """
    n_lab = depth * n + 2
    for u in range(n, (depth + 1) * n):
        excess[u] = 0.0
    for r in range(fwd_cnt[0, s]):
        delta = res[fwd_off[0, s] + r]
        if delta > 0.0:
            i = fwd_idx[fwd_off[0, s] + r]
            res[fwd_off[0, s] + r] = 0.0
            flow[bwd_off[0, i] + fwd_back[fwd_off[0, s] + r]] += delta
            excess[n + i] += delta
    arcs = 0
    for k in range(depth):
        for a in range(n):
            arcs += fwd_cnt[k, a]
    budget = RELABEL_EVERY * arcs + 8 * n
    work = 0
    top = _global_relabel(depth, n, n_lab, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt,
                          res, flow, sink_res, excess, label, count, cur, bhead, bnext, queue)
    while top >= 0 and total < target:
        if work > budget:
            work = 0
            top = _global_relabel(depth, n, n_lab, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd,
                                  bwd_cnt, res, flow, sink_res, excess, label, count, cur, bhead,
                                  bnext, queue)
            continue
        u = bhead[top]
        if u < 0:
            top -= 1
            continue
        bhead[top] = bnext[u]
        k = u // n
        a = u - k * n
        e = excess[u]
        d = label[u]
        nf = fwd_cnt[k, a] if k < depth else 1
        nb_ = bwd_cnt[k - 1, a] if k > 1 else 0
        n_arcs = nf + nb_
        while True:  # discharge u
            r = cur[u]
            while r < n_arcs and e > EPS:
                if r < nf:
                    if k < depth:
                        resid = res[fwd_off[k, a] + r]
                        if resid > EPS:
                            i = fwd_idx[fwd_off[k, a] + r]
                            v = (k + 1) * n + i
                            if label[v] == d - 1:
                                delta = resid if resid < e else e
                                res[fwd_off[k, a] + r] = resid - delta
                                flow[bwd_off[k, i] + fwd_back[fwd_off[k, a] + r]] += delta
                                e -= delta
                                _receive(v, delta, d - 1, excess, bhead, bnext)
                                if e <= EPS:
                                    break
                    elif d == 1 and sink_res[a] > EPS:
                        resid = sink_res[a]
                        delta = resid if resid < e else e
                        sink_res[a] = resid - delta
                        total += delta
                        e -= delta
                        if e <= EPS:
                            break
                else:
                    rb = r - nf
                    f = flow[bwd_off[k - 1, a] + rb]
                    if f > EPS:
                        b = bwd_idx[bwd_off[k - 1, a] + rb]
                        v = (k - 1) * n + b
                        if label[v] == d - 1:
                            delta = f if f < e else e
                            flow[bwd_off[k - 1, a] + rb] = f - delta
                            res[fwd_off[k - 1, b] + bwd_fwd[bwd_off[k - 1, a] + rb]] += delta
                            e -= delta
                            _receive(v, delta, d - 1, excess, bhead, bnext)
                            if e <= EPS:
                                break
                r += 1
            work += r - cur[u] + 1
            cur[u] = r
            if e <= EPS or total >= target:
                break
            # Relabel: one more than the lowest label behind a residual arc. No arc is
            # admissible, so (labels being valid) none is below d: one at d ends the scan.
            lowest = n_lab
            r = 0
            while r < n_arcs and lowest > d:
                if r < nf:
                    if k < depth:
                        if res[fwd_off[k, a] + r] > EPS:
                            lv = label[(k + 1) * n + fwd_idx[fwd_off[k, a] + r]]
                            if lv < lowest:
                                lowest = lv
                    elif sink_res[a] > EPS:
                        lowest = 0
                else:
                    rb = r - nf
                    if flow[bwd_off[k - 1, a] + rb] > EPS:
                        lv = label[(k - 1) * n + bwd_idx[bwd_off[k - 1, a] + rb]]
                        if lv < lowest:
                            lowest = lv
                r += 1
            work += r + 4
            count[d] -= 1
            if count[d] == 0:
                # gap: nothing above d can reach the sink any more
                for w in range(n, (depth + 1) * n):
                    if d < label[w] < n_lab:
                        count[label[w]] -= 1
                        label[w] = n_lab
                        count[n_lab] += 1
                for h in range(d + 1, top + 1):
                    bhead[h] = -1
                label[u] = n_lab
                count[n_lab] += 1
                top = d - 1
                break
            new = lowest + 1
            if new >= n_lab:
                label[u] = n_lab
                count[n_lab] += 1
                break
            label[u] = new
            count[new] += 1
            cur[u] = 0
            d = new
            if d > top:
                top = d
        excess[u] = e
    return total


@nb.njit(cache=True)
def _return_excess(s, depth, n, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt, res, flow,
                   excess):  # pragma: no cover - compiled
    """Turn the preflow into a flow: send every node's excess back towards the source.

    The graph is layered, so one sweep from the top layer down suffices: a node's
    excess is taken off its incoming arcs, which moves it one layer lower.
    """
    for k in range(depth, 0, -1):
        for a in range(n):
            u = k * n + a
            e = excess[u]
            if e <= 0.0:
                continue
            excess[u] = 0.0
            for rb in range(bwd_cnt[k - 1, a]):
                f = flow[bwd_off[k - 1, a] + rb]
                if f <= 0.0:
                    continue
                delta = f if f < e else e
                b = bwd_idx[bwd_off[k - 1, a] + rb]
                flow[bwd_off[k - 1, a] + rb] = f - delta
                res[fwd_off[k - 1, b] + bwd_fwd[bwd_off[k - 1, a] + rb]] += delta
                if k > 1:
                    excess[(k - 1) * n + b] += delta
                e -= delta
                if e <= 0.0:
                    break


@nb.njit(cache=True)
def _certify(s, depth, n, sink_cap, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt,
             res, flow, sink_res, in_s, queue, check):  # pragma: no cover - compiled
    """The canonical minimum cut of the flow just found, and (optionally) a check of that flow.

    ``in_s[u]`` marks the nodes still reachable from the source through arcs with
    residual capacity above ``CUT_TOL`` (the source side). Returns
    ``(cut capacity, largest violation)``: the capacity of the arcs leaving the
    source side, and with ``check`` the largest violation of a capacity bound or
    of conservation by the flow (0 without ``check``). The capacity is ``inf`` when the sink is still reachable.
    """
    hi = (depth + 1) * n
    for u in range(n, hi):
        in_s[u] = False
    head = 0
    tail = 0
    reached_sink = False
    for r in range(fwd_cnt[0, s]):
        if res[fwd_off[0, s] + r] > CUT_TOL:
            v = n + fwd_idx[fwd_off[0, s] + r]
            if not in_s[v]:
                in_s[v] = True
                queue[tail] = v
                tail += 1
    while head < tail:
        u = queue[head]
        head += 1
        k = u // n
        a = u - k * n
        if k < depth:
            for r in range(fwd_cnt[k, a]):
                if res[fwd_off[k, a] + r] > CUT_TOL:
                    v = (k + 1) * n + fwd_idx[fwd_off[k, a] + r]
                    if not in_s[v]:
                        in_s[v] = True
                        queue[tail] = v
                        tail += 1
        elif sink_res[a] > CUT_TOL:
            reached_sink = True
        if k > 1:
            for rb in range(bwd_cnt[k - 1, a]):
                if flow[bwd_off[k - 1, a] + rb] > CUT_TOL:
                    v = (k - 1) * n + bwd_idx[bwd_off[k - 1, a] + rb]
                    if not in_s[v]:
                        in_s[v] = True
                        queue[tail] = v
                        tail += 1
    capacity = 0.0
    for r in range(fwd_cnt[0, s]):
        if not in_s[n + fwd_idx[fwd_off[0, s] + r]]:
            capacity += cap_s[fwd_off[0, s] + r]
    for p in range(tail):
        u = queue[p]
        k = u // n
        a = u - k * n
        if k < depth:
            for r in range(fwd_cnt[k, a]):
                if not in_s[(k + 1) * n + fwd_idx[fwd_off[k, a] + r]]:
                    capacity += cap_s[fwd_off[k, a] + r]
        elif sink_cap[a] > EPS:
            capacity += sink_cap[a]
    if reached_sink:
        capacity = np.inf
    worst = 0.0
    if check:
        # The flow is the forward copy: each arc's capacity minus its residual. Inflows are
        # gathered from the layer below into ``inflow``, so every read is sequential.
        inflow = np.zeros(n)
        nxt = np.zeros(n)
        for k in range(depth + 1):
            for a in range(n):
                if k == 0 and a != s:
                    continue
                if k < depth:
                    outflow = 0.0
                    for r in range(fwd_cnt[k, a]):
                        rest = res[fwd_off[k, a] + r]
                        f = cap_s[fwd_off[k, a] + r] - rest
                        outflow += f
                        nxt[fwd_idx[fwd_off[k, a] + r]] += f
                        if -f > worst:
                            worst = -f
                        if -rest > worst:
                            worst = -rest
                else:
                    outflow = sink_cap[a] - sink_res[a] if sink_cap[a] > EPS else 0.0
                    if -outflow > worst:
                        worst = -outflow
                    if -sink_res[a] > worst:
                        worst = -sink_res[a]
                if k > 0 and abs(inflow[a] - outflow) > worst:
                    worst = abs(inflow[a] - outflow)
            for a in range(n):
                inflow[a] = nxt[a]
                nxt[a] = 0.0
    return capacity, worst


@nb.njit(cache=True)
def solve_one(old, s, depth, upper, sink_cap, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd,
              bwd_cnt, res, flow, sink_res, dead, label, count, cur, path_u, path_r, queue,
              excess, bhead, bnext, in_s, certify, check, last):  # pragma: no cover - compiled
    """Maximum flow from ``(0, s)`` to the sink, with its canonical cut (when ``certify``).

    ``res``, ``flow`` and ``sink_res`` hold on entry a flow from ``(0, old)`` to
    the same sink at the same depth (``old = -1``: the zero flow), which is the
    warm start, and on return the maximum flow from ``(0, s)``. ``upper`` is a
    known upper bound (a cut's capacity), ``inf`` if none; ``last``: what the
    previous problem's search for an augmenting path found (:func:`_reaches_sink`;
    ``PATH`` if none ran), which only steers the work, never the value. Returns ``(value,
    cut capacity, largest violation, what this problem's search found)``; ``in_s`` then marks the cut's source
    side (layers ``1..depth``). Without ``certify`` there is no cut (its
    capacity is NaN) and no check: the certificate costs about two passes over
    the arcs, which is most of the work where the blocking flow alone suffices.
    """
    n = sink_cap.shape[0]
    sink_total = 0.0
    for a in range(n):
        if sink_cap[a] > EPS:
            sink_total += sink_cap[a]
    if depth == 0:
        value = sink_cap[s] if sink_cap[s] > EPS else 0.0
        return value, value, 0.0, last
    out_total = 0.0
    for r in range(fwd_cnt[0, s]):
        out_total += cap_s[fwd_off[0, s] + r]
    bound = min(sink_total, out_total, upper)
    target = bound - BOUND_TOL
    if bound <= EPS:  # nothing can pass: the zero flow, exactly
        if old >= 0:
            _clear(depth, n, cap_s, res, flow, sink_res, sink_cap, fwd_off, bwd_off)
        old = -1
        target = -1.0
    if old >= 0:
        _switch_source(old, s, depth, n, sink_cap, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, res, flow,
                       sink_res, np.empty(n), excess)
    total = 0.0
    for a in range(n):
        if sink_cap[a] > EPS:
            total += sink_cap[a] - sink_res[a]
    if total < target:
        total = _blocking_flow(s, depth, n, total, target, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, res, flow,
                               sink_res, dead, cur, path_u, path_r)
    found = last
    if total < target:
        cost_f = LEAN if last == NO_PATH_SINK_SIDE else 1.0
        cost_b = BACKWARD_COST * (LEAN if last == NO_PATH_SOURCE_SIDE else 1.0)
        found = _reaches_sink(s, depth, n, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt,
                              res, flow, sink_res, dead, in_s, queue, path_u, cost_f, cost_b)
    more = found == PATH
    phases = 0
    while total < target and more and phases < DINIC_PHASES:
        total, more = _dinic_phase(s, depth, n, total, target, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx,
                                   bwd_fwd, bwd_cnt, res, flow, sink_res, label, dead, cur, queue, path_u, path_r)
        phases += 1
    if total < target and more:  # still short after DINIC_PHASES phases: push-relabel from this flow
        total = _push_relabel(s, depth, n, total, target, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off,
                              bwd_idx, bwd_fwd, bwd_cnt, res, flow, sink_res, excess, label, count,
                              cur, bhead, bnext, queue)
        _return_excess(s, depth, n, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt, res,
                       flow, excess)
    capacity, worst = np.nan, 0.0
    if certify:
        capacity, worst = _certify(s, depth, n, sink_cap, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx,
                                   bwd_fwd, bwd_cnt, res, flow, sink_res, in_s, queue, check)
    value = 0.0
    for a in range(n):
        if sink_cap[a] > EPS:
            value += sink_cap[a] - sink_res[a]
    return value, capacity, worst, found


@nb.njit(cache=True)
def _clear(depth, n, cap_s, res, flow, sink_res, sink_cap, fwd_off, bwd_off):  # pragma: no cover - compiled
    """The zero flow: residuals back to the capacities (the arcs of layers below ``depth`` are contiguous)."""
    res[: fwd_off[depth, 0]] = cap_s[: fwd_off[depth, 0]]
    flow[: bwd_off[depth, 0]] = 0.0
    for a in range(n):
        sink_res[a] = sink_cap[a] if sink_cap[a] > EPS else 0.0


@nb.njit(cache=True)
def warm_blocks(depths, sink_rows, sources):  # pragma: no cover - compiled
    """Where each run of problems solved one after another from a warm start begins.

    A block is at most ``BLOCK`` consecutive problems with the same depth and
    sink whose sources rise within one ``source // BLOCK`` bucket. Blocks depend
    only on the problems, not on the threads, so the values (to the last bit)
    do not depend on how many threads ran or on what else was solved beside them.
    """
    m = sources.shape[0]
    starts = np.empty(m + 1, np.int64)
    n_blocks = 0
    for p in range(m):
        if (p == 0 or depths[p] != depths[p - 1] or sink_rows[p] != sink_rows[p - 1]
                or sources[p] <= sources[p - 1] or sources[p] // BLOCK != sources[p - 1] // BLOCK):
            starts[n_blocks] = p
            n_blocks += 1
    starts[n_blocks] = m
    return starts[: n_blocks + 1]


@nb.njit(cache=True)
def _solve_block(first, stop, depths, uppers, sink_rows, sources, sink_caps, cap_s, fwd_idx, fwd_back,
                 fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt, res, flow, certify, check, out, cut_caps, worst,
                 cuts):  # pragma: no cover - compiled
    """Problems ``first..stop-1`` (one warm-start block) with the work arrays ``res``, ``flow``."""
    n_layers, n = fwd_cnt.shape
    n_all = (n_layers + 1) * n + 1
    keep = cuts.shape[0] == out.shape[0]
    # The scratch arrays are O(L n), small beside a problem.
    dead = np.empty(n_all, np.bool_)
    in_s = np.empty(n_all, np.bool_)
    label = np.empty(n_all, np.int64)
    count = np.empty(n_all + 2, np.int64)
    cur = np.empty(n_all, np.int64)
    path_u = np.empty(n_all, np.int64)
    path_r = np.empty(n_all, np.int64)
    queue = np.empty(n_all, np.int64)
    excess = np.empty(n_all)
    bhead = np.empty(n_all + 2, np.int64)
    bnext = np.empty(n_all, np.int64)
    sink_res = np.empty(n)
    depth = depths[first]
    sink_cap = sink_caps[sink_rows[first]]
    for a in range(n):
        sink_res[a] = sink_cap[a] if sink_cap[a] > EPS else 0.0
    old = -1
    found = PATH
    for p in range(first, stop):
        value, capacity, bad, found = solve_one(
            old, sources[p], depth, uppers[p], sink_cap, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off,
            bwd_idx, bwd_fwd, bwd_cnt, res, flow, sink_res, dead, label, count, cur,
            path_u, path_r, queue, excess, bhead, bnext, in_s, certify, check, found)
        old = sources[p] if depth > 0 else -1
        out[p] = value
        cut_caps[p] = capacity
        worst[p] = bad
        if keep and certify:
            bits = cuts[p]
            bits[:] = 0
            for bit in range(depth * n):
                if in_s[n + bit]:
                    bits[bit >> 3] |= np.uint8(1 << (bit & 7))
    if old >= 0:
        _clear(depth, n, cap_s, res, flow, sink_res, sink_cap, fwd_off, bwd_off)


@nb.njit(parallel=True, cache=True)
def solve_batch(depths, uppers, sink_rows, sources, sink_caps, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off,
                bwd_idx, bwd_fwd, bwd_cnt, res, flow, certify, check, out, cut_caps, worst,
                cuts):  # pragma: no cover
    """Solve problem ``p`` (``depths[p]``, ``sink_caps[sink_rows[p]]``, ``sources[p]``) into ``out[p]``.

    ``uppers[p]`` is a known upper bound on its value (``inf`` for none). Writes
    the canonical cut's capacity to ``cut_caps[p]``, the flow check's largest
    violation to ``worst[p]`` and, when ``cuts`` has a row per problem, the cut's
    source side as bits (node ``(k, a)``, ``k >= 1``, is bit ``(k-1) * n + a``).
    ``res`` and ``flow`` are per-worker residual arrays ``(W, L, n, n)``, clean
    on entry (``res[w] == cap_s``, ``flow[w] == 0``) and left clean. Within a
    block (:func:`warm_blocks`) each problem starts from the maximum flow of the
    one before it, which has the same sink: most of the flow in the upper layers
    carries over. The thread with id ``w`` uses slot ``w``; ``W`` must be at
    least the number of threads running the loop.
    """
    starts = warm_blocks(depths, sink_rows, sources)
    # Blocks are handed to the threads one at a time, so a thread the OS deschedules does not
    # hold back a fixed share of the work; each thread uses the work arrays of its own id.
    for block in nb.prange(starts.shape[0] - 1):
        w = nb.get_thread_id()
        _solve_block(starts[block], starts[block + 1], depths, uppers, sink_rows, sources, sink_caps,
                     cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt, res[w], flow[w],
                     certify, check, out, cut_caps, worst, cuts)


@nb.njit(cache=True)
def solve_serial(depths, uppers, sink_rows, sources, sink_caps, cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off,
                 bwd_idx, bwd_fwd, bwd_cnt, res, flow, certify, check, out, cut_caps, worst,
                 cuts):  # pragma: no cover
    """:func:`solve_batch` on the calling thread, with work slot 0: for batches too small to share.

    Waking the worker threads costs tens of microseconds on an idle machine and
    milliseconds on a busy one, more than a small batch takes; the blocks and so
    the values are the same either way.
    """
    starts = warm_blocks(depths, sink_rows, sources)
    for block in range(starts.shape[0] - 1):
        _solve_block(starts[block], starts[block + 1], depths, uppers, sink_rows, sources, sink_caps,
                     cap_s, fwd_idx, fwd_back, fwd_cnt, fwd_off, bwd_off, bwd_idx, bwd_fwd, bwd_cnt, res[0], flow[0],
                     certify, check, out, cut_caps, worst, cuts)


class LayeredMaxFlow:
    """One prepared graph and per-worker work arrays, for many problems on it.

    ``cap``: ``(L, n, n)``, ``cap[k, i, j]`` the capacity of ``(k, j) -> (k+1, i)``.
    Memory: about ``(24 + 16 * W)`` bytes per arc of positive capacity for ``W`` worker threads
    (at most ``L * n^2`` arcs; a causal mask halves them). :meth:`from_arcs` builds one from a
    list of arcs, such as a sparsified graph.

    Examples
    --------
    >>> cap = np.array([[[0.5, 0.5], [0.0, 1.0]]])          # one layer, two tokens
    >>> solver = LayeredMaxFlow(cap)
    >>> solver.solve([0, 0], [0, 0], [0, 1], cap[0, [1]])  # to node (1, 1), depth 0
    array([0., 1.])
    >>> solved = solver.solve_certified([1], [0], [0], np.array([[1.0, 1.0]]))  # via layer 1 to a sink
    >>> solved.values, solved.cut_capacities   # source 0 sends out 0.5: the cut is its own arcs
    (array([0.5]), array([0.5]))
    """

    def __init__(self, cap: np.ndarray | None, n_workers: int | None = None, *, prepared: tuple | None = None) -> None:
        self.prepared = prepare(cap) if prepared is None else prepared
        cap_s = self.prepared[0]
        n_layers, n = self.prepared[3].shape
        self.n_layers, self.n = n_layers, n
        self.n_workers = int(n_workers or nb.get_num_threads())
        self._res = np.empty((self.n_workers, *cap_s.shape))
        self._res[:] = cap_s
        self._flow = np.zeros((self.n_workers, *cap_s.shape))

    @classmethod
    def from_arcs(cls, n_layers: int, n: int, layer, head, tail, capacity, n_workers: int | None = None):
        """The solver of the graph whose arcs are ``(layer, tail) -> (layer + 1, head)`` (see :func:`prepare_arcs`)."""
        return cls(None, n_workers, prepared=prepare_arcs(n_layers, n, layer, head, tail, capacity))

    @property
    def n_arcs(self) -> int:
        """Arcs of positive capacity the solver holds."""
        return int(self.prepared[0].size)

    def solve(self, depths, sink_rows, sources, sink_caps, uppers=None) -> np.ndarray:
        """Maximum flow values of the problems ``(depths[p], sink_caps[sink_rows[p]], sources[p])``.

        ``depths[p]`` may be at most ``L``; ``sink_caps`` is ``(S, n)``; ``uppers[p]``
        a known upper bound (a cut's capacity) on problem ``p``, or ``None``.
        """
        return self.solve_certified(depths, sink_rows, sources, sink_caps, uppers, certify=False).values

    def solve_certified(
        self,
        depths,
        sink_rows,
        sources,
        sink_caps,
        uppers=None,
        *,
        certify: bool = True,
        check: bool = True,
        keep_cuts: bool = False,
    ) -> Solved:
        """:meth:`solve`, returning with each value its canonical cut's capacity and the flow check.

        With ``certify`` the kernel finds each value's canonical cut, and with
        ``check`` it also checks each flow (capacities, conservation) before it
        lets go of it; with ``keep_cuts`` it returns each cut's source side as
        packed bits (see :func:`solve_batch`).
        """
        sources = np.ascontiguousarray(sources, dtype=np.int64)
        m = sources.shape[0]
        uppers = np.full(m, np.inf) if uppers is None else np.ascontiguousarray(uppers, dtype=np.float64)
        out = np.empty(m)
        cut_caps = np.empty(m)
        worst = np.empty(m)
        cuts = np.zeros((m if keep_cuts else 0, (self.n_layers * self.n + 7) // 8), np.uint8)
        depths = np.ascontiguousarray(depths, dtype=np.int64)
        arguments = (
            depths,
            uppers,
            np.ascontiguousarray(sink_rows, dtype=np.int64),
            sources,
            np.ascontiguousarray(sink_caps, dtype=np.float64),
            *self.prepared,
            self._res,
            self._flow,
            bool(certify),
            bool(check),
            out,
            cut_caps,
            worst,
            cuts,
        )
        # Arc slots the problems can touch (a depth-0 problem reads one capacity per node): a
        # bound on their work, known before solving.
        work = (float(depths.sum()) * self.n + depths.shape[0]) * self.n
        if self.n_workers == 1 or work <= SERIAL_WORK:
            solve_serial(*arguments)
            return Solved(out, cut_caps, worst, cuts if keep_cuts else None)
        threads = nb.get_num_threads()
        if threads > self.n_workers:  # each thread needs its own work arrays
            nb.set_num_threads(self.n_workers)
        try:
            with nb.parallel_chunksize(1):
                solve_batch(*arguments)
        finally:
            nb.set_num_threads(threads)
        return Solved(out, cut_caps, worst, cuts if keep_cuts else None)


class Solved(NamedTuple):
    """What :meth:`LayeredMaxFlow.solve_certified` returns, one entry per problem."""

    values: np.ndarray
    cut_capacities: np.ndarray
    violations: np.ndarray
    cuts: np.ndarray | None
