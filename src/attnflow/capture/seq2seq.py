"""Capture the attention of an encoder–decoder model (T5, BART, Marian): encoder, decoder and cross.

One source text goes into the encoder; the decoder reads a target, either given
(teacher forcing, ``decoder_text=``) or the model's own greedy continuation
(``generate=N``). Shapes, written once:

- ``encoder``: float64 ``(Le, He, ns, ns)``, the encoder's self-attention over the
  ``ns`` source tokens (special tokens included);
- ``decoder``: float64 ``(Ld, Hd, nt, nt)``, the decoder's causal self-attention
  over the ``nt`` decoder positions (zero above the diagonal);
- ``cross``: float64 ``(Ld, Hd, nt, ns)``, decoder position ``i`` attending to the
  encoder's top-layer source token ``j``.

Decoder positions: position 0 holds the model's decoder start token
(``config.decoder_start_token_id``: ``<pad>`` for T5 and Marian, ``</s>`` for
BART), positions ``1..nt-1`` the target tokens (the tokenizer's end-of-sequence
token at the end of the target is dropped). Position ``i`` predicts the token at
position ``i + 1``; by default attnflow explains the prediction of the last target
token, made at position ``nt - 2``.

Every row of every array sums to 1 (padding never enters: one example at a time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AttnflowError
from ._eager import eager_attention
from ._failures import model_failures
from .gradient_point import capture_point, gradient_point
from .models import LoadedModel, load_model

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Seq2SeqAttention:
    """The attention of one source and target through an encoder–decoder model.

    Checked when built: the three arrays are 4-D with matching layers, heads and
    token counts, and the special positions lie inside their sequences.

    Examples
    --------
    >>> enc = np.full((1, 1, 2, 2), 0.5)
    >>> dec = np.array([[[[1.0, 0.0], [0.5, 0.5]]]])
    >>> cross = np.full((1, 1, 2, 2), 0.5)
    >>> a = Seq2SeqAttention(enc, dec, cross, ["a", "</s>"], [5, 1], (1,), ["<pad>", "b"], [0, 6], (0,), "toy")
    >>> a.n_source, a.n_target, a.predicted_position, a.predicted_token
    (2, 2, 0, 'b')
    """

    encoder: np.ndarray
    decoder: np.ndarray
    cross: np.ndarray
    source_tokens: list[str]
    source_ids: list[int]
    source_special: tuple[int, ...]
    target_tokens: list[str]
    target_ids: list[int]
    target_special: tuple[int, ...]
    model_name: str
    source_text: str = ""
    target_text: str = ""
    #: True when the target is the model's own greedy continuation (``generate=N``).
    generated: bool = False
    #: True when the source was cut to the model's maximum length (``truncate=True``).
    truncated: bool = False
    #: The target tokens' log-probabilities under the model, ``[i]`` for the token at position ``i + 1``.
    log_probabilities: list[float] = field(default_factory=list)
    #: The model's most probable next token at every decoder position (argmax of the captured pass's logits).
    predicted_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        arrays = []
        for name in ("encoder", "decoder", "cross"):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.ndim != 4:
                raise AttnflowError(f"Seq2SeqAttention.{name} must be 4-D (L, H, queries, keys); got {value.shape}.")
            setattr(self, name, value)
            arrays.append(value)
        encoder, decoder, cross = arrays
        ns, nt = len(self.source_tokens), len(self.target_tokens)
        expected = {"encoder": (ns, ns), "decoder": (nt, nt), "cross": (nt, ns)}
        for name, value in zip(("encoder", "decoder", "cross"), arrays, strict=True):
            if value.shape[-2:] != expected[name]:
                raise AttnflowError(
                    f"Seq2SeqAttention.{name} must end in {expected[name]} for {ns} source and {nt} target tokens; "
                    f"got {value.shape}."
                )
        if decoder.shape[:2] != cross.shape[:2]:
            raise AttnflowError(
                f"Seq2SeqAttention.decoder and .cross must have the same layers and heads; got {decoder.shape[:2]} "
                f"and {cross.shape[:2]}."
            )
        if len(self.source_ids) != ns or len(self.target_ids) != nt:
            raise AttnflowError("Seq2SeqAttention needs one id per token in the source and in the target.")
        if nt < 2:
            raise AttnflowError("Seq2SeqAttention needs a target of at least one token after the decoder start.")
        self.source_special = tuple(int(p) for p in self.source_special)
        self.target_special = tuple(int(p) for p in self.target_special)
        for name, positions, n in (("source", self.source_special, ns), ("target", self.target_special, nt)):
            if any(not 0 <= p < n for p in positions):
                raise AttnflowError(f"Seq2SeqAttention.{name}_special must lie in 0..{n - 1}; got {positions}.")
        self.source_tokens, self.target_tokens = list(self.source_tokens), list(self.target_tokens)
        self.source_ids = [int(i) for i in self.source_ids]
        self.target_ids = [int(i) for i in self.target_ids]

    @property
    def n_source(self) -> int:
        return len(self.source_tokens)

    @property
    def n_target(self) -> int:
        return len(self.target_tokens)

    @property
    def n_encoder_layers(self) -> int:
        return int(self.encoder.shape[0])

    @property
    def n_decoder_layers(self) -> int:
        return int(self.decoder.shape[0])

    @property
    def predicted_position(self) -> int:
        """The decoder position explained by default: the one before the last target token."""
        return self.n_target - 2

    @property
    def predicted_token(self) -> str:
        """The last target token, predicted at :attr:`predicted_position`."""
        return self.target_tokens[-1]


def is_seq2seq_model(loaded: Any) -> bool:
    """Whether a model (or :class:`LoadedModel`) is an encoder–decoder model (``config.is_encoder_decoder``).

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> is_seq2seq_model(load_model())
    False
    """
    model = loaded.model if isinstance(loaded, LoadedModel) else loaded
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def require_seq2seq(loaded: LoadedModel, option: str = "decoder_text") -> None:
    """Raise a one-line error unless ``loaded`` is an encoder–decoder model with a language-model head."""
    if not is_seq2seq_model(loaded):
        kind = "an image model" if loaded.is_vision else "decoder-only" if loaded.is_decoder else "encoder-only"
        raise AttnflowError(
            f"{option} is for encoder-decoder models (T5, BART, Marian); the model {loaded.name!r} is {kind}"
            + (": give the text alone." if kind == "encoder-only" else ".")
        )
    if loaded.tokenizer is None:
        raise AttnflowError(f"The encoder-decoder model {loaded.name!r} has no tokenizer; pass tokenizer=.")
    head = getattr(loaded.model, "get_output_embeddings", None)
    if not callable(head) or head() is None:
        raise AttnflowError(
            f"The model {loaded.name!r} ({type(loaded.model).__name__}) has no language-model head; load it with "
            "AutoModelForSeq2SeqLM (config.architectures ...ForConditionalGeneration)."
        )


def decoder_max_length(loaded: LoadedModel) -> int | None:
    """The most decoder positions the model accepts (its position table, else the tokenizer's limit)."""
    config = loaded.model.config
    for key in ("max_target_positions", "max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return loaded.max_length


def capture_seq2seq(
    source: str,
    model: str | os.PathLike[str] | LoadedModel | PreTrainedModel | None = None,
    *,
    decoder_text: str | None = None,
    generate: int | None = None,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None = None,
    truncate: bool = False,
    trust_remote_code: bool = False,
) -> Seq2SeqAttention:
    """Run an encoder–decoder model on ``source`` and a target; return all three kinds of attention.

    Parameters
    ----------
    source
        The text the encoder reads.
    model
        Anything :func:`attnflow.capture.load_model` accepts; it must be an
        encoder–decoder model with a language-model head (``AutoModelForSeq2SeqLM``).
    decoder_text
        The target, read by the decoder with teacher forcing.
    generate
        Instead of ``decoder_text``: let the model continue greedily (``do_sample=False``)
        for at most this many tokens, stopping at its end-of-sequence token.
    truncate
        Cut a source longer than the model's maximum instead of raising.

    Returns
    -------
    Seq2SeqAttention
        Encoder, decoder and cross attention as float64 arrays, the tokens, and the
        log-probability of every target token.

    Raises
    ------
    AttnflowError
        For an empty source or target, both or neither of ``decoder_text`` and
        ``generate``, a text longer than the model allows (the source without
        ``truncate``; the target always), or a model that is not encoder–decoder.

    Notes
    -----
    The model runs with eager attention inside :func:`attnflow.capture.eager_attention`;
    its attention implementation, training mode and ``requires_grad`` flags are
    restored afterwards.

    Examples
    --------
    >>> cap = capture_seq2seq("7 2 9", "reverse", decoder_text="9 2 7")
    >>> cap.source_tokens, cap.target_tokens
    (['7', '2', '9', '</s>'], ['<pad>', '9', '2', '7'])
    >>> cap.cross.shape, cap.predicted_token
    ((2, 2, 4, 4), '7')
    """
    _check_text(source, "source")
    if (decoder_text is None) == (generate is None):
        raise AttnflowError(
            "Give exactly one of decoder_text (the target to read) and generate (N tokens to generate)"
            + ("; got both." if decoder_text is not None else "; got neither.")
        )
    if decoder_text is not None:
        _check_text(decoder_text, "decoder_text")
    else:
        generate = _check_count(generate)
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code)
    require_seq2seq(loaded, "decoder_text" if decoder_text is not None else "generate")
    source_ids, truncated = _encode_source(loaded, source, truncate)
    import torch

    with eager_attention(loaded.model), torch.no_grad():
        if decoder_text is not None:
            target_ids = _encode_target(loaded, decoder_text)
        else:
            target_ids = generate_target(loaded, source_ids, int(generate))
        _check_target_length(loaded, target_ids)
        output = _forward(loaded, source_ids, target_ids, output_attentions=True)
    return _package(loaded, output, source, source_ids, target_ids, decoder_text, truncated)


def _check_text(text: Any, name: str) -> None:
    if not isinstance(text, str):
        raise AttnflowError(f"The '{name}' parameter must be a string; got {type(text).__name__} instead.")
    if not text.strip():
        raise AttnflowError(f"The {name.replace('_', ' ')} is empty or only whitespace; give at least one word.")


def _check_count(generate: Any) -> int:
    if isinstance(generate, bool) or not isinstance(generate, (int, np.integer)) or generate < 1:
        raise AttnflowError(f"The 'generate' parameter must be a positive integer; got {generate!r} instead.")
    return int(generate)


def _special_ids(loaded: LoadedModel) -> set[int]:
    return {int(i) for i in getattr(loaded.tokenizer, "all_special_ids", []) or []}


def _encode_source(loaded: LoadedModel, text: str, truncate: bool) -> tuple[list[int], bool]:
    tokenizer = loaded.tokenizer
    try:
        ids = [int(i) for i in tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]]
    except Exception as exc:
        raise AttnflowError(f"The tokenizer of the model {loaded.name!r} failed on the source: {exc}") from None
    if not [i for i in ids if i not in _special_ids(loaded)]:
        raise AttnflowError("The source is empty once tokenized (only special or invisible characters).")
    limit = loaded.max_length
    if limit is not None and len(ids) > limit:
        if not truncate:
            raise AttnflowError(
                f"The source has {len(ids)} tokens (special tokens included) but the model {loaded.name!r} accepts "
                f"at most {limit}; pass truncate=True (CLI: --truncate) to keep the first {limit}, or shorten it."
            )
        ids = [int(i) for i in tokenizer(text, truncation=True, max_length=limit, verbose=False)["input_ids"]]
        return ids, True
    return ids, False


