"""Certified attention flow on long prompts: SmolLM2-135M (30 layers), last position, top layer.

    python benchmarks/flow_long.py                         # 1024 and 2048 tokens
    python benchmarks/flow_long.py --tokens 1024 --json docs/results/flow-long.json

The prompt is the docstrings of Python standard-library modules, cut to the
asked number of tokens. For each length: the head-mean attention is captured
once (not timed), then ``solve_flow_bounds`` gives every input token an interval
of width at most ``--tolerance`` of the output's capacity for the last position
at the top layer (``n`` problems on a graph of 29 layers of ``n^2`` possible
arcs). Reported: the solver's wall and CPU seconds (capture excluded), the
refinement rounds, the arcs of the first and last sparse graph against the
full graph's, the widest interval, and the exact solver's estimate
(``estimate_flow_seconds``) for the same problems. ``--cache DIR`` keeps the
captured attention as .npy files, so a rerun measures only the solver.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from attnflow import solve_flow_bounds, verify_flow  # noqa: E402
from attnflow.graph import AttentionGraph  # noqa: E402
from attnflow.methods.flow import estimate_flow_seconds  # noqa: E402

#: Standard-library modules whose docstrings make the prompt (permissively licensed English shipped with Python).
MODULES = ("argparse", "collections", "json", "logging", "pathlib", "subprocess", "typing", "unittest", "email",
           "http.client", "asyncio", "decimal", "fractions", "statistics", "textwrap")


def stdlib_text() -> str:
    """The module docstrings, one after another."""
    return "\n\n".join(inspect.getdoc(importlib.import_module(name)) or "" for name in MODULES)


def attention(tokens: int, cache: Path | None) -> np.ndarray:
    """Head-mean attention ``(L, 1, n, n)`` of the first ``tokens`` tokens of :func:`stdlib_text`."""
    path = None if cache is None else cache / f"smollm2-{tokens}.npy"
    if path is not None and path.exists():
        return np.load(path)
    from attnflow.capture import capture_attention, load_model

    model = load_model("smollm2")
    ids = model.tokenizer(stdlib_text())["input_ids"][:tokens]
    captured = np.asarray(capture_attention(model.tokenizer.decode(ids), model, heads="mean").attentions)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, captured)
    return captured


def run(array: np.ndarray, tolerance: float, seconds: float | None) -> dict:
    graph = AttentionGraph.from_attentions(array)
    n_layers, n = graph.n_layers, graph.n_tokens
    wall, cpu = time.perf_counter(), time.process_time()
    bounds = solve_flow_bounds(array, outputs="last", layers=-1, tolerance=tolerance, seconds=seconds, graph=graph)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    verified = verify_flow(bounds) if n <= 1100 else None  # the matrix-product check is slow past that
    return {
        "model": "smollm2", "layers": n_layers, "tokens": n, "tolerance": tolerance,
        "solver_s": wall, "cpu_s": cpu, "rounds": bounds.rounds, "complete": bounds.complete,
        "arcs_first": bounds.arcs_first, "arcs_last": bounds.arcs, "arcs_full": bounds.arcs_full,
        "widest": float(np.nanmax(bounds.widths())),
        "exact_estimate_s": estimate_flow_seconds(n_layers, n, layers=[n_layers]),
        "verified_gap": verified,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--tolerance", type=float, default=1e-3)
    parser.add_argument("--seconds", type=float, default=None, help="the intervals' time budget")
    parser.add_argument("--cache", type=Path, help="keep captured attention here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    rows = []
    for tokens in args.tokens:
        row = run(attention(tokens, args.cache), args.tolerance, args.seconds)
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
