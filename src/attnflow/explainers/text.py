"""``attnflow.explain``: text in, per-method token scores out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..core import (  # noqa: F401  (check_graph_options, explain_attentions: imported from here too)
    DEFAULT_METHODS,
    check_graph_options,
    explain_attentions,
    method_names,
    score_capture,
    wants_importance,
)
from ..errors import AttnflowError
from ..explanation import Explanation
from ..methods import get_method
from ..outputs import Output

#: The note an explanation carries when ``target`` was given but no chosen method uses it.
TARGET_IGNORED = "the target is ignored: only grad-rollout and head fusion 'importance' use one."


def explain(
    text: str,
    model: Any = None,
    methods: Sequence[str] | str = DEFAULT_METHODS,
    output: Output | str | None = None,
    target: Any = None,
    *,
    tokenizer: Any = None,
    truncate: bool = False,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
    captured: Any = None,
    generate: int | None = None,
    words: bool = False,
    graph: Sequence[str] | str | None = None,
    decoder_text: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    ig_steps: int = 50,
    lime_samples: int = 200,
    max_passes: int = 1000,
    seed: int = 0,
    mixing: Any = None,
    every_output: str | None = None,
    **method_options: Any,
) -> Explanation:
    """Explain which input tokens a model's output draws on, with each method in ``methods``.

    Parameters
    ----------
    text
        The input text.
    model
        ``None`` for the bundled MiniLM, a bundled name (``"minilm"``), a local
        folder, a Hugging Face id already in the local cache, a loaded
        transformers model (give ``tokenizer`` too) or an ``attnflow.capture.LoadedModel``.
    methods
        Registered method names (see ``attnflow.available_methods()``).
    output
        The output position to explain: an index, ``"cls"``, ``"last"`` or
        ``"mean"``. ``None`` picks ``"cls"`` for encoders and ``"last"`` for decoders.
    target
        What target-dependent methods explain (``grad-rollout``, ``head_fusion="importance"``):
        any spec of :mod:`attnflow.capture.targets` — ``"predicted"`` (default for
        classifiers and causal LMs), a class index or label, ``"cosine:TEXT"``,
        ``"norm"`` (default for bare encoders), a next token. When a chosen method
        needs it, the result records the resolved target (class, label, value);
        otherwise ``target`` is recorded as given.
    truncate
        Cut texts longer than the model's maximum instead of raising.
    progress
        Called as ``progress(done, total)`` by long computations (flow).
    captured
        The attention of ``text`` already captured with this model
        (:func:`attnflow.capture.capture_attention`), so it is not captured again
        (``attnflow explain --html`` reuses it for the report); or the
        :class:`~attnflow.capture.plan.PlannedCapture` of one pass over ``text``
        (:func:`attnflow.capture.plan.capture_planned`), whose mixing tensors and
        bound target (bound to this ``target``) are used too. Without it, one pass
        records all three.
    generate
        For a decoder-only language model: continue ``text`` greedily by up to this
        many tokens, then explain the answer (:mod:`attnflow.generation`). The result
        has ``output="answer"``: ``scores`` are the mean over the answer tokens, each
        explained at the position that predicted it (``answer_token(k)`` gives token
        ``k`` alone; ``grad-rollout`` explains its logit, head importance its log-probability). ``output``,
        ``target`` and ``captured`` cannot be given with it.
    words
        Also group the tokens into words (:mod:`attnflow.words`); ``word_scores``
        sums the pieces' scores.
    graph
        The token-to-token graph the methods run over, or a list of them
        (:mod:`attnflow.mixing`): ``"attention"`` (default: the attention weights,
        the methods add the residual), ``"norm"``, ``"globenc"``, ``"alti"``,
        ``"value-zeroing"`` (context-mixing graphs with the residual inside).
        Results over a context-mixing graph are keyed ``GRAPH/METHOD``
        (``"alti/rollout"``); over attention they keep the method's name.
        ``residual`` and gradient methods are for the attention graph only.
    decoder_text
        For an encoder–decoder model (T5, BART, Marian): the target the decoder
        reads (teacher forcing); ``text`` is the source. Or give ``generate=N`` to
        let the model write the target greedily. The result is a
        :class:`attnflow.explainers.seq2seq.Seq2SeqExplanation` over the source and
        target tokens (:func:`attnflow.explainers.seq2seq.explain_seq2seq`, which
        says what ``output`` and ``target`` mean there).
    dtype, device
        Load the model in this precision (``"bfloat16"``, ``"float16"``, ``"float32"``;
        ``None``: as saved) and on this device (``"cpu"``, ``"cuda"``, ``"auto"``;
        ``None``: where it is), as :func:`attnflow.capture.load_model` does. Rows of
        half-precision attention are renormalised in float64; a note gives the
        largest correction (docs/capture.md).
    mixing
        With a context-mixing ``graph``: the text's :class:`~attnflow.mixing.MixingCapture`
        when you have it (:func:`attnflow.mixing.capture_text`), so the model does not run again.
    every_output
        ``None``, or ``"auto"``, ``"all"``, ``"chosen"``: also compute every output's scores,
        as the HTML report shows them, into ``every_output`` of the result
        (:func:`attnflow.core.score_capture`).
    ig_steps, lime_samples, max_passes, seed
        For the attribution methods (:mod:`attnflow.methods.attribution`: ``saliency``,
        ``grad-x-input``, ``integrated-gradients``, ``occlusion``, ``gradient-shap``, ``lime``,
        ``random``), which take the model pass and ``target`` and score the input, not a
        layer: their ``(n,)`` scores fill every layer's row, ``options["input_methods"]``
        names them (layer ``input``). Texts of encoder and decoder-only models only.
    **method_options
        ``residual``, ``head_fusion``, ``discard_ratio``, ``start_layer``: given to
        the methods that accept them. ``head_fusion="importance"`` weights each
        head by its importance for ``target`` on this text (``|dS/dxi|``, the
        gradient of the target's log-probability, or of its cosine / norm, with
        respect to a mask scaling the head; Michel et al. 2019); the weights are
        recorded in ``options["head_importance"]``.

    Examples
    --------
    >>> e = explain("The cat sat.", methods=("rollout",))
    >>> e.tokens[0], e.scores["rollout"].shape
    ('[CLS]', (6, 6))
    """
    from ..capture import load_model

    if not isinstance(text, str):
        several = isinstance(text, (list, tuple))
        raise AttnflowError(
            f"The 'text' parameter must be one string; got {type(text).__name__}"
            + (" (call explain once per text)." if several else ".")
        )
    if generate is not None:  # before the model loads, in the caller's own word
        from ..generation import check_new_tokens

        generate = check_new_tokens(generate, "generate")
    from ..methods.attribution import check_attribution_model, check_attribution_options, split_methods

    methods, inputs = split_methods(method_names(methods))
    check_attribution_options(inputs, ig_steps=ig_steps, lime_samples=lime_samples, max_passes=max_passes)
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code, dtype=dtype, device=device)
    check_attribution_model(inputs, loaded)
    from ..capture.seq2seq import is_seq2seq_model

    if decoder_text is not None or is_seq2seq_model(loaded):
        from .seq2seq import explain_seq2seq_call

        return explain_seq2seq_call(
            text, loaded, methods + inputs, output, target, decoder_text=decoder_text, generate=generate,
            truncate=truncate, progress=progress, captured=captured, words=words, graph=graph,
            every_output=every_output, attribution={"ig_steps": ig_steps, "lime_samples": lime_samples,
                                                    "max_passes": max_passes, "seed": seed} if inputs else None,
            **method_options,
        )
    if generate is not None:
        from ..generation import explain_generation
        from ..mixing import context_mixing, graph_names

        if graph is not None and context_mixing(graph_names(graph)):
            raise AttnflowError(
                "The 'graph' parameter cannot be given with 'generate' for a decoder-only model: a generated answer "
                "is explained over the attention graph only."
            )

        given = [name for name, value in (("output", output), ("target", target), ("captured", captured))
                 if value is not None]
        if given:
            raise AttnflowError(
                f"The {' and '.join(repr(g) for g in given)} parameter(s) cannot be given with 'generate': a generated "
                "answer is explained at the positions that predicted its tokens, for those tokens."
            )
        attribution = {"ig_steps": ig_steps, "lime_samples": lime_samples, "max_passes": max_passes, "seed": seed}
        return explain_generation(
            text, loaded, generate, methods + inputs, truncate=truncate, progress=progress, words=words,
            attribution=attribution if inputs else None, every_output=every_output, **method_options,
        ).explanation
    from ..capture.plan import PlannedCapture, capture_planned, fits, heads_to_capture
    from ..capture.targets import resolve_target
    from ..mixing import context_mixing, graph_names

    graphs = graph_names(graph)
    others = context_mixing(graphs)
    if others:
        check_graph_options(graphs, methods, method_options)
    heads = heads_to_capture(methods, method_options)  # fused while the model runs when the methods allow it
    wants_target = target_needed(methods, method_options) or bool(inputs)
    resolved = resolve_target(target, loaded) if wants_target else None
    bound = None
    if isinstance(captured, PlannedCapture):
        captured, mixing, bound = captured.captured, mixing if mixing is not None else captured.mixing, captured.bound
    if captured is None:  # one pass: the attention, what every context-mixing graph needs, the target
        planned = capture_planned(text, loaded, heads=heads, mixing=bool(others and methods) and mixing is None,
                                  target=resolved, truncate=truncate)
        captured, mixing, bound = planned.captured, mixing if mixing is not None else planned.mixing, planned.bound
    elif captured.text != text:
        raise AttnflowError("The 'captured' attention must be of the text being explained.")
    elif not fits(captured, heads):
        raise AttnflowError(
            f"The 'captured' attention holds the heads fused by {captured.head_fusion!r}; these methods and options "
            f"need {'every head' if heads == 'all' else repr(heads)}: capture with heads='all'."
        )
    if output is None:
        output = "last" if captured.is_causal else "cls"
    gradients, options = None, dict(method_options)
    if resolved is not None:
        if bound is None:  # a capture the caller made without the target: bind needs its own pass
            bound = resolved.bind(loaded, captured.input_ids)
        if target_needed(methods, method_options):
            gradients, options = target_inputs(loaded, bound, captured.input_ids, methods, method_options)
    if others and mixing is None and methods:  # one hooked forward pass serves every analytic graph
        from ..mixing import capture_mixing

        mixing = capture_mixing(loaded, captured.input_ids)
    model_pass = _model_pass(loaded, bound, captured, ig_steps, lime_samples, max_passes, seed) if inputs else None
    found = score_capture(captured, methods + inputs, graphs=graphs, output=output, mixing=mixing,
                          gradients=gradients, every_output=every_output, progress=progress, model_pass=model_pass,
                          **options)
    result = found.explanation
    result.every_output = found.every_output
    if bound is not None:
        result.options = {**result.options, **_recorded_options(method_options, options)}
    elif target is not None:
        result.notes.append(TARGET_IGNORED)
    result.target = bound.describe() if bound is not None else target
    if others:
        result.options["graph"] = list(graphs)
    result.model_name = captured.model_name
    result.special_positions = tuple(captured.special_positions)
    result.text = captured.text
    for note in (correction_note(captured), unknown_note(loaded.tokenizer, captured.input_ids)):
        if note:
            result.notes.append(note)
    if words:
        from ..words import word_groups

        result.words = word_groups(loaded, captured.input_ids, captured.text)
    return result


def unknown_note(tokenizer: Any, input_ids: Sequence[int]) -> str | None:
    """A note when the text became the tokenizer's unknown token (a vocabulary without its characters, or a
    tokenizer that is not the model's), or ``None``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> print(unknown_note(SimpleNamespace(unk_token_id=0, unk_token="[UNK]"), [5, 0, 0, 7]))
    2 of 4 tokens are the unknown token [UNK]: the text has characters the vocabulary lacks, or the tokenizer \