def _start_id(loaded: LoadedModel) -> int:
    config = loaded.model.config
    for candidate in (
        getattr(config, "decoder_start_token_id", None),
        getattr(getattr(loaded.model, "generation_config", None), "decoder_start_token_id", None),
        getattr(config, "pad_token_id", None),
    ):
        if isinstance(candidate, int) and candidate >= 0:
            return candidate
    raise AttnflowError(
        f"The model {loaded.name!r} names no decoder start token (config.decoder_start_token_id); attnflow cannot "
        "build its decoder input."
    )


def _eos_id(loaded: LoadedModel) -> int | None:
    config = loaded.model.config
    for candidate in (getattr(loaded.tokenizer, "eos_token_id", None), getattr(config, "eos_token_id", None)):
        if isinstance(candidate, int):
            return candidate
    return None


def _encode_target(loaded: LoadedModel, text: str) -> list[int]:
    """``[decoder start] + the target's tokens``, without the end-of-sequence token the tokenizer appends."""
    tokenizer = loaded.tokenizer
    try:
        ids = [int(i) for i in tokenizer(text_target=text, add_special_tokens=True, verbose=False)["input_ids"]]
    except Exception as exc:
        raise AttnflowError(f"The tokenizer of the model {loaded.name!r} failed on the decoder text: {exc}") from None
    eos = _eos_id(loaded)
    if ids and ids[-1] == eos:
        ids = ids[:-1]
    if not [i for i in ids if i not in _special_ids(loaded)]:
        raise AttnflowError("The decoder text is empty once tokenized (only special or invisible characters).")
    return [_start_id(loaded), *ids]


