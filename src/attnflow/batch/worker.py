"""One worker: loads the model once, then explains shard after shard.

The same :class:`ShardWorker` runs in the caller's process, in the local
engine's worker processes and as a Ray actor, so every engine computes the
same rows with the same code.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..capture import capture_attention, load_model
from ..capture.gradient_point import gradient_point
from ..capture.models import quiet_transformers
from ..capture.perturb import attribution_blank_id
from ..capture.plan import capture_planned
from ..capture.targets import resolve_target
from ..core import score_capture
from ..data import Example
from ..errors import AttnflowError
from ..evaluate import evaluate as run_evaluate
from ..explainers.image import explain_image
from ..explainers.seq2seq import explain_seq2seq
from ..explainers.text import target_inputs, target_needed
from ..io import to_jsonable
from ..methods.attribution import AttributionInputs, is_attribution, split_methods
from ..mixing import context_mixing, result_key
from ..words import word_groups

#: The columns of :func:`attnflow.batch.read_results`, in order (``label`` is int64 or string, fixed per run by
#: the data set). A shard file holds them all but ``text``, which ``texts.parquet`` holds once per example.
COLUMNS: tuple[str, ...] = (
    "example", "text", "label", "method", "layer", "output", "n_tokens", "tokens", "special", "scores", "target",
    "truncated",
)

#: The columns runs with words (``words=True``, ``--words``) add: each word's text and the row's scores summed to words.
WORD_COLUMNS: tuple[str, ...] = ("words", "word_scores")


#: The columns image runs (``--images``) add: the file name and the patch grid ``[rows, cols]``.
IMAGE_COLUMNS: tuple[str, ...] = ("image", "grid")

#: The columns encoder-decoder runs (``--decoder-column``) add: the row's decoder text, the number of
#: source tokens (``tokens[:source_length]``; the rest are decoder positions) and the token predicted.
SEQ2SEQ_COLUMNS: tuple[str, ...] = ("decoder_text", "source_length", "predicts")


@dataclass(frozen=True)
class WorkSpec:
    """Everything a worker needs besides the shards: plain values, so it pickles to any process or machine."""

    model: str | None
    methods: tuple[str, ...]
    output: str | None = None
    target: str | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    truncate: bool = False
    batch_size: int = 16
    threads: int = 1
    label_type: str = "string"
    trust_remote_code: bool = False
    #: ``None``, or the options of :func:`attnflow.evaluate` (ground truths, faithfulness, ...) to compute per row.
    evaluation: dict[str, Any] | None = None
    #: The rows are images (each record's ``text`` is the image's path), explained as ``explain_image`` does.
    images: bool = False
    #: The token-to-token graphs the methods run over (:mod:`attnflow.mixing`), as ``attnflow.explain(graph=...)``.
    graphs: tuple[str, ...] = ("attention",)
    #: An encoder-decoder run: each record's ``text`` is the source, its ``decoder`` the target read by the decoder.
    seq2seq: bool = False
    #: The run's fingerprint (:func:`attnflow.batch.runner.run_fingerprint`), recorded in every shard's metadata.
    run: str = ""
    #: Add the ``words`` and ``word_scores`` columns (:mod:`attnflow.words`).
    words: bool = False
    #: With attribution methods: their options (``ig_steps``, ``lime_samples``, ``max_passes``, ``seed``).
    attribution: dict[str, Any] | None = None


@dataclass(frozen=True)
class Shard:
    """A fixed piece of the work: its number and its rows (fixed by the manifest, so resumed runs batch alike)."""

    shard: int
    records: tuple[Example, ...]


def set_threads(threads: int) -> None:
    """Give torch and numba ``threads`` threads in this process.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> set_threads(1)
    >>> set_threads(before)   # as it was: later code in this process keeps its threads
    """
    import numba
    import torch

    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


class ShardWorker:
    """Holds a loaded model; :meth:`run` turns a :class:`Shard` into Parquet bytes.

    ``loaded`` may be given (an :class:`attnflow.capture.LoadedModel`) to use a
    model already in memory; otherwise ``spec.model`` is loaded once here.
    """

    def __init__(self, spec: WorkSpec, loaded: Any = None, *, own_threads: bool = True) -> None:
        if own_threads:
            os.environ["OMP_NUM_THREADS"] = str(spec.threads)  # before torch starts its thread pool
            set_threads(spec.threads)

        with quiet_transformers():
            self.loaded = load_model(spec.model if loaded is None else loaded, trust_remote_code=spec.trust_remote_code)
        self.spec = spec
        self._targets: dict[str | None, Any] = {}
        self._point: Any = None  # the attribution methods' gradient point, found once

    def ready(self) -> bool:
        """True once the model is loaded (Ray engines wait for this before timing)."""
        return True

    def run(self, shard: Shard) -> tuple[int, bytes]:
        """``(shard number, Parquet bytes)``; rows skipped by a per-example error are listed in the file's metadata."""
        table = self.table(shard)
        sink = io.BytesIO()
        import pyarrow.parquet as pq

        pq.write_table(table, sink, write_page_checksum=True)  # so a resume finds a damaged page
        return shard.shard, sink.getvalue()

    def table(self, shard: Shard) -> Any:
        """The shard's rows as a pyarrow Table, one row per example x method x layer."""

        spec = self.spec
        if spec.evaluation is not None:
            return self._evaluation_table(shard)
        if spec.images:
            return self._image_table(shard)
        if spec.seq2seq:
            return self._seq2seq_table(shard)
        columns: dict[str, list[Any]] = {name: [] for name in (*COLUMNS, *(WORD_COLUMNS if spec.words else ()))}
        skipped: list[dict[str, Any]] = []
        n_layers = None
        attention, inputs = split_methods(spec.methods)
        wants_target = target_needed(attention, spec.method_options) or bool(inputs)
        wants_mixing = bool(attention) and bool(context_mixing(spec.graphs))
        keys = [result_key(graph, name) for graph in spec.graphs for name in attention] + inputs
        batched: list[Any] = []
        if not (wants_target or wants_mixing):  # the attention alone: captured in padded batches
            batched = capture_attention(
                [r.text for r in shard.records], self.loaded, truncate=spec.truncate, batch_size=spec.batch_size
            )
        for position, record in enumerate(shard.records):
            resolved = label = None
            if wants_target:
                try:  # a row's unknown target or missing gold label skips that row
                    resolved = self._target(record.target if record.target is not None else spec.target)
                    label = resolved.resolve_label(record.label) if resolved.uses_gold else None
                except AttnflowError as exc:
                    skipped.append({"example": record.row, "reason": f"error: {exc}"})
                    continue
            if batched:
                capture, mixing, bound = batched[position], None, None
            else:  # one pass: the attention, the graphs' tensors and the target (as attnflow.explain)
                planned = capture_planned(record.text, self.loaded, mixing=wants_mixing, target=resolved, label=label,
                                          truncate=spec.truncate)
                capture, mixing, bound = planned.captured, planned.mixing, planned.bound
            output = spec.output if spec.output is not None else ("last" if capture.is_causal else "cls")
            gradients, options, described, model_pass = None, dict(spec.method_options), None, None
            try:
                if bound is not None:
                    if target_needed(attention, spec.method_options):
                        gradients, options = target_inputs(
                            self.loaded, bound, capture.input_ids, attention, spec.method_options
                        )
                    described = _described(bound.describe())
                    if inputs:
                        model_pass = self._model_pass(bound, capture.input_ids, record.row)
                explanation = score_capture(capture, list(spec.methods), graphs=list(spec.graphs), output=output,
                                            mixing=mixing, gradients=gradients, model_pass=model_pass,
                                            **options).explanation
            except AttnflowError as exc:
                skipped.append({"example": record.row, "reason": f"error: {exc}"})
                continue
            n_layers = explanation.n_layers
            words = None
            if spec.words:

                words = word_groups(self.loaded, capture.input_ids, record.text)
            _add_rows(
                columns, explanation.scores, keys, explanation.output, capture.tokens, capture.special_positions,
                words, example=record.row, label=_label(record.label, spec.label_type), target=described,
                truncated=bool(capture.truncated),
            )
        types = {**schema(spec.label_type), **(_word_types() if spec.words else {})}
        return _shard_table(columns, types, shard, skipped, n_layers, spec.run)

    def _image_table(self, shard: Shard) -> Any:
        """Rows of images: as :meth:`table`, with ``image`` (the file name) and ``grid`` (patch rows, columns).

        Each image is explained alone by :func:`attnflow.explain_image` (no batches), so a
        row equals that call's scores exactly; one that fails (an unreadable file) is skipped
        with attnflow's message.
        """
        import pyarrow as pa


        spec = self.spec
        columns: dict[str, list[Any]] = {name: [] for name in (*COLUMNS, *IMAGE_COLUMNS)}
        skipped: list[dict[str, Any]] = []
        n_layers = None
        for record in shard.records:
            path = record.text or ""
            try:
                explanation = explain_image(
                    path, self.loaded, methods=list(spec.methods), output="cls" if spec.output is None else spec.output,
                    target=record.target if record.target is not None else spec.target, **spec.method_options,
                )
            except AttnflowError as exc:
                skipped.append({"example": record.row, "reason": f"error: {exc}"})
                continue
            n_layers = explanation.n_layers
            _add_rows(
                columns, explanation.scores, spec.methods, explanation.output, explanation.tokens,
                explanation.special_positions, None,
                example=record.row, label=None, target=_described(explanation.target), truncated=False,
                image=os.path.basename(path), grid=[int(v) for v in explanation.image["grid"]],
            )
        types = {**schema(spec.label_type), "image": pa.string(), "grid": pa.list_(pa.int32())}
        return _shard_table(columns, types, shard, skipped, n_layers, spec.run)

    def _seq2seq_table(self, shard: Shard) -> Any:
        """Rows of an encoder-decoder model: one per example x method x decoder layer.

        Each row is explained alone by :func:`attnflow.explainers.seq2seq.explain_seq2seq`
        (``decoder_text`` from the record), so a row equals ``attnflow.explain(source, model,
        decoder_text=...)``; one that fails (a target too long) is skipped with attnflow's message.
        """
        import pyarrow as pa


        spec = self.spec
        columns: dict[str, list[Any]] = {name: [] for name in (*COLUMNS, *SEQ2SEQ_COLUMNS)}
        skipped: list[dict[str, Any]] = []
        n_layers = None
        for record in shard.records:
            try:
                explanation = explain_seq2seq(  # attribution methods: the random baseline seeded by the example
                    record.text or "", self.loaded, list(spec.methods), spec.output,
                    record.target if record.target is not None else spec.target,
                    decoder_text=record.decoder, truncate=spec.truncate,
                    attribution={**spec.attribution, "index": record.row} if spec.attribution else None,
                    **spec.method_options,
                )
            except AttnflowError as exc:
                skipped.append({"example": record.row, "reason": f"error: {exc}"})
                continue
            n_layers = explanation.n_layers
            info = explanation.seq2seq or {}
            _add_rows(
                columns, explanation.scores, spec.methods, explanation.output, explanation.tokens,
                explanation.special_positions, None,
                example=record.row, label=_label(record.label, spec.label_type),
                target=_described(explanation.target), truncated=bool(info.get("truncated")),
                decoder_text=record.decoder, source_length=explanation.source_length, predicts=info.get("predicts"),
            )
        types = {**schema(spec.label_type), "decoder_text": pa.string(), "source_length": pa.int32(),
                 "predicts": pa.string()}
        return _shard_table(columns, types, shard, skipped, n_layers, spec.run)

    def _evaluation_table(self, shard: Shard) -> Any:
        """Rows with :func:`attnflow.evaluate`'s numbers: ground truths, Spearman per layer, faithfulness.

        Each row is evaluated alone as example number ``example`` of the data set (its random baseline
        seeded by ``default_rng([seed, example])``, as :func:`attnflow.evaluate` seeds it in one run
        over every row), so a row's numbers do not depend on the shard it falls in. Besides the
        numbers of ``EvaluationResult.to_dataframe`` each row holds ``special_positions`` and, at
        the faithfulness layer, ``random_comprehensiveness_<k>``, ``random_sufficiency_<k>`` and
        ``faithfulness_full``, so :func:`attnflow.batch.evaluation_result` rebuilds the result whole.
        """
        import pyarrow as pa


        spec = self.spec
        options = dict(spec.evaluation or {})
        seed = int(options.pop("seed", 0))
        base = {name: [] for name in COLUMNS if name != "text"}
        extra: dict[str, list[Any]] = {}
        truths: dict[str, list[Any]] = {}
        skipped: list[dict[str, Any]] = []
        special: list[list[int]] = []
        settings: dict[str, Any] | None = None
        n_layers = None
        for record in shard.records:
            try:
                result = run_evaluate(
                    [Example(record.text or "", record.label)], self.loaded, list(spec.methods),
                    target=record.target if record.target is not None else spec.target, output=spec.output,
                    truncate=spec.truncate, seed=seed, first_index=record.row, graphs=list(spec.graphs),
                    **options, **spec.method_options,
                )
            except AttnflowError as exc:
                skipped.append({"example": record.row, "reason": f"error: {exc}"})
                continue
            example = result.examples[0]
            frame = result.to_dataframe()
            n_layers = result.n_layers
            described = json.dumps(_plain(example.target), sort_keys=True)
            numbers = [c for c in frame.columns if c not in _EVALUATION_SHARED]
            settings = {
                "target": result.target, "methods": list(result.methods), "ground_truths": list(result.ground_truths),
                "n_layers": result.n_layers, "output": result.output, "percents": list(result.percents),
                "faithfulness_layer": result.faithfulness_layer, "options": result.options,
            }
            for row in frame.itertuples(index=False):
                row = row._asdict()
                method, layer = row["method"], int(row["layer"])
                base["example"].append(record.row)
                base["label"].append(_label(record.label, spec.label_type))
                base["method"].append(method)
                base["layer"].append(layer)
                base["output"].append(str(result.output))
                base["n_tokens"].append(len(example.tokens))
                base["tokens"].append(list(example.tokens))
                base["special"].append(_special_mask(len(example.tokens), example.special_positions))
                base["scores"].append(example.scores[method][layer - 1].tolist())
                base["target"].append(described)
                base["truncated"].append(False if not spec.truncate else _was_cut(self.loaded, record.text))
                for name in numbers:
                    value = row[name]
                    extra.setdefault(name, []).append(None if value is None else float(value))
                special.append(list(example.special_positions))
                if result.faithfulness_layer is not None:
                    here = layer == result.faithfulness_layer and method in example.faithfulness
                    random_scores = example.faithfulness.get("random") if here else None
                    full = float(example.faithfulness[method].full) if here else None
                    extra.setdefault("faithfulness_full", []).append(full)
                    for i, k in enumerate(result.percents):
                        for part in ("comprehensiveness", "sufficiency"):
                            value = None if random_scores is None else float(getattr(random_scores, part)[i])
                            extra.setdefault(f"random_{part}_{k}", []).append(value)
                for truth, values in example.ground_truths.items():
                    truths.setdefault(f"ground_truth_{truth}", []).append(
                        [None if v != v else float(v) for v in values.tolist()]
                    )
        types = schema(spec.label_type)
        arrays = {name: pa.array(base[name], type=kind) for name, kind in types.items()}
        arrays.update({name: pa.array(values, type=pa.float64()) for name, values in extra.items()})
        arrays.update({name: pa.array(values, type=pa.list_(pa.float64())) for name, values in truths.items()})
        arrays["special_positions"] = pa.array(special, type=pa.list_(pa.int32()))
        metadata = {"shard": shard.shard, "examples": len(shard.records), "skipped": skipped, "n_layers": n_layers,
                    "run": spec.run, "evaluation": _plain(settings)}
        return pa.table(arrays).replace_schema_metadata({"attnflow": json.dumps(metadata)})

    def _model_pass(self, bound: Any, input_ids: Any, example: int) -> Any:
        """The attribution methods' model pass of one row (its random baseline seeded by the row's example)."""

        if self._point is None:
            self._point = gradient_point(self.loaded)
        return AttributionInputs(self.loaded, bound, list(input_ids), attribution_blank_id(self.loaded), index=example,
                                 point=self._point, **(self.spec.attribution or {}))

    def _target(self, spec: str | None) -> Any:
        if spec not in self._targets:

            self._targets[spec] = resolve_target(spec, self.loaded)
        return self._targets[spec]


