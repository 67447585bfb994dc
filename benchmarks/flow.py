"""Exact attention flow: attnflow against the ways it has been computed before, side by side.

    python benchmarks/flow.py            # every shape, about 8-10 minutes on 2 cores
    python benchmarks/flow.py --quick    # three small shapes, about a minute
    python benchmarks/flow.py --json results.json

Solvers, all on the same graph (DESIGN.md §3, residual 0.5, random peaky
attention with a sink token, seeded):

- attnflow: ``attention_flow`` end to end (validation, graph, compiled kernel);
- networkx Edmonds–Karp, what the paper's authors used, one problem at a time;
- networkx preflow-push, networkx's default max-flow;
- scipy ``maximum_flow`` (Dinic) on capacities scaled by ``--scale`` and rounded to
  int32, as GlobEnc did: fast, but no longer exact (its error is reported).

Cases: one output token (position 0, every input as a source) and every output
token, both at the top layer. The reference solvers are timed on as many
problems as fit in a time budget and their totals extrapolated from those, which
the table marks "(k)"; where not even one problem finished within the limit,
the entry is a lower bound ("> t"). Accuracy: the largest difference between
attnflow and networkx preflow-push over every problem networkx solved.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from attnflow import attention_flow  # noqa: E402
from attnflow.graph import AttentionGraph  # noqa: E402

SHAPES = [(6, 32), (12, 64), (12, 128), (12, 197), (24, 256), (24, 512)]
QUICK_SHAPES = [(6, 32), (12, 64), (12, 128)]
OUTPUT = 0


def bench_attention(n_layers: int, n: int, seed: int, temperature: float = 0.5, sink: float = 2.0):
    """Softmax of Gaussian logits over ``temperature``, key 0 boosted by ``sink``: ``(L, n, n)``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_layers, n, n)) / temperature
    logits[..., 0] += sink
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


@dataclass
class Timing:
    """Total seconds for a case; ``measured`` problems were actually solved."""

    seconds: float | None = None
    measured: int = 0
    problems: int = 0
    lower_bound: bool = False
    note: str = ""
    values: dict[int, float] = field(default_factory=dict)  # source -> value (one-output case)

    def label(self) -> str:
        if self.seconds is None:
            return "-"
        text = f"{'> ' if self.lower_bound else ''}{format_seconds(self.seconds)}"
        if self.measured < self.problems and not self.lower_bound:
            text += f" ({self.measured})"
        return text


