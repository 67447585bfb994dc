"""What a context-mixing graph costs against the plain attention capture, on the bundled MiniLM.

    python benchmarks/mixing.py --threads 1       # 2 texts (12 and 59 tokens), best of 5 (under a minute)
    python benchmarks/mixing.py --repeats 9 --json mixing-benchmark.json

On a shared machine give ``--threads 1``: multi-threaded kernels then vary by an order
of magnitude from run to run.

For each text, in one process, every job runs ``--repeats`` times in turn (capture,
then each graph, then again), and the fastest run counts:

- ``capture``: ``attnflow.capture.capture_attention(text, model)``, what ``attnflow explain``
  does for the attention graph (one forward pass, the attention kept);
- ``hooked pass``: ``attnflow.mixing.capture_mixing(model, ids)``, the one forward pass with
  hooks that every analytic graph reads (value vectors, layer inputs, layer norms);
- ``norm``, ``globenc``, ``alti``: that pass plus the graph's ``(L, n, n)`` matrices from it;
- ``value-zeroing``: the pass plus one batched rerun of each layer per zeroed token
  (``n`` sequences a layer, batched).

The ratio is each job's time over ``capture``'s, measured in the same run. The
issue's target: a graph costs at most a few forward passes; value zeroing one
batched pass per token: value zeroing runs one chunk of copies per layer, each copy
through its own layer only. Times vary by tens of percent on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHORT = "The keys to the cabinet are on the table."
LONG = (
    "Attention rollout multiplies the attention of every layer, and attention flow solves a maximum "
    "flow problem over the same graph; context-mixing graphs weigh each edge by what actually reaches "
    "the next layer, through the value vectors, the output projection, the residual and the layer norms."
)


def _timed(job: Any) -> float:
    start = time.perf_counter()
    job()
    return time.perf_counter() - start


def measure(text: str, loaded: Any, repeats: int) -> dict[str, Any]:
    """Fastest time of each job on ``text``, and its ratio to the plain capture."""
    from attnflow.capture import capture_attention
    from attnflow.mixing import available_graphs, capture_mixing, get_graph

    ids = capture_attention(text, loaded).input_ids
    jobs: dict[str, Any] = {
        "capture": lambda: capture_attention(text, loaded),
        "hooked pass": lambda: capture_mixing(loaded, ids),
    }
    for name in available_graphs():
        if name != "attention":
            jobs[name] = lambda name=name: get_graph(name).matrices(capture_mixing(loaded, ids))
    for job in jobs.values():  # warm-up
        job()
    times = {name: float("inf") for name in jobs}
    for _ in range(repeats):  # in turn, so that every job sees the same load
        for name, job in jobs.items():
            times[name] = min(times[name], _timed(job))
    base = times["capture"]
    return {
        "n_tokens": len(ids),
        "seconds": times,
        "ratio": {name: value / base for name, value in times.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each job; the fastest counts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    import torch

    from attnflow.capture import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model("minilm")
    results = {"model": "minilm", "repeats": args.repeats, "torch_threads": torch.get_num_threads(),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores", "texts": []}
    for text in (SHORT, LONG):
        found = measure(text, loaded, args.repeats)
        results["texts"].append(found)
        print(f"\n{found['n_tokens']} tokens (fastest of {args.repeats})")
        print(f"{'job':<15}{'ms':>10}{'x capture':>12}")
        for name, seconds in found["seconds"].items():
            print(f"{name:<15}{seconds * 1e3:>10.1f}{found['ratio'][name]:>12.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
