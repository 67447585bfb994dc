"""Exact attention flow: attnflow against scipy (integer capacities) and igraph, on real attention, side by side.

    python benchmarks/flow.py --models minilm small banded --json docs/results/flow-benchmark.json
    python benchmarks/flow.py --models smollm2 --json docs/results/flow-smollm2.json
    python benchmarks/flow.py --quick                                   # 64 and 128 tokens, 2 texts
    python benchmarks/flow.py --models minilm --tokens 128 --texts 5    # a subset

Real attention first, several inputs per size, since the speed varies with the
input: the bundled MiniLM ([CLS]) and SmolLM2-135M (30 layers, head mean, the
last position) on texts of about 64, 128, 256 and 512 tokens, each text the
module docstrings of Python's standard library (PSF licence) from a different
starting module (``--texts`` of them per size, 5 by default); the bundled SVA
model on the longest test sentences and digits-vit on test images. Then
synthetic banded attention (window +-4). Jobs: the explained output at the top
layer, and at every layer (SmolLM2 at 512 tokens: on ``--long-texts`` of the
texts, 2 by default, since each takes minutes); MiniLM at 128 tokens also every
output at every layer (the paper's ``compute_flows``) on its first text.

Solvers, all on the same graph (docs/design.md: residual 0.5, mean head fusion):

- attnflow: ``attention_flow`` end to end (validation, graph, compiled kernel),
  at the default threads and on one thread (``numba.set_num_threads(1)``);
- scipy ``maximum_flow`` (Dinic) on capacities scaled by ``--scale`` and
  rounded to int32, as GlobEnc did (not exact: its error is reported);
- igraph ``maxflow_value``, float capacities, exact.

attnflow's time is the best of a few calls after one warm-up call. The
reference solvers run on one thread, one problem at a time, as many as fit in
their time budget; their totals are extrapolated from those (per layer depth),
marked "(k)" with k the problems actually solved. Ratios are reference time /
attnflow time in the same run; the summary gives, per case and job, the worst
and the median ratio over the inputs, at the default threads and on one
thread. The JSON also records the load average (``os.getloadavg``) before
and after, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
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
from scripts.doc_tables import duration  # noqa: E402  (the README's table prints the same way)

#: Standard-library modules with long module docstrings; text ``k`` starts at module ``2k`` and runs on in this order.
TEXT_MODULES = ("re", "configparser", "statistics", "csv", "argparse", "json", "socket", "http.client", "unittest",
                "heapq", "uuid", "os", "inspect", "itertools", "subprocess", "typing", "sqlite3", "tempfile",
                "difflib", "collections", "random", "string")
TOKENS = (64, 128, 256, 512)
QUICK_TOKENS = (64, 128)
JOBS = {"top": "top layer", "layers": "every layer", "all": "every output, every layer"}


def stdlib_texts(count: int) -> list[str]:
    """``count`` English texts: module docstrings of the standard library, text ``k`` from module ``2k`` on."""
    docs = [inspect.getdoc(importlib.import_module(name)) or "" for name in TEXT_MODULES]
    return ["\n\n".join(docs[2 * k:] + docs[: 2 * k]) for k in range(count)]


@dataclass
class Case:
    name: str  # the case without its input: "MiniLM 6x128"
    attention: np.ndarray
    jobs: tuple[str, ...]  # of JOBS
    source: str  # which input: "text 2", "sentence 0", ...
    output: int = 0  # the explained position: [CLS] (0), or a decoder's last token
    real: bool = True


@dataclass
class Timing:
    seconds: float | None = None
    measured: int = 0
    problems: int = 0
    values: dict = field(default_factory=dict)  # (layer, output, source) -> value


# --- the cases ----------------------------------------------------------------------------------


def text_cases(model_name: str, tokens_list, n_texts: int, long_texts: int) -> list[Case]:
    """MiniLM ([CLS]) or SmolLM2 (last position, head mean) on the first ``tokens`` tokens of each stdlib text.

    SmolLM2 at 512 tokens runs every layer on the first ``long_texts`` texts only (minutes each).
    """
    from attnflow.capture import capture_attention, load_model

    model = load_model(model_name)
    decoder = model_name == "smollm2"
    special = 0 if decoder else 2  # MiniLM adds [CLS] and [SEP]
    cases, late = [], []
    for tokens in tokens_list:
        for k, text in enumerate(stdlib_texts(n_texts)):
            ids = model.tokenizer(text, add_special_tokens=False)["input_ids"][: tokens - special]
            prompt = model.tokenizer.decode(ids)
            if decoder:
                captured = capture_attention(prompt, model, heads="mean")
            else:
                captured = capture_attention(prompt, model, truncate=True)
            attention = np.asarray(captured.attentions)
            n_layers, n = attention.shape[0], attention.shape[-1]
            jobs: tuple[str, ...] = ("top", "layers")
            if not decoder and tokens == 128 and k == 0:
                jobs = ("top", "layers", "all")
            label = "SmolLM2" if decoder else "MiniLM"
            case = Case(f"{label} {n_layers}x{tokens}", attention, jobs, f"text {k} ({n} tokens)",
                        output=n - 1 if decoder else 0)
            if decoder and tokens >= 512:  # every layer takes minutes: last, and on long_texts texts only
                case.jobs = ("top",)
                if k < long_texts:
                    late.append(Case(case.name, attention, ("layers",), case.source, output=case.output))
            cases.append(case)
    return cases + late


def small_model_cases(n_inputs: int) -> list[Case]:
    """The bundled SVA model on the longest test sentences and digits-vit on test images ([CLS])."""
    from attnflow.capture import capture_attention
    from attnflow.capture.image import capture_image_attention
    from attnflow.tasks.digits import digits_test_set, to_pil
    from attnflow.tasks.sva import generate

    sentences = sorted((e.text for e in generate(40, split="test", seed=3)), key=len, reverse=True)[:n_inputs]
    attentions = [np.asarray(capture_attention(sentence, "sva").attentions) for sentence in sentences]
    longest = max(a.shape[-1] for a in attentions)
    cases = [Case(f"SVA {a.shape[0]}x<={longest}", a, ("top", "layers"), f"sentence {k} ({a.shape[-1]} tokens)")
             for k, a in enumerate(attentions)]
    images, _ = digits_test_set(n_inputs)
    for k, image in enumerate(images):
        attention = np.asarray(capture_image_attention(to_pil(image), "digits-vit").attentions)
        cases.append(Case(f"digits-vit {attention.shape[0]}x{attention.shape[-1]}", attention, ("top", "layers"),
                          f"image {k}"))
    return cases


def banded(n_layers: int, n: int, window: int, seed: int) -> np.ndarray:
    """Random positive weights inside a band ``|i - j| <= window``, rows normalised: ``(L, n, n)``."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    band = np.abs(idx[:, None] - idx[None, :]) <= window
    weights = np.where(band, rng.random((n_layers, n, n)) + 0.05, 0.0)
    return weights / weights.sum(axis=-1, keepdims=True)


