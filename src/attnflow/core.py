"""The explain core: one capture in, every requested method's scores over every requested graph out.

Every entry point that explains an input (``attnflow.explain``, ``attnflow evaluate``,
``attnflow batch`` and the HTML report of ``attnflow explain --html``) turns its capture
into scores here, so each computes the same thing the same way:

- :func:`score_capture`: a capture (and, for context-mixing graphs, its
  :class:`~attnflow.mixing.MixingCapture`) in; a :class:`Scores` out: the explained
  output's :class:`~attnflow.Explanation` (values, flow solutions with their cuts,
  bounds, labels, notes) and, when a report asks, every output's scores per graph
  (:class:`OutputScores`). Where the report needs flow for every output, each graph's
  flow problems are solved once, and the explained output's flow is read from that
  same solution.
- :func:`explain_attentions`: the methods on attention arrays you already have.
- :func:`every_output_scores`: one graph's methods for every output, what a report shows.

The core never runs a model: a capture is its input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import AttnflowError
from .explanation import Explanation
from .graph import _to_numpy, as_attention_array
from .methods import available_methods, get_method
from .methods.attribution import INPUT_LAYER, attribution_scores, check_passes, split_methods
from .methods.flow import FlowSolution, flow_is_exact, solve_flow
from .methods.grad_rollout import WeightedAttention
from .methods.seq2seq import Seq2SeqGraph
from .mixing import ATTENTION, context_mixing, get_graph, graph_names
from .outputs import Output, resolve_output

DEFAULT_METHODS: tuple[str, ...] = ("raw", "rollout")

#: ``every_output="auto"`` computes flow for every output while ``L**2 * n**4`` (a rough
#: count of the work) stays below this: up to about 40 tokens for 6 layers, 28 for 12,
#: a few seconds on two cores with real attention (measured on MiniLM: 34 tokens, 2 s).
FLOW_ALL_OUTPUTS_BUDGET = 1e8

Progress = Callable[[int, int], None]


def explain_attentions(
    attentions: Any,
    tokens: Sequence[str] | None = None,
    *,
    methods: Sequence[str] | str = DEFAULT_METHODS,
    output: Output | str = "cls",
    progress: Callable[[int, int], None] | None = None,
    gradients: Any = None,
    solved: dict[str, Any] | None = None,
    **method_options: Any,
) -> Explanation:
    """Run methods on attention you already have: ``(L, H, n, n)``, ``(L, n, n)`` or a list.

    ``gradients`` (``(L, H, n, n)``, the target's gradient with respect to each
    attention weight, or a :class:`attnflow.graph.WeightedAttention`)
    is given to the methods that need it (``grad-rollout``);
    without it they are refused. ``head_fusion`` may be an ``(L, H)`` array of
    head weights, e.g. ``attnflow.heads.analyze_heads(...).importance``.
    ``solved`` maps a method name to what it already solved on these attentions
    (flow: a :class:`~attnflow.methods.flow.FlowSolution` covering ``output``), which its
    ``annotated`` function reads instead of solving again (:func:`score_capture`).

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
    if wants_importance(method_options):
        raise AttnflowError(
            "head_fusion='importance' needs a model and a target: call attnflow.explain(text, model, "
            "target=...), or pass the (L, H) head weights, e.g. attnflow.heads.analyze_heads(...).importance."
        )
    grads = None

    if isinstance(gradients, WeightedAttention):
        grads = gradients  # grad_rollout checks its (L, n, n) against the attentions
    elif gradients is not None:

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
            if solved and method.name in solved:
                options["solution"] = solved[method.name]
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


@dataclass(frozen=True)
class GraphConflicts:
    """What of the other options only the attention graph takes, with context-mixing graphs among ``graphs``.

    ``others``: the context-mixing graphs; ``residual``: a residual weight was given;
    ``gradient_method``: the first method that weighs attention weights by their gradients;
    ``head_fusion``: a fusion other than the mean with no attention graph to apply it to.
    The one rule; :func:`check_graph_options` and the commands word it for their callers.
    """

    others: list[str]
    residual: bool = False
    gradient_method: str | None = None
    head_fusion: bool = False

    def __bool__(self) -> bool:
        return self.residual or self.gradient_method is not None or self.head_fusion


