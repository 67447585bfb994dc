"""Capture memory and time on long inputs: streamed capture against output_attentions=True, side by side.

    python benchmarks/capture.py                     # 512, 1024, 2048 tokens (about 3 minutes on 2 cores)
    python benchmarks/capture.py --long              # also 4096 tokens (needs about 20 GB for the old way)
    python benchmarks/capture.py --tokens 512 --json docs/results/capture-benchmark.json
    python benchmarks/capture.py --device cuda       # GPU: torch.cuda.max_memory_allocated
    python benchmarks/capture.py --tokens 4096 --repeats 1 --json docs/results/capture-long.json
    python benchmarks/capture.py --precision --json docs/results/capture-precision.json   # bf16/fp16 vs fp32
    python benchmarks/capture.py --heads --json docs/results/heads-batching.json         # analyze_heads batched
    python benchmarks/capture.py --smollm2 --json docs/results/capture-smollm2.json      # the real LM, 2048-8192

The model is a random-initialised Llama config (8 layers, 8 heads, hidden 256,
4 key/value heads, intermediate 512, seed 0) with the sentencepiece-style tokenizer
of the test suite's tiny Llama; the input is a text cut to exactly ``n`` tokens.
Every job runs in a fresh Python process: the model is loaded, a warm-up runs (one
plain forward and one capture of a 256-token text: torch's thread pool and the
matrix kernels' buffers are made once per process, whatever runs next), and then
the job runs ``--repeats`` times. Before each run, memory freed so far is handed
back to the system (``malloc_trim``), the RSS is read, and the kernel's peak RSS is
set back to it (``/proc/self/clear_refs``); after the run the peak RSS (``VmHWM``)
minus that RSS is the run's memory "beyond the model". So each run is charged what
it needs, not what glibc kept cached from the run before (which moved the same
job's figure by tens of MB from one process to the next). On CUDA it is
``max_memory_allocated`` minus the memory allocated before the run. Jobs, for each ``n``:

- ``forward``: one plain forward pass with eager attention (``torch.no_grad``), no capture;
- ``streamed``: ``capture_attention(text, model, heads="mean")``, the head-fused
  float32 ``(L, 1, n, n)``, folded while the model runs by attnflow's registered
  attention function (one group of heads and block of query rows at a time);
- ``returned``: the capture attnflow did before streaming, the model asked for
  ``output_attentions=True`` and every layer converted to float64 ``(L, H, n, n)``;
- ``rollout``: the rollout scores of the last output (what ``attnflow.explain``
  computes: one row of each layer's product), on the streamed capture (time only);
- ``timing``: the plain forward and the streamed capture alternately in one process
  (time only): the "time ratio" column, streamed / forward, is taken from it so that
  both are measured under the same load;
- ``explain``: ``attnflow.explain(text, model, methods=("raw", "rollout"))`` end to
  end (capture fused while the model runs, then the methods), time and memory;
- ``grad``: ``attnflow.explain(text, model, methods="grad-rollout")`` end to end (the
  fused capture, one forward and backward pass reduced to ``mean_h max(0, dS/dA A)``
  per layer), time and memory.

``--smollm2`` measures the bundled SmolLM2-135M-Instruct instead (30 layers, 9 query
heads over 3 key/value heads, converted once into ``$ATTNFLOW_CACHE``) at 2048, 4096
and 8192 tokens, one fresh process per length: the fused capture's time and memory
beyond the model (the ``streamed`` job), then the last position's rollout on it, its
time and its memory beyond the capture (a row walk: a few float64 layers, never a
float64 copy of the capture). A length whose fused capture (``30 n^2 * 4`` bytes, 8 GB
at 8192) would not fit in the memory available before it starts, or whose process
dies, or that runs past ``--timeout`` or the run's ``--budget`` (on a shared machine),
is recorded with the reason instead of numbers; ``--resume`` keeps the lengths an
earlier run's JSON measured.

The targets of issue 12: streamed memory beyond the model at most ``2 * L n^2 * 4``
bytes (twice the fused float32 array) plus one layer's scores and weights
``2 * H n^2 * 4``; streamed time at most 1.5 times the plain forward. The 8 B-shape
extrapolation (32 layers, 32 heads) scales the measured streamed and returned
memory by the arrays each keeps: ``L n^2 * 4`` fused against ``L H n^2 * (4 + 8)``.
Each job runs three times in its process (``--repeats``): the time is the fastest run,
the memory the largest. Times vary by tens of percent on a shared machine; the ratios compare jobs
of the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

LAYERS, HEADS, HIDDEN, KV_HEADS, INTERMEDIATE = 8, 8, 256, 4, 512
TOKENS = (512, 1024, 2048)
LONG_TOKENS = (4096,)
JOBS = ("forward", "streamed", "returned", "rollout", "timing", "explain", "grad")
MB = 1024 * 1024
#: Each job runs this many times in its process; its time is the fastest run, its memory the peak.
REPEATS = 3
#: The warm-up text's length (shorter than every measured input).
WARM_UP_TOKENS = 256
WORDS = (
    "attention flows through every layer of a transformer and the keys to the cabinet are on the table "
    "while the author of the books that the critics praise is here numbers like 42 and 2020 appear too "
).split()


def build_model(folder: Path) -> Path:
    """Save the random Llama and its tokenizer to ``folder`` (a few seconds)."""
    import torch
    import transformers as tf

    from attnflow.capture import quiet_transformers
    from tests.tiny_models import build_tokenizer

    tokenizer = build_tokenizer("llama")
    tokenizer.model_max_length = 8192
    config = tf.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_hidden_layers=LAYERS,
        num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    with quiet_transformers():
        model = tf.LlamaForCausalLM(config).eval()
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    return folder


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


def _peak_mb() -> float:
    """The process's peak RSS since the last :func:`_reset_peak` (``VmHWM``), or since it started."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kilobytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _reset_peak() -> bool:
    """Set the kernel's peak RSS of this process back to its current RSS; ``False`` where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def text_of(tokenizer: Any, n: int) -> str:
    """A text of exactly ``n`` tokens, the special tokens the tokenizer adds (a BOS) included."""
    added = len(tokenizer("a")["input_ids"]) - len(tokenizer("a", add_special_tokens=False)["input_ids"])
    words, count = [], 0
    while count < n:
        words.extend(WORDS)
        count = len(tokenizer(" ".join(words))["input_ids"])
    ids = tokenizer(" ".join(words), add_special_tokens=False)["input_ids"][: n - added]
    text = tokenizer.decode(ids)
    while len(tokenizer(text)["input_ids"]) > n:
        ids = ids[:-1]
        text = tokenizer.decode(ids)
    return text


def _trim_heap() -> None:
    """Give memory freed so far back to the operating system (glibc), so the baseline RSS holds none."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def warm_up(loaded: Any, text: str, device: Any) -> None:
    """One plain forward and one capture of a shorter text, so one-time costs precede the baseline.

    The first sizeable forward starts torch's thread pool and the matrix kernels' buffers,
    which stay for the life of the process whatever runs next; they are not the
    memory of a job. Freed memory is then returned to the system, so that what a job
    reuses of it still counts against the job.
    """
    import torch

    from attnflow.capture import capture_attention, eager_attention

    ids = torch.tensor([loaded.tokenizer(text)["input_ids"]], device=device)
    with eager_attention(loaded.model), torch.no_grad():
        loaded.model(input_ids=ids, use_cache=False)
    capture_attention(text, loaded, heads="mean")
    _trim_heap()


