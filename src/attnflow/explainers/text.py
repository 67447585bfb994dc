"""``attnflow.explain``: text in, per-method token scores out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ..explanation import Explanation
from ..graph import as_attention_array
from ..methods import available_methods, get_method
from ..outputs import Output, resolve_output

DEFAULT_METHODS: tuple[str, ...] = ("raw", "rollout")

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
        (``attnflow explain --html`` reuses it for the report).
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
    from ..capture import capture_attention, load_model

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
    if inputs and generate is not None:
        raise AttnflowError(f"{inputs[0]} explains a text, not a generated answer; leave out generate.")
    from ..capture.seq2seq import is_seq2seq_model

    if decoder_text is not None or is_seq2seq_model(loaded):
        from .seq2seq import explain_seq2seq_call

        return explain_seq2seq_call(
            text, loaded, methods, output, target, decoder_text=decoder_text, generate=generate, truncate=truncate,
            progress=progress, captured=captured, words=words, graph=graph, **method_options,
        )
    if generate is not None:
        from ..generation import explain_generation
        from ..mixing import ATTENTION, graph_names

        if graph is not None and graph_names(graph) != [ATTENTION]:
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
        return explain_generation(
            text, loaded, generate, methods, truncate=truncate, progress=progress, words=words, **method_options
        ).explanation
    from ..capture.plan import capture_heads, fits

    heads = capture_heads(methods, method_options)  # fused while the model runs when the methods allow it
    if captured is None:
        captured = capture_attention(text, loaded, truncate=truncate, heads=heads)
    elif captured.text != text:
        raise AttnflowError("The 'captured' attention must be of the text being explained.")
    elif not fits(captured, heads):
        raise AttnflowError(
            f"The 'captured' attention holds the heads fused by {captured.head_fusion!r}; these methods and options "
            f"need {'every head' if heads == 'all' else repr(heads)}: capture with heads='all'."
        )
    if output is None:
        output = "last" if captured.is_causal else "cls"
    from ..mixing import ATTENTION, graph_names

    graphs = graph_names(graph)
    if graphs != [ATTENTION]:
        check_graph_options(graphs, methods, method_options)
    gradients, options, bound = None, dict(method_options), None
    if target_needed(methods, method_options) or inputs:
        from ..capture.targets import resolve_target

        bound = resolve_target(target, loaded).bind(loaded, captured.input_ids)
        if target_needed(methods, method_options):
            gradients, options = target_inputs(loaded, bound, captured.input_ids, methods, method_options)
    if not methods:
        from ..explanation import Explanation
        from ..outputs import resolve_output

        result = Explanation(tokens=list(captured.tokens), scores={},
                             output=resolve_output(output, len(captured.tokens)))
    elif graphs == [ATTENTION]:
        result = explain_attentions(
            captured.attentions,
            captured.tokens,
            methods=methods,
            output=output,
            progress=progress,
            gradients=gradients,
            **options,
        )
    else:
        result = _explain_graphs(graphs, loaded, captured, methods, output, progress, gradients, options)
    if inputs:
        _add_attributions(result, inputs, loaded, bound, captured, ig_steps, lime_samples, max_passes, seed)
    if bound is not None:
        result.options = {**result.options, **_recorded_options(method_options, options)}
    elif target is not None:
        result.notes.append(TARGET_IGNORED)
    result.target = bound.describe() if bound is not None else target
    if graphs != [ATTENTION]:
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


def _add_attributions(
    result: Explanation, inputs: list[str], loaded: Any, bound: Any, captured: Any, ig_steps: int,
    lime_samples: int, max_passes: int, seed: int,
) -> None:
    """Score the input with each attribution method, ``(n,)`` repeated at every layer, recorded at layer ``input``."""
    from ..capture.perturb import blank_token_id
    from ..methods.attribution import INPUT_LAYER, AttributionInputs, attribution_scores, check_passes

    ids = list(captured.input_ids)
    check_passes(inputs, len(ids), max_passes)
    blank = blank_token_id(loaded, "unk") if getattr(loaded.tokenizer, "unk_token_id", None) is not None else 0
    for name in inputs:
        given = AttributionInputs(loaded, bound, ids, blank, ig_steps=ig_steps, lime_samples=lime_samples, seed=seed)
        result.scores[name] = np.tile(attribution_scores(name, given), (captured.n_layers, 1))
    result.options = {**result.options, "input_methods": {name: INPUT_LAYER for name in inputs}}


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


def check_graph_options(graphs: Sequence[str], methods: Sequence[str] | str, method_options: dict[str, Any]) -> None:
    """Refuse what only the attention graph takes: ``residual``, and methods that need attention gradients.

    Examples
    --------
    >>> check_graph_options(["alti"], ["rollout"], {"residual": 0.3})
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The 'residual' option weighs the residual added to attention weights; the \
alti graph already contains the residual stream. Leave it out, or use graph='attention' only.
    """
    others = [name for name in graphs if name != "attention"]
    if not others:
        return
    if "residual" in method_options and method_options["residual"] is not None:
        raise AttnflowError(
            "The 'residual' option weighs the residual added to attention weights; the "
            f"{', '.join(others)} graph{'s' if len(others) > 1 else ''} already contain"
            f"{'' if len(others) > 1 else 's'} the residual stream. Leave it out, or use graph='attention' only."
        )
    gradient_methods = [name for name in method_names(methods) if get_method(name).needs_gradients]
    if gradient_methods:
        raise AttnflowError(
            f"Method {gradient_methods[0]!r} weighs attention weights by their gradients and runs on the attention "
            f"graph only; drop the {', '.join(others)} graph or the method."
        )
    if "attention" not in graphs and not _mean_fusion(method_options.get("head_fusion")):
        raise AttnflowError(
            f"The 'head_fusion' option combines attention heads; the {', '.join(others)} "
            f"graph{'s sum' if len(others) > 1 else ' sums'} every head. Leave it out, or add graph='attention'."
        )


def _mean_fusion(fusion: Any) -> bool:
    """Whether ``head_fusion`` is the default (absent or ``"mean"``); an array of head weights is not."""
    return fusion is None or (isinstance(fusion, str) and fusion == "mean")


def _explain_graphs(
    graphs: Sequence[str], loaded: Any, captured: Any, methods: Sequence[str] | str, output: Any,
    progress: Any, gradients: Any, options: dict[str, Any],
) -> Explanation:
    """Run ``methods`` over each graph and merge the results, keyed ``GRAPH/METHOD`` off the attention graph."""
    from ..mixing import ATTENTION, capture_mixing, get_graph, result_key

    scores: dict[str, np.ndarray] = {}
    labels: dict[str, list[str]] = {}
    solutions: dict[str, Any] = {}
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    notes: list[str] = []
    capture, position = None, output
    for name in graphs:
        if name == ATTENTION:
            part = explain_attentions(captured.attentions, captured.tokens, methods=methods, output=output,
                                      progress=progress, gradients=gradients, **options)
        else:
            if capture is None:  # one hooked forward pass serves every analytic graph
                capture = capture_mixing(loaded, captured.input_ids)
            kept = {key: value for key, value in options.items() if key not in ("residual", "head_fusion")}
            graph = get_graph(name)
            part = explain_attentions(graph.matrices(capture), captured.tokens, methods=methods,
                                      output=output, progress=progress, residual=0.0, **kept)
            product = graph.rollout_scores(capture, part.output) if "rollout" in part.scores else None
            if product is not None:  # GlobEnc: rollout is the authors' product of the raw matrices
                part.scores["rollout"] = product
        prefix = "" if name == ATTENTION else f"{name} graph: "
        scores.update({result_key(name, key): value for key, value in part.scores.items()})
        labels.update({result_key(name, key): value for key, value in part.token_labels.items()})
        solutions.update({result_key(name, key): value for key, value in part.solutions.items()})
        bounds.update({result_key(name, key): value for key, value in part.bounds.items()})
        notes.extend(prefix + note for note in part.notes)
        position = part.output
    if not _mean_fusion(options.get("head_fusion")) and ATTENTION in graphs:
        notes.append("head_fusion applies to the attention graph only; context-mixing graphs sum every head.")
    return Explanation(tokens=list(captured.tokens), scores=scores, output=position, options=dict(options),
                       notes=notes, token_labels=labels, solutions=solutions, bounds=bounds)


def method_names(methods: Sequence[str] | str) -> list[str]:
    """``methods`` as a list of names: one name, or any iterable of names.

    Examples
    --------
    >>> method_names("rollout"), method_names(("raw", "flow"))
    (['rollout'], ['raw', 'flow'])
    """
    if isinstance(methods, str):
        return [methods]
    try:
        names = list(methods)
    except TypeError:
        names = None
    if names is None or not all(isinstance(name, str) for name in names):
        raise AttnflowError(
            f"The 'methods' parameter must be a method name or a list of them; got {methods!r} instead."
        )
    return names


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
    return _wants_importance(method_options) or any(get_method(name).needs_gradients for name in names)


def target_inputs(
    loaded: Any, bound: Any, input_ids: Sequence[int], methods: Sequence[str] | str, method_options: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """What the target gives the methods for one input: attention gradients and importance weights.

    Returns ``(gradients, options)``: ``gradients`` is what grad-rollout reads of ``dS/dA``
    for the target's score (Chefer et al.), ``mean_h max(0, dS/dA * A)`` per layer as a
    :class:`attnflow.methods.grad_rollout.WeightedAttention` ``(L, n, n)``, when a chosen
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
    if _wants_importance(method_options):
        from ..heads.analysis import fusion_weights

        found = target_gradients(loaded, bound, input_ids, objective="log_probability")
        options["head_fusion"] = fusion_weights(np.abs(found.head_gradients))
    return gradients, options