def graph_conflicts(graphs: Sequence[str], methods: Sequence[str] | str, *, residual: bool = False,
                    head_fusion: Any = None) -> GraphConflicts:
    """Which options conflict with the context-mixing graphs among ``graphs`` (none without one).

    >>> graph_conflicts(["attention", "alti"], ["rollout", "grad-rollout"]).gradient_method
    'grad-rollout'
    >>> bool(graph_conflicts(["attention"], ["grad-rollout"], residual=True))
    False
    """

    others = context_mixing(graphs)
    if not others:
        return GraphConflicts([])
    known = available_methods()
    gradient = [name for name in method_names(methods) if name in known and get_method(name).needs_gradients]
    return GraphConflicts(others, residual=residual, gradient_method=gradient[0] if gradient else None,
                          head_fusion=others == list(graphs) and not _mean_fusion(head_fusion))


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
    found = graph_conflicts(graphs, methods, residual=method_options.get("residual") is not None,
                            head_fusion=method_options.get("head_fusion"))
    others = found.others
    if found.residual:
        raise AttnflowError(
            "The 'residual' option weighs the residual added to attention weights; the "
            f"{', '.join(others)} graph{'s' if len(others) > 1 else ''} already contain"
            f"{'' if len(others) > 1 else 's'} the residual stream. Leave it out, or use graph='attention' only."
        )
    if found.gradient_method:
        raise AttnflowError(
            f"Method {found.gradient_method!r} weighs attention weights by their gradients and runs on the attention "
            f"graph only; drop the {', '.join(others)} graph or the method."
        )
    if found.head_fusion:
        raise AttnflowError(
            f"The 'head_fusion' option combines attention heads; the {', '.join(others)} "
            f"graph{'s sum' if len(others) > 1 else ' sums'} every head. Leave it out, or add graph='attention'."
        )


def _mean_fusion(fusion: Any) -> bool:
    """Whether ``head_fusion`` is the default (absent or ``"mean"``); an array of head weights is not."""
    return fusion is None or (isinstance(fusion, str) and fusion == "mean")




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


def wants_importance(method_options: dict[str, Any]) -> bool:
    """Whether ``head_fusion`` asks for head importance, which needs a model and a target."""
    fusion = method_options.get("head_fusion")
    return isinstance(fusion, str) and fusion.strip().lower() == "importance"


@dataclass
class OutputScores:
    """One graph's methods for every output a report can switch between.

    ``outputs``: the ``K`` outputs (token positions, and ``"mean"`` when it is the explained
    one); ``scores[method]``: ``(L, K, n)``, NaN where not computed; ``notes``: what was left
    out and why; ``flow_solution``: the :class:`~attnflow.methods.flow.FlowSolution` (with its
    cuts) that covers the explained output, or ``None`` without flow.
    """

    outputs: list[int | str]
    scores: dict[str, np.ndarray]
    notes: list[str] = field(default_factory=list)
    flow_solution: Any = field(default=None, repr=False)


@dataclass
class Scores:
    """What :func:`score_capture` computed for one capture.

    ``explanation``: the explained output's scores keyed as :func:`attnflow.mixing.result_key`
    names them (``rollout``, ``alti/flow``), with the flow solutions (cuts included), bounds,
    labels and notes. ``every_output``: when asked, each graph's :class:`OutputScores`
    (keys without the ``GRAPH/`` prefix), what a report shows; else empty. ``matrices``: the
    arrays each graph's methods ran on (``attention``: the captured weights).
    """

    explanation: Explanation
    every_output: dict[str, OutputScores] = field(default_factory=dict)
    matrices: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def flow_for_every_output(n_layers: int, n: int, every_output: str) -> bool:
    """Whether a report computes flow for every output: ``"all"``, or ``"auto"`` within the budget.

    Examples
    --------
    >>> [flow_for_every_output(6, 36, "auto"), flow_for_every_output(12, 64, "auto")]
    [True, False]
    """
    if every_output not in ("auto", "all", "chosen"):
        raise AttnflowError(f"The 'flow_outputs' parameter must be auto, all or chosen; got {every_output!r} instead.")
    return every_output == "all" or (
        every_output == "auto" and float(n_layers) ** 2 * float(n) ** 4 <= FLOW_ALL_OUTPUTS_BUDGET
    )


