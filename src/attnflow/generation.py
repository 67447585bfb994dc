"""Let a decoder continue a prompt, then explain what it generated.

Positions, written once (``P`` prompt tokens, special tokens included; ``G``
generated tokens; ``n = P + G``):

- the generated sequence is ``input_ids = prompt_ids + answer_ids``; positions
  ``0 .. P-1`` are the prompt, ``P .. n-1`` the answer;
- answer token ``k`` (0-based, at position ``P + k``) is *predicted at* position
  ``P + k - 1``: a causal model's output there is the distribution it was drawn
  from. Explaining answer token ``k`` explains output position ``P + k - 1``,
  over the prompt and the answer tokens before it (causal attention gives
  position ``P + k - 1`` nothing from later tokens, so their scores are 0);
- target-dependent methods explain answer token ``k`` at position ``P + k - 1``
  as :func:`attnflow.explain` explains a next token: ``grad-rollout`` weighs
  attention by the gradient of its logit, ``head_fusion="importance"`` by that of
  its log-probability;
- the *answer span* is explained by the mean of its tokens' explanations: the
  score of token ``j`` for the span is the mean over ``k`` of its score for
  answer token ``k`` (for raw attention and rollout this equals the method applied
  to the mean of the predicting rows, as both are linear in the output row).

Decoding is greedy and deterministic: the model's own ``generate`` with
``do_sample=False`` and ``num_beams=1``, run with eager attention (the attention
that is then captured), stopping after ``max_new_tokens`` or at the model's
end-of-sequence token (which is kept: it was generated, and can be explained).

:func:`generate` is the decoder-only step; an encoder-decoder path would
produce the same :class:`Generation` (prompt = the encoder's input, answer = the
decoder's output) for the explanation code to use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .capture import eager_attention, load_model, quiet_transformers
from .capture._failures import model_failures
from .capture.gradients import target_gradients, weighted_attention
from .capture.perturb import attribution_blank_id
from .capture.plan import heads_to_capture
from .capture.targets import BoundTarget, Target, TargetSpec, model_head
from .capture.text import _check_texts, _encode, _pad_id, capture_token_ids
from .core import method_names, score_capture, shared_solutions, wants_importance
from .errors import AttnflowError
from .explanation import Explanation
from .graph import WeightedAttention, fusion_weights
from .methods import get_method
from .methods.attribution import AttributionInputs, check_attribution_model, check_attribution_options, split_methods
from .words import word_groups

#: How ``--generate`` answers are explained: the span together, or each token on its own.
ANSWER_MODES: tuple[str, ...] = ("span", "each")

#: The rule the span's scores follow, recorded in every explanation of a generation.
SPAN_RULE = (
    "the answer span's score of a token is the mean of its scores for each answer token, "
    "each answer token being explained at the position that predicted it"
)


@dataclass
class Generation:
    """A prompt and the tokens a model generated after it, greedily.

    Attributes
    ----------
    prompt
        The prompt text.
    prompt_ids
        The prompt's ``P`` token ids, special tokens included (``<s>`` for Llama).
    answer_ids
        The ``G`` generated token ids, in order.
    answer
        The generated text (``answer_ids`` decoded, special tokens dropped).
    stopped
        ``"eos"`` (the answer ends with the model's end-of-sequence token, kept)
        or ``"length"`` (``max_new_tokens`` were generated without it).
    model_name
        The model's name or folder.

    Examples
    --------
    >>> g = Generation("Hi", [5, 6], [7, 8, 9], " there!", "length", "toy")
    >>> g.prompt_length, g.input_ids, g.predicting_positions
    (2, [5, 6, 7, 8, 9], [1, 2, 3])
    """

    prompt: str
    prompt_ids: list[int]
    answer_ids: list[int]
    answer: str
    stopped: str
    model_name: str = ""

    @property
    def prompt_length(self) -> int:
        """``P``: the number of prompt tokens."""
        return len(self.prompt_ids)

    @property
    def input_ids(self) -> list[int]:
        """The whole sequence: the prompt's ids, then the answer's."""
        return list(self.prompt_ids) + list(self.answer_ids)

    @property
    def predicting_positions(self) -> list[int]:
        """The output position that predicts each answer token: ``P - 1 + k`` for token ``k``."""
        return [self.prompt_length - 1 + k for k in range(len(self.answer_ids))]

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of the generation (what :class:`attnflow.Explanation` keeps).

        Examples
        --------
        >>> Generation("Hi", [5], [7], "!", "eos").describe()["prompt_length"]
        1
        """
        return {
            "prompt_length": self.prompt_length,
            "answer": self.answer,
            "answer_ids": list(self.answer_ids),
            "stopped": self.stopped,
            "decoding": "greedy (model.generate, do_sample=False, num_beams=1)",
        }


def check_new_tokens(max_new_tokens: Any, option: str = "max_new_tokens") -> int:
    """``max_new_tokens`` as a positive integer, or one clear error.

    Examples
    --------
    >>> check_new_tokens(3)
    3
    >>> check_new_tokens(0)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The 'max_new_tokens' parameter must be an integer >= 1 (tokens to generate); got 0.
    """
    where = option if option.startswith("--") else f"'{option}' parameter"
    if isinstance(max_new_tokens, (bool, np.bool_)) or not isinstance(max_new_tokens, (int, np.integer)) or (
        max_new_tokens < 1
    ):
        raise AttnflowError(f"The {where} must be an integer >= 1 (tokens to generate); got {max_new_tokens!r}.")
    return int(max_new_tokens)


def check_generator(loaded: Any, option: str = "generate") -> None:
    """Refuse, in one line, a model that cannot continue a prompt: an encoder, an image model, a headless decoder.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> check_generator(load_model())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: Cannot generate with 'minilm' (BertModel): it is an encoder; use a causal LM...
    """

    model = loaded.model
    name = f"{loaded.name!r} ({type(model).__name__})"
    fix = "use a causal LM (GPT-2, Llama)."
    if getattr(loaded, "tokenizer", None) is None:
        raise AttnflowError(f"Cannot generate with {name}: it is an image model; {fix}")
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        raise AttnflowError(
            f"Cannot generate with {name} here: it is an encoder-decoder model, and this step continues a "
            f"prompt with a decoder-only model; {fix}"
        )
    if not loaded.is_decoder:
        raise AttnflowError(f"Cannot generate with {name}: it is an encoder; {fix}")
    if model_head(model) != "causal_lm" or not hasattr(model, "generate"):
        raise AttnflowError(f"Cannot generate with {name}: it is a decoder without a language-model head; {fix}")


def generate(
    prompt: str,
    model: Any = None,
    max_new_tokens: int = 10,
    *,
    tokenizer: Any = None,
    truncate: bool = False,
    trust_remote_code: bool = False,
) -> Generation:
    """Continue ``prompt`` with a decoder-only model, greedily, by up to ``max_new_tokens`` tokens.

    Parameters
    ----------
    prompt
        The text to continue.
    model
        Anything :func:`attnflow.capture.load_model` accepts; it must be a causal
        language model (GPT-2, Llama, ...).
    max_new_tokens
        How many tokens to generate, at least 1; the prompt and the answer
        together must fit the model's maximum length.
    tokenizer, truncate, trust_remote_code
        As for :func:`attnflow.capture.capture_attention` (``truncate`` cuts the
        prompt, never the answer).

    Returns
    -------
    Generation

    Raises
    ------
    AttnflowError
        For an encoder or a model without a language-model head, ``max_new_tokens < 1``,
        a prompt plus answer longer than the model accepts, or an empty prompt.

    Examples
    --------
    >>> generate("The cat", "minilm", 3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: Cannot generate with 'minilm' (BertModel): it is an encoder; use a causal LM...
    """
    import torch


    count = check_new_tokens(max_new_tokens)
    _check_texts(prompt)
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code)
    check_generator(loaded)
    limit = loaded.max_length
    if limit is not None and count >= limit:
        raise AttnflowError(
            f"Cannot generate {count} tokens: the model {loaded.name!r} accepts at most {limit} tokens, "
            "prompt included; ask for fewer."
        )
    from dataclasses import replace

    room = None if limit is None else limit - count
    # truncate: the prompt is cut to leave room for the answer; otherwise the check below says what fits
    encoded = _encode(replace(loaded, max_length=room if truncate else None), prompt, truncate, None)
    prompt_ids = encoded.input_ids
    if limit is not None and len(prompt_ids) + count > limit:
        raise AttnflowError(
            f"The prompt has {len(prompt_ids)} tokens and {count} more are asked for, {len(prompt_ids) + count} "
            f"in all, but the model {loaded.name!r} accepts at most {limit}: ask for at most "
            f"{max(limit - len(prompt_ids), 0)} tokens, shorten the prompt, or pass truncate=True (--truncate)."
        )
    net = loaded.model
    device = getattr(net, "device", None)
    ids = torch.tensor([prompt_ids], dtype=torch.long, device=device)
    options: dict[str, Any] = {
        "max_new_tokens": count,
        "do_sample": False,
        "num_beams": 1,
        "pad_token_id": _pad_id(loaded),
    }
    with eager_attention(net), torch.no_grad(), quiet_transformers():
        with model_failures(f"The model {loaded.name!r} failed while generating"):
            sequences = net.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)
    answer_ids = [int(i) for i in sequences[0, len(prompt_ids) :].tolist()]
    eos = _eos_ids(net)
    stopped = "eos" if answer_ids and answer_ids[-1] in eos else "length"
    if not answer_ids:  # pragma: no cover - generate always adds at least one token
        raise AttnflowError(f"The model {loaded.name!r} generated no tokens after the prompt.")
    answer = loaded.tokenizer.decode(answer_ids, skip_special_tokens=True)
    return Generation(prompt, list(prompt_ids), answer_ids, answer, stopped, loaded.name)