def _check_target_length(loaded: LoadedModel, target_ids: list[int]) -> None:
    limit = decoder_max_length(loaded)
    if limit is not None and len(target_ids) > limit:
        raise AttnflowError(
            f"The target has {len(target_ids)} decoder positions (the start token included) but the model "
            f"{loaded.name!r} accepts at most {limit}; shorten the decoder text (or ask for fewer tokens)."
        )


def generate_target(loaded: LoadedModel, source_ids: list[int], max_new_tokens: int) -> list[int]:
    """The model's greedy continuation of ``source_ids``: ``[decoder start] + tokens``, end-of-sequence dropped.

    Uses the model's own ``generate`` with ``do_sample=False`` and one beam, so the
    result is deterministic; generation stops at the end-of-sequence token or after
    ``max_new_tokens`` tokens.
    """
    import torch

    limit = decoder_max_length(loaded)
    if limit is not None and max_new_tokens + 1 > limit:
        raise AttnflowError(
            f"generate={max_new_tokens} needs {max_new_tokens + 1} decoder positions but the model {loaded.name!r} "
            f"accepts at most {limit}; ask for at most {limit - 1} tokens."
        )
    model = loaded.model
    device = getattr(model, "device", None)
    input_ids = torch.tensor([source_ids], dtype=torch.long, device=device)
    start = _start_id(loaded)
    with model_failures(f"The model {loaded.name!r} failed while generating"):
        produced = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            min_new_tokens=0,
            do_sample=False,
            num_beams=1,
            decoder_start_token_id=start,
            pad_token_id=getattr(model.config, "pad_token_id", None),
            eos_token_id=_eos_id(loaded),
        )
    ids = [int(i) for i in produced[0].tolist()]
    if not ids or ids[0] != start:
        ids = [start, *ids]
    eos = _eos_id(loaded)
    if eos is not None and eos in ids[1:]:
        ids = ids[: ids.index(eos, 1)]
    if len(ids) < 2:
        raise AttnflowError(
            f"The model {loaded.name!r} generated no token before its end-of-sequence token for this source; "
            "give the target with decoder_text (--decoder-text) instead."
        )
    return ids