def every_output_scores(
    attentions: Any,
    methods: Sequence[str],
    position: int | str,
    *,
    given: dict[str, np.ndarray] | None = None,
    given_solution: Any = None,
    flow_outputs: str = "auto",
    progress: Progress | None = None,
    residual: float = 0.5,
    head_fusion: Any = "mean",
) -> OutputScores:
    """Every method's scores for every output of one graph: what a report shows.

    A method registered with ``every_output`` (raw attention, rollout) gives every output
    in one call; flow is solved for every output (``flow_outputs``: ``"all"``, ``"chosen"``
    or ``"auto"``, see :func:`flow_for_every_output`) in one :func:`~attnflow.methods.flow.solve_flow`
    with its cuts, unless ``given_solution`` already covers them. ``given`` holds the explained
    output's ``(L, n)`` scores as :func:`explain_attentions` computed them: they are used as
    they are, and gradient methods (which attention alone cannot give) are shown for that
    output only.

    Examples
    --------
    >>> a = np.full((2, 1, 3, 3), 1 / 3)
    >>> found = every_output_scores(a, ["rollout", "flow"], 0)
    >>> found.scores["flow"].shape, found.flow_solution.groups[:2]
    ((2, 3, 3), [(1, 0), (1, 1)])
    """

    array = as_attention_array(attentions)
    n_layers, _, n, _ = array.shape
    given = given or {}
    names, inputs = split_methods(list(dict.fromkeys(methods)))
    chosen_methods = [get_method(name) for name in names]
    outputs: list[int | str] = list(range(n)) + (["mean"] if position == "mean" else [])
    everything = flow_for_every_output(n_layers, n, flow_outputs)
    label = "the mean output" if position == "mean" else f"output token {position}"
    options = {"residual": residual, "head_fusion": head_fusion}
    notes: list[str] = []
    scores: dict[str, np.ndarray] = {}
    solution = None
    for method in chosen_methods:
        mine = given.get(method.name)
        values = np.full((n_layers, len(outputs), n), np.nan)
        if method.name == "flow":
            solution = given_solution
            exact = isinstance(solution, FlowSolution)  # not certified intervals (FlowBounds)
            solved = [solution] if exact and solution.values.ndim == 3 else []
            todo_flow = [t for t in range(n) if everything or (t == position and solution is None)]
            todo_flow = [t for t in todo_flow if not exact or (n_layers, t) not in solution.groups]
            if todo_flow:  # in one solve, with the cuts; the explained output's cuts may come from it
                solved.append(solve_flow(array, outputs=todo_flow, keep_cuts=True, progress=progress, **options))
                if solution is None and position != "mean":
                    solution = solved[-1]
            if solution is None:  # the mean output, for its cuts
                solution = solve_flow(array, outputs="mean", keep_cuts=True, progress=progress, **options)
            for found in solved:
                normalized = found.normalized()
                for layer, t in found.groups:
                    if layer == n_layers and t is not None:
                        values[:, t] = normalized[:, t, :]
            if mine is None:
                mine = solution.normalized() if position == "mean" else values[:, position]
        if method.needs_gradients:
            if mine is None:
                notes.append(
                    f"Method {method.name} needs attention gradients for a target and cannot be shown from "
                    "attention alone; it was left out."
                )
                continue
            wanted: list[int | str] = []  # only the output explain computed it for
            notes.append(
                f"Method {method.name} explains a target with the model's gradients and was computed for {label} "
                "only; other outputs show it as not computed."
            )
        elif method.every_output is not None or everything:
            wanted = outputs
        else:
            wanted = [position]
            why = (
                f"an input of {n} tokens and {n_layers} layers is too large for every output"
                if flow_outputs == "auto"
                else "it was asked for that output only"
            )
            notes.append(
                f"Method {method.name} was computed for {label} only ({why}); other outputs show it as not computed."
            )
        # what explain (or the flow solve above) computed is not redone
        todo = [t for t in wanted if (mine is None or t != position) and np.isnan(values[:, outputs.index(t)]).all()]
        if todo:
            rows = method.scores_for_outputs(array, todo, progress=progress, **options)
            for index, t in enumerate(todo):
                values[:, outputs.index(t)] = rows[:, index]
        if mine is not None:
            values[:, outputs.index(position)] = mine
        scores[method.name] = values
    found = OutputScores(outputs=outputs, scores=scores, notes=notes, flow_solution=solution)
    for name in inputs:  # attribution methods: what the model gave for the explained output, if anything
        if name in given:
            _add_at_output(found, name, given[name], position)
        else:
            notes.append(f"Method {name} runs the model for a target and cannot be shown from attention alone; "
                         "it was left out.")
    return found


