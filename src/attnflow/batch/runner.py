"""``attnflow.batch.run_batch``: explain a whole data set into a folder of Parquet shards, resumably.

The output folder::

    OUT/manifest.json        the plan: options, model and data fingerprints, the shards and skipped rows
    OUT/texts.parquet        each explained example's text, once (``example``, ``text``)
    OUT/scores/part-NNNNN.parquet   one file per shard, written atomically (temporary file, then rename)
    OUT/summary.json         written when every shard is done

A shard is done when its file belongs to this run (its Parquet metadata names the
run's fingerprint, :func:`run_fingerprint`, and the shard's number), holds exactly the
shard's examples (rows or skipped) and reads back whole (every data page's checksum
verified). Rerunning the same call continues with the shards that are not done; the
plan (which rows form which shard, in which batches) comes from the manifest, so a
resumed run computes exactly the rows an uninterrupted one would. A call with other
options, another model or a changed data set is refused unless ``overwrite=True``; so
is a folder written by another version of this format.

``overwrite=True`` deletes only what an attnflow run wrote: ``manifest.json`` and
``summary.json`` that say so in their ``format``, and ``scores/part-NNNNN.parquet`` files
with attnflow's metadata (through a ``scores`` link too). Any other file is kept; one
that stands where the new run must write is refused with its name.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..capture import load_model
from ..capture.image import DEFAULT_IMAGE_MODEL
from ..capture.models import quiet_transformers
from ..capture.seq2seq import is_seq2seq_model, require_seq2seq
from ..capture.targets import resolve_target
from ..core import check_seq2seq_methods
from ..data import EMPTY_TEXT, Dataset, Example, read_dataset, read_image_folder, screen_lengths
from ..errors import AttnflowError
from ..evaluate.faithfulness import check_percents
from ..evaluate.runner import GROUND_TRUTHS, REMOVALS
from ..explainers.seq2seq import Seq2SeqExplanation
from ..explainers.text import check_graph_options, target_needed
from ..explanation import Explanation
from ..graph import HEAD_FUSIONS, check_ratio, check_residual
from ..io import check_output_folder, to_jsonable, write_bytes_atomic, write_text_atomic
from ..methods import get_method
from ..methods.attribution import LIME_SAMPLES, MAX_PASSES, check_attribution_options, split_methods
from ..mixing import ATTENTION, context_mixing, get_graph, graph_names, result_key
from .engines import ENGINES, available_cores, parse_address, run_in_process, run_local, run_ray
from .worker import COLUMNS, Shard, WorkSpec

#: Version 2: shards name their run (``run`` in their metadata) and carry page checksums; rows have
#: ``special`` (and ``words``, ``word_scores``), and the texts are in ``texts.parquet``, once per example.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
TEXTS = "texts.parquet"
SUMMARY = "summary.json"
SCORES = "scores"
#: Files of a model folder hashed whole up to this size; larger ones by size and their first and last MiB.
_HASH_WHOLE = 64 << 20


@dataclass
class BatchResult:
    """What :func:`run_batch` did; ``summary`` is the content of ``summary.json``."""

    out: Path
    summary: dict[str, Any]

    @property
    def scores_path(self) -> Path:
        """The folder of Parquet shards (``pandas.read_parquet`` reads it whole)."""
        return self.out / SCORES

    def dataframe(self) -> Any:
        """Every row, sorted by example, method and layer (see :func:`read_results`)."""
        return read_results(self.out)


def model_fingerprint(loaded: Any) -> str:
    """A SHA-256 naming the model's files (or, for a model object without a folder, its parameters).

    Every file of the model folder counts by name and size; files up to 64 MiB by
    their whole content, larger ones by their first and last MiB, so a fingerprint of a
    large model costs milliseconds.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> len(model_fingerprint(load_model()))
    64
    """
    digest = hashlib.sha256(type(loaded.model).__name__.encode())
    folder = getattr(loaded, "path", None)
    if folder is not None and Path(folder).is_dir():
        for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            size = file.stat().st_size
            digest.update(f"{file.relative_to(folder)}\0{size}\0".encode())
            with file.open("rb") as stream:
                if size <= _HASH_WHOLE:
                    digest.update(stream.read())
                else:
                    digest.update(stream.read(1 << 20))
                    stream.seek(size - (1 << 20))
                    digest.update(stream.read())
        return digest.hexdigest()
    for name, tensor in loaded.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run_batch(
    data: str | os.PathLike[str] | Dataset | None,
    out: str | os.PathLike[str],
    model: Any = None,
    methods: Sequence[str] | str = ("raw", "rollout"),
    *,
    output: str | None = None,
    target: str | None = None,
    text_column: str = "text",
    label_column: str | None = "label",
    target_column: str | None = None,
    split: str | None = None,
    truncate: bool = False,
    batch_size: int = 16,
    shard_size: int = 64,
    engine: str = "local",
    workers: int | None = None,
    threads: int | None = None,
    address: str | None = None,
    overwrite: bool = False,
    evaluation: bool | dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    images: str | os.PathLike[str] | None = None,
    graphs: Sequence[str] | str | None = None,
    decoder_column: str | None = None,
    words: bool = False,
    attribution: dict[str, Any] | None = None,
    **method_options: Any,
) -> BatchResult:
    """Explain every row of a data set with each method, into Parquet shards; resumes an interrupted run.

    Parameters
    ----------
    data
        A ``.jsonl``, ``.csv``, ``.parquet`` or ``.txt`` file, a ``datasets`` folder
        (:func:`attnflow.batch.read_dataset`), or a :class:`Dataset`; ``None`` with ``images``.
    images
        Instead of ``data``: a folder of images (:func:`attnflow.data.image_files`), explained
        with an image model (default ``digits-vit``) as :func:`attnflow.explain_image` does; one
        row per image x method x layer, with the image's file name in ``image`` and its patch
        grid in ``grid`` (``text`` and ``label`` are null). An image that cannot be read or
        explained is skipped with the reason. Not with ``evaluation``.
    out
        The output folder (created if missing).
    graphs
        The token-to-token graph(s) the methods run over, as in :func:`attnflow.explain`
        (:mod:`attnflow.mixing`; default ``"attention"``). Rows over a context-mixing graph
        have ``GRAPH/METHOD`` in the ``method`` column (``"alti/rollout"``); over attention
        the method's plain name. ``residual``, gradient methods and ``images`` are for the
        attention graph only. The graphs are recorded in the manifest, so a resume with
        other graphs is refused unless ``overwrite``.
    decoder_column
        For an encoder–decoder model (T5, BART, Marian; the bundled ``reverse``): the column
        of each row's target, read by the decoder with teacher forcing while ``text_column``
        is the source, as ``attnflow.explain(source, model, decoder_text=...)``
        (:func:`attnflow.explainers.seq2seq.explain_seq2seq`). One row per example x method x
        *decoder* layer; ``tokens`` are the source tokens then the decoder positions, with
        ``source_length`` and ``decoder_text`` columns. Required for such a model, refused
        for any other; a row with a blank decoder text is skipped with the reason.
    words
        Also group each row's tokens into words (:mod:`attnflow.words`, as ``attnflow explain
        --words``): the ``words`` column holds each word's text and ``word_scores`` the row's
        scores summed to words. For texts (not ``images``, ``decoder_column`` or ``evaluation``).
    model
        A bundled name, folder or cached hub id (``None``: MiniLM). In-process runs
        (``engine="local", workers=1``) also take an :class:`attnflow.capture.LoadedModel`.
    methods, output, target, truncate, **method_options
        As in :func:`attnflow.explain`; ``target`` is the default for rows without a
        value in ``target_column``.
    batch_size, shard_size
        Texts per forward pass; rows per shard (the unit of resumption). Rows are
        sorted by token count before they are cut into shards, so batches pad little.
    engine, workers, threads, address
        ``"local"``: ``workers`` processes (default: one per core; ``1`` runs here),
        each with ``threads`` torch/numba threads (default: cores / workers).
        ``"ray"``: one actor per worker on the Ray cluster at ``address`` (default: a
        local Ray started for this run).
    overwrite
        Replace an output folder made with other options, model or data.
    evaluation
        ``True`` or a dict of :func:`attnflow.evaluate` options (``ground_truths``,
        ``faithfulness``, ``percents``, ``faithfulness_layer``, ``removal``, ``blank``,
        ``random_repeats``, ``ig_steps``, ``seed``, ``batch_size``): each row is also evaluated, adding
        ``ground_truth_<name>`` (per token), ``spearman_<name>`` and faithfulness columns,
        and their means to the summary. Row ``i`` is evaluated as example ``i`` of one
        :func:`attnflow.evaluate` run over the data set (its random baseline seeded by
        ``default_rng([seed, i])``), whatever its shard; :func:`attnflow.batch.evaluation_result`
        reads the finished folder back as that run's ``EvaluationResult``.
    progress
        Called as ``progress(done, total)`` in examples, after each shard.
    log
        Called with a line to show the user: ``"Resuming: k of m shards done"`` when a run
        resumes, and why a shard file found is computed again.

    Returns
    -------
    BatchResult
        The folder and its summary (``summary.json``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "d.txt").write_text("The cat sat.\\nDogs bark.\\n")
    >>> r = run_batch(folder / "d.txt", folder / "out", methods="rollout", workers=1)
    >>> r.summary["n_examples"], r.summary["rows"], len(r.dataframe())
    (2, 12, 12)
    """

    names = [methods] if isinstance(methods, str) else list(dict.fromkeys(methods))
    if not names:
        raise AttnflowError("The 'methods' parameter must name at least one method.")
    attention_names, inputs = split_methods(names)
    attribution_options = _attribution_options(inputs, attribution, images, evaluation)
    for name in attention_names:
        get_method(name)
    known = set().union(*(get_method(name).options for name in attention_names)) - {"progress"}
    unknown = set(method_options) - known
    if unknown:
        raise AttnflowError(f"Unknown option(s) {sorted(unknown)} for methods {names}; they accept {sorted(known)}.")
    _check_method_options(method_options)  # a bad value would otherwise skip every row, after the model loads
    if engine not in ENGINES:
        raise AttnflowError(f"The engine must be one of {', '.join(ENGINES)}; got {engine!r}.")
    for label, value in (("batch_size", batch_size), ("shard_size", shard_size)):
        _positive(label, value)
    if workers is not None:
        _positive("workers", workers)
    if threads is not None:
        _positive("threads", threads)
    if address is not None and engine != "ray":
        raise AttnflowError("An address is for --engine ray; leave it out for the local engine.")
    if address is not None and address != "auto":
        parse_address(address)  # its form now; whether a cluster answers there, before connecting
    if (data is None) == (images is None):
        raise AttnflowError("Give a data set (--data) or a folder of images (--images): exactly one of them.")

    graph_list = graph_names(graphs)
    others = context_mixing(graph_list)
    if others:

        check_graph_options(graph_list, attention_names, method_options)
        if images is not None:
            raise AttnflowError(
                f"The {', '.join(others)} graph is for a text's own tokens; images (--images) run on the attention "
                "graph only."
            )
    if decoder_column is not None:

        given = [label for label, used in (("images (--images)", images is not None),
                 ("evaluation (--evaluate)", evaluation not in (None, False)),
                 ("a context-mixing graph (--graph)", bool(others))) if used]
        if given:
            raise AttnflowError(
                f"A decoder column (--decoder-column) is for encoder-decoder texts; {given[0]} cannot be given with it."
            )
        check_seq2seq_methods(names)
    if words:
        given = [label for label, used in (("images (--images)", images is not None),
                 ("a decoder column (--decoder-column)", decoder_column is not None),
                 ("evaluation (--evaluate)", evaluation not in (None, False))) if used]
        if given:
            raise AttnflowError(f"Words (--words) are for the rows of texts; {given[0]} cannot be given with them.")
    if images is not None and evaluation not in (None, False):
        raise AttnflowError(
            "Evaluating every row (--evaluate) is for texts; `attnflow evaluate --images FOLDER` judges images "
            "(deletion and insertion AUCs)."
        )
    out = Path(out)
    check_output_folder(out)
    source = images if images is not None else data
    if not isinstance(source, Dataset) and _inside(Path(source), out):
        raise AttnflowError(
            f"The data set {os.fspath(source)!r} lies among the files of the output folder {str(out)!r}; "
            "move it or choose another --out."
        )
    if images is not None:

        dataset = read_image_folder(images)
        model = DEFAULT_IMAGE_MODEL if model is None else model
    else:
        dataset = data if isinstance(data, Dataset) else read_dataset(
            data, text_column=text_column, label_column=label_column, target_column=target_column, split=split,
            decoder_column=decoder_column,
        )
    if not isinstance(model, (str, os.PathLike, type(None))) and not (engine == "local" and workers == 1):
        raise AttnflowError("Give the model as a name or folder: worker processes load it themselves.")
    evaluation_options = _evaluation_options(evaluation)
    with quiet_transformers():
        loaded = load_model(model, trust_remote_code=trust_remote_code)

    if decoder_column is not None:
        require_seq2seq(loaded, "A decoder column (--decoder-column)")
    elif is_seq2seq_model(loaded):
        raise AttnflowError(
            f"The model {loaded.name!r} is an encoder-decoder model: name the column of each row's target with "
            "decoder_column= (CLI: --decoder-column COL); the text column is the source."
        )
    wants_target = evaluation_options is not None or target_needed(attention_names, method_options) or bool(inputs)
    if images is None and decoder_column is None and wants_target:

        resolve_target(target, loaded)  # a target the model cannot give fails here, not on every row

    for name in others:  # so does a graph the model's blocks do not define
        get_graph(name).check_model(loaded)
    options = {
        "methods": names,
        "output": output,
        "target": target,
        "text_column": text_column,
        "label_column": label_column,
        "target_column": target_column,
        "split": split,
        "truncate": bool(truncate),
        "batch_size": int(batch_size),
        "shard_size": int(shard_size),
        "method_options": to_jsonable(method_options),
        "evaluation": to_jsonable(evaluation_options),
    }
    if images is not None:
        options["images"] = True  # only then: the manifests of text runs keep their options
    if others:
        options["graphs"] = list(graph_list)  # only then, likewise: attention-only manifests keep their options
    if decoder_column is not None:
        options["decoder_column"] = decoder_column
    if words:
        options["words"] = True
    if attribution_options is not None:
        options["attribution"] = attribution_options  # only then, likewise
    fingerprint = model_fingerprint(loaded)
    manifest = _open_folder(out, options, loaded.name, fingerprint, dataset, overwrite)
    resumed = manifest is not None
    if manifest is None:
        manifest = _plan(loaded, dataset, options, fingerprint, truncate, shard_size)
        manifest["run"] = run_fingerprint(manifest)
        (out / SCORES).mkdir(parents=True, exist_ok=True)
        _write_texts(out, manifest, dataset)
        write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    elif _texts_run(out / TEXTS) != run_fingerprint(manifest):  # killed before it was written, or removed
        _write_texts(out, manifest, dataset)
    scores = out / SCORES
    scores.mkdir(parents=True, exist_ok=True)
    for stray in scores.glob(".*.part"):  # a temporary file left by a killed run
        stray.unlink(missing_ok=True)

    run = run_fingerprint(manifest)
    by_example = {r.row: r for r in dataset.records}
    shards = [Shard(s["shard"], tuple(by_example[i] for i in s["examples"])) for s in manifest["shards"]]
    states = {entry["shard"]: _shard_state(scores, entry, run) for entry in manifest["shards"]}
    todo = [s for s in shards if states[s.shard] is not None]
    if resumed and log is not None:
        log(f"Resuming: {len(shards) - len(todo)} of {len(shards)} shards done")
        for number, state in states.items():
            if state not in (None, "missing"):
                log(f"  {_shard_name(number)} is computed again: {state}")
    todo.sort(key=lambda s: -max((len(r.text or "") for r in s.records), default=0))  # longest first
    total = sum(len(s.records) for s in shards)
    finished = [total - sum(len(s.records) for s in todo)]
    if progress is not None:
        progress(finished[0], total)

    cores = available_cores()
    # threads follow the workers asked for, not the shards left, so a resumed run's workers compute alike
    threads = threads or max(1, cores // (workers or cores))
    if engine == "local":
        workers = max(1, min(workers or cores, len(todo) or 1))
    spec = WorkSpec(
        model=None if model is None else (os.fspath(model) if isinstance(model, (str, os.PathLike)) else None),
        methods=tuple(names), output=output, target=target, method_options=dict(method_options),
        truncate=bool(truncate), batch_size=int(batch_size), threads=threads,
        label_type=manifest["data"]["label_type"], trust_remote_code=trust_remote_code,
        evaluation=evaluation_options, images=images is not None, graphs=tuple(graph_list),
        seq2seq=decoder_column is not None, run=run, words=bool(words), attribution=attribution_options,
    )
    sizes = {s.shard: len(s.records) for s in shards}

    def done(number: int, payload: bytes) -> None:
        write_bytes_atomic(scores / _shard_name(number), payload)
        finished[0] += sizes[number]
        if progress is not None:
            progress(finished[0], total)

    start = time.perf_counter()
    if todo:
        if engine == "ray":
            workers = run_ray(spec, todo, done, workers, address)
        elif workers == 1:
            run_in_process(spec, todo, done, loaded)
        else:
            run_local(spec, todo, done, workers)
    seconds = time.perf_counter() - start
    summary = _summary(out, manifest, engine, workers, threads, seconds, sum(len(s.records) for s in todo), len(todo))
    write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    return BatchResult(out, summary)


#: What ``evaluation=`` may set: options of :func:`attnflow.evaluate`.
EVALUATION_OPTIONS: tuple[str, ...] = (
    "ground_truths", "blank", "faithfulness", "percents", "faithfulness_layer", "removal", "random_repeats",
    "ig_steps", "seed", "batch_size",
)


def _evaluation_options(evaluation: bool | dict[str, Any] | None) -> dict[str, Any] | None:
    """``None`` (no evaluation) or the checked :func:`attnflow.evaluate` options, lists for tuples."""
    if evaluation is None or evaluation is False:
        return None
    chosen = {} if evaluation is True else dict(evaluation)
    unknown = sorted(set(chosen) - set(EVALUATION_OPTIONS))
    if unknown:
        raise AttnflowError(f"Unknown evaluation option(s) {unknown}; available: {', '.join(EVALUATION_OPTIONS)}.")

    truths = chosen.get("ground_truths", GROUND_TRUTHS)
    truths = [truths] if isinstance(truths, str) else list(truths)
    wrong = [name for name in truths if name not in GROUND_TRUTHS]
    if wrong or not truths:
        raise AttnflowError(f"Unknown ground truth(s) {wrong}; available: {', '.join(GROUND_TRUTHS)}.")
    chosen["ground_truths"] = [name for name in GROUND_TRUTHS if name in truths]
    if "percents" in chosen:
        chosen["percents"] = list(check_percents(chosen["percents"]))
    if chosen.get("removal", "delete") not in REMOVALS:
        raise AttnflowError(f"The 'removal' option must be one of {', '.join(REMOVALS)}; got {chosen['removal']!r}.")
    return chosen


def read_results(out: str | os.PathLike[str]) -> Any:
    """The rows of a batch folder as a pandas DataFrame, sorted by example, method (in run order) and layer.

    Raises :class:`AttnflowError` for a folder without a manifest.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "d.txt").write_text("Dogs bark.\\n")
    >>> _ = run_batch(folder / "d.txt", folder / "out", methods="raw", workers=1)
    >>> read_results(folder / "out")[["example", "method", "layer", "n_tokens"]].head(2).values.tolist()
    [[0, 'raw', 1, 5], [0, 'raw', 2, 5]]
    >>> read_explanation(folder / "out", 0).scores["raw"].shape
    (6, 5)
    """
    import pandas as pd
    import pyarrow.parquet as pq

    folder = Path(out)
    manifest = _read_manifest(folder)
    if manifest is None:
        raise AttnflowError(f"{str(folder)!r} is not an attnflow batch folder (it has no {MANIFEST}).")
    run = run_fingerprint(manifest)
    tables = []
    for entry in manifest["shards"]:  # only this run's shards; a missing one is still to run
        state = _shard_state(folder / SCORES, entry, run, read=False)
        if state == "missing":
            continue
        path = folder / SCORES / _shard_name(entry["shard"])
        if state is None:
            try:
                tables.append(pq.read_table(path, page_checksum_verification=True))
                continue
            except Exception as exc:  # pyarrow raises several types for damaged pages
                state = f"its data cannot be read ({_first_line(exc)})"
        raise AttnflowError(
            f"The shard {str(path)!r} is not one of this run's: {state}; rerun the batch command to compute it again."
        )
    if not tables:
        return pd.DataFrame(columns=list(_columns()))
    frame = pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    if _texts_run(folder / TEXTS) != run:
        raise AttnflowError(
            f"The batch folder {str(folder)!r} has no {TEXTS} of this run; rerun the batch command to write it."
        )
    texts = pq.read_table(folder / TEXTS, page_checksum_verification=True).to_pandas()
    frame.insert(1, "text", frame["example"].map(dict(zip(texts["example"], texts["text"], strict=True))))
    order = {name: i for i, name in enumerate(result_keys(manifest["options"]))}
    frame["_method"] = frame["method"].map(order)
    return frame.sort_values(["example", "_method", "layer"]).drop(columns="_method").reset_index(drop=True)


def read_explanation(out: str | os.PathLike[str], example: int) -> Any:
    """Row ``example`` of a batch folder as an :class:`attnflow.Explanation` (every method and layer).

    Its ``to_json`` file is what ``attnflow explain --json`` writes, so ``attnflow report`` reads it.
    """
    import numpy as np


    frame = read_results(out)
    rows = frame[frame["example"] == example]
    if rows.empty:
        raise AttnflowError(f"The batch folder {os.fspath(out)!r} has no rows for example {example}.")
    manifest = _read_manifest(Path(out)) or {}
    first = rows.iloc[0]
    scores = {
        method: np.stack([np.asarray(v, dtype=np.float64) for v in group.sort_values("layer")["scores"]])
        for method, group in rows.groupby("method", sort=False)
    }
    inputs = set(rows.loc[rows["layer"] == 0, "method"])  # attribution methods: one row, at the input
    n_layers = int(rows["layer"].max()) or 1  # attribution methods alone: one row
    for method in inputs:  # the same row at every layer, as attnflow.explain gives them
        scores[method] = np.tile(scores[method][0], (n_layers, 1))
    input_methods = {"input_methods": {method: "input" for method in inputs}} if inputs else {}
    output = int(first["output"]) if str(first["output"]).lstrip("-").isdigit() else str(first["output"])
    target = first["target"]
    if "source_length" in rows.columns:  # an encoder-decoder run

        return Seq2SeqExplanation(
            tokens=[str(t) for t in first["tokens"]], scores=scores, output=output,
            target=json.loads(target) if isinstance(target, str) else None,
            model_name=str(manifest.get("model", {}).get("name", "")), text=str(first["text"]),
            options={**manifest.get("options", {}).get("method_options", {}), **input_methods},
            seq2seq={"source_length": int(first["source_length"]), "target_text": str(first["decoder_text"]),
                     "predicts": first["predicts"]},
        )
    return Explanation(
        tokens=[str(t) for t in first["tokens"]],
        scores=scores,
        output=output,
        target=json.loads(target) if isinstance(target, str) else None,
        model_name=str(manifest.get("model", {}).get("name", "")),
        text=str(first["image"]) if "image" in rows.columns else str(first["text"]),
        options={**manifest.get("options", {}).get("method_options", {}), **input_methods},
    )


def result_keys(options: dict[str, Any]) -> list[str]:
    """The ``method`` column's values of a run with these manifest options, in order: ``GRAPH/METHOD`` per graph.

    Examples
    --------
    >>> result_keys({"methods": ["raw", "rollout"], "graphs": ["attention", "alti"]})
    ['raw', 'rollout', 'alti/raw', 'alti/rollout']
    """

    graphs = options.get("graphs") or [ATTENTION]
    attention, inputs = split_methods(options["methods"])
    return [result_key(graph, method) for graph in graphs for method in attention] + inputs


def _attribution_options(
    inputs: list[str], given: dict[str, Any] | None, images: Any, evaluation: Any
) -> dict[str, Any] | None:
    """The attribution methods' options (``ig_steps``, ``lime_samples``, ``max_passes``, ``seed``), checked, or
    ``None`` without attribution methods; refused in one line where batch cannot run them, before a model loads."""

    if not inputs:
        if given:
            raise AttnflowError(f"The attribution options {sorted(given)} are for attribution methods "
                                "(saliency, occlusion, ...); leave them out.")
        return None
    if images is not None:
        raise AttnflowError(f"Method {inputs[0]!r} is a text attribution method; for images (--images) use raw, "
                            "rollout or flow.")
    if evaluation not in (None, False):
        raise AttnflowError(f"Method {inputs[0]!r} is not judged per row (--evaluate) by attnflow batch yet; "
                            "use attnflow evaluate, or leave out --evaluate.")
    options = {"ig_steps": 50, "lime_samples": LIME_SAMPLES, "max_passes": MAX_PASSES, "seed": 0, **(given or {})}
    unknown = sorted(set(options) - {"ig_steps", "lime_samples", "max_passes", "seed"})
    if unknown:
        raise AttnflowError(f"Unknown attribution option(s) {unknown}; they are ig_steps, lime_samples, max_passes "
                            "and seed.")
    check_attribution_options(inputs, ig_steps=options["ig_steps"], lime_samples=options["lime_samples"],
                              max_passes=options["max_passes"])
    if isinstance(options["seed"], bool) or not isinstance(options["seed"], int):
        raise AttnflowError(f"The seed must be a whole number; got {options['seed']!r}.")
    return options


def _inside(data: Path, out: Path) -> bool:
    """Whether ``data`` is one of the files a run writes or clears in ``out``."""
    try:
        data, out = data.resolve(), out.resolve()
    except OSError:
        return False
    return data in (out / MANIFEST, out / SUMMARY, out / TEXTS) or (out / SCORES) in (data, *data.parents)


def _write_texts(out: Path, manifest: dict[str, Any], dataset: Dataset) -> None:
    """``texts.parquet``: the text of every example the manifest's shards hold, once, in example order."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    planned = sorted(example for entry in manifest["shards"] for example in entry["examples"])
    images = bool(manifest["options"].get("images"))  # a record's text is then its path: the rows name the file
    by_example = {r.row: None if images else r.text for r in dataset.records}
    table = pa.table({"example": pa.array(planned, type=pa.int64()),
                      "text": pa.array([by_example[i] for i in planned], type=pa.string())})
    table = table.replace_schema_metadata({"attnflow": json.dumps({"run": run_fingerprint(manifest), "texts": True})})
    sink = io.BytesIO()
    pq.write_table(table, sink, write_page_checksum=True)
    write_bytes_atomic(out / TEXTS, sink.getvalue())