def worker(folder: Path, job: str, n: int, device: str, dtype: str, repeats: int = REPEATS) -> dict[str, Any]:
    """One job in this process; returns its time and memory."""
    import torch

    import attnflow
    from attnflow.capture import capture_attention, eager_attention, load_model
    from attnflow.capture.text import _capture_batch_returned, _encode

    torch.manual_seed(0)
    loaded = load_model(folder)
    loaded.model.to(device=device, dtype=getattr(torch, dtype))
    text = text_of(loaded.tokenizer, n)
    tokens = len(loaded.tokenizer(text)["input_ids"])
    encoded = _encode(loaded, text, False, None)
    ids = torch.tensor([encoded.input_ids], device=device)
    warm_up(loaded, text_of(loaded.tokenizer, min(n, WARM_UP_TOKENS)), ids.device)
    cuda = device.startswith("cuda")
    base_rss = _rss_mb()
    result: dict[str, Any] = {"job": job, "tokens": tokens}
    times, peaks = [], []
    for _ in range(repeats):
        # Each run's peak beyond the memory held just before it, with what earlier runs
        # freed handed back first: the memory one run needs, whatever glibc kept cached.
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() / MB
        else:
            _trim_heap()
            base = _rss_mb()
            if not _reset_peak() and peaks:
                base = base_rss
        start = time.perf_counter()
        if job == "forward":
            with eager_attention(loaded.model), torch.no_grad():
                loaded.model(input_ids=ids, use_cache=False)
        elif job == "streamed":
            captured = capture_attention(text, loaded, heads="mean")
            result["row_correction"] = captured.row_correction
            del captured
        elif job == "returned":
            with eager_attention(loaded.model), torch.no_grad():
                _capture_batch_returned(loaded, [encoded])
        elif job == "rollout":
            from attnflow.methods.rollout import rollout_scores

            captured = capture_attention(text, loaded, heads="mean")
            start = time.perf_counter()
            rollout_scores(captured.attentions, "last")
            del captured
        elif job == "explain":
            attnflow.explain(text, loaded, methods=("raw", "rollout"))
        elif job == "grad":
            attnflow.explain(text, loaded, methods="grad-rollout", target="predicted")
        elif job == "timing":  # forward and streamed capture alternately, in the same process
            with eager_attention(loaded.model), torch.no_grad():
                loaded.model(input_ids=ids, use_cache=False)
            result.setdefault("forward_times", []).append(time.perf_counter() - start)
            start = time.perf_counter()
            capture_attention(text, loaded, heads="mean")
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        peaks.append(torch.cuda.max_memory_allocated() / MB - base if cuda else _peak_mb() - base)
    result["seconds"] = min(times)
    if job == "timing":
        result["forward_seconds"] = min(result.pop("forward_times"))
    result["peak_beyond_model_mb"] = max(peaks)
    result["rss_after_loading_mb"] = base_rss
    return result