def synthetic_cases() -> list[Case]:
    return [Case("banded 24x256", banded(24, 256, 4, 0), ("top",), "seed 0", real=False)]


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
    name = "scipy"

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


def time_reference(solver, cap, groups, budget: float) -> Timing:
    """Solve as many problems as fit in ``budget`` (groups in a fixed random order), extrapolate per depth."""
    n_layers, n, _ = cap.shape
    timing = Timing(problems=len(groups) * n)
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
    measured_layers = float(np.mean(list(per_depth)))
    total = 0.0
    for layer, _ in groups:  # unmeasured depths: scaled from the mean by their edge count
        if layer in per_depth:
            total += float(np.mean(per_depth[layer])) * n
        else:
            total += everywhere * max(layer, 1) / max(measured_layers, 1) * n
    timing.seconds = total
    return timing


def time_attnflow(attention, job: str, output: int, threads: int) -> tuple[float, np.ndarray]:
    """attnflow's time for ``job`` on ``threads`` threads: one call if it takes over a second, else the best of several.

    The first call of a short job is a warm-up (it also wakes the worker threads) and is not counted.
    """
    import numba

    kwargs = {"top": {"outputs": output, "layers": -1}, "layers": {"outputs": output}, "all": {}}[job]
    default = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        start = time.perf_counter()
        values = attention_flow(attention, normalize=False, **kwargs)
        first = time.perf_counter() - start
        best = first
        if first <= 1.0:
            best = np.inf
            for _ in range(3 if first > 0.1 else 7):
                start = time.perf_counter()
                values = attention_flow(attention, normalize=False, **kwargs)
                best = min(best, time.perf_counter() - start)
    finally:
        numba.set_num_threads(default)
    return best, values


def ratio_text(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}×" if value >= 10 else f"{value:.1f}×"