def _forward(
    loaded: LoadedModel, source_ids: list[int], target_ids: list[int], *, output_attentions: bool
) -> Any:
    import torch

    model = loaded.model
    device = getattr(model, "device", None)
    input_ids = torch.tensor([source_ids], dtype=torch.long, device=device)
    decoder_ids = torch.tensor([target_ids], dtype=torch.long, device=device)
    with model_failures(f"The model {loaded.name!r} failed while computing attention"):
        return model(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            decoder_input_ids=decoder_ids,
            output_attentions=output_attentions,
            use_cache=False,
            return_dict=True,
        )


def _attention_stack(loaded: LoadedModel, layers: Any, kind: str, shape: tuple[int, int]) -> np.ndarray:
    import torch

    if not layers:
        raise AttnflowError(
            f"The model {loaded.name!r} returned no {kind} attention even with eager attention and "
            "output_attentions=True; attnflow cannot capture its attention."
        )
    arrays = []
    for index, layer in enumerate(layers):
        if not isinstance(layer, torch.Tensor) or layer.ndim != 4 or tuple(layer.shape[-2:]) != shape:
            got = tuple(layer.shape) if isinstance(layer, torch.Tensor) else type(layer).__name__
            raise AttnflowError(
                f"The model {loaded.name!r} returned {kind} attention of layer {index + 1} with shape {got}; "
                f"expected (1, heads, {shape[0]}, {shape[1]})."
            )
        arrays.append(layer[0].detach().cpu().to(torch.float64).numpy())
    array = np.stack(arrays)
    if not np.all(np.isfinite(array)):
        raise AttnflowError(
            f"The model {loaded.name!r} produced NaN or infinite {kind} attention; a float16 model may overflow: "
            "load it in float32."
        )
    return array