SMOLLM2_TOKENS = (2048, 4096, 8192)
SMOLLM2_LAYERS = 30


def smollm2_flops(n: int) -> float:
    """A forward pass's multiply-adds at ``n`` tokens, roughly: the weights' (106 M besides the embeddings, twice
    per token) and attention's (scores and values, ``4 L H d n^2`` with ``d = 64``); for scaling a measured time."""
    return 2 * 106e6 * n + 4 * SMOLLM2_LAYERS * 9 * 64 * n * n


def smollm2_worker(n: int) -> dict[str, Any]:
    """The bundled SmolLM2 at ``n`` tokens in this process: the fused capture, then last-position rollout on it."""
    from attnflow.capture import capture_attention, load_model
    from attnflow.methods import get_method

    loaded = load_model("smollm2")
    text = text_of(loaded.tokenizer, n)
    tokens = len(loaded.tokenizer(text)["input_ids"])
    warm_up(loaded, text_of(loaded.tokenizer, WARM_UP_TOKENS), None)
    rss_model = _rss_mb()
    found: dict[str, Any] = {"tokens": tokens, "rss_after_loading_mb": rss_model}
    _trim_heap()
    base = _rss_mb()
    _reset_peak()
    start = time.perf_counter()
    captured = capture_attention(text, loaded, heads="mean")
    found["streamed_s"] = time.perf_counter() - start
    found["streamed_mb"] = _peak_mb() - base
    found["capture_array_mb"] = captured.attentions.nbytes / MB
    _trim_heap()
    base = _rss_mb()
    _reset_peak()
    start = time.perf_counter()
    scores = get_method("rollout").scores(captured.attentions, "last")
    found["rollout_s"] = time.perf_counter() - start
    found["rollout_mb"] = _peak_mb() - base
    found["rollout_row_sum_error"] = float(abs(scores.sum(axis=1) - 1.0).max())
    return found


def _total_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover - not Linux


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")  # pragma: no cover - not Linux


