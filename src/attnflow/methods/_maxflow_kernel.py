"""Compiled exact max-flow on the layered attention graph (DESIGN.md §3, §5).

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
Augmenting paths in float64 on a residual graph stored densely, O(L n^2) per
worker thread, in two phases:

1. Blocking flow on the layered graph itself (Dinic's first phase; a layered
   graph is its own level graph, so no search is needed to build it): a
   depth-first search from the source along forward edges with residual
   capacity, with current-arc pointers and dead-end marking, augmenting along
   every source-to-sink path it finds.
2. If that does not reach the bound below, shortest augmenting paths with exact
   distance labels (Ahuja & Orlin; current arcs, relabel on retreat, the gap
   heuristic), starting from the phase-1 flow with labels from one backward
   breadth-first search. It ends when no augmenting path is left: the nodes
   that cannot reach the sink then form a cut whose capacity equals the flow.

Both phases stop as soon as the flow reaches ``min(sink in-capacity, source
out-capacity)``: a flow equal to a cut's capacity is maximal, so stopping there
is exact. On graphs a few layers deep almost every problem ends in phase 1 at
this bound (DESIGN.md §5).

Details that make it fast: every node's arcs are sorted once per graph by
capacity, largest first (a fat path is found first), and residual capacities
are stored in that order, so scans read memory sequentially; zero-capacity
arcs (causal masks, exact zeros) are dropped. Problems are independent:
``prange`` runs one worker per thread, each with its own residual arrays, and
after a problem only the entries it touched are reset.

Round-off: a residual capacity at or below ``EPS`` counts as zero, so residues
such as ``c - (c - f) - f = 1e-17`` cannot start an endless series of
vanishing augmentations. What this ignores is at most ``EPS`` per edge of the
final cut, far below the 1e-9 the tests demand.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["EPS", "LayeredMaxFlow", "prepare", "solve_batch"]

#: Residual capacities at or below this count as zero (capacities are at most 1).
EPS = 1e-14
#: Problems handed to a thread at a time: small, so the threads share the work dynamically.
_CHUNK = 4
#: A flow within this of its upper bound is declared maximal (the bound is a cut).
BOUND_TOL = 1e-13


def prepare(cap: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-graph preprocessing shared by every problem on the graph.

    ``cap``: ``(L, n, n)`` float64, ``cap[k, i, j]`` the capacity of ``(k, j) -> (k+1, i)``.

    Returns, for every layer ``k``:

    - ``cap_s[k, a, r]``, ``fwd_idx[k, a, r]``: capacity and head ``i`` of the
      ``r``-th largest forward arc of ``(k, a)``; ``fwd_cnt[k, a]`` arcs are positive.
    - ``bwd_idx[k, i, r]``: tail ``b`` of the ``r``-th largest arc into ``(k+1, i)``;
      ``bwd_cnt[k, i]`` of them are positive.
    - ``fwd_back[k, a, r]``: where forward arc ``r`` of ``(k, a)`` sits in its
      head's backward list; ``bwd_fwd[k, i, r]``: the converse.
    """
    cap = np.ascontiguousarray(cap, dtype=np.float64)
    cap_t = np.ascontiguousarray(cap.transpose(0, 2, 1))
    # numpy's vectorised argsort is several times faster than a sort inside numba.
    fwd_idx = np.argsort(-cap_t, axis=-1).astype(np.int32)
    bwd_idx = np.argsort(-cap, axis=-1).astype(np.int32)
    # Small graphs take ~1 ms serially; a parallel region would cost more than it saves.
    link = _link_parallel if cap.size > (1 << 20) else _link_serial
    return link(cap_t, fwd_idx, cap, bwd_idx)