def _eos_ids(model: Any) -> set[int]:
    found: set[int] = set()
    for config in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(config, "eos_token_id", None)
        values = value if isinstance(value, (list, tuple)) else [value]
        found.update(int(v) for v in values if isinstance(v, int))
    return found


@dataclass
class GenerationExplanation:
    """What :func:`explain_generation` returns: the generation, its capture and the explanations.

    Attributes
    ----------
    generation
        The prompt and answer (:class:`Generation`).
    captured
        The attention of the whole sequence (:class:`attnflow.capture.CapturedAttention`):
        the head mean, float32 ``(L, 1, n, n)``, fused while the model ran, when the
        methods read only that (:func:`attnflow.capture.plan.heads_to_capture`), else every head.
    explanation
        The :class:`attnflow.Explanation` of the answer span (``output="answer"``),
        holding every answer token's scores too (:meth:`attnflow.Explanation.answer_token`).
    """

    generation: Generation
    captured: Any
    explanation: Any


def explain_generation(
    prompt: str,
    model: Any = None,
    max_new_tokens: int = 10,
    methods: Sequence[str] | str = ("raw", "rollout"),
    *,
    tokenizer: Any = None,
    truncate: bool = False,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
    words: bool = False,
    attribution: dict[str, Any] | None = None,
    every_output: str | None = None,
    **method_options: Any,
) -> GenerationExplanation:
    """Generate greedily after ``prompt``, then explain every answer token and the answer span.

    Answer token ``k`` is explained at the position that predicted it (``P + k - 1``)
    over the prompt and the answer tokens before it; ``grad-rollout`` differentiates
    its logit there, ``head_fusion="importance"`` its log-probability (as
    :func:`attnflow.explain` does for a next token). The span's scores are the mean over the answer tokens
    (:data:`SPAN_RULE`). ``methods``, ``progress`` and ``method_options`` are as
    for :func:`attnflow.explain`; ``words=True`` adds word groups
    (:mod:`attnflow.words`). When the methods read the attention only through its
    head mean, the sequence is captured fused (bounded memory on long answers) and
    grad-rollout reads ``mean_h max(0, dS/dA ⊙ A)`` reduced in the backward pass
    (:func:`answer_weighted_attention`); the scores are those of every head within
    float32 round-off. Attribution methods (``saliency``, ``occlusion``, ...) score
    answer token ``k``'s logit on the tokens before it (:func:`attnflow.core.input_scores`;
    later tokens 0), with ``attribution`` their options (``ig_steps``, ``lime_samples``,
    ``max_passes``, ``seed``); the random baseline draws anew per answer token.

    Every answer token is scored by the explain core (:func:`attnflow.core.score_capture`)
    on the one capture of the whole sequence. The model's own passes are: the decoding
    steps of :func:`generate` (one per answer token), the capture, and the passes that
    are a method itself (grad-rollout's backward pass per answer token, an attribution
    method's). ``every_output`` (``"auto"``, ...): also every output's scores, what the
    HTML report shows, into the result's ``explanation.every_output``, computed with the
    first answer token; flow for every output is then solved once and each answer
    token's flow is read from that solve (unless ``head_fusion="importance"`` weighs the
    heads per answer token).

    Examples
    --------
    >>> explain_generation("The cat", "minilm", 2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: Cannot generate with 'minilm' (BertModel): it is an encoder; use a causal LM...
    """

    names, inputs = split_methods(method_names(methods))
    for name in names:
        get_method(name)  # unknown names fail before the model runs
    settings = dict(attribution or {})
    check_attribution_options(inputs, **{key: settings[key] for key in ("ig_steps", "lime_samples", "max_passes")
                                         if key in settings})
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code)
    check_attribution_model(inputs, loaded)
    generation = generate(prompt, loaded, max_new_tokens, truncate=truncate)
    ids = generation.input_ids

    # fused while the model runs when the methods read only the head mean (bounded memory on long answers)
    heads = heads_to_capture(names, method_options)
    captured = capture_token_ids(ids, loaded, text=prompt, heads=heads)
    needs_gradients = any(get_method(name).needs_gradients for name in names)
    importance = wants_importance(method_options)
    positions = generation.predicting_positions
    per_token: list[Any] = []
    weights: list[Any] = []
    logits: list[float] = []
    values: list[float] = []
    if needs_gradients and heads != "all":
        logits = answer_logits(loaded, ids, generation.prompt_length)

    point, blank = None, 0
    if inputs:

        blank = attribution_blank_id(loaded)
    every: dict[str, Any] = {}
    solved: dict[str, Any] = {}  # flow for every output, solved with the first answer token, read by the others
    for k, position in enumerate(positions):
        gradients, options = None, dict(method_options)
        if needs_gradients and heads != "all":
            gradients = answer_weighted_attention(loaded, ids, generation.prompt_length + k)
        elif needs_gradients:
            found, gradients = answer_gradients(loaded, ids, generation.prompt_length + k, objective="score")
            logits.append(found.value)
        if importance:
            found, _ = answer_gradients(
                loaded, ids, generation.prompt_length + k, objective="log_probability", head_gradients=importance
            )
            values.append(found.value)

            options["head_fusion"] = fusion_weights(np.abs(found.head_gradients))
            weights.append(np.asarray(options["head_fusion"]).tolist())
        given = None
        if inputs:  # answer token k's logit, on the tokens before it
            end = generation.prompt_length + k
            given = AttributionInputs(loaded, _bound_token(loaded, ids[end]), ids[:end], blank, index=k,
                                      point=point, **settings)
        scored = score_capture(captured, names + inputs, output=position, gradients=gradients, progress=progress,
                               every_output=every_output if k == 0 else None, model_pass=given, solved=solved,
                               **options)
        if k == 0 and every_output is not None:
            every = scored.every_output
            solved = {} if importance else shared_solutions(scored)
        part = scored.explanation
        part.options.pop("input_methods", None)
        if given is not None:
            point = given.point  # found once, on the first token
        per_token.append(part)

    first = per_token[0]
    scores = {name: np.mean([e.scores[name] for e in per_token], axis=0) for name in first.scores}
    answer_scores = {name: np.stack([e.scores[name] for e in per_token]) for name in first.scores}
    notes = list(dict.fromkeys(note for e in per_token for note in e.notes))
    labels = first.token_labels if len(per_token) == 1 else {}
    if len(per_token) > 1 and first.token_labels:
        notes.append("Per-token labels (flow cut) are shown per answer token (--answer each), not for the span.")
    record = generation.describe()
    record["rule"] = SPAN_RULE
    target = None
    if needs_gradients or importance or inputs:
        target = {
            "spec": "generated",
            "kind": "next_token",
            "head": "causal_lm",
            "measure": (
                "each generated token at the position that predicted it: grad-rollout and attribution methods its "
                "logit, head importance its log-probability"
            ),
            "token_ids": list(generation.answer_ids),
        }
        if logits:
            target["logits"] = logits
        if values:
            target["log_probabilities"] = values
    recorded = dict(method_options)
    if inputs:
        recorded["input_methods"] = {name: "input" for name in inputs}
    if importance:
        recorded["head_fusion"] = "importance"
        recorded["head_importance"] = weights  # (L, H) per answer token
    explanation = Explanation(
        tokens=list(captured.tokens),
        scores=scores,
        output="answer",
        target=target,
        model_name=captured.model_name,
        special_positions=tuple(captured.special_positions),
        text=prompt,
        options=recorded,
        notes=notes,
        token_labels=labels,
        generation=record,
        answer_scores=answer_scores,
    )
    explanation.every_output = every
    if words:

        explanation.words = word_groups(loaded, ids, prompt, prompt_length=generation.prompt_length)
    return GenerationExplanation(generation, captured, explanation)