def format_seconds(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --- reference solvers, run in a child process so a time limit can stop them -------------------


def _networkx_child(cap, algorithm_name, sources, budget, queue):
    import networkx as nx
    from networkx.algorithms import flow

    from attnflow.methods._flow_reference import SINK, layered_graph

    n_layers = cap.shape[0]
    start = time.perf_counter()
    graph = layered_graph(cap[: n_layers - 1], cap[n_layers - 1, OUTPUT])
    queue.put(("build", time.perf_counter() - start))
    algorithm = getattr(flow, algorithm_name)
    spent = 0.0
    for source in sources:
        start = time.perf_counter()
        value = nx.maximum_flow_value(graph, (0, int(source)), SINK, flow_func=algorithm)
        seconds = time.perf_counter() - start
        queue.put(("solve", int(source), value, seconds))
        spent += seconds
        if spent > budget:
            break
    queue.put(("done",))


def time_networkx(cap, algorithm_name, budget, limit) -> tuple[Timing, float, int]:
    """Per-problem seconds of a networkx algorithm; returns (one-output timing, per problem, k)."""
    n = cap.shape[-1]
    sources = np.random.default_rng(1).permutation(n)
    queue: mp.Queue = mp.get_context("fork").Queue()
    child = mp.get_context("fork").Process(
        target=_networkx_child, args=(cap, algorithm_name, sources, budget, queue)
    )
    start = time.perf_counter()
    child.start()
    build = None
    solved: list[tuple[int, float, float]] = []
    finished = False
    while time.perf_counter() - start < limit:
        try:
            message = queue.get(timeout=max(0.05, limit - (time.perf_counter() - start)))
        except Exception:
            break
        if message[0] == "build":
            build = message[1]
        elif message[0] == "solve":
            solved.append(message[1:])
        else:
            finished = True
            break
    if not finished:
        child.kill()
    child.join()
    timing = Timing(problems=n, measured=len(solved))
    timing.values = {source: value for source, value, _ in solved}
    if not solved:  # a lower bound: the first problem alone ran longer than what was left
        elapsed = time.perf_counter() - start
        timing.lower_bound = True
        if build is None:
            timing.note = "graph not built within the limit"
            timing.seconds = elapsed
            return timing, 0.0, 0
        timing.note = "first problem did not finish"
        per_problem = elapsed - build
        timing.seconds = build + per_problem * n
        return timing, per_problem, 0
    per_problem = float(np.mean([seconds for _, _, seconds in solved]))
    timing.seconds = (build or 0.0) + per_problem * n
    return timing, per_problem, len(solved)


def time_scipy(cap, scale, budget, exact_one) -> tuple[Timing, float, int, float]:
    """Integer-scaled scipy Dinic: one-output timing, seconds per problem, k, max error."""
    import scipy.sparse as sparse
    from scipy.sparse.csgraph import maximum_flow

    n_layers, n, _ = cap.shape
    start = time.perf_counter()
    layer, head, tail = np.nonzero(cap)
    values = np.round(cap[layer, head, tail] * scale).astype(np.int32)
    size = (n_layers + 1) * n
    graph = sparse.csr_matrix(
        (values, (layer * n + tail, (layer + 1) * n + head)), shape=(size, size)
    )
    build = time.perf_counter() - start
    sink = n_layers * n + OUTPUT
    solved = []
    spent = 0.0
    for source in np.random.default_rng(1).permutation(n):
        start = time.perf_counter()
        value = maximum_flow(graph, int(source), sink, method="dinic").flow_value / scale
        seconds = time.perf_counter() - start
        solved.append((int(source), value, seconds))
        spent += seconds
        if spent > budget:
            break
    per_problem = float(np.mean([s for _, _, s in solved]))
    timing = Timing(seconds=build + per_problem * n, measured=len(solved), problems=n)
    error = max(abs(value - exact_one[source]) for source, value, _ in solved)
    return timing, per_problem, len(solved), float(error)


# --- the benchmark -----------------------------------------------------------------------------


def time_attnflow(attention, outputs, repeats) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        attention_flow(attention, outputs=outputs, layers=-1, normalize=False)
        best = min(best, time.perf_counter() - start)
    return best


def run_shape(n_layers, n, args) -> list[dict]:
    attention = bench_attention(n_layers, n, args.seed)
    cap = AttentionGraph.from_attentions(attention).capacities
    exact_one = attention_flow(attention, outputs=OUTPUT, layers=-1, normalize=False)[-1, OUTPUT]
    one = time_attnflow(attention, OUTPUT, 3 if n <= 256 else 1)

    # Every output: run them all when that fits the budget, else a sample of outputs.
    predicted = one * n
    if predicted <= args.attnflow_budget:
        start = time.perf_counter()
        attention_flow(attention, outputs=None, layers=-1, normalize=False)
        all_timing = Timing(time.perf_counter() - start, n * n, n * n)
    else:
        sample = max(2, int(args.attnflow_budget / one))
        outputs = np.random.default_rng(2).choice(n, size=min(n, sample), replace=False)
        start = time.perf_counter()
        attention_flow(attention, outputs=list(outputs), layers=-1, normalize=False)
        all_timing = Timing((time.perf_counter() - start) * n / len(outputs), n * len(outputs), n * n)

    ek, ek_per, ek_k = time_networkx(cap, "edmonds_karp", args.ek_budget, args.ek_limit)
    pp, pp_per, pp_k = time_networkx(cap, "preflow_push", args.nx_budget, args.nx_limit)
    sp, sp_per, sp_k, sp_error = time_scipy(cap, args.scale, args.scipy_budget, exact_one)

    checked = {**ek.values, **pp.values}
    nx_error = max((abs(v - exact_one[s]) for s, v in checked.items()), default=float("nan"))

    def all_from(one_timing: Timing, per: float, k: int) -> Timing:
        if k == 0:  # not even one problem: per-problem lower bound times n^2 (or just the limit)
            return Timing(per * n * n if per else one_timing.seconds, 0, n * n, lower_bound=True)
        return Timing(per * n * n, k, n * n)

    rows = []
    for case, mine, ek_t, pp_t, sp_t in [
        ("1 output", Timing(one, n, n), ek, pp, sp),
        ("all outputs", all_timing, all_from(ek, ek_per, ek_k), all_from(pp, pp_per, pp_k),
         all_from(sp, sp_per, sp_k)),
    ]:
        rows.append({
            "L": n_layers, "n": n, "case": case, "problems": mine.problems,
            "attnflow": asdict(mine) | {"values": None},
            "edmonds_karp": asdict(ek_t) | {"values": None},
            "preflow_push": asdict(pp_t) | {"values": None},
            "scipy_int": asdict(sp_t) | {"values": None},
            "scipy_max_error": sp_error,
            "attnflow_max_error_vs_networkx": nx_error,
            "networkx_problems_checked": len(checked),
            "at_bound": float(np.mean(np.isclose(
                exact_one, np.minimum(1.0, cap[0].sum(axis=0)), rtol=0, atol=1e-12))),
            "_t": (mine, ek_t, pp_t, sp_t),
        })
    return rows


def ratio(other: Timing, mine: Timing) -> str:
    if other.seconds is None or not mine.seconds:
        return "-"
    value = other.seconds / mine.seconds
    text = f"{value:,.0f}x" if value >= 10 else f"{value:.1f}x"
    return ("> " + text) if other.lower_bound else text


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Exact attention flow to the top layer: attnflow vs networkx and scipy")
    for column in ["L x n", "case", "problems", "attnflow", "nx Edmonds-Karp", "ratio",
                   "nx preflow-push", "ratio", "scipy int", "ratio", "scipy max err",
                   "attnflow err (k)"]:
        table.add_column(column, justify="right")
    for row in rows:
        mine, ek, pp, sp = row["_t"]
        table.add_row(
            f"{row['L']} x {row['n']}", row["case"], f"{row['problems']:,}",
            mine.label(), ek.label(), ratio(ek, mine), pp.label(), ratio(pp, mine),
            sp.label(), ratio(sp, mine), f"{row['scipy_max_error']:.1e}",
            f"{row['attnflow_max_error_vs_networkx']:.1e} ({row['networkx_problems_checked']})",
        )
    console = Console(width=200)
    console.print(table)
    console.print(
        "(k): total extrapolated from k problems actually solved; > t: lower bound, no problem "
        "finished within the time limit. attnflow err: largest |attnflow - networkx| over the k "
        "problems networkx solved. scipy: capacities x scale rounded to int32."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three small shapes, short budgets")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1e6, help="integer scaling for scipy")
    parser.add_argument("--ek-budget", type=float, default=20.0, help="seconds of EK per shape")
    parser.add_argument("--ek-limit", type=float, default=45.0, help="hard limit per shape")
    parser.add_argument("--nx-budget", type=float, default=10.0)
    parser.add_argument("--nx-limit", type=float, default=40.0)
    parser.add_argument("--scipy-budget", type=float, default=5.0)
    parser.add_argument("--attnflow-budget", type=float, default=40.0)
    args = parser.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.quick:
        args.ek_budget, args.ek_limit, args.nx_budget, args.nx_limit = 3.0, 10.0, 3.0, 10.0
        args.scipy_budget, args.attnflow_budget = 2.0, 10.0

    import numba

    start = time.perf_counter()
    attention_flow(bench_attention(2, 3, 0))  # load (or compile) the kernel once
    print(f"kernel ready in {time.perf_counter() - start:.2f} s (compiled on first use, then "
          f"cached); {numba.get_num_threads()} threads")
    rows = []
    for n_layers, n in shapes:
        print(f"L={n_layers} n={n} ...", flush=True)
        rows.extend(run_shape(n_layers, n, args))
    print_table(rows)
    if args.json:
        clean = [{key: value for key, value in row.items() if key != "_t"} for row in rows]
        args.json.write_text(json.dumps(clean, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