@nb.njit(cache=True)
def _allocate_links(n_layers, n):  # pragma: no cover - compiled
    return (
        np.empty((n_layers, n, n)),  # cap_s
        np.empty((n_layers, n, n), np.int32),  # fwd_back
        np.zeros((n_layers, n), np.int32),  # fwd_cnt
        np.empty((n_layers, n, n), np.int32),  # bwd_fwd
        np.zeros((n_layers, n), np.int32),  # bwd_cnt
        np.empty((n_layers, n, n), np.int32),  # fwd_pos[k, a, i]: slot of arc a -> i
        np.empty((n_layers, n, n), np.int32),  # bwd_pos[k, i, b]: slot of arc b -> i
    )


@nb.njit(cache=True)
def _link_row(row, cap_t, fwd_idx, cap, bwd_idx, cap_s, fwd_cnt, bwd_cnt, fwd_pos, bwd_pos):
    """Sorted capacities, positive-arc counts and slot positions of row ``(k, a)``."""
    n = cap.shape[1]
    k = row // n
    a = row - k * n
    count = 0
    for r in range(n):
        i = fwd_idx[k, a, r]
        c = cap_t[k, a, i]
        cap_s[k, a, r] = c
        fwd_pos[k, a, i] = r
        if c > EPS:
            count += 1
    fwd_cnt[k, a] = count
    count = 0
    for r in range(n):
        b = bwd_idx[k, a, r]
        bwd_pos[k, a, b] = r
        if cap[k, a, b] > EPS:
            count += 1
    bwd_cnt[k, a] = count


@nb.njit(cache=True)
def _cross_row(row, fwd_idx, bwd_idx, fwd_pos, bwd_pos, fwd_back, bwd_fwd):
    """Where each arc of row ``(k, a)`` sits in the list of its other end."""
    n = fwd_idx.shape[1]
    k = row // n
    a = row - k * n
    for r in range(n):
        fwd_back[k, a, r] = bwd_pos[k, fwd_idx[k, a, r], a]
        bwd_fwd[k, a, r] = fwd_pos[k, bwd_idx[k, a, r], a]


@nb.njit(cache=True)
def _link_serial(cap_t, fwd_idx, cap, bwd_idx):  # pragma: no cover - compiled
    """The rest of :func:`prepare`: sorted capacities, counts and cross-references."""
    n_layers, n, _ = cap.shape
    cap_s, fwd_back, fwd_cnt, bwd_fwd, bwd_cnt, fwd_pos, bwd_pos = _allocate_links(n_layers, n)
    for row in range(n_layers * n):
        _link_row(row, cap_t, fwd_idx, cap, bwd_idx, cap_s, fwd_cnt, bwd_cnt, fwd_pos, bwd_pos)
    for row in range(n_layers * n):
        _cross_row(row, fwd_idx, bwd_idx, fwd_pos, bwd_pos, fwd_back, bwd_fwd)
    return cap_s, fwd_idx, fwd_back, fwd_cnt, bwd_idx, bwd_fwd, bwd_cnt


@nb.njit(parallel=True, cache=True)
def _link_parallel(cap_t, fwd_idx, cap, bwd_idx):  # pragma: no cover - compiled
    """:func:`_link_serial` with the rows spread over the threads."""
    n_layers, n, _ = cap.shape
    cap_s, fwd_back, fwd_cnt, bwd_fwd, bwd_cnt, fwd_pos, bwd_pos = _allocate_links(n_layers, n)
    for row in nb.prange(n_layers * n):
        _link_row(row, cap_t, fwd_idx, cap, bwd_idx, cap_s, fwd_cnt, bwd_cnt, fwd_pos, bwd_pos)
    for row in nb.prange(n_layers * n):
        _cross_row(row, fwd_idx, bwd_idx, fwd_pos, bwd_pos, fwd_back, bwd_fwd)
    return cap_s, fwd_idx, fwd_back, fwd_cnt, bwd_idx, bwd_fwd, bwd_cnt