def _add_at_output(found: OutputScores, name: str, values: np.ndarray, position: int | str) -> None:
    """An attribution method's ``(L, n)`` scores into a report's ``found``, at the explained output only."""
    n_layers, n = np.shape(values)
    found.scores[name] = np.full((n_layers, len(found.outputs), n), np.nan)
    found.scores[name][:, found.outputs.index(position)] = values
    label = "the mean output" if position == "mean" else f"output token {position}"
    found.notes.append(f"Method {name} scores the input for the target with the model and was computed for {label} "
                       "only (layer input: the same row at every layer); other outputs show it as not computed.")


def score_capture(
    captured: Any,
    methods: Sequence[str] | str = DEFAULT_METHODS,
    *,
    graphs: Sequence[str] | str | None = None,
    output: Output | str | None = None,
    mixing: Any = None,
    gradients: Any = None,
    every_output: str | None = None,
    progress: Progress | None = None,
    model_pass: Any = None,
    solved: dict[str, Any] | None = None,
    **options: Any,
) -> Scores:
    """Turn one capture into scores for the requested methods, graphs, output and target.

    Parameters
    ----------
    captured
        A :class:`attnflow.capture.CapturedAttention` (or anything with ``attentions``,
        ``tokens`` and ``is_causal``).
    methods
        Attention methods (``raw``, ``rollout``, ``flow``, ``grad-rollout``).
    graphs
        The graphs the methods run over (:mod:`attnflow.mixing`); ``None``: attention only.
        Results over a context-mixing graph are keyed ``GRAPH/METHOD``.
    output
        The explained output; ``None``: ``"last"`` for decoders, ``"cls"`` otherwise.
    mixing
        The :class:`~attnflow.mixing.MixingCapture` of the same input, which the
        context-mixing graphs are built from; required when ``graphs`` names one.
    gradients
        What grad-rollout reads for the target (:func:`attnflow.explainers.text.target_inputs`).
    every_output
        ``None``: the explained output only. ``"auto"``, ``"all"`` or ``"chosen"``: also every
        output's scores per graph, as a report shows them (:func:`every_output_scores`); flow
        for every output is then solved once per graph, and the explained output's flow is
        read from that solve.
    model_pass
        For attribution methods (:mod:`attnflow.methods.attribution`: ``saliency``,
        ``occlusion``, ...): the :class:`~attnflow.methods.attribution.AttributionInputs`
        of this capture (the loaded model, the target bound to these tokens, the token ids),
        which Captum runs the model on. Their ``(n,)`` scores fill every layer's row, keyed
        by the method's name (they score the input, not a graph); ``options["input_methods"]``
        names them (layer ``input``). With ``every_output`` they join the attention graph's
        :class:`OutputScores` (else the first graph's) for the explained output only, unprefixed.
        The pass may read a prefix of the captured tokens (a generated answer token is
        scored on the tokens before it); the tokens after it score 0.
    solved
        What the attention graph's methods already solved on this capture with these
        options (flow: a :class:`~attnflow.methods.flow.FlowSolution` covering ``output``,
        e.g. the ``flow_solution`` of an earlier call's ``every_output``): read, not
        solved again (a generated answer's tokens share one solve).
    options
        ``residual``, ``head_fusion``, ``discard_ratio``, ``start_layer``, ``flow_tolerance``,
        ``flow_seconds``: as :func:`explain_attentions` takes them. ``residual`` and
        ``head_fusion`` are the attention graph's; the context-mixing graphs contain the
        residual and sum every head.

    Examples
    --------
    >>> from attnflow.capture import CapturedAttention
    >>> c = CapturedAttention(np.full((2, 1, 3, 3), 1 / 3), ["a", "b", "c"], [1, 2, 3], (), "toy", False, "a b c")
    >>> found = score_capture(c, ["rollout", "flow"], output=0, every_output="auto")
    >>> found.explanation.scores["flow"].shape, found.every_output["attention"].scores["flow"].shape
    ((2, 3), (2, 3, 3))
    >>> bool(np.array_equal(found.every_output["attention"].scores["flow"][:, 0], found.explanation.scores["flow"]))
    True
    """

    names, inputs = split_methods(method_names(methods))
    if not names and not inputs:
        raise AttnflowError("The 'methods' parameter must name at least one method.")
    if inputs and model_pass is None:
        raise AttnflowError(
            f"Method {inputs[0]!r} runs the model on the input: pass model_pass=AttributionInputs(loaded, bound, "
            "input_ids, blank_id) (attnflow.methods.attribution), or call attnflow.explain with the model."
        )
    chosen = graph_names(graphs)
    if output is None:
        output = "last" if captured.is_causal else "cls"
    others = context_mixing(chosen)
    if others:
        check_graph_options(chosen, names, options)
        if mixing is None and names:
            raise AttnflowError(
                f"The {', '.join(others)} graph needs the input's mixing "
                "capture: pass mixing=attnflow.mixing.capture_mixing(loaded, captured.input_ids)."
            )
    found = Scores(explanation=Explanation(tokens=list(captured.tokens), scores={}, output=output))
    scores: dict[str, np.ndarray] = {}
    labels: dict[str, list[str]] = {}
    solutions: dict[str, Any] = {}
    bounds: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    notes: list[str] = []
    position: Any = output
    for name in chosen:
        if not names:  # attribution methods only: no graph to run
            position = resolve_output(output, len(captured.tokens))
            if every_output is not None:
                outputs = list(range(len(captured.tokens))) + (["mean"] if position == "mean" else [])
                found.every_output[name] = OutputScores(outputs, {})
            continue
        graph = get_graph(name)
        array, kept = graph.capacities(captured, mixing), graph.method_options(options)
        found.matrices[name] = array
        n_layers, n = np.shape(array)[0], np.shape(array)[-1]
        position = resolve_output(output, n)
        presolved: dict[str, Any] = dict(solved or {}) if graph.attention_weights else {}
        if (
            "flow" not in presolved and every_output is not None and "flow" in names and position != "mean"
            and flow_for_every_output(n_layers, n, every_output)
            and flow_is_exact(n_layers, n, kept.get("flow_tolerance"), kept.get("flow_seconds"))
        ):  # every output's flow in one solve; the explained output's is read from it
            presolved["flow"] = solve_flow(
                array, outputs=list(range(n)), keep_cuts=True, progress=progress,
                **{key: kept[key] for key in ("residual", "head_fusion") if key in kept},
            )
        part = explain_attentions(array, captured.tokens, methods=names, output=output, progress=progress,
                                  gradients=gradients if graph.attention_weights else None, solved=presolved, **kept)
        product = graph.rollout_scores(mixing, part.output) if "rollout" in part.scores else None
        if product is not None:  # GlobEnc: rollout is the authors' product of the raw matrices
            part.scores["rollout"] = product
        scores.update({graph.key(key): value for key, value in part.scores.items()})
        labels.update({graph.key(key): value for key, value in part.token_labels.items()})
        solutions.update({graph.key(key): value for key, value in part.solutions.items()})
        bounds.update({graph.key(key): value for key, value in part.bounds.items()})
        notes.extend(graph.note_prefix + note for note in part.notes)
        position = part.output
        if every_output is not None:
            fusion = {key: kept[key] for key in ("residual", "head_fusion") if key in kept}
            found.every_output[name] = every_output_scores(
                array, names, position, given=part.scores, given_solution=part.solutions.get("flow"),
                flow_outputs=every_output, progress=progress, **fusion,
            )
    if not _mean_fusion(options.get("head_fusion")) and others and len(others) < len(chosen):  # beside attention
        notes.append("head_fusion applies to the attention graph only; context-mixing graphs sum every head.")
    recorded = dict(options)
    if inputs:
        recorded["input_methods"] = _score_inputs(captured, inputs, model_pass, position, scores, found.every_output)
    found.explanation = Explanation(
        tokens=list(captured.tokens), scores=scores, output=position, options=recorded, notes=notes,
        token_labels=labels, solutions=solutions, bounds=bounds,
    )
    return found


