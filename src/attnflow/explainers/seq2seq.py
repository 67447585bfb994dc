"""Explain an encoder–decoder model: which source tokens and target-prefix tokens a prediction rests on.

``attnflow.explain(source, model, decoder_text=...)`` (or ``generate=N``) lands here
for T5, BART, Marian and other ``AutoModelForSeq2SeqLM`` models. The methods run on
the combined graph of :mod:`attnflow.methods.seq2seq`; the result is a
:class:`Seq2SeqExplanation`, whose tokens are the source tokens followed by the
decoder positions, scored after every *decoder* layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import Scores
from ..errors import AttnflowError
from ..explanation import Explanation
from ..io import to_jsonable
from ..mixing import context_mixing, graph_names

_OPTIONS = frozenset({"residual", "head_fusion"})


@dataclass
class Seq2SeqExplanation(Explanation):
    """An :class:`Explanation` of one decoder position of an encoder–decoder model.

    ``tokens`` are the ``ns`` source tokens then the ``nt`` decoder positions
    (position 0 is the decoder start token); ``scores[method]`` is ``(Ld, ns + nt)``,
    row ``l-1`` after decoder layer ``l``; ``output`` is the explained decoder
    position's index in ``tokens`` (``ns + t``). ``seq2seq`` records
    ``{"source_length", "target_text", "generated", "position", "predicts",
    "encoder_layers", "decoder_layers", "source_share": {method: [per layer]}}``:
    ``source_share`` is the part of each row's total on the source tokens.

    Examples
    --------
    >>> e = Seq2SeqExplanation(tokens=["a", "</s>", "<pad>", "b"], scores={"raw": [[0.4, 0.1, 0.5, 0.0]]},
    ...                        output=2, seq2seq={"source_length": 2})
    >>> e.source_tokens, e.target_tokens, e.source_share("raw").tolist()
    (['a', '</s>'], ['<pad>', 'b'], [0.5])
    """

    seq2seq: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        record = self.seq2seq
        length = record.get("source_length") if isinstance(record, dict) else None
        if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length < len(self.tokens):
            raise AttnflowError(
                "A Seq2SeqExplanation needs seq2seq={'source_length': ns} with 1 <= ns < the number of tokens."
            )

    @property
    def source_length(self) -> int:
        return int(self.seq2seq["source_length"])  # type: ignore[index]

    @property
    def source_tokens(self) -> list[str]:
        return self.tokens[: self.source_length]

    @property
    def target_tokens(self) -> list[str]:
        return self.tokens[self.source_length :]

    def source_share(self, method: str) -> np.ndarray:
        """Per decoder layer, the part of ``method``'s row total that lies on the source tokens, ``(Ld,)``."""
        values = self.scores[method] if method in self.scores else self.layer_scores(method)
        totals = np.nansum(values, axis=1)
        source = np.nansum(values[:, : self.source_length], axis=1)
        return np.divide(source, totals, out=np.full_like(totals, np.nan), where=totals > 0)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["seq2seq"] = to_jsonable(self.seq2seq)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seq2SeqExplanation:
        """Read :meth:`to_dict`'s output back (a plain explanation's JSON is refused in one line)."""
        if not isinstance(data, dict) or not isinstance(data.get("seq2seq"), dict):
            raise AttnflowError("This JSON is not an encoder-decoder explanation (no 'seq2seq' record).")
        base = Explanation.from_dict(data)
        fields = {name: getattr(base, name) for name in base.__dataclass_fields__ if name != "solutions"}
        return cls(**fields, seq2seq=dict(data["seq2seq"]))


def resolve_decoder_position(output: Any, n_target: int) -> int:
    """The decoder position to explain: ``None`` (the one before the last target token), an index, or ``"last"``.

    Negative indices count from the end. ``"last"`` is the final position, which
    predicts the token after the target.

    Examples
    --------
    >>> resolve_decoder_position(None, 4), resolve_decoder_position(-1, 4), resolve_decoder_position("1", 4)
    (2, 3, 1)
    """
    if output is None:
        return n_target - 2
    if isinstance(output, str):
        key = output.strip().lower()
        if key == "last":
            return n_target - 1
        try:
            output = int(key)
        except ValueError:
            raise AttnflowError(
                f"For an encoder-decoder model the output is a decoder position (0 to {n_target - 1}, negative from "
                f"the end) or 'last'; got {output!r}."
            ) from None
    if isinstance(output, bool) or not isinstance(output, (int, np.integer)) or not -n_target <= output < n_target:
        raise AttnflowError(
            f"The output must be a decoder position from 0 to {n_target - 1} (or -{n_target} to -1); got {output!r}."
        )
    return int(output) % n_target