def smollm2(tokens: tuple[int, ...], timeout: float | None = None, on_row: Any = None,
            budget: float | None = None, done: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One process per length (see the module docstring); a length that cannot run says why.

    ``timeout``: seconds a length may take before it is stopped (and recorded as such);
    ``budget``: seconds for the whole run, after which no length starts (each recorded as not
    started); ``done``: rows of an earlier run of the same command (``--resume``), kept for
    the lengths they measured; ``on_row(rows)`` is called after each length, so that a long
    run keeps what it has.
    """
    rows: list[dict[str, Any]] = []
    kept = {row["tokens"]: row for row in done or [] if "skipped" not in row}
    started = time.monotonic()
    measured: dict[str, Any] | None = None  # the last length that ran, to estimate the next one's time
    for n in tokens:
        if n in kept:
            rows.append(kept[n])
            measured = kept[n]
            continue
        fused_mb = SMOLLM2_LAYERS * n * n * 4 / MB
        row: dict[str, Any] = {"tokens": n, "fused_mb": fused_mb, "load_average_before": list(os.getloadavg())}
        available = _available_mb()
        row["available_mb_before"] = available
        # the fused array, the model's activations and eager mask (a few hundred MB), two float64 layers
        needed = fused_mb + 2 * n * n * 8 / MB + 1024
        left = None if budget is None else budget - (time.monotonic() - started)
        estimate = None
        if measured is not None:
            estimate = measured["streamed_s"] * smollm2_flops(n) / smollm2_flops(measured["tokens"])
        if left is not None and estimate is not None and estimate > left:
            row["skipped"] = (f"not started: about {estimate / 60:.0f} min for the capture alone (the "
                              f"{measured['tokens']}-token capture's {measured['streamed_s'] / 60:.0f} min at load "
                              f"{measured['load_average_before'][0]:.0f} on {os.cpu_count()} cores, scaled by "
                              f"the forward pass's arithmetic), more than the {left / 60:.0f} min left of --budget")
        elif left is not None and left < 60:
            row["skipped"] = (f"not started: the run's --budget of {budget:.0f} s was spent (the machine's load "
                              f"average {row['load_average_before'][0]:.0f} on {os.cpu_count()} cores)")
        elif needed > available:
            row["skipped"] = (f"needs about {needed / 1024:.1f} GB (the fused capture alone {fused_mb / 1024:.1f} GB), "
                              f"{available / 1024:.1f} GB available")
        else:
            command = [sys.executable, __file__, "--smollm2-worker", "--tokens", str(n)]
            limit = min(x for x in (timeout, left, float("inf")) if x is not None)
            try:
                run = subprocess.run(command, capture_output=True, text=True, check=False,
                                     timeout=None if limit == float("inf") else limit)
            except subprocess.TimeoutExpired:
                run = None
                row["skipped"] = (f"stopped after {limit:.0f} s, unfinished (the machine's load average was "
                                  f"{row['load_average_before'][0]:.0f} on {os.cpu_count()} cores)")
            if run is None:
                pass
            elif run.returncode != 0:
                row["skipped"] = (f"the process failed (exit {run.returncode}"
                                  f"{', killed: out of memory?' if run.returncode in (-9, 137) else ''}): "
                                  f"{run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ''}")
            else:
                row.update(json.loads(run.stdout.strip().splitlines()[-1]))
                measured = row
        row["load_average_after"] = list(os.getloadavg())
        print(f"{n} tokens: {row.get('skipped') or json.dumps(row)}", file=sys.stderr, flush=True)
        rows.append(row)
        if on_row is not None:
            on_row(rows)
    return rows


PRECISION_TEXTS = (
    "The keys to the cabinet are on the table.",
    "Attention flows through every layer of a transformer.",
    "The author of the books that the critics praise is here.",
)


def precision() -> dict[str, Any]:
    """Half precision against float32 on the bundled MiniLM: the numbers docs/capture.md quotes.

    For each dtype and method (raw, rollout, flow, grad-rollout for the ``norm`` target):
    the largest ``|score - float32 score|`` over the texts, layers and tokens, relative
    to the largest float32 score of that method and text; the least Spearman
    correlation of a layer's scores; and the largest row correction capture reported.
    """
    import numpy as np
    from scipy.stats import spearmanr

    import attnflow
    from attnflow.capture import capture_attention, load_model

    methods = ("raw", "rollout", "flow", "grad-rollout")
    reference = load_model()
    out: dict[str, Any] = {"model": "minilm", "texts": list(PRECISION_TEXTS), "target": "norm"}
    for dtype in ("bfloat16", "float16"):
        half = load_model(dtype=dtype)
        found: dict[str, Any] = {name: {"max_relative_difference": 0.0, "min_spearman": 1.0} for name in methods}
        correction = 0.0
        for text in PRECISION_TEXTS:
            want = attnflow.explain(text, reference, methods=methods, target="norm")
            got = attnflow.explain(text, half, methods=methods, target="norm")
            correction = max(correction, capture_attention(text, half, heads="mean").row_correction)
            for name in methods:
                a, b = want.scores[name], got.scores[name]
                entry = found[name]
                entry["max_relative_difference"] = max(
                    entry["max_relative_difference"], float(np.abs(a - b).max() / np.abs(a).max())
                )
                entry["min_spearman"] = min(
                    entry["min_spearman"], min(float(spearmanr(a[layer], b[layer])[0]) for layer in range(len(a)))
                )
        out[dtype] = {"methods": found, "max_row_correction": correction}
    return out


def heads_batching(n_examples: int = 32, batch_size: int = 8, repeats: int = 2) -> dict[str, Any]:
    """``analyze_heads`` one example at a time against batches, alternately in this process, on MiniLM.

    The examples are sentences of 6 to 20 words cut from :data:`WORDS`; the target is
    ``norm`` (MiniLM is a bare encoder). Returns the fastest of ``repeats`` runs of
    each and checks that both give the same importance.
    """
    import numpy as np

    from attnflow.capture import load_model
    from attnflow.heads import analyze_heads

    loaded = load_model()
    texts = [" ".join(WORDS[i % 30 : i % 30 + 6 + i % 15]) for i in range(n_examples)]
    analyze_heads(texts[:2], loaded, target="norm")  # warm up
    times: dict[int, list[float]] = {1: [], batch_size: []}
    reports = {}
    for _ in range(repeats):
        for size in (1, batch_size):
            start = time.perf_counter()
            reports[size] = analyze_heads(texts, loaded, target="norm", batch_size=size)
            times[size].append(time.perf_counter() - start)
    same = float(np.abs(reports[1].importance - reports[batch_size].importance).max()
                 / np.abs(reports[1].importance).max())
    one, batched = min(times[1]), min(times[batch_size])
    return {"model": "minilm", "examples": n_examples, "batch_size": batch_size, "repeats": repeats,
            "one_at_a_time_s": one, "batched_s": batched, "speedup": one / batched,
            "importance_max_relative_difference": same}


def run_job(folder: Path, job: str, n: int, device: str, dtype: str, repeats: int = REPEATS) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", job, "--folder", str(folder), "--tokens", str(n),
               "--device", device, "--dtype", dtype, "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"job {job} at {n} tokens failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def targets(n: int) -> dict[str, float]:
    fused = LAYERS * n * n * 4 / MB
    layer = 2 * HEADS * n * n * 4 / MB
    return {"fused_mb": fused, "memory_target_mb": 2 * fused + layer}


def extrapolate(row: dict[str, Any], layers: int = 32, heads: int = 32) -> dict[str, float]:
    """The 8 B shape (32 layers, 32 heads): the arrays each capture keeps, at this ``n``."""
    n = row["tokens"]
    return {
        "streamed_gb": (layers * n * n * 4 + 2 * heads * n * n * 4) / 1024**3,
        "returned_gb": layers * heads * n * n * (4 + 8) / 1024**3,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of docs/capture.md (``scripts/doc_tables.py`` renders it from the JSON file)."""
    from scripts.doc_tables import capture_table

    return capture_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, action="append", help="token counts (default 512 1024 2048)")
    parser.add_argument("--long", action="store_true", help="also 4096 tokens")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--jobs", help=f"comma-separated jobs (default: all of {','.join(JOBS)}; "
                        "'returned' is skipped at 4096 tokens unless named)")
    parser.add_argument("--precision", action="store_true",
                        help="only compare bfloat16 and float16 with float32 on MiniLM (about a minute)")
    parser.add_argument("--heads", action="store_true",
                        help="only time analyze_heads one example at a time against batches of 8 (MiniLM)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"runs per job (default {REPEATS})")
    parser.add_argument("--smollm2", action="store_true",
                        help="only the bundled SmolLM2 at 2048, 4096 and 8192 tokens (or --tokens): fused capture "
                        "and last-position rollout")
    parser.add_argument("--timeout", type=float, help="with --smollm2: stop a length after this many seconds")
    parser.add_argument("--budget", type=float, help="with --smollm2: start no length after this many seconds")
    parser.add_argument("--resume", type=Path, help="with --smollm2: keep the lengths this earlier --json measured")
    parser.add_argument("--smollm2-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=JOBS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.folder, args.worker, args.tokens[0], args.device, args.dtype, args.repeats)))
        return 0
    if args.smollm2_worker:
        print(json.dumps(smollm2_worker(args.tokens[0])))
        return 0
    if args.smollm2:
        import torch

        from scripts.doc_tables import capture_smollm2

        started = list(os.getloadavg())

        def payload(rows: list[dict[str, Any]]) -> dict[str, Any]:
            return {
                "command": "python benchmarks/capture.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                "model": "smollm2", "device": "cpu", "dtype": "float32",
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                            "memory_mb": _total_mb()},
                "date": time.strftime("%Y-%m-%d"), "load_average_at_start": started,
                "load_average_at_end": list(os.getloadavg()), "rows": rows,
            }

        def keep(rows: list[dict[str, Any]]) -> None:
            if args.json is not None:  # after every length: a long run keeps what it has measured
                args.json.write_text(json.dumps(payload(rows), indent=2) + "\n", encoding="utf-8")

        done = json.loads(args.resume.read_text())["rows"] if args.resume and args.resume.is_file() else None
        rows = smollm2(tuple(args.tokens or SMOLLM2_TOKENS), args.timeout, keep, args.budget, done)
        print(capture_smollm2(payload(rows)))
        if args.json is not None:
            print(f"wrote {args.json}", file=sys.stderr)
        return 0
    if args.precision or args.heads:
        found = precision() if args.precision else heads_batching(repeats=args.repeats)
        print(json.dumps(found, indent=2))
        if args.json is not None:
            found["command"] = "python benchmarks/capture.py " + " ".join(argv if argv is not None else sys.argv[1:])
            found["date"] = time.strftime("%Y-%m-%d")
            found["load_average"] = list(os.getloadavg())
            args.json.write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
        return 0
    tokens = tuple(args.tokens or TOKENS) + (LONG_TOKENS if args.long else ())
    load_at_start = list(os.getloadavg())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "llama")
        for n in tokens:
            row: dict[str, Any] = {"tokens": n, **targets(n)}
            asked = tuple(args.jobs.split(",")) if args.jobs else None
            jobs = asked or tuple(job for job in JOBS if job != "returned" or n < 4096)
            for job in jobs:
                if job not in JOBS:
                    raise SystemExit(f"unknown job {job!r}; jobs: {', '.join(JOBS)}")
                found = run_job(folder, job, n, args.device, args.dtype, args.repeats)
                row["tokens"] = found["tokens"]
                row[f"{job}_s"] = found["seconds"]
                row[f"{job}_mb"] = found["peak_beyond_model_mb"]
                if job == "timing":
                    row["ratio_forward_s"], row["ratio_streamed_s"] = found["forward_seconds"], found["seconds"]
                if "row_correction" in found:
                    row["row_correction"] = found["row_correction"]
                print(f"{n} tokens, {job}: {found['seconds']:.2f} s, {found['peak_beyond_model_mb']:.0f} MB",
                      file=sys.stderr, flush=True)
            row["extrapolated_8b"] = extrapolate(row)
            rows.append(row)
    print(table(rows))
    if args.json is not None:
        import torch

        payload = {
            "command": "python benchmarks/capture.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "model": {"layers": LAYERS, "heads": HEADS, "hidden": HIDDEN, "kv_heads": KV_HEADS,
                      "intermediate": INTERMEDIATE, "seed": 0},
            "device": args.device,
            "dtype": args.dtype,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
            "date": time.strftime("%Y-%m-%d"),
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
            "repeats": args.repeats,
            "rows": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