def shared_solutions(found: Scores) -> dict[str, Any]:
    """What ``found`` solved for every output of the attention graph, for :func:`score_capture`'s ``solved``.

    ``{"flow": solution}`` when its report scores hold exact flow for every output, so
    another output of the same capture and options reads its flow from there; else ``{}``.

    Examples
    --------
    >>> from attnflow.capture import CapturedAttention
    >>> c = CapturedAttention(np.full((2, 1, 3, 3), 1 / 3), ["a", "b", "c"], [1, 2, 3], (), "toy", False, "a b c")
    >>> shared = shared_solutions(score_capture(c, ["flow"], output=0, every_output="all"))
    >>> bool(np.array_equal(score_capture(c, ["flow"], output=2, solved=shared).explanation.scores["flow"],
    ...                     score_capture(c, ["flow"], output=2).explanation.scores["flow"]))
    True
    """

    every = found.every_output.get(ATTENTION)
    solution = None if every is None else every.flow_solution
    if not isinstance(solution, FlowSolution) or solution.values.ndim != 3:  # not certified intervals, not "mean"
        return {}
    top, n = solution.values.shape[0], solution.values.shape[-1]
    return {"flow": solution} if all((top, t) in solution.groups for t in range(n)) else {}


def input_scores(inputs: Sequence[str], model_pass: Any, n_layers: int, n: int) -> dict[str, np.ndarray]:
    """Each attribution method's scores for ``model_pass``: ``(n,)`` repeated at each of ``n_layers`` rows.

    The model pass may read a prefix of the ``n`` tokens (a generated answer token is
    explained on the tokens before it): the tokens after it get 0, as a causal model's
    output there cannot depend on them. The passes are checked against ``max_passes``
    before any method runs.

    Examples
    --------
    >>> from attnflow.methods.attribution import AttributionInputs
    >>> input_scores(["occlusion"], AttributionInputs(None, None, [5, 6, 7], 0, max_passes=3), 6, 3)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: occlusion would run 4 model passes on this text of 3 tokens, over the limit of 3 \
(--max-passes); raise --max-passes or shorten the text.
    """

    length = len(model_pass.input_ids)
    if length > n:
        raise AttnflowError(f"The model pass reads {length} tokens, more than the {n} being explained.")
    check_passes(inputs, length, model_pass.max_passes)  # before any attribution runs
    found = {}
    for name in inputs:
        row = np.zeros(n)
        row[:length] = attribution_scores(name, model_pass)
        found[name] = np.tile(row, (n_layers, 1))
    return found