def _token_log_probabilities(output: Any, target_ids: list[int]) -> list[float]:
    import torch

    logits = output.logits[0].detach().to(torch.float64)
    log_probs = torch.log_softmax(logits, dim=-1)
    return [float(log_probs[i, target_ids[i + 1]]) for i in range(len(target_ids) - 1)]


def _package(
    loaded: LoadedModel,
    output: Any,
    source: str,
    source_ids: list[int],
    target_ids: list[int],
    decoder_text: str | None,
    truncated: bool,
) -> Seq2SeqAttention:
    ns, nt = len(source_ids), len(target_ids)
    encoder = _attention_stack(loaded, getattr(output, "encoder_attentions", None), "encoder", (ns, ns))
    decoder = _attention_stack(loaded, getattr(output, "decoder_attentions", None), "decoder", (nt, nt))
    cross = _attention_stack(loaded, getattr(output, "cross_attentions", None), "cross", (nt, ns))
    special = _special_ids(loaded)
    tokenizer = loaded.tokenizer
    target_tokens = list(tokenizer.convert_ids_to_tokens(target_ids))
    return Seq2SeqAttention(
        encoder=encoder,
        decoder=decoder,
        cross=cross,
        source_tokens=list(tokenizer.convert_ids_to_tokens(source_ids)),
        source_ids=source_ids,
        source_special=tuple(i for i, t in enumerate(source_ids) if t in special),
        target_tokens=target_tokens,
        target_ids=target_ids,
        target_special=tuple([0] + [i for i, t in enumerate(target_ids) if i > 0 and t in special]),
        model_name=loaded.name,
        source_text=source,
        target_text=decoder_text if decoder_text is not None else _decode(tokenizer, target_ids[1:]),
        generated=decoder_text is None,
        truncated=truncated,
        log_probabilities=_token_log_probabilities(output, target_ids),
        predicted_ids=[int(i) for i in output.logits[0].argmax(dim=-1).tolist()],
    )


def _decode(tokenizer: Any, ids: list[int]) -> str:
    return str(tokenizer.decode(ids, skip_special_tokens=True)).strip()


@dataclass
class Seq2SeqGradients:
    """``dS/dA`` for the three kinds of attention, laid out as in :class:`Seq2SeqAttention`.

    ``score`` is ``S``: the log-probability of the token at ``position + 1`` predicted at decoder ``position``.
    """

    encoder: np.ndarray
    decoder: np.ndarray
    cross: np.ndarray
    position: int
    token_id: int
    score: float