is not the model's.
    """
    unknown = getattr(tokenizer, "unk_token_id", None)
    count = sum(1 for i in input_ids if unknown is not None and int(i) == unknown)
    if not count:
        return None
    return (
        f"{count} of {len(input_ids)} tokens are the unknown token {getattr(tokenizer, 'unk_token', '')}: the text "
        "has characters the vocabulary lacks, or the tokenizer is not the model's."
    )


def _model_pass(
    loaded: Any, bound: Any, captured: Any, ig_steps: int, lime_samples: int, max_passes: int, seed: int
) -> Any:
    """The attribution methods' model pass of this text: the model, its bound target, the ids and the blank id."""
    from ..capture.perturb import attribution_blank_id
    from ..methods.attribution import AttributionInputs

    return AttributionInputs(loaded, bound, list(captured.input_ids), attribution_blank_id(loaded), ig_steps=ig_steps,
                             lime_samples=lime_samples, seed=seed, max_passes=max_passes)


def correction_note(captured: Any) -> str | None:
    """The note for attention rows renormalised in float64 (half-precision models), or ``None`` when they were exact.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> print(correction_note(SimpleNamespace(row_correction=0.0028)))
    attention rows renormalised in float64: the model's rows summed to 1 within 0.0028 (half precision).
    """
    from ..capture._reduce import EXACT_ROWS

    correction = float(getattr(captured, "row_correction", 0.0) or 0.0)
    if correction <= EXACT_ROWS:
        return None
    return (
        f"attention rows renormalised in float64: the model's rows summed to 1 within {correction:.2g} "
        "(half precision)."
    )