@nb.njit(cache=True)
def _arc(u, r, n, depth, sink, fwd_idx, fwd_cnt, bwd_idx, bwd_cnt, res, flow, sink_res):
    """Head and residual capacity of arc ``r`` of node ``u`` (forward arcs first)."""
    k = u // n
    a = u - k * n
    if k < depth:
        nf = fwd_cnt[k, a]
        if r < nf:
            return (k + 1) * n + fwd_idx[k, a, r], res[k, a, r]
    else:
        nf = 1
        if r == 0:
            return sink, sink_res[a]
    rb = r - nf
    return (k - 1) * n + bwd_idx[k - 1, a, rb], flow[k - 1, a, rb]


@nb.njit(cache=True)
def _n_arcs(u, n, depth, fwd_cnt, bwd_cnt):
    k = u // n
    a = u - k * n
    nf = fwd_cnt[k, a] if k < depth else 1
    return nf + (bwd_cnt[k - 1, a] if k > 0 else 0)


@nb.njit(cache=True)
def _push_forward(k, a, r, delta, fwd_idx, fwd_back, res, flow, touched, n_touched, n):
    """Send ``delta`` along forward arc ``r`` of ``(k, a)``; returns the touched count."""
    i = fwd_idx[k, a, r]
    slot = fwd_back[k, a, r]
    before = flow[k, i, slot]
    if before == 0.0:
        if n_touched < touched.shape[0]:
            touched[n_touched] = (k * n + a) * n + r
        n_touched += 1
    res[k, a, r] -= delta
    flow[k, i, slot] = before + delta
    return n_touched


@nb.njit(cache=True)
def _push(u, r, delta, n, depth, fwd_idx, fwd_back, fwd_cnt, bwd_idx, bwd_fwd, res, flow,
          sink_res, touched, n_touched):
    """Send ``delta`` along arc ``r`` of node ``u``; returns the touched count."""
    k = u // n
    a = u - k * n
    if k < depth:
        nf = fwd_cnt[k, a]
        if r < nf:
            return _push_forward(k, a, r, delta, fwd_idx, fwd_back, res, flow, touched,
                                 n_touched, n)
    else:
        nf = 1
        if r == 0:
            sink_res[a] -= delta
            return n_touched
    rb = r - nf
    b = bwd_idx[k - 1, a, rb]
    flow[k - 1, a, rb] -= delta
    res[k - 1, b, bwd_fwd[k - 1, a, rb]] += delta
    return n_touched


@nb.njit(cache=True)
def _blocking_flow(s, depth, n, target, cap_s, fwd_idx, fwd_cnt, res, sink_res, dead, cur,
                   path_a, path_r, touched):  # pragma: no cover - compiled
    """Phase 1: augment along forward-only paths until none is left or ``target`` is met.

    The node on the path at depth ``p`` is ``(p, path_a[p])``, so layers need no
    bookkeeping. Only forward residuals change here (``flow`` is rebuilt from
    them if phase 2 runs); an arc is recorded in ``touched`` (flat index into
    ``res``) the first time it is used. Returns ``(flow value, touched count)``.
    """
    n_touched = 0
    total = 0.0
    a = s
    plen = 0
    while True:
        node = plen * n + a
        if plen == depth:
            if sink_res[a] > EPS:
                delta = np.inf
                first = 0
                for p in range(depth):
                    rr = res[p, path_a[p], path_r[p]]
                    if rr < delta:
                        delta = rr
                        first = p
                if sink_res[a] < delta:
                    delta = sink_res[a]
                    first = depth
                for p in range(depth):
                    ap = path_a[p]
                    rp = path_r[p]
                    before = res[p, ap, rp]
                    if before == cap_s[p, ap, rp]:
                        if n_touched < touched.shape[0]:
                            touched[n_touched] = (p * n + ap) * n + rp
                        n_touched += 1
                    res[p, ap, rp] = before - delta
                sink_res[a] -= delta
                total += delta
                if total >= target:
                    return total, n_touched
                if first < depth:
                    a = path_a[first]
                plen = first
                continue
            dead[node] = True
            if plen == 0:
                return total, n_touched
            plen -= 1
            a = path_a[plen]
            continue
        r = cur[node]
        count = fwd_cnt[plen, a]
        base = (plen + 1) * n
        while r < count:
            if res[plen, a, r] > EPS and not dead[base + fwd_idx[plen, a, r]]:
                break
            r += 1
        cur[node] = r
        if r < count:
            path_a[plen] = a
            path_r[plen] = r
            plen += 1
            a = fwd_idx[plen - 1, a, r]
        else:
            dead[node] = True
            if plen == 0:
                return total, n_touched
            plen -= 1
            a = path_a[plen]