def _target_token(captured: Any, loaded: Any, position: int, target: Any) -> tuple[int, str]:
    """The token id whose log-probability grad-rollout explains, and how it was chosen."""
    tokenizer = loaded.tokenizer
    if target is None or (isinstance(target, str) and target.strip().lower() == "next"):
        if position + 1 < captured.n_target:
            return captured.target_ids[position + 1], "next"
        target = "predicted"
    if isinstance(target, str) and target.strip().lower() == "predicted":
        if len(captured.predicted_ids) == captured.n_target:  # from the capture's own pass
            return captured.predicted_ids[position], "predicted"
        import torch

        from ..capture._eager import eager_attention
        from ..capture.seq2seq import _forward

        with eager_attention(loaded.model), torch.no_grad():
            logits = _forward(loaded, captured.source_ids, captured.target_ids, output_attentions=False).logits
        return int(logits[0, position].argmax()), "predicted"
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= int(target) < len(tokenizer):
            raise AttnflowError(f"The target token id must be from 0 to {len(tokenizer) - 1}; got {target}.")
        return int(target), "token id"
    if isinstance(target, str):
        ids = tokenizer.convert_tokens_to_ids([target.strip()])
        unk = getattr(tokenizer, "unk_token_id", None)
        if ids and ids[0] is not None and (ids[0] != unk or target.strip() == tokenizer.unk_token):
            return int(ids[0]), "token"
    raise AttnflowError(
        "For an encoder-decoder model the target is 'next' (the target token after the explained position; the "
        f"default), 'predicted', a token of the vocabulary or a token id; got {target!r}."
    )


def seq2seq_scores(
    captured: Any,
    methods: Sequence[str],
    position: int,
    *,
    model: Any = None,
    target: Any = None,
    token_id: int | None = None,
    every_output: str | None = None,
    layers: str = "all",
    residual: float = 0.5,
    head_fusion: str = "mean",
    progress: Callable[[int, int], None] | None = None,
    attribution: dict[str, Any] | None = None,
) -> Scores:
    """The explain core's scores (:func:`attnflow.core.score_seq2seq`) for decoder ``position`` of a capture.

    ``grad-rollout`` needs ``model``: the gradients of the target token's
    log-probability (:func:`attnflow.capture.seq2seq.seq2seq_gradients`; the token is
    ``token_id``, or chosen from ``target`` as :func:`attnflow.explain` does), the
    backward pass that is the method's own. Attribution methods (``saliency``, ...) need
    ``model`` too: Captum runs it on the source and the target prefix up to ``position``,
    as a function of the value entering the encoder's and the decoder's first layer
    (:func:`attnflow.capture.gradient_point.source_target_point`), for the same token's
    log-probability (:class:`attnflow.capture.seq2seq.Seq2SeqTarget`); ``attribution``
    holds their options (``ig_steps``, ``lime_samples``, ``max_passes``, ``seed``, and ``index``,
    which the random baseline draws by: the decoder position unless given).
    ``every_output`` and ``layers`` are the core's.

    Examples
    --------
    >>> from attnflow.capture.seq2seq import capture_seq2seq
    >>> cap = capture_seq2seq("7 2 9", "reverse", decoder_text="9 2 7")
    >>> scores = seq2seq_scores(cap, ["rollout", "flow"], 2).explanation.scores
    >>> scores["rollout"].shape, bool(np.allclose(scores["flow"].sum(axis=1), 1.0))
    ((2, 8), True)
    """
    from ..core import check_seq2seq_methods, score_seq2seq

    gradients, model_pass = None, None
    inputs = check_seq2seq_methods(methods)[1]  # before the model runs
    if ("grad-rollout" in methods or inputs) and model is None:
        named = "grad-rollout" if "grad-rollout" in methods else inputs[0]
        raise AttnflowError(f"Method {named!r} needs the model (it explains a target token with it).")
    if ("grad-rollout" in methods or inputs) and token_id is None:
        token_id, _ = _target_token(captured, model, position, target)
    if "grad-rollout" in methods:
        from ..capture.seq2seq import seq2seq_gradients

        grads = seq2seq_gradients(captured, model, position, token_id=token_id)
        gradients = (grads.encoder, grads.decoder, grads.cross)
    if inputs:
        from ..capture.gradient_point import source_target_point
        from ..capture.perturb import attribution_blank_id
        from ..capture.seq2seq import Seq2SeqTarget
        from ..methods.attribution import AttributionInputs

        ns, settings = captured.n_source, dict(attribution or {})
        settings.setdefault("index", position)  # the random baseline's draw: per example (evaluate) or position
        model_pass = AttributionInputs(
            model, Seq2SeqTarget(ns, int(token_id)), [*captured.source_ids, *captured.target_ids[: position + 1]],
            attribution_blank_id(model), point=source_target_point(model, ns), **settings,
        )
    return score_seq2seq(captured, methods, position, gradients=gradients, every_output=every_output, layers=layers,
                         progress=progress, model_pass=model_pass, residual=residual, head_fusion=head_fusion)