def run_case(case: Case, args, threads: int) -> list[dict]:
    cap = AttentionGraph.from_attentions(case.attention).capacities
    n_layers, n, _ = cap.shape
    rows = []
    for job in case.jobs:
        groups = groups_for(job, n_layers, n, case.output)
        seconds, values = time_attnflow(case.attention, job, case.output, threads)
        one_thread = seconds if threads == 1 else time_attnflow(case.attention, job, case.output, 1)[0]
        budget = args.budget * (2 if job == "all" else 1)
        references = {"scipy": time_reference(Scipy(args.scale), cap, groups, budget),
                      "igraph": time_reference(Igraph(), cap, groups, budget)}

        def error(timing: Timing, values: np.ndarray = values) -> float:
            diffs = [abs(v - values[layer - 1, t, s]) for (layer, t, s), v in timing.values.items()]
            return float(max(diffs)) if diffs else float("nan")

        row = {"case": case.name, "input": case.source, "tokens": n, "layers": n_layers, "real": case.real,
               "job": job, "problems": len(groups) * n, "attnflow_s": seconds, "attnflow_1thread_s": one_thread,
               "max_error_vs_igraph": error(references["igraph"]), "scipy_error": error(references["scipy"])}
        for name, timing in references.items():
            row[f"{name}_s"] = timing.seconds
            row[f"{name}_measured"] = timing.measured
            row[f"{name}_ratio"] = timing.seconds / seconds
            row[f"{name}_ratio_1thread"] = timing.seconds / one_thread
        rows.append(row)
        print(f"  {case.name:<16} {case.source:<20} {job:<7} attnflow {duration(seconds):>9} "
              f"(1 thread {duration(one_thread):>9})  scipy {ratio_text(row['scipy_ratio']):>6} "
              f"/ {ratio_text(row['scipy_ratio_1thread']):>6}  igraph {ratio_text(row['igraph_ratio']):>6} "
              f"/ {ratio_text(row['igraph_ratio_1thread']):>6}", flush=True)
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per case and job: the inputs, attnflow's median time, and the worst and median ratio of each column."""
    summary = []
    keys = list(dict.fromkeys((row["case"], row["job"]) for row in rows))
    for case, job in keys:
        group = [row for row in rows if (row["case"], row["job"]) == (case, job)]
        entry = {"case": case, "job": job, "real": group[0]["real"], "inputs": len(group),
                 "tokens": [min(r["tokens"] for r in group), max(r["tokens"] for r in group)],
                 "problems": int(np.median([r["problems"] for r in group])),
                 "attnflow_s": float(np.median([r["attnflow_s"] for r in group])),
                 "attnflow_worst_s": float(max(r["attnflow_s"] for r in group)),
                 "attnflow_1thread_s": float(np.median([r["attnflow_1thread_s"] for r in group])),
                 "max_error_vs_igraph": float(np.nanmax([r["max_error_vs_igraph"] for r in group]))}
        for column in ("scipy_ratio", "scipy_ratio_1thread", "igraph_ratio", "igraph_ratio_1thread"):
            values = [r[column] for r in group]
            entry[column] = {"worst": float(min(values)), "median": float(np.median(values))}
        summary.append(entry)
    return summary


def print_summary(summary: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Exact attention flow: ratio of scipy (integer) and igraph time to attnflow's, "
                        "worst / median over the inputs")
    for column in ["case", "job", "inputs", "attnflow (median)", "1 thread", "scipy", "scipy, 1 thread",
                   "igraph", "igraph, 1 thread"]:
        table.add_column(column, justify="right")
    for entry in summary:
        cells = [entry["case"], JOBS[entry["job"]], str(entry["inputs"]), duration(entry["attnflow_s"]),
                 duration(entry["attnflow_1thread_s"])]
        for column in ("scipy_ratio", "scipy_ratio_1thread", "igraph_ratio", "igraph_ratio_1thread"):
            cells.append(f"{ratio_text(entry[column]['worst'])} / {ratio_text(entry[column]['median'])}")
        table.add_row(*cells)
    Console(width=200).print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 and 128 tokens, 2 texts, shorter budgets")
    parser.add_argument("--models", nargs="+", default=["minilm", "smollm2", "small", "banded"],
                        choices=["minilm", "smollm2", "small", "banded"], help="which cases (small: sva, digits-vit)")
    parser.add_argument("--tokens", type=int, nargs="+", help=f"text sizes (default {TOKENS})")
    parser.add_argument("--texts", type=int, default=5, help="inputs per size")
    parser.add_argument("--long-texts", type=int, default=2,
                        help="SmolLM2 at 512 tokens: every layer on this many of the texts only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--scale", type=float, default=2.0**20, help="integer scaling for scipy")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per input and job for scipy and igraph")
    args = parser.parse_args(argv)
    if args.quick:
        args.texts, args.budget = min(args.texts, 2), 1.0
    tokens = tuple(args.tokens or (QUICK_TOKENS if args.quick else TOKENS))

    import numba

    threads = numba.get_num_threads()
    load_before = os.getloadavg()
    start = time.perf_counter()
    # Load (or compile) the kernel, serial and parallel, and import the reference solvers, before any timing.
    attention_flow(banded(3, 64, 4, 0))
    cap = AttentionGraph.from_attentions(banded(2, 4, 1, 0)).capacities
    for solver in (Scipy(args.scale), Igraph()):
        solver.solve(solver.prepare(cap, 2, 0), 0)
    print(f"kernel ready in {time.perf_counter() - start:.2f} s; {threads} threads; load {load_before[0]:.2f}")
    cases: list[Case] = []
    if "minilm" in args.models:
        cases += text_cases("minilm", tokens, args.texts, args.texts)
    if "smollm2" in args.models:
        cases += text_cases("smollm2", tokens, args.texts, args.long_texts)
    if "small" in args.models:
        cases += small_model_cases(args.texts)
    if "banded" in args.models:
        cases += synthetic_cases()
    rows = []
    command = "python benchmarks/flow.py " + " ".join(argv if argv is not None else sys.argv[1:])
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for case in cases:
        print(f"{case.name} {case.source} ...", flush=True)
        rows.extend(run_case(case, args, threads))
        if args.json:  # after every case, so that a long run stopped early keeps what it measured
            results = {"command": command, "date": date, "threads": threads, "load_before": load_before[0],
                       "load_after": os.getloadavg()[0], "complete": case is cases[-1],
                       "summary": summarize(rows), "rows": rows}
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    print_summary(summarize(rows))
    if args.json:
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