@nb.njit(cache=True)
def _shortest_paths(s, depth, n, total, target, fwd_idx, fwd_back, fwd_cnt, bwd_idx, bwd_fwd,
                    bwd_cnt, res, flow, sink_res, label, count, cur, path_u, path_r, queue,
                    touched, n_touched):  # pragma: no cover
    """Phase 2: shortest augmenting paths from the current flow until none is left."""
    sink = (depth + 1) * n
    n_nodes = sink + 1
    for u in range(n_nodes):
        label[u] = n_nodes
        cur[u] = 0
    # Exact distances to the sink by a backward breadth-first search.
    label[sink] = 0
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
        a = v - k * n
        h = label[v] + 1
        if k > 0:  # forward arcs (k-1, b) -> v with residual capacity
            for rb in range(bwd_cnt[k - 1, a]):
                b = bwd_idx[k - 1, a, rb]
                u = (k - 1) * n + b
                if label[u] == n_nodes and res[k - 1, b, bwd_fwd[k - 1, a, rb]] > EPS:
                    label[u] = h
                    queue[tail] = u
                    tail += 1
        if k < depth:  # backward arcs (k+1, i) -> v, where v -> (k+1, i) carries flow
            for r in range(fwd_cnt[k, a]):
                i = fwd_idx[k, a, r]
                u = (k + 1) * n + i
                if label[u] == n_nodes and flow[k, i, fwd_back[k, a, r]] > EPS:
                    label[u] = h
                    queue[tail] = u
                    tail += 1
    if label[s] >= n_nodes:
        return total, n_touched
    for h in range(n_nodes + 1):
        count[h] = 0
    for u in range(n_nodes):
        count[label[u]] += 1

    plen = 0
    u = s
    while label[s] < n_nodes:
        if u == sink:
            delta = np.inf
            first = 0
            for p in range(plen):
                _, resid = _arc(path_u[p], path_r[p], n, depth, sink, fwd_idx, fwd_cnt, bwd_idx,
                                bwd_cnt, res, flow, sink_res)
                if resid < delta:
                    delta = resid
                    first = p
            for p in range(plen):
                n_touched = _push(path_u[p], path_r[p], delta, n, depth, fwd_idx, fwd_back,
                                  fwd_cnt, bwd_idx, bwd_fwd, res, flow, sink_res, touched,
                                  n_touched)
            total += delta
            if total >= target:
                break
            u = path_u[first]
            plen = first
            continue
        du = label[u]
        n_arcs = _n_arcs(u, n, depth, fwd_cnt, bwd_cnt)
        r = cur[u]
        v = u
        while r < n_arcs:
            v, resid = _arc(u, r, n, depth, sink, fwd_idx, fwd_cnt, bwd_idx, bwd_cnt, res, flow,
                            sink_res)
            if resid > EPS and label[v] == du - 1:
                break
            r += 1
        if r < n_arcs:
            cur[u] = r
            path_u[plen] = u
            path_r[plen] = r
            plen += 1
            u = v
            continue
        # Relabel: one more than the lowest label reachable through a residual arc.
        lowest = n_nodes
        for r in range(n_arcs):
            v, resid = _arc(u, r, n, depth, sink, fwd_idx, fwd_cnt, bwd_idx, bwd_cnt, res, flow,
                            sink_res)
            if resid > EPS and label[v] < lowest:
                lowest = label[v]
        count[du] -= 1
        if count[du] == 0:
            break  # gap: no node at this label, so nothing above it reaches the sink
        new = min(lowest + 1, n_nodes)
        label[u] = new
        count[new] += 1
        cur[u] = 0
        if u != s:
            plen -= 1
            u = path_u[plen]
    return total, n_touched