def _check_position(input_ids: Sequence[int], position: Any) -> list[int]:
    ids = [int(i) for i in input_ids]
    n = len(ids)
    if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not 1 <= position < n:
        raise AttnflowError(f"The 'position' parameter must be a position from 1 to {n - 1}; got {position!r}.")
    return ids


def _bound_token(loaded: Any, token: int) -> Any:
    """The next-token target for ``token`` (its logit, or log-probability, at the position that predicts it)."""

    target = Target(TargetSpec("index", token), "causal_lm", "next_token", index=token, model_name=loaded.name)
    return BoundTarget(target, token, None)  # type: ignore[arg-type]


def answer_weighted_attention(loaded: Any, input_ids: Sequence[int], position: int) -> Any:
    """What grad-rollout reads for the token at ``position``: ``mean_h max(0, dS/dA ⊙ A)``, padded to ``n``.

    As :func:`answer_gradients` with ``objective="score"``, but reduced layer by layer in
    the backward pass (:func:`attnflow.capture.gradients.weighted_attention`) on the
    prefix ``input_ids[:position]``: float64 ``(L, n, n)`` instead of ``dS/dA``
    ``(L, H, n, n)``. The entries outside the prefix are 0, as ``dS/dA`` is there.

    Examples
    --------
    >>> answer_weighted_attention(None, [1, 2], 2)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The 'position' parameter must be a position from 1 to 1; got 2.
    """

    ids = _check_position(input_ids, position)
    n = len(ids)
    found = weighted_attention(loaded, _bound_token(loaded, ids[position]), ids[:position])
    padded = np.zeros((found.shape[0], n, n))
    padded[:, :position, :position] = found.values
    return WeightedAttention(padded)