def explain_seq2seq(
    source: str,
    model: Any = None,
    methods: Sequence[str] | str = ("raw", "rollout"),
    output: Any = None,
    target: Any = None,
    *,
    decoder_text: str | None = None,
    generate: int | None = None,
    tokenizer: Any = None,
    truncate: bool = False,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
    captured: Any = None,
    every_output: str | None = None,
    attribution: dict[str, Any] | None = None,
    **method_options: Any,
) -> Seq2SeqExplanation:
    """Explain one decoder position of an encoder–decoder model over the source and the target prefix.

    Parameters are those of :func:`attnflow.explain`, plus ``decoder_text`` (the
    target, read with teacher forcing) or ``generate`` (let the model write at most
    ``N`` tokens greedily). ``output``: a decoder position (default: the one before
    the last target token, which predicts it), negative from the end, or
    ``"last"``. ``target`` (grad-rollout): ``"next"`` (default: the target token
    after the position), ``"predicted"``, a vocabulary token or id.
    ``method_options``: ``residual`` and ``head_fusion`` (``mean``, ``max``, ``min``).
    ``every_output`` (``"auto"``, ...): also every decoder position's scores, what the
    HTML report shows, into the result's ``every_output`` (:func:`attnflow.core.score_seq2seq`).
    Attribution methods (``saliency``, ...) score the source and the target prefix for
    the same target token as grad-rollout, at layer ``input`` (:func:`seq2seq_scores`);
    ``attribution`` holds their options.

    Examples
    --------
    >>> e = explain_seq2seq("7 2 9", "reverse", ["rollout"], decoder_text="9 2 7")
    >>> e.source_tokens, e.target_tokens, e.seq2seq["predicts"]
    (['7', '2', '9', '</s>'], ['<pad>', '9', '2', '7'], '7')
    >>> e.scores["rollout"].shape
    (2, 8)
    """
    from ..capture import load_model
    from ..capture.seq2seq import capture_seq2seq
    from ..methods.attribution import check_attribution_options, split_methods
    from .text import method_names

    names = list(dict.fromkeys(method_names(methods)))
    if not names:
        raise AttnflowError("The 'methods' parameter must name at least one method.")
    inputs = split_methods(names)[1]
    settings = dict(attribution or {})
    check_attribution_options(inputs, **{key: settings[key] for key in ("ig_steps", "lime_samples", "max_passes")
                                         if key in settings})
    unknown_options = set(method_options) - _OPTIONS - {"discard_ratio", "start_layer"}
    if unknown_options:
        raise AttnflowError(f"Unknown option(s) {sorted(unknown_options)} for an encoder-decoder model.")
    for key in ("discard_ratio", "start_layer"):
        if method_options.get(key) not in (None, 0, 0.0, 1):
            raise AttnflowError(f"The option {key!r} is not supported for encoder-decoder models.")
    options = {k: v for k, v in method_options.items() if k in _OPTIONS}
    if options.get("head_fusion") == "importance":
        raise AttnflowError(
            "head_fusion='importance' is not supported for encoder-decoder models; use mean, max or min."
        )
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code)
    if captured is None:
        captured = capture_seq2seq(source, loaded, decoder_text=decoder_text, generate=generate, truncate=truncate)
    position = resolve_decoder_position(output, captured.n_target)
    ns = captured.n_source
    recorded_target: Any = target
    token_id = None
    explains_target = "grad-rollout" in names or bool(inputs)
    if explains_target:
        token_id, how = _target_token(captured, loaded, position, target)
        recorded_target = {"kind": how, "token_id": token_id, "token": loaded.tokenizer.convert_ids_to_tokens(token_id)}
    found = seq2seq_scores(captured, names, position, model=loaded, token_id=token_id, every_output=every_output,
                           progress=progress, attribution=settings, **options)
    scores = found.explanation.scores
    predicts = captured.target_tokens[position + 1] if position + 1 < captured.n_target else None
    result = Seq2SeqExplanation(
        tokens=[*captured.source_tokens, *captured.target_tokens],
        scores=scores,
        output=ns + position,
        target=recorded_target,
        model_name=captured.model_name,
        special_positions=(*captured.source_special, *(ns + p for p in captured.target_special)),
        text=captured.source_text,
        options={**method_options, **found.explanation.options},
        seq2seq={
            "source_length": ns,
            "target_text": captured.target_text,
            "generated": captured.generated,
            "position": position,
            "predicts": predicts,
            "log_probability": captured.log_probabilities[position] if predicts is not None else None,
            "encoder_layers": captured.n_encoder_layers,
            "decoder_layers": captured.n_decoder_layers,
            "truncated": captured.truncated,
        },
    )
    result.every_output = found.every_output
    result.seq2seq["source_share"] = {name: result.source_share(name).tolist() for name in names}
    if target is not None and not explains_target:
        from .text import TARGET_IGNORED

        result.notes.append(TARGET_IGNORED)
    return result