def _score_inputs(
    captured: Any, inputs: list[str], model_pass: Any, position: int | str, scores: dict[str, np.ndarray],
    every_output: dict[str, OutputScores],
) -> dict[str, str]:
    """Each attribution method's ``(n,)`` scores at every layer's row; in the report, at the explained output only.

    Returns the ``{method: "input"}`` map recorded as ``options["input_methods"]``.
    """

    n_layers, n = np.shape(captured.attentions)[0], len(captured.tokens)
    ids = list(model_pass.input_ids)
    if not ids or ids != list(captured.input_ids)[: len(ids)]:
        raise AttnflowError("The model pass must read the captured tokens (or a prefix of them): give it the "
                            "capture's input_ids.")
    scores.update(input_scores(inputs, model_pass, n_layers, n))

    # the report's attention graph when it has one (an attribution method belongs to no graph)
    shown = every_output.get(ATTENTION, next(iter(every_output.values()), None))
    if shown is not None:
        for name in inputs:
            _add_at_output(shown, name, scores[name], position)
    return {name: INPUT_LAYER for name in inputs}


#: The methods that run on the combined encoder–decoder graph (:mod:`attnflow.methods.seq2seq`).
SEQ2SEQ_METHODS: tuple[str, ...] = ("raw", "rollout", "flow", "grad-rollout")