def answer_logits(loaded: Any, input_ids: Sequence[int], prompt_length: int) -> list[float]:
    """The logit of each answer token ``input_ids[P:]`` at the position that predicted it, from one forward pass.

    A causal model's output at position ``P + k - 1`` depends on the tokens up to it
    only, so this equals the logit :func:`answer_gradients` differentiates on each prefix.

    Examples
    --------
    >>> answer_logits(None, [1, 2], 2)
    []
    """
    import torch

    ids = [int(i) for i in input_ids]
    if prompt_length >= len(ids):
        return []

    net = loaded.model
    tensor = torch.tensor([ids], dtype=torch.long, device=getattr(net, "device", None))
    with eager_attention(net), torch.no_grad(), quiet_transformers():
        logits = net(input_ids=tensor, attention_mask=torch.ones_like(tensor), return_dict=True).logits[0]
    rows = torch.arange(prompt_length - 1, len(ids) - 1)
    return [float(v) for v in logits[rows, torch.tensor(ids[prompt_length:])].double().cpu().tolist()]


def answer_gradients(
    loaded: Any, input_ids: Sequence[int], position: int, *, objective: str = "score", head_gradients: bool = False
) -> tuple[Any, np.ndarray]:
    """The gradient of the token at ``position``'s logit (or log-probability), read where it was predicted.

    ``S`` is the logit of ``input_ids[position]`` given ``input_ids[:position]``
    (``objective="score"``, what ``grad-rollout`` uses), or its log-probability
    (``objective="log_probability"``, what head importance uses): the causal model's
    output at position ``position - 1``. It is differentiated on the prefix
    ``input_ids[:position]`` (all that output depends on), and the gradient is
    padded with zeros to the whole sequence of ``n`` tokens: the entries left at 0
    meet attention weights that are 0 (above the diagonal) or rows that cannot
    change ``S`` (later positions), so ``dS/dA * A``, what gradient methods use,
    is exact.

    Returns ``(found, gradients)``: the prefix's
    :class:`attnflow.capture.gradients.TargetGradients` (its ``value`` is ``S``,
    its ``head_gradients`` ``dS/dxi`` when asked for) and ``dS/dA`` ``(L, H, n, n)``.

    Examples
    --------
    >>> answer_gradients(None, [1, 2], 0)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The 'position' parameter must be a position from 1 to 1; got 0.
    """

    ids = _check_position(input_ids, position)
    n = len(ids)
    found = target_gradients(
        loaded, _bound_token(loaded, ids[position]), ids[:position], objective=objective,
        head_gradients=head_gradients,
    )
    padded = np.zeros(found.gradients.shape[:2] + (n, n))
    padded[:, :, :position, :position] = found.gradients
    return found, padded