def seq2seq_gradients(
    captured: Seq2SeqAttention,
    model: str | os.PathLike[str] | LoadedModel | PreTrainedModel | None,
    position: int | None = None,
    *,
    token_id: int | None = None,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None = None,
) -> Seq2SeqGradients:
    """The gradient of a target token's log-probability with respect to every attention weight.

    ``S = log p(token_id | source, target[:position + 1])``, predicted at decoder
    ``position`` (default :attr:`Seq2SeqAttention.predicted_position`); ``token_id``
    defaults to the target token at ``position + 1``. In eager attention the
    returned weights are the tensors the model multiplies the values with, so
    ``torch.autograd.grad`` gives ``dS/dA`` directly (docs/design.md §7).

    Examples
    --------
    >>> cap = capture_seq2seq("7 2 9", "reverse", decoder_text="9 2 7")
    >>> grads = seq2seq_gradients(cap, "reverse")
    >>> grads.cross.shape == cap.cross.shape, grads.position
    (True, 2)
    """
    import torch

    loaded = load_model(model, tokenizer)
    require_seq2seq(loaded)
    position, token_id = _target_score_inputs(captured, position, token_id)
    with eager_attention(loaded.model), torch.enable_grad():
        for param in loaded.model.parameters():
            param.requires_grad_(True)  # restored by eager_attention
        output = _forward(loaded, captured.source_ids, captured.target_ids, output_attentions=True)
        groups = [output.encoder_attentions, output.decoder_attentions, output.cross_attentions]
        flat = [layer for group in groups for layer in group]
        score = torch.log_softmax(output.logits[0, position].to(torch.float64), dim=-1)[int(token_id)]
        grads = torch.autograd.grad(score, flat, allow_unused=True)
    arrays = []
    start = 0
    for group in groups:
        part = []
        for layer, grad in zip(flat[start : start + len(group)], grads[start : start + len(group)], strict=True):
            value = torch.zeros_like(layer) if grad is None else grad
            part.append(value[0].detach().cpu().to(torch.float64).numpy())
        start += len(group)
        arrays.append(np.stack(part))
    return Seq2SeqGradients(arrays[0], arrays[1], arrays[2], position, int(token_id), float(score.detach()))


@dataclass(frozen=True)
class Seq2SeqTarget:
    """What an attribution method explains on an encoder–decoder model, bound to one source.

    The log-probability of ``token_id`` at the last decoder position of the model
    input, teacher-forced (as grad-rollout and the ground truths of
    :mod:`attnflow.evaluate.seq2seq` score a target token). Each row of that input is
    the ``source_length`` source ids, then the target prefix up to the explained position.

    Examples
    --------
    >>> import torch
    >>> from attnflow.capture import load_model
    >>> cap = capture_seq2seq("7 2 9", "reverse", decoder_text="9 2 7")
    >>> target = Seq2SeqTarget(cap.n_source, cap.target_ids[3])  # position 2 predicts the third target token
    >>> ids = torch.tensor([cap.source_ids + cap.target_ids[:3]])
    >>> value = target.forward(load_model("reverse").model, input_ids=ids, attention_mask=torch.ones_like(ids))
    >>> bool(abs(float(value[0].detach()) - cap.log_probabilities[2]) < 1e-5)
    True
    """

    source_length: int
    token_id: int

    def forward(self, model: Any, *, input_ids: Any, attention_mask: Any = None, kind: str = "score") -> Any:
        """The target's log-probability per row of ``input_ids`` ``(B, ns + t + 1)``, ``(B,)``, differentiable."""
        import torch

        source, target = input_ids[:, : self.source_length], input_ids[:, self.source_length :]
        with model_failures("The encoder-decoder model failed while scoring the target token"):
            output = model(input_ids=source, attention_mask=torch.ones_like(source), decoder_input_ids=target,
                           use_cache=False, return_dict=True)
        return torch.log_softmax(output.logits[:, -1].to(torch.float64), dim=-1)[:, self.token_id]


def _blank_id(loaded: LoadedModel) -> int:
    tokenizer = loaded.tokenizer
    for candidate in (getattr(tokenizer, "unk_token_id", None), getattr(tokenizer, "pad_token_id", None)):
        if isinstance(candidate, int) and candidate >= 0:
            return candidate
    raise AttnflowError(f"The tokenizer of the model {loaded.name!r} has no unknown or pad token to blank out with.")


def _target_score_inputs(
    captured: Seq2SeqAttention, position: int | None, token_id: int | None
) -> tuple[int, int]:
    nt = captured.n_target
    position = captured.predicted_position if position is None else int(position)
    if not 0 <= position < nt:
        raise AttnflowError(f"The decoder position must be from 0 to {nt - 1}; got {position}.")
    if token_id is None:
        if position + 1 >= nt:
            raise AttnflowError(
                f"Decoder position {position} is the last one: its next token is not in the target; give token_id."
            )
        token_id = captured.target_ids[position + 1]
    return position, int(token_id)