def _wants_importance(method_options: dict[str, Any]) -> bool:
    fusion = method_options.get("head_fusion")
    return isinstance(fusion, str) and fusion.strip().lower() == "importance"


def _recorded_options(given: dict[str, Any], used: dict[str, Any]) -> dict[str, Any]:
    recorded = dict(given)
    if _wants_importance(given):
        recorded["head_fusion"] = "importance"
        recorded["head_importance"] = np.asarray(used["head_fusion"]).tolist()
    return recorded


def explain_attentions(
    attentions: Any,
    tokens: Sequence[str] | None = None,
    *,
    methods: Sequence[str] | str = DEFAULT_METHODS,
    output: Output | str = "cls",
    progress: Callable[[int, int], None] | None = None,
    gradients: Any = None,
    **method_options: Any,
) -> Explanation:
    """Run methods on attention you already have: ``(L, H, n, n)``, ``(L, n, n)`` or a list.

    ``gradients`` (``(L, H, n, n)``, the target's gradient with respect to each
    attention weight, or a :class:`attnflow.methods.grad_rollout.WeightedAttention`)
    is given to the methods that need it (``grad-rollout``);
    without it they are refused. ``head_fusion`` may be an ``(L, H)`` array of
    head weights, e.g. ``attnflow.heads.analyze_heads(...).importance``.

    Examples
    --------
    >>> a = np.full((2, 1, 3, 3), 1 / 3)
    >>> explain_attentions(a, ["x", "y", "z"], methods="rollout").scores["rollout"][-1]
    array([0.5 , 0.25, 0.25])
    """
    # A fused float32 capture stays as it is (each method validates what it reads; rollout and raw read it in
    # place): a float64 copy of SmolLM2's 30 layers at 8192 tokens would be 16 GB.
    array = as_attention_array(attentions, keep_float32=True)
    n = array.shape[-1]
    if tokens is None:
        tokens = [str(i) for i in range(n)]
    if isinstance(tokens, np.ndarray):
        tokens = tokens.tolist()
    if isinstance(tokens, (str, bytes)) or not isinstance(tokens, Sequence) or not all(
        isinstance(token, str) for token in tokens
    ):
        raise AttnflowError(f"The 'tokens' parameter must be a list of strings, one per position; got {tokens!r}.")
    if len(tokens) != n:
        raise AttnflowError(
            f"The 'tokens' parameter must hold one token per attention position ({n}); "
            f"got {len(tokens)} instead."
        )
    names = method_names(methods)
    if not names:
        raise AttnflowError("The 'methods' parameter must name at least one method.")
    chosen = [get_method(name) for name in names]
    position = resolve_output(output, n)
    # Options of methods not chosen are ignored (the CLI passes the same options to every method);
    # a name no registered method knows is a typo and is refused.
    known = set().union(*(get_method(name).options for name in available_methods())) | {"progress"}
    unknown = set(method_options) - known
    if unknown:
        raise AttnflowError(f"Unknown option(s) {sorted(unknown)}; methods accept {sorted(known)}.")
    if _wants_importance(method_options):
        raise AttnflowError(
            "head_fusion='importance' needs a model and a target: call attnflow.explain(text, model, "
            "target=...), or pass the (L, H) head weights, e.g. attnflow.heads.analyze_heads(...).importance."
        )
    grads = None
    from ..methods.grad_rollout import WeightedAttention

    if isinstance(gradients, WeightedAttention):
        grads = gradients  # grad_rollout checks its (L, n, n) against the attentions
    elif gradients is not None:
        from ..graph import _to_numpy

        grads = _to_numpy(gradients, "gradients")
        if grads.shape != array.shape:
            raise AttnflowError(
                f"The 'gradients' parameter must have the shape of the attentions {array.shape} (L, H, n, n); "
                f"got {grads.shape} instead."
            )
    scores: dict[str, np.ndarray] = {}
    notes: list[str] = []
    labels: dict[str, list[str]] = {}
    solutions: dict[str, Any] = {}
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for method in chosen:
        options = {key: value for key, value in method_options.items() if key in method.options}
        if method.needs_gradients:
            if grads is None:
                raise AttnflowError(
                    f"Method {method.name!r} needs attention gradients for a target; call attnflow.explain "
                    "with a model (and target=...), or pass gradients=(L, H, n, n) "
                    "(attnflow.capture.gradients.attention_gradients)."
                )
            options["gradients"] = grads
        if progress is not None and "progress" in method.options:
            options["progress"] = progress
        if method.annotated is not None:
            scores[method.name], method_notes, method_labels, solution = method.annotated(array, position, **options)
            notes.extend(method_notes)
            labels.update(method_labels)
            if solution is not None:
                solutions[method.name] = solution
            if hasattr(solution, "score_bounds"):  # certified intervals around each score
                bounds[method.name] = solution.score_bounds(position)
        else:
            scores[method.name] = method.scores(array, position, **options)
    return Explanation(
        tokens=list(tokens),
        scores=scores,
        output=position,
        options={key: value for key, value in method_options.items()},
        notes=notes,
        token_labels=labels,
        solutions=solutions,
        bounds=bounds,
    )