def explain_seq2seq_call(
    text: str,
    loaded: Any,
    methods: Sequence[str] | str,
    output: Any,
    target: Any,
    *,
    decoder_text: str | None,
    generate: int | None,
    truncate: bool = False,
    progress: Callable[[int, int], None] | None = None,
    captured: Any = None,
    words: bool = False,
    graph: Any = None,
    every_output: str | None = None,
    attribution: dict[str, Any] | None = None,
    **method_options: Any,
) -> Seq2SeqExplanation:
    """What :func:`attnflow.explain` does with ``decoder_text=`` or an encoder–decoder model: check, then explain.

    One-line errors for ``decoder_text`` on an encoder-only or decoder-only model,
    an encoder–decoder model given neither ``decoder_text`` nor ``generate`` (or
    both), and the options that are for one sequence only (``words``, ``graph``).

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> explain_seq2seq_call("7 2 9", load_model("reverse"), "rollout", None, None, decoder_text=None, generate=None)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The model 'reverse' is an encoder-decoder model: give the target with \
decoder_text='...' (CLI: --decoder-text) or let it write one with generate=N (CLI: --generate N).
    """
    from ..capture.seq2seq import Seq2SeqAttention, require_seq2seq

    require_seq2seq(loaded, "decoder_text" if decoder_text is not None else "generate")
    if decoder_text is None and generate is None:
        raise AttnflowError(
            f"The model {loaded.name!r} is an encoder-decoder model: give the target with decoder_text='...' "
            "(CLI: --decoder-text) or let it write one with generate=N (CLI: --generate N)."
        )
    if decoder_text is not None and generate is not None:
        raise AttnflowError(
            "Give one of decoder_text (the target to read) and generate (N tokens to write), not both."
        )
    if words:
        raise AttnflowError("words=True (--words) is not supported for encoder-decoder models yet.")
    if graph is not None and context_mixing(graph_names(graph)):
        raise AttnflowError(
            "Context-mixing graphs (graph=..., --graph) are not supported for encoder-decoder models; "
            "the methods run on the combined attention graph."
        )
    if captured is not None and (not isinstance(captured, Seq2SeqAttention) or captured.source_text != text):
        raise AttnflowError(
            "The 'captured' attention must be attnflow.capture.seq2seq.capture_seq2seq's result for this source."
        )
    return explain_seq2seq(
        text, loaded, methods, output, target, decoder_text=decoder_text, generate=generate, truncate=truncate,
        progress=progress, captured=captured, every_output=every_output, attribution=attribution, **method_options,
    )