def target_needed(methods: Sequence[str] | str, method_options: dict[str, Any]) -> bool:
    """Whether these methods and options need a target: a gradient method, or ``head_fusion="importance"``.

    Examples
    --------
    >>> target_needed(["rollout"], {}), target_needed(["grad-rollout"], {})
    (False, True)
    >>> target_needed("rollout", {"head_fusion": "importance"})
    True
    """
    names = method_names(methods)
    return wants_importance(method_options) or any(get_method(name).needs_gradients for name in names)


def target_inputs(
    loaded: Any, bound: Any, input_ids: Sequence[int], methods: Sequence[str] | str, method_options: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """What the target gives the methods for one input: attention gradients and importance weights.

    Returns ``(gradients, options)``: ``gradients`` is what grad-rollout reads of ``dS/dA``
    for the target's score (Chefer et al.), ``mean_h max(0, dS/dA * A)`` per layer as a
    :class:`attnflow.graph.WeightedAttention` ``(L, n, n)``, when a chosen
    method needs it, else ``None``;
    ``options`` is ``method_options`` with ``head_fusion="importance"`` replaced by
    the ``(L, H)`` head importance on this input (and recorded under ``"head_importance"``).
    Used by :func:`explain` and :func:`attnflow.evaluate`, so both compute the same thing.
    """
    from ..capture.gradients import target_gradients

    names = method_names(methods)
    options = dict(method_options)
    gradients = None
    if any(get_method(name).needs_gradients for name in names):
        from ..capture.gradients import weighted_attention

        # grad-rollout reads mean_h max(0, dS/dA * A) only: reduced layer by layer in the backward pass
        gradients = weighted_attention(loaded, bound, input_ids)
    if wants_importance(method_options):
        from ..graph import fusion_weights

        found = target_gradients(loaded, bound, input_ids, objective="log_probability")
        options["head_fusion"] = fusion_weights(np.abs(found.head_gradients))
    return gradients, options


def _recorded_options(given: dict[str, Any], used: dict[str, Any]) -> dict[str, Any]:
    recorded = dict(given)
    if wants_importance(given):
        recorded["head_fusion"] = "importance"
        recorded["head_importance"] = np.asarray(used["head_fusion"]).tolist()
    return recorded