def _texts_run(path: Path) -> str | None:
    """The run a ``texts.parquet`` belongs to (``None``: missing, unreadable or not attnflow's)."""
    try:
        return str(_shard_metadata(path).get("run"))
    except Exception:  # missing, or not a Parquet file attnflow wrote
        return None


def _columns() -> tuple[str, ...]:

    return COLUMNS


def _check_method_options(options: dict[str, Any]) -> None:
    """Refuse a method option's value that no row could use, with the methods' own checks (before any model)."""

    if "residual" in options:
        check_residual(options["residual"])
    if "discard_ratio" in options:
        check_ratio(options["discard_ratio"])
    fusion = options.get("head_fusion")
    if isinstance(fusion, str) and fusion.strip().lower() not in (*HEAD_FUSIONS, "importance"):
        raise AttnflowError(
            f"The 'head_fusion' parameter must be one of {', '.join(HEAD_FUSIONS)}, 'importance' or an array of "
            f"head weights; got {fusion!r} instead."
        )


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AttnflowError(f"The '{name}' parameter must be a positive integer; got {value!r} instead.")


def _shard_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


def run_fingerprint(manifest: dict[str, Any]) -> str:
    """A SHA-256 naming a run: its format version, options, model and data fingerprints, skipped rows and shards.

    Every shard file records it, so a shard of another run (copied in, or left by an
    older run) is never taken for one of this run's.

    Examples
    --------
    >>> plan = {"version": 2, "options": {}, "model": {}, "data": {}, "skipped": [], "shards": []}
    >>> run_fingerprint(plan) == run_fingerprint({**plan, "run": "ignored"})
    True
    """
    keys = ("format", "version", "options", "model", "data", "skipped", "shards")
    plan = json.dumps({key: manifest.get(key) for key in keys}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(plan.encode("utf-8")).hexdigest()


def _shard_state(scores: Path, entry: dict[str, Any], run: str, *, read: bool = True) -> str | None:
    """``None`` when shard ``entry``'s file is done; else why not: ``"missing"`` or what is wrong with the file.

    Done: the file's metadata names ``run`` and the shard's number, its rows and skipped
    rows are the shard's examples and (with ``read``) every page reads back with its
    checksum verified.
    """
    import pyarrow.parquet as pq

    path = scores / _shard_name(entry["shard"])
    if not path.exists():
        return "missing"
    if not path.is_file():
        raise AttnflowError(f"{str(path)!r} is not a file; attnflow writes its shard there: move it away.")
    try:
        meta = _shard_metadata(path)
        if meta.get("run") != run or meta.get("shard") != entry["shard"]:
            return "it belongs to another run or another shard"
        table = pq.read_table(path, page_checksum_verification=True) if read else pq.read_table(path, columns=[])
        examples = set(table.column("example").to_pylist()) if read else None
    except Exception as exc:  # pyarrow raises several types for a damaged file
        return f"its data cannot be read ({_first_line(exc)})"
    skipped = {s["example"] for s in meta.get("skipped", [])}
    if read and (examples | skipped) != set(entry["examples"]):
        return "it does not hold the shard's examples"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _shard_metadata(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[b"attnflow"])


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise AttnflowError(
            f"The manifest {str(path)!r} cannot be read (not JSON): attnflow did not write it so; move it away, "
            "or choose another --out."
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != "attnflow.batch":
        raise AttnflowError(
            f"{str(path)!r} is not an attnflow batch manifest; move it away, or choose another --out."
        )
    if manifest.get("version") != FORMAT_VERSION:
        raise AttnflowError(
            f"The batch run in {str(out)!r} was written with format version {manifest.get('version')!r}; this attnflow "
            f"writes version {FORMAT_VERSION} and cannot resume it: pass --overwrite to start again, or choose "
            "another --out."
        )
    return manifest


def _open_folder(
    out: Path, options: dict[str, Any], name: str, fingerprint: str, dataset: Dataset, overwrite: bool
) -> dict[str, Any] | None:
    """The manifest to resume, or ``None`` to start afresh (after clearing an old run when ``overwrite``)."""
    owned = _run_files(out)  # refuses a file not attnflow's where this run writes, overwrite or not
    if overwrite:
        for path in owned:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise AttnflowError(f"Cannot delete {str(path)!r} of the old run: {exc.strerror or exc}.") from None
        return None
    manifest = _read_manifest(out)
    if manifest is None:
        if out.is_dir() and any(p.name != SCORES or not p.is_dir() or any(p.iterdir()) for p in out.iterdir()):
            raise AttnflowError(
                f"The output folder {str(out)!r} is not empty and holds no batch run; choose another --out or pass "
                "--overwrite to write into it."
            )
        return None
    old = manifest["options"]
    changed = [key for key in dict.fromkeys([*options, *old]) if old.get(key) != options.get(key)]
    if changed:
        detail = "; ".join(f"{key}: {old.get(key)!r} -> {options.get(key)!r}" for key in changed)
        raise AttnflowError(
            f"The output folder {str(out)!r} holds a run with other options ({detail}); rerun with the same options "
            "to resume, pass --overwrite to replace it, or choose another --out."
        )
    if manifest["model"]["fingerprint"] != fingerprint:
        raise AttnflowError(
            f"The output folder {str(out)!r} holds a run of another model ({manifest['model']['name']!r}, different "
            "files); pass --overwrite to replace it, or choose another --out."
        )
    if manifest["data"]["fingerprint"] != dataset.fingerprint:
        raise AttnflowError(
            f"The data set {dataset.source!r} changed since the run in {str(out)!r} began (its fingerprint differs); "
            "resuming would mix two data sets: pass --overwrite to start again, or choose another --out."
        )
    return manifest


def _run_files(out: Path) -> list[Path]:
    """The files of an attnflow batch run in ``out``; refuses one attnflow would write over that is not attnflow's.

    Attnflow's own: ``manifest.json`` and ``summary.json`` whose ``format`` is a batch
    format (any version), and ``scores/part-NNNNN.parquet`` with attnflow's metadata
    (read through a ``scores`` link). Files under other names are never listed.
    """
    import re

    owned: list[Path] = []
    for name, kind in ((MANIFEST, "attnflow.batch"), (SUMMARY, "attnflow.batch.summary")):
        path = out / name
        if path.is_symlink() or path.exists():
            if _json_format(path) != kind:
                _foreign(path)
            owned.append(path)
    texts = out / TEXTS
    if texts.is_symlink() or texts.exists():
        if _texts_run(texts) is None:
            _foreign(texts)
        owned.append(texts)
    scores = out / SCORES
    if scores.is_symlink() or scores.exists():
        if not scores.is_dir():
            _foreign(scores)
        try:
            entries = sorted(scores.iterdir())
        except OSError as exc:
            raise AttnflowError(f"Cannot read the folder {str(scores)!r}: {exc.strerror or exc}.") from None
        for path in entries:
            if re.fullmatch(r"part-\d{5}\.parquet", path.name):
                try:
                    _shard_metadata(path)
                except Exception:
                    _foreign(path)
                owned.append(path)
    return owned


def _json_format(path: Path) -> Any:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("format") if isinstance(data, dict) else None


def _foreign(path: Path) -> None:
    raise AttnflowError(
        f"{str(path)!r} was not written by attnflow batch, and a run writes there: move it away, or choose another "
        "--out (--overwrite replaces only attnflow's own files)."
    )


def _plan(
    loaded: Any, dataset: Dataset, options: dict[str, Any], fingerprint: str, truncate: bool, shard_size: int
) -> dict[str, Any]:
    """Skip rows that cannot be explained (with the reason), sort the rest by length, cut them into shards."""

    if options.get("images"):
        return _manifest(loaded, dataset, options, fingerprint, [], [r.row for r in dataset.records], shard_size)
    if loaded.tokenizer is None:
        raise AttnflowError(f"The model {loaded.name!r} is an image model; attnflow batch explains texts.")
    skipped: list[dict[str, Any]] = []
    present = [r for r in dataset.records if r.text is not None]
    skipped.extend({"example": r.row, "reason": r.reason or EMPTY_TEXT} for r in dataset.records if r.text is None)
    if options.get("decoder_column") is not None:
        skipped.extend({"example": r.row, "reason": "empty decoder text"} for r in present if r.decoder is None)
        present = [r for r in present if r.decoder is not None]
    lengths: dict[int, int] = {}
    screened = screen_lengths([r.text for r in present], loaded, truncate=truncate)
    for record, (reason, n_ids) in zip(present, screened, strict=True):
        if reason is not None:
            skipped.append({"example": record.row, "reason": reason})
        else:
            lengths[record.row] = min(n_ids, loaded.max_length or n_ids)
    if not lengths:
        raise AttnflowError(
            f"No row of {dataset.source!r} can be explained: {len(skipped)} rows skipped "
            f"({', '.join(sorted({s['reason'] for s in skipped}))})."
        )
    ordered = sorted(lengths, key=lambda example: (lengths[example], example))
    return _manifest(loaded, dataset, options, fingerprint, skipped, ordered, shard_size)


def _manifest(
    loaded: Any, dataset: Dataset, options: dict[str, Any], fingerprint: str, skipped: list[dict[str, Any]],
    ordered: list[int], shard_size: int,
) -> dict[str, Any]:
    """The manifest of a new run: the rows ``ordered`` cut into shards of ``shard_size``."""
    if options.get("images") and not loaded.is_vision:
        raise AttnflowError(
            f"The model {loaded.name!r} takes text; --images needs an image model (ViT-style, e.g. digits-vit)."
        )
    shards = [
        {"shard": number, "examples": ordered[start : start + shard_size]}
        for number, start in enumerate(range(0, len(ordered), shard_size))
    ]
    return {
        "format": "attnflow.batch",
        "version": FORMAT_VERSION,
        "options": options,
        "model": {"name": loaded.name, "fingerprint": fingerprint},
        "data": {
            "source": dataset.source,
            "fingerprint": dataset.fingerprint,
            "n_rows": len(dataset.records),
            "label_type": dataset.label_type,
        },
        "skipped": sorted(skipped, key=lambda s: s["example"]),
        "shards": shards,
    }


def _summary(
    out: Path, manifest: dict[str, Any], engine: str, workers: int | None, threads: int,
    seconds: float, computed: int, shards_run: int,
) -> dict[str, Any]:
    import pyarrow.parquet as pq

    skipped = list(manifest["skipped"])
    rows, n_layers = 0, None
    for entry in manifest["shards"]:
        path = out / SCORES / _shard_name(entry["shard"])
        meta = _shard_metadata(path)
        skipped.extend(meta["skipped"])
        n_layers = meta["n_layers"] or n_layers
        rows += pq.read_metadata(path).num_rows
    skipped.sort(key=lambda s: s["example"])
    reasons: dict[str, int] = {}
    for item in skipped:
        key = item["reason"].split(":")[0] if item["reason"].startswith("error") else item["reason"]
        reasons[key] = reasons.get(key, 0) + 1
    n_rows = manifest["data"]["n_rows"]
    evaluation = _evaluation_summary(out) if manifest["options"].get("evaluation") is not None else None
    return to_jsonable({
        "format": "attnflow.batch.summary",
        "version": FORMAT_VERSION,
        "model": manifest["model"],
        "data": manifest["data"],
        "methods": manifest["options"]["methods"],
        "n_layers": n_layers,
        "n_rows": n_rows,
        "n_examples": n_rows - len(skipped),
        "n_skipped": len(skipped),
        "skipped_reasons": reasons,
        "skipped": skipped,
        "rows": rows,
        "shards": len(manifest["shards"]),
        "scores": f"{SCORES}/",
        "options": manifest["options"],
        **({"evaluation": evaluation} if evaluation is not None else {}),
        "last_run": {
            "engine": engine,
            "workers": workers,
            "threads_per_worker": threads,
            "shards": shards_run,
            "examples": computed,
            "seconds": round(seconds, 3),
            "examples_per_second": round(computed / seconds, 3) if computed and seconds > 0 else None,
        },
    })


def _evaluation_summary(out: Path) -> dict[str, Any]:
    """Mean, sd and count over the rows of every Spearman column (per method and layer) and faithfulness column."""
    import numpy as np

    frame = read_results(out)
    methods = list(dict.fromkeys(frame["method"]))
    summary: dict[str, Any] = {"correlation": {}, "faithfulness": {}}
    for column in [c for c in frame.columns if c.startswith("spearman_")]:
        per_method = {}
        for method in methods:
            rows = frame[frame["method"] == method]
            per_method[method] = [_stats(group[column].to_numpy()) for _, group in rows.groupby("layer", sort=True)]
        summary["correlation"][column.removeprefix("spearman_")] = per_method
    prefixes = ("aopc_", "random_aopc_", "comprehensiveness_", "sufficiency_")
    faithful = [c for c in frame.columns if c.startswith(prefixes)]
    for method in methods:
        rows = frame[frame["method"] == method]
        summary["faithfulness"][method] = {
            column: _stats(rows[column].to_numpy(dtype=np.float64)) for column in faithful
        }
    return summary


def _stats(values: Any) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": None, "sd": None, "n": 0}
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if values.size > 1 else None,
            "n": int(values.size)}


__all__ = ["BatchResult", "Example", "model_fingerprint", "read_explanation", "read_results", "run_batch"]