@nb.njit(cache=True)
def solve_one(s, depth, sink_cap, cap_s, fwd_idx, fwd_back, fwd_cnt, bwd_idx, bwd_fwd, bwd_cnt,
              res, flow, sink_res, dead, label, count, cur, path_u, path_r, queue,
              touched):  # pragma: no cover - compiled
    """Maximum flow from ``(0, s)`` to the sink; leaves ``res`` and ``flow`` clean."""
    n = sink_cap.shape[0]
    sink_total = 0.0
    for a in range(n):
        if sink_cap[a] > EPS:
            sink_total += sink_cap[a]
    if depth == 0:
        out_total = sink_cap[s] if sink_cap[s] > EPS else 0.0
    else:
        out_total = 0.0
        for r in range(fwd_cnt[0, s]):
            out_total += cap_s[0, s, r]
    bound = min(sink_total, out_total)
    if bound <= EPS:
        return 0.0
    target = bound - BOUND_TOL

    n_all = (depth + 1) * n
    for u in range(n_all):
        dead[u] = False
        cur[u] = 0
    for a in range(n):
        sink_res[a] = sink_cap[a]
    total, n_touched = _blocking_flow(s, depth, n, target, cap_s, fwd_idx, fwd_cnt, res, sink_res,
                                      dead, cur, path_u, path_r, touched)
    overflow = n_touched > touched.shape[0]
    phase2 = total < target and depth > 0
    if phase2:
        # Backward residuals (the flow on each arc) from the forward ones.
        if overflow:
            for k in range(depth):
                for a in range(n):
                    for r in range(fwd_cnt[k, a]):
                        flow[k, fwd_idx[k, a, r], fwd_back[k, a, r]] = cap_s[k, a, r] - res[k, a, r]
        else:
            for p in range(n_touched):
                e = touched[p]
                r = e % n
                a = (e // n) % n
                k = e // (n * n)
                flow[k, fwd_idx[k, a, r], fwd_back[k, a, r]] = cap_s[k, a, r] - res[k, a, r]
        total, n_touched = _shortest_paths(s, depth, n, total, target, fwd_idx, fwd_back,
                                           fwd_cnt, bwd_idx, bwd_fwd, bwd_cnt, res, flow,
                                           sink_res, label, count, cur, path_u, path_r, queue,
                                           touched, n_touched)
        overflow = n_touched > touched.shape[0]

    # Leave the work arrays clean for the next problem.
    if overflow:
        for k in range(depth):
            res[k, :, :] = cap_s[k, :, :]
            if phase2:
                flow[k, :, :] = 0.0
    else:
        res_flat = res.reshape(-1)
        cap_flat = cap_s.reshape(-1)
        for p in range(n_touched):
            res_flat[touched[p]] = cap_flat[touched[p]]
        if phase2:
            for p in range(n_touched):
                e = touched[p]
                r = e % n
                a = (e // n) % n
                k = e // (n * n)
                flow[k, fwd_idx[k, a, r], fwd_back[k, a, r]] = 0.0
    return total


@nb.njit(parallel=True, cache=True)
def solve_batch(depths, sink_rows, sources, sink_caps, cap_s, fwd_idx, fwd_back, fwd_cnt,
                bwd_idx, bwd_fwd, bwd_cnt, res, flow, touched, out):  # pragma: no cover
    """Solve problem ``p`` (``depths[p]``, ``sink_caps[sink_rows[p]]``, ``sources[p]``) into ``out[p]``.

    ``res`` and ``flow`` are per-worker residual arrays ``(W, L, n, n)``, clean
    on entry (``res[w] == cap_s``, ``flow[w] == 0``) and left clean; ``touched``
    is per-worker scratch ``(W, m)``. The thread with id ``w`` uses slot ``w``; ``W`` must be
    at least the number of threads running the loop.
    """
    n_layers, n, _ = cap_s.shape
    m = sources.shape[0]
    n_all = (n_layers + 1) * n + 1
    # One problem per iteration, handed out in small chunks (see LayeredMaxFlow.solve), so a
    # thread the OS deschedules does not hold back a fixed share of the work; each thread uses
    # the work arrays of its own id. The scratch arrays below are O(L n), small beside a problem.
    for p in nb.prange(m):
        w = nb.get_thread_id()
        sink_res = np.empty(n)
        dead = np.empty(n_all, np.bool_)
        label = np.empty(n_all, np.int64)
        count = np.empty(n_all + 1, np.int64)
        cur = np.empty(n_all, np.int64)
        path_u = np.empty(n_all, np.int64)
        path_r = np.empty(n_all, np.int64)
        queue = np.empty(n_all, np.int64)
        out[p] = solve_one(sources[p], depths[p], sink_caps[sink_rows[p]], cap_s, fwd_idx,
                           fwd_back, fwd_cnt, bwd_idx, bwd_fwd, bwd_cnt, res[w], flow[w],
                           sink_res, dead, label, count, cur, path_u, path_r, queue,
                           touched[w])


class LayeredMaxFlow:
    """One prepared graph and per-worker work arrays, for many problems on it.

    ``cap``: ``(L, n, n)``, ``cap[k, i, j]`` the capacity of ``(k, j) -> (k+1, i)``.
    Memory: about ``(8 + 16 * W) * L * n^2`` bytes for ``W`` worker threads.

    Examples
    --------
    >>> cap = np.array([[[0.5, 0.5], [0.0, 1.0]]])          # one layer, two tokens
    >>> solver = LayeredMaxFlow(cap)
    >>> solver.solve([0, 0], [0, 0], [0, 1], cap[0, [1]])  # to node (1, 1), depth 0
    array([0., 1.])
    """

    def __init__(self, cap: np.ndarray, n_workers: int | None = None) -> None:
        self.prepared = prepare(cap)
        cap_s = self.prepared[0]
        n_layers, n, _ = cap_s.shape
        self.n_workers = int(n_workers or nb.get_num_threads())
        self._res = np.empty((self.n_workers, *cap_s.shape))
        self._res[:] = cap_s
        self._flow = np.zeros((self.n_workers, *cap_s.shape))
        self._touched = np.empty((self.n_workers, n_layers * n * n // 4 + 4096), np.int64)

    def solve(self, depths, sink_rows, sources, sink_caps) -> np.ndarray:
        """Maximum flow values of the problems ``(depths[p], sink_caps[sink_rows[p]], sources[p])``.

        ``depths[p]`` may be at most ``L``; ``sink_caps`` is ``(S, n)``.
        """
        sources = np.ascontiguousarray(sources, dtype=np.int64)
        out = np.empty(sources.shape[0])
        threads = nb.get_num_threads()
        if threads > self.n_workers:  # each thread needs its own work arrays
            nb.set_num_threads(self.n_workers)
        try:
            with nb.parallel_chunksize(_CHUNK):
                self._solve_batch(depths, sink_rows, sources, sink_caps, out)
        finally:
            nb.set_num_threads(threads)
        return out

    def _solve_batch(self, depths, sink_rows, sources, sink_caps, out) -> None:
        solve_batch(
            np.ascontiguousarray(depths, dtype=np.int64),
            np.ascontiguousarray(sink_rows, dtype=np.int64),
            sources,
            np.ascontiguousarray(sink_caps, dtype=np.float64),
            *self.prepared,
            self._res,
            self._flow,
            self._touched,
            out,
        )