def schema(label_type: str) -> dict[str, Any]:
    """Column name -> pyarrow type of a shard's rows (``label_type`` ``"int"`` or ``"string"``): all but ``text``.

    Examples
    --------
    >>> list(schema("int")) == [name for name in COLUMNS if name != "text"]
    True
    """
    import pyarrow as pa

    return {
        "example": pa.int64(),
        "label": pa.int64() if label_type == "int" else pa.string(),
        "method": pa.string(),
        "layer": pa.int32(),
        "output": pa.string(),
        "n_tokens": pa.int32(),
        "tokens": pa.list_(pa.string()),
        "special": pa.list_(pa.bool_()),
        "scores": pa.list_(pa.float64()),
        "target": pa.string(),
        "truncated": pa.bool_(),
    }


def _word_types() -> dict[str, Any]:
    import pyarrow as pa

    return {"words": pa.list_(pa.string()), "word_scores": pa.list_(pa.float64())}


def _special_mask(n: int, positions: Any) -> list[bool]:
    """``[True where a special token is]`` over ``n`` positions.

    Examples
    --------
    >>> _special_mask(4, (0, 3))
    [True, False, False, True]
    """
    marked = {int(p) for p in positions}
    return [i in marked for i in range(n)]


#: Columns of ``EvaluationResult.to_dataframe`` that the batch rows already hold in their own form.
_EVALUATION_SHARED = frozenset(
    {"example", "text", "label", "method", "layer", "n_tokens", "target_class", "target_label", "target_value"}
)


