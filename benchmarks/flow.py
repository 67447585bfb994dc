"""Exact attention flow: attnflow against the ways it has been computed before, side by side.

    python benchmarks/flow.py            # every case, about 6 minutes on 2 idle cores
    python benchmarks/flow.py --quick    # the small cases, a few minutes
    python benchmarks/flow.py --json results.json
    python benchmarks/flow.py --smollm2 --json docs/results/flow-smollm2.json   # the 30-layer LM only

Cases, real attention first: the bundled MiniLM (fixed texts of about 64, 128,
256 and 512 tokens), the bundled SVA model (a test sentence) and digits-vit (a
test image); then synthetic hard cases: banded attention (window +-4), shallow
layers, and random peaky attention with a sink token. For each case three jobs:
one output ([CLS], token 0) at the top layer, that output at every layer, and
every output at every layer (the paper's ``compute_flows``; small inputs only).

Solvers, all on the same graph (docs/design.md: residual 0.5, mean head fusion):

- attnflow: ``attention_flow`` end to end (validation, graph, compiled kernel);
- scipy ``maximum_flow`` (Dinic) on capacities scaled by ``--scale`` and
  rounded to int32, as GlobEnc did: not exact (its error is reported);
- igraph ``maxflow_value``, float capacities, exact;
- networkx preflow-push (networkx's default; the paper used networkx too),
  where it can finish within its budget.

attnflow's time is the best of a few calls after one warm-up call (the first
call in a process also starts the worker threads). Reference solvers run one
problem at a time, as many as fit in their time
budget, and their totals are extrapolated from those (per layer depth); the
table marks such entries "(k)" with k the problems actually solved. Accuracy:
the largest difference between attnflow and igraph (exact) over every problem
igraph solved. Ratios are reference time / attnflow time, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from attnflow import attention_flow  # noqa: E402
from attnflow.graph import AttentionGraph  # noqa: E402
from scripts.doc_tables import FLOW_JOBS, duration  # noqa: E402  (the README's table prints the same way)

SENTENCE = (
    "Attention flow follows information through every layer of a transformer, and the keys to the "
    "cabinet are on the table while the cabinet itself stands in the kitchen near the window. "
)
MINILM_TOKENS = (64, 128, 256, 512)
QUICK_MINILM_TOKENS = (64, 128)


@dataclass
class Case:
    name: str
    attention: np.ndarray
    jobs: tuple[str, ...]  # of "top", "layers", "all"
    real: bool = True
    output: int = 0  # the explained position of "top" and "layers": [CLS] (0), or a decoder's last token


@dataclass
class Timing:
    seconds: float | None = None
    measured: int = 0
    problems: int = 0
    values: dict = field(default_factory=dict)  # (layer, output, source) -> value

    def label(self) -> str:
        if self.seconds is None:
            return "-"
        text = duration(self.seconds)
        return text if self.measured >= self.problems else f"{text} ({self.measured})"


# --- the cases ----------------------------------------------------------------------------------


def minilm_text(tokens: int) -> str:
    """The longest prefix (in words) of a repeated sentence that MiniLM tokenizes to at most ``tokens``."""
    from attnflow.capture import load_model

    tokenizer = load_model("minilm").tokenizer
    words = (SENTENCE * 40).split()
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(tokenizer(" ".join(words[:mid]))["input_ids"]) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return " ".join(words[:lo])


def real_cases(quick: bool) -> list[Case]:
    from attnflow.capture import capture_attention
    from attnflow.capture.image import capture_image_attention
    from attnflow.tasks.digits import digits_test_set, to_pil
    from attnflow.tasks.sva import generate

    cases = []
    for tokens in QUICK_MINILM_TOKENS if quick else MINILM_TOKENS:
        captured = capture_attention(minilm_text(tokens), "minilm", truncate=True)
        jobs = ("top", "layers", "all") if captured.n_tokens <= 128 else ("top", "layers")
        cases.append(Case(f"MiniLM 6x{captured.n_tokens}", captured.attentions, jobs))
    sentence = max(generate(20, split="test", seed=3), key=lambda e: len(e.text)).text
    captured = capture_attention(sentence, "sva")
    cases.append(Case(f"SVA 6x{captured.n_tokens}", captured.attentions, ("top", "layers", "all")))
    image, _ = digits_test_set(1)
    captured = capture_image_attention(to_pil(image[0]), "digits-vit")
    shape = captured.attentions.shape
    cases.append(Case(f"digits-vit {shape[0]}x{shape[-1]}", captured.attentions, ("top", "layers", "all")))
    return cases


#: Prompt lengths of the SmolLM2 cases (stdlib docstrings, as in benchmarks/flow_long.py).
SMOLLM2_TOKENS = (64, 128, 256)


def smollm2_cases(tokens_list: tuple[int, ...] = SMOLLM2_TOKENS) -> list[Case]:
    """SmolLM2-135M (30 layers), head-mean attention on stdlib docstrings, explained at the last position."""
    from attnflow.capture import capture_attention, load_model
    from benchmarks.flow_long import stdlib_text

    model = load_model("smollm2")
    ids = model.tokenizer(stdlib_text())["input_ids"]
    cases = []
    for tokens in tokens_list:
        captured = capture_attention(model.tokenizer.decode(ids[:tokens]), model, heads="mean")
        n = captured.n_tokens
        cases.append(Case(f"SmolLM2 30x{n}", np.asarray(captured.attentions), ("top", "layers"), output=n - 1))
    return cases


def peaky(n_layers: int, n: int, seed: int, temperature: float = 0.5, sink: float = 2.0) -> np.ndarray:
    """Softmax of Gaussian logits over ``temperature``, key 0 boosted by ``sink``: ``(L, n, n)``."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_layers, n, n)) / temperature
    logits[..., 0] += sink
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return weights / weights.sum(axis=-1, keepdims=True)


