"""attnflow batch throughput: one process, every local core, and Ray with 2 workers, on the same data, in one run.

    python benchmarks/batch.py                    # 96 SVA test sentences on MiniLM, about a minute on 2 cores
    python benchmarks/batch.py --n 2000 --model sva --json batch.json

Each engine explains the same sentences (``attnflow.tasks.sva.generate``, test
split, seed 0) with raw, rollout and flow into a fresh folder, every worker with one
torch/numba thread, so the runs differ only in their number of workers and engine.
Reported per engine:

- ``wall``: the whole ``run_batch`` call (worker start-up and model loading included);
- ``steady``: examples per second after the first shard is written, which leaves out
  start-up: the rate a long run converges to;
- Ray's overhead: ``1 - ray steady / local steady`` on the same number of workers
  and threads (negative: Ray was faster).

A warm-up run (not timed) fills the disk and compiled-kernel caches first. Every
engine's rows are checked equal to the one-process rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from attnflow.batch import available_cores, read_results, run_batch  # noqa: E402
from attnflow.tasks import sva  # noqa: E402


def timed(data: Path, out: Path, model: str, engine: str, workers: int, shard_size: int) -> dict:
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()
    result = run_batch(
        data, out, model, ["raw", "rollout", "flow"], shard_size=shard_size, engine=engine, workers=workers,
        threads=1,
        progress=lambda done, total: marks.append((time.perf_counter(), done)),
    )
    wall = time.perf_counter() - start
    first = next((t, done) for t, done in marks if done > 0)
    end, total = marks[-1]
    steady = (total - first[1]) / (end - first[0]) if end > first[0] else float("nan")
    return {
        "engine": engine, "workers": result.summary["last_run"]["workers"], "examples": total,
        "wall_s": round(wall, 2), "wall_examples_per_s": round(total / wall, 2),
        "steady_examples_per_s": round(steady, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=96, help="sentences (default 96)")
    parser.add_argument("--model", default="minilm", help="bundled model: minilm or sva (default minilm)")
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray engine")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    cores = available_cores()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = round(os.getloadavg()[0], 2)  # other jobs on the machine: the numbers are only as good as this is low
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = sva.write_jsonl(sva.generate(args.n, split="test", seed=0), folder / "sva.jsonl")
        run_batch(data, folder / "warm-up", args.model, ["raw", "rollout", "flow"], workers=1)  # caches, not timed
        runs = [("one process", "local", 1), (f"local, {cores} workers", "local", cores)]
        if not args.no_ray:
            runs.append(("ray, 2 workers", "ray", 2))
        results, frames = [], []
        for name, engine, workers in runs:
            row = timed(data, folder / name.replace(" ", "_").replace(",", ""), args.model, engine, workers,
                        args.shard_size)
            frames.append(read_results(folder / name.replace(" ", "_").replace(",", "")))
            results.append({"run": name, **row})
        equal = all(frame.equals(frames[0]) for frame in frames[1:])
    print(f"{args.n} SVA test sentences, model {args.model}, methods raw rollout flow, shards of {args.shard_size}, "
          f"{cores} cores")
    print(f"{'run':<22} {'wall s':>8} {'ex/s (wall)':>12} {'ex/s (steady)':>14}")
    for r in results:
        print(f"{r['run']:<22} {r['wall_s']:>8.2f} {r['wall_examples_per_s']:>12.2f} "
              f"{r['steady_examples_per_s']:>14.2f}")
    report = {"n": args.n, "model": args.model, "cores": cores, "date": started,
              "load_average_1min_at_start": load, "runs": results, "rows_equal": equal}
    local = next((r for r in results if r["engine"] == "local" and r["workers"] == 2), None)
    ray_run = next((r for r in results if r["engine"] == "ray"), None)
    if local and ray_run:
        overhead = 1 - ray_run["steady_examples_per_s"] / local["steady_examples_per_s"]
        report["ray_overhead_steady"] = round(overhead, 3)
        print(f"Ray overhead against local on 2 workers (steady rate): {overhead:+.1%}")
    print(f"rows of every engine equal: {equal}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