def _was_cut(loaded: Any, text: str | None) -> bool:
    limit = loaded.max_length
    return bool(text) and limit is not None and len(loaded.tokenizer(text)["input_ids"]) > limit



def _add_rows(
    columns: dict[str, list[Any]], scores: Any, methods: Any, output: Any, tokens: Any, special: Any, words: Any,
    **cells: Any,
) -> None:
    """One example's rows into ``columns``: one per method x layer of ``scores``, with ``cells`` repeated on each.

    An attribution method (:mod:`attnflow.methods.attribution`) gives one row, at layer 0: the input.

    ``special`` are the special tokens' positions; ``words``, when not ``None``, the
    :class:`attnflow.words.WordGroups` that ``words`` and ``word_scores`` come from.
    """

    mask = _special_mask(len(tokens), special)
    for method in methods:
        values = scores[method]
        at_input = is_attribution(method)  # one row, layer 0: the input (the same scores at every layer)
        if at_input:
            values = values[:1]
        summed = words.sum_scores(values) if words is not None else None
        for layer in range(values.shape[0]):
            columns["method"].append(method)
            columns["layer"].append(0 if at_input else layer + 1)
            columns["output"].append(str(output))
            columns["n_tokens"].append(len(tokens))
            columns["tokens"].append(list(tokens))
            columns["special"].append(mask)
            columns["scores"].append(values[layer].tolist())
            if summed is not None:
                columns["words"].append(list(words.labels))
                columns["word_scores"].append(summed[layer].tolist())
            for name, value in cells.items():
                columns[name].append(value)


def _shard_table(
    columns: dict[str, list[Any]], types: dict[str, Any], shard: Shard, skipped: list[dict[str, Any]], n_layers: Any,
    run: str,
) -> Any:
    """The pyarrow Table of a shard's rows, the shard's bookkeeping (and its run) in its ``attnflow`` metadata."""
    import pyarrow as pa

    metadata = {"shard": shard.shard, "examples": len(shard.records), "skipped": skipped, "n_layers": n_layers,
                "run": run}
    return pa.table(
        {name: pa.array(columns[name], type=kind) for name, kind in types.items()},
    ).replace_schema_metadata({"attnflow": json.dumps(metadata)})


def _described(target: Any) -> str | None:
    """A target as the ``target`` column holds it: canonical JSON, or ``None``."""
    return None if target is None else json.dumps(_plain(target), sort_keys=True)

def _label(label: Any, label_type: str) -> Any:
    if label is None or label_type == "int":
        return label
    return str(label)


def _plain(value: Any) -> Any:

    return to_jsonable(value)