def banded(n_layers: int, n: int, window: int, seed: int) -> np.ndarray:
    """Random positive weights inside a band ``|i - j| <= window``, rows normalised: ``(L, n, n)``."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    band = np.abs(idx[:, None] - idx[None, :]) <= window
    weights = np.where(band, rng.random((n_layers, n, n)) + 0.05, 0.0)
    return weights / weights.sum(axis=-1, keepdims=True)


def synthetic_cases(quick: bool) -> list[Case]:
    cases = [
        Case("banded 24x256", banded(24, 256, 4, 0), ("top",), real=False),
        Case("shallow 3x128", peaky(3, 128, 1), ("top", "layers", "all"), real=False),
        Case("random 12x128", peaky(12, 128, 0), ("top", "layers"), real=False),
        # The shape of ViT-B/16 at 224 pixels: 12 layers, 196 patches and [CLS].
        Case("ViT-B/16 shape 12x197", peaky(12, 197, 2), ("top", "layers"), real=False),
    ]
    if not quick:
        cases.append(Case("random 24x512", peaky(24, 512, 0), ("top",), real=False))
    return cases


# --- problems and reference solvers ---------------------------------------------------------------


def groups_for(job: str, n_layers: int, n: int, output: int = 0) -> list[tuple[int, int]]:
    """The (layer, output) rows a job computes."""
    if job == "top":
        return [(n_layers, output)]
    if job == "layers":
        return [(layer, output) for layer in range(1, n_layers + 1)]
    return [(layer, t) for layer in range(1, n_layers + 1) for t in range(n)]


def problem_edges(cap: np.ndarray, layer: int, output: int):
    """Edges ``(tail, head, capacity)`` of the problem into ``(layer, output)``; node ``k * n + j``, sink last."""
    n = cap.shape[-1]
    tails, heads, values = [], [], []
    for k in range(layer - 1):
        i, j = np.nonzero(cap[k])
        tails.append(k * n + j)
        heads.append((k + 1) * n + i)
        values.append(cap[k][i, j])
    sink = layer * n
    a = np.nonzero(cap[layer - 1, output])[0]
    tails.append((layer - 1) * n + a)
    heads.append(np.full(a.size, sink))
    values.append(cap[layer - 1, output, a])
    return np.concatenate(tails), np.concatenate(heads), np.concatenate(values), sink + 1, sink


class Scipy:
    name = "scipy int"

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def prepare(self, cap, layer, output):
        import scipy.sparse as sparse

        tails, heads, values, size, sink = problem_edges(cap, layer, output)
        ints = np.round(values * self.scale).astype(np.int32)
        return sparse.csr_matrix((ints, (tails, heads)), shape=(size, size)), sink

    def solve(self, prepared, source):
        from scipy.sparse.csgraph import maximum_flow

        graph, sink = prepared
        return maximum_flow(graph, int(source), sink, method="dinic").flow_value / self.scale


class Igraph:
    name = "igraph"

    def prepare(self, cap, layer, output):
        import igraph

        tails, heads, values, size, sink = problem_edges(cap, layer, output)
        graph = igraph.Graph(n=size, edges=np.column_stack([tails, heads]).tolist(), directed=True)
        return graph, values.tolist(), sink

    def solve(self, prepared, source):
        graph, capacity, sink = prepared
        return graph.maxflow_value(int(source), sink, capacity=capacity)


class Networkx:
    name = "networkx"

    def prepare(self, cap, layer, output):
        import networkx as nx

        tails, heads, values, _, sink = problem_edges(cap, layer, output)
        graph = nx.DiGraph()
        edges = zip(tails.tolist(), heads.tolist(), values.tolist(), strict=True)
        graph.add_weighted_edges_from(edges, weight="capacity")
        return graph, sink

    def solve(self, prepared, source):
        import networkx as nx

        graph, sink = prepared
        if int(source) not in graph:
            return 0.0
        return nx.maximum_flow_value(graph, int(source), sink)


def time_reference(solver, cap, groups, budget: float, max_edges: float = np.inf) -> Timing:
    """Solve as many problems as fit in ``budget`` (groups in a fixed random order), extrapolate per depth."""
    n_layers, n, _ = cap.shape
    timing = Timing(problems=len(groups) * n)
    if (max(layer for layer, _ in groups)) * n * n > max_edges:
        return timing
    order = np.random.default_rng(1).permutation(len(groups))
    per_depth: dict[int, list[float]] = {}
    spent = 0.0
    for g in order:
        layer, output = groups[g]
        start = time.perf_counter()
        prepared = solver.prepare(cap, layer, output)
        build = time.perf_counter() - start
        for source in np.random.default_rng(2).permutation(n):
            start = time.perf_counter()
            value = solver.solve(prepared, source)
            seconds = time.perf_counter() - start + build / n
            timing.values[(layer, output, int(source))] = value
            per_depth.setdefault(layer, []).append(seconds)
            spent += seconds
            if spent > budget:
                break
        if spent > budget:
            break
    timing.measured = sum(len(v) for v in per_depth.values())
    everywhere = float(np.mean([s for v in per_depth.values() for s in v]))
    total = 0.0
    for layer, _ in groups:  # unmeasured depths: scaled from the mean by their edge count
        if layer in per_depth:
            total += float(np.mean(per_depth[layer])) * n
        else:
            measured_layers = np.mean(list(per_depth))
            total += everywhere * max(layer, 1) / max(measured_layers, 1) * n
    timing.seconds = total
    return timing


def time_attnflow(attention, job: str, repeats: int, output: int = 0) -> tuple[float, np.ndarray]:
    n_layers = attention.shape[0]
    kwargs = {"top": {"outputs": output, "layers": -1}, "layers": {"outputs": output}, "all": {}}[job]
    attention_flow(attention, normalize=False, **kwargs)  # warm: the first call also starts the threads
    best, values = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        values = attention_flow(attention, normalize=False, **kwargs)
        best = min(best, time.perf_counter() - start)
    assert values is not None and values.shape[0] == n_layers
    return best, values


def ratio(other: Timing, mine: float) -> str:
    if other.seconds is None or not mine:
        return "-"
    value = other.seconds / mine
    return f"{value:,.0f}x" if value >= 10 else f"{value:.1f}x"


def run_case(case: Case, args) -> list[dict]:
    cap = AttentionGraph.from_attentions(case.attention).capacities
    n_layers, n, _ = cap.shape
    rows = []
    for job in case.jobs:
        groups = groups_for(job, n_layers, n, case.output)
        seconds, values = time_attnflow(case.attention, job, 1 if n >= 256 or job == "all" else 5, case.output)
        references = {
            "scipy": time_reference(Scipy(args.scale), cap, groups, args.budget),
            "igraph": time_reference(Igraph(), cap, groups, args.budget),
            "networkx": time_reference(Networkx(), cap, groups, args.nx_budget, max_edges=args.nx_max_edges),
        }

        def error(timing: Timing, exact: np.ndarray = values) -> float:
            diffs = [abs(v - exact[layer - 1, t, s]) for (layer, t, s), v in timing.values.items()]
            return max(diffs) if diffs else float("nan")

        rows.append({
            "case": case.name, "real": case.real, "job": job, "problems": len(groups) * n,
            "attnflow_s": seconds,
            **{f"{name}_s": t.seconds for name, t in references.items()},
            **{f"{name}_measured": t.measured for name, t in references.items()},
            **{f"{name}_ratio": (t.seconds / seconds if t.seconds else None) for name, t in references.items()},
            "max_error_vs_igraph": error(references["igraph"]),
            "max_error_vs_networkx": error(references["networkx"]),
            "scipy_error_vs_attnflow": error(references["scipy"]),
            "_t": (seconds, references),
        })
        print(f"  {case.name:<20} {job:<7} attnflow {duration(seconds):>10}  "
              f"scipy {ratio(references['scipy'], seconds):>7}  igraph {ratio(references['igraph'], seconds):>7}",
              flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Exact attention flow: attnflow against scipy (integer), igraph and networkx")
    for column in ["case", "job", "problems", "attnflow", "scipy int", "ratio", "igraph", "ratio",
                   "networkx", "ratio", "err vs igraph", "scipy err"]:
        table.add_column(column, justify="right")
    for row in rows:
        mine, refs = row["_t"]
        table.add_row(
            row["case"], FLOW_JOBS[row["job"]], f"{row['problems']:,}", duration(mine),
            refs["scipy"].label(), ratio(refs["scipy"], mine), refs["igraph"].label(), ratio(refs["igraph"], mine),
            refs["networkx"].label(), ratio(refs["networkx"], mine),
            f"{row['max_error_vs_igraph']:.1e}", f"{row['scipy_error_vs_attnflow']:.1e}",
        )
    console = Console(width=220)
    console.print(table)
    console.print(
        "(k): total extrapolated from k problems actually solved. err vs igraph: largest |attnflow - igraph| "
        "over the problems igraph solved (both exact). scipy: capacities x scale rounded to int32."
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small cases only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--scale", type=float, default=2.0**20, help="integer scaling for scipy")
    parser.add_argument("--budget", type=float, default=8.0, help="seconds per case and job for scipy, igraph")
    parser.add_argument("--nx-budget", type=float, default=4.0, help="seconds per case and job for networkx")
    parser.add_argument("--nx-max-edges", type=float, default=4e5, help="skip networkx on larger graphs")
    parser.add_argument("--smollm2", action="store_true",
                        help="only SmolLM2-135M (30 layers, last position) at 64, 128 and 256 tokens")
    args = parser.parse_args(argv)
    if args.quick:
        args.budget, args.nx_budget = 3.0, 2.0

    import numba

    start = time.perf_counter()
    attention_flow(peaky(2, 3, 0))  # load (or compile) the kernel once
    print(f"kernel ready in {time.perf_counter() - start:.2f} s (compiled on first use, then cached); "
          f"{numba.get_num_threads()} threads")
    rows = []
    cases = smollm2_cases() if args.smollm2 else real_cases(args.quick) + synthetic_cases(args.quick)
    for case in cases:
        print(f"{case.name} ...", flush=True)
        rows.extend(run_case(case, args))
    print_table(rows)
    if args.json:
        clean = [{key: value for key, value in row.items() if key != "_t"} for row in rows]
        args.json.write_text(json.dumps(clean, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