def check_seq2seq_methods(methods: Sequence[str] | str) -> tuple[list[str], list[str]]:
    """``(attention methods, attribution methods)`` of ``methods``, refusing what the combined graph cannot run.

    Examples
    --------
    >>> check_seq2seq_methods(["flow", "saliency"])
    (['flow'], ['saliency'])
    >>> check_seq2seq_methods(["alti/flow"])
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: Method(s) ['alti/flow'] do not run on encoder-decoder models; available: raw, \
rollout, flow, grad-rollout and the attribution methods.
    """

    names, inputs = split_methods(list(dict.fromkeys(method_names(methods))))
    unknown = [name for name in names if name not in SEQ2SEQ_METHODS]
    if unknown or not (names or inputs):
        raise AttnflowError(
            f"Method(s) {unknown} do not run on encoder-decoder models; available: {', '.join(SEQ2SEQ_METHODS)} "
            "and the attribution methods."
        )
    return names, inputs


def score_seq2seq(
    captured: Any,
    methods: Sequence[str] | str,
    position: int,
    *,
    gradients: Any = None,
    every_output: str | None = None,
    layers: str = "all",
    progress: Progress | None = None,
    model_pass: Any = None,
    residual: float = 0.5,
    head_fusion: str = "mean",
) -> Scores:
    """An encoder–decoder capture's scores for decoder ``position`` over the combined graph (and every output's).

    The graph is :class:`~attnflow.methods.seq2seq.Seq2SeqGraph` (``D = Le + 2 Ld`` layers
    of the ``N = ns + nt`` source and target nodes, residual inside its edges). Each
    method is the text method run on it with residual 0, read at the decoder positions'
    rows; raw attention is the graph's own (half cross, half self). The explanation's
    scores are ``(Ld, N)``, one row per decoder layer, keyed by method; its ``output``
    is ``ns + position``.

    Parameters
    ----------
    captured
        A :class:`attnflow.capture.seq2seq.Seq2SeqAttention`.
    methods
        Names from :data:`SEQ2SEQ_METHODS`, and attribution methods (``saliency``, ...).
    position
        The explained decoder position (``0 <= position < nt``).
    gradients
        For ``grad-rollout``: ``(dS/dA_encoder, dS/dA_decoder, dS/dA_cross)`` for the
        target (:func:`attnflow.capture.seq2seq.seq2seq_gradients`).
    every_output
        ``None``: the explained position only. ``"auto"``, ``"all"`` or ``"chosen"``
        (:func:`flow_for_every_output`): also every decoder position's scores, in
        ``every_output["attention"]`` (:class:`OutputScores` over the target nodes,
        ``(D, nt, N)`` per method, NaN where not computed), from the same computation
        the explanation reads: each flow problem is solved once. Raw attention is at the
        decoder layers, grad-rollout the explained position's only.
    model_pass
        For attribution methods: the :class:`~attnflow.methods.attribution.AttributionInputs`
        of the source and the target prefix up to ``position`` (its ``input_ids`` the source
        ids then those target ids, its target a
        :class:`~attnflow.capture.seq2seq.Seq2SeqTarget`, its point a
        :class:`~attnflow.capture.gradient_point.SourceTargetPoint`). Their ``(N,)`` scores,
        0 on the target positions after ``position``, fill every decoder layer's row
        (layer ``input``, recorded in ``options["input_methods"]``); in ``every_output``,
        at the explained position only.
    layers
        With ``every_output``: ``"all"`` graph layers (what a report draws) or
        ``"decoder"`` layers only (rollout's and flow's every graph layer are then not
        computed, which spares flow its encoder and self-attention sublayers).

    Examples
    --------
    >>> from attnflow.capture.seq2seq import capture_seq2seq
    >>> cap = capture_seq2seq("7 2 9", "reverse", decoder_text="9 2 7")
    >>> found = score_seq2seq(cap, ["rollout", "flow"], 2, every_output="auto")
    >>> found.explanation.scores["flow"].shape, found.every_output["attention"].scores["flow"].shape
    ((2, 8), (6, 4, 8))
    >>> every = found.every_output["attention"].scores
    >>> bool(np.array_equal(every["flow"][[3, 5], 2], found.explanation.scores["flow"]))  # read from one solve
    True
    """

    names, inputs = check_seq2seq_methods(methods)
    if inputs and model_pass is None:
        raise AttnflowError(
            f"Method {inputs[0]!r} runs the model on the source and the target prefix: pass model_pass="
            "AttributionInputs(...) (attnflow.explainers.seq2seq.seq2seq_scores binds it), or call attnflow.explain."
        )
    if layers not in ("all", "decoder"):
        raise AttnflowError(f"The 'layers' parameter must be 'all' or 'decoder'; got {layers!r}.")
    graph = Seq2SeqGraph.from_attentions(
        captured.encoder, captured.decoder, captured.cross, residual=residual, head_fusion=head_fusion
    )
    cap, ns, n, nt = graph.capacities, graph.n_source, graph.n_nodes, graph.n_target
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not 0 <= position < nt:
        raise AttnflowError(f"The decoder position must be from 0 to {nt - 1}; got {position!r}.")
    depth, node = cap.shape[0], graph.target_node(position)
    decoder = [layer - 1 for layer in graph.decoder_layers]
    drawn = list(range(depth)) if layers == "all" else decoder  # the graph layers every output is shown at
    everything = every_output is not None and flow_for_every_output(len(drawn), n, every_output)
    notes: list[str] = []
    every: dict[str, np.ndarray] = {}
    for name in names:
        values = np.full((depth, nt, n), np.nan)
        method = get_method(name)
        if name == "raw":  # the graph's own: half a decoder layer's cross row, half its self row
            values[decoder] = graph.raw_rows()
        elif name == "flow":  # solved at the layers shown only: every graph layer for a report, else the decoder's
            outputs, solved = (list(range(ns, n)), drawn) if everything else ([node], decoder)
            solution = solve_flow(cap, outputs=outputs, layers=[k + 1 for k in solved], residual=0.0,
                                  progress=progress, keep_cuts=False)
            values[solved] = solution.normalized()[solved][:, ns:]
            if every_output is not None and not everything:
                notes.append("flow is in this report for the explained decoder position only (a long input).")
        else:  # the registered method on the layered graph, whose edges hold the residual
            options: dict[str, Any] = {"residual": 0.0} if "residual" in method.options else {}
            if method.needs_gradients:
                if gradients is None:
                    raise AttnflowError(f"Method {name!r} needs the model (its attention gradients for a target).")
                options["gradients"] = graph.weighted(gradients)
            if every_output is not None and method.every_output is not None:
                values[drawn] = method.every_output(cap, **options)[drawn][:, ns:]
            else:
                values[decoder, position] = method.scores(cap, node, **options)[decoder]
        every[name] = values
    if inputs:
        prefix = [*captured.source_ids, *captured.target_ids[: position + 1]]
        if list(model_pass.input_ids) != prefix:
            raise AttnflowError("The model pass must read the source ids, then the target ids up to the explained "
                                "decoder position.")
        for name, rows in input_scores(inputs, model_pass, len(decoder), n).items():
            every[name] = np.full((depth, nt, n), np.nan)
            every[name][decoder, position] = rows
            if every_output is not None:
                notes.append(f"Method {name} scores the input for the target token with the model and was computed "
                             "for the explained decoder position only (layer input: the same row at every decoder "
                             "layer); other outputs show it as not computed.")
    tokens = [*captured.source_tokens, *captured.target_tokens]
    explained = {name: values[decoder, position] for name, values in every.items()}
    recorded = {"input_methods": {name: INPUT_LAYER for name in inputs}} if inputs else {}
    found = Scores(
        explanation=Explanation(tokens=tokens, scores=explained, output=node, options=recorded),
        matrices={ATTENTION: cap},
    )
    if every_output is not None:
        found.every_output[ATTENTION] = OutputScores(list(range(ns, n)), every, notes)
    return found