def seq2seq_blankout(
    captured: Seq2SeqAttention,
    model: str | os.PathLike[str] | LoadedModel | PreTrainedModel | None,
    position: int | None = None,
    *,
    token_id: int | None = None,
) -> np.ndarray:
    """Blank-out of the source tokens: ``|S - S(source token j replaced by the blank token)|``, ``(ns,)``.

    ``S`` is the log-probability of ``token_id`` (default: the target token after
    ``position``) at decoder ``position`` (default: the one before the last target
    token), the target read with teacher forcing. The blank token is the
    tokenizer's unknown token (``<unk>``, as the paper's ``[UNK]``), else its pad
    token. Special source tokens get NaN and are never blanked. All blanked
    sources run as one batch.

    Examples
    --------
    >>> cap = capture_seq2seq("7 2 9", "reverse", decoder_text="9 2 7")
    >>> values = seq2seq_blankout(cap, "reverse")
    >>> int(np.nanargmax(values)), bool(np.isnan(values[-1]))   # '7' is the digit being written; '</s>' special
    (0, True)
    """
    import torch

    loaded = load_model(model)
    require_seq2seq(loaded)
    position, token_id = _target_score_inputs(captured, position, token_id)
    blank = _blank_id(loaded)
    content = [j for j in range(captured.n_source) if j not in set(captured.source_special)]
    rows = [list(captured.source_ids)] + [
        [blank if i == j else t for i, t in enumerate(captured.source_ids)] for j in content
    ]
    model_ = loaded.model
    device = getattr(model_, "device", None)
    inputs = torch.tensor(rows, dtype=torch.long, device=device)
    decoder = torch.tensor([captured.target_ids] * len(rows), dtype=torch.long, device=device)
    with eager_attention(model_), torch.no_grad(), model_failures(
        f"The model {loaded.name!r} failed while blanking out source tokens"
    ):
        logits = model_(
            input_ids=inputs, attention_mask=torch.ones_like(inputs), decoder_input_ids=decoder, use_cache=False,
            return_dict=True,
        ).logits
    scores = torch.log_softmax(logits[:, position].to(torch.float64), dim=-1)[:, token_id].cpu().numpy()
    out = np.full(captured.n_source, np.nan)
    out[content] = np.abs(scores[0] - scores[1:])
    return out


def seq2seq_input_gradients(
    captured: Seq2SeqAttention,
    model: str | os.PathLike[str] | LoadedModel | PreTrainedModel | None,
    position: int | None = None,
    *,
    token_id: int | None = None,
) -> np.ndarray:
    """Input gradients of the source tokens: ``|sum_d dS/dx_jd|``, ``(ns,)``, at the encoder's first layer's input.

    ``S`` as in :func:`seq2seq_blankout`. ``x`` is the vector that enters the
    encoder's first layer (token embedding, scale and positions:
    :mod:`attnflow.capture.gradient_point`), where the paper's authors took
    theirs. Special source tokens get NaN.

    Examples
    --------
    >>> cap = capture_seq2seq("7 2 9", "reverse", decoder_text="9 2 7")
    >>> values = seq2seq_input_gradients(cap, "reverse")
    >>> values.shape, bool(np.all(values[:3] > 0)), bool(np.isnan(values[-1]))
    ((4,), True, True)
    """
    import torch


    loaded = load_model(model)
    require_seq2seq(loaded)
    position, token_id = _target_score_inputs(captured, position, token_id)
    point = gradient_point(loaded.model.get_encoder())
    with eager_attention(loaded.model), torch.enable_grad(), capture_point(point) as seen:
        output = _forward(loaded, captured.source_ids, captured.target_ids, output_attentions=False)
        score = torch.log_softmax(output.logits[0, position].to(torch.float64), dim=-1)[token_id]
        (grad,) = torch.autograd.grad(score, seen[0])
        grad = grad[0].detach().to(torch.float64).sum(-1).abs().cpu().numpy()
    out = np.full(captured.n_source, np.nan)
    content = [j for j in range(captured.n_source) if j not in set(captured.source_special)]
    out[content] = grad[content]
    return out
