"""Capture the attention weights of a Hugging Face text model, per example, padding removed.

Shapes, written once:

- ``CapturedAttention.attentions``: float64 ``(L, H, n, n)``; ``[l-1, h, i, j]`` is how
  much query ``i`` attends to key ``j`` in head ``h`` of layer ``l``. Rows sum to 1;
  for decoders (``is_causal``) entries above the diagonal are 0. With
  ``heads="mean"`` (``"max"``, ``"min"``) the heads are fused while the model runs and
  ``attentions`` is float32 ``(L, 1, n, n)``: one fused "head" per layer
  (``head_fusion`` says which fusion).
- ``tokens`` and ``input_ids``: length ``n``, special tokens included
  (``[CLS]`` / ``[SEP]`` for BERT, ``<s>`` / ``</s>`` for RoBERTa, ``<s>`` for Llama).
- ``special_positions``: the indices in ``0..n-1`` of the special tokens.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from ..errors import AttnflowError
from ._eager import eager_attention
from ._failures import model_failures
from ._fused_attention import fused_attention, streamable
from ._hooks import AttentionCall, attention_hooks, attention_sites
from ._reduce import EXACT_ROWS, LayerAccumulator, check_heads, reduce_layer
from ._shapes import AttentionShape
from .chat import special_tokens_mask
from .models import LoadedModel, load_model

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class CapturedAttention(AttentionShape):
    """The attention of one text: ``(L, H, n, n)`` weights with the tokens they belong to.

    Checked when built: ``attentions`` is 4-D and square in its last two axes, its
    ``n`` matches ``tokens`` and ``input_ids``, and ``special_positions`` lie in
    ``0..n-1``.

    Examples
    --------
    >>> c = CapturedAttention(np.full((1, 1, 2, 2), 0.5), ["[CLS]", "hi"], [101, 7632], (0,),
    ...                       "toy", False, "hi")
    >>> c.n_layers, c.n_heads, c.n_tokens, c.content_positions
    (1, 1, 2, (1,))
    """

    attentions: np.ndarray
    tokens: list[str]
    input_ids: list[int]
    special_positions: tuple[int, ...]
    model_name: str
    is_causal: bool
    text: str
    #: True when the text was cut to the model's maximum length (``truncate=True``).
    truncated: bool = False
    #: ``None``: ``attentions`` holds every head, float64. ``"mean"``, ``"max"`` or ``"min"``:
    #: the heads were fused while the model ran; ``attentions`` is float32 ``(L, 1, n, n)``.
    head_fusion: str | None = None
    #: The largest ``|row sum - 1|`` of the weights the model produced, corrected by
    #: renormalising in float64 (about 1e-7 in float32, up to a few 1e-3 in bfloat16).
    row_correction: float = 0.0
    #: The model's number of heads per layer (``attentions.shape[1]`` unless fused).
    model_heads: int | None = None

    def __post_init__(self) -> None:
        if self.head_fusion is None:
            attentions = np.asarray(self.attentions, dtype=np.float64)
        else:
            if self.head_fusion not in ("mean", "max", "min"):
                raise AttnflowError(
                    f"CapturedAttention.head_fusion must be None, 'mean', 'max' or 'min'; got {self.head_fusion!r}."
                )
            attentions = np.asarray(self.attentions, dtype=np.float32)
            if attentions.ndim == 3:
                attentions = attentions[:, None]
            if attentions.ndim == 4 and attentions.shape[1] != 1:
                raise AttnflowError(
                    "CapturedAttention.attentions fused over heads must have shape (L, n, n) or (L, 1, n, n); "
                    f"got {attentions.shape} instead."
                )
        if attentions.ndim != 4 or attentions.shape[-1] != attentions.shape[-2]:
            raise AttnflowError(
                "CapturedAttention.attentions must have shape (L, H, n, n); "
                f"got {attentions.shape} instead."
            )
        if self.model_heads is None:
            self.model_heads = int(attentions.shape[1])
        n = attentions.shape[-1]
        if len(self.tokens) != n or len(self.input_ids) != n:
            raise AttnflowError(
                f"CapturedAttention has attention over {n} tokens but {len(self.tokens)} tokens and "
                f"{len(self.input_ids)} input ids."
            )
        positions = tuple(int(p) for p in self.special_positions)
        if any(not 0 <= p < n for p in positions):
            raise AttnflowError(
                f"CapturedAttention.special_positions must lie in 0..{n - 1}; got {positions}."
            )
        self.attentions = attentions
        self.tokens = list(self.tokens)
        self.input_ids = [int(i) for i in self.input_ids]
        self.special_positions = positions

    @property
    def content_positions(self) -> tuple[int, ...]:
        """Positions of the tokens that are not special tokens."""
        special = set(self.special_positions)
        return tuple(i for i in range(self.n_tokens) if i not in special)

    @property
    def fused(self) -> np.ndarray:
        """The head-fused attention ``(L, n, n)``: as captured when fused, else the mean over heads.

        Examples
        --------
        >>> c = CapturedAttention(np.full((1, 2, 2, 2), 0.5), ["a", "b"], [1, 2], (), "toy", False, "a b")
        >>> c.fused.shape
        (1, 2, 2)
        """
        if self.head_fusion is not None:
            return self.attentions[:, 0]
        return self.attentions.mean(axis=1)


@dataclass
class _Encoded:
    text: str
    input_ids: list[int]
    special_mask: list[int]
    token_type_ids: list[int] | None
    truncated: bool


@overload
def capture_attention(
    texts: str,
    model: str | os.PathLike[str] | LoadedModel | PreTrainedModel | None = ...,
    *,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None = ...,
    truncate: bool = ...,
    batch_size: int = ...,
    trust_remote_code: bool = ...,
    heads: str = ...,
    dtype: str | None = ...,
    device: str | None = ...,
) -> CapturedAttention: ...


@overload
def capture_attention(
    texts: Sequence[str],
    model: str | os.PathLike[str] | LoadedModel | PreTrainedModel | None = ...,
    *,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None = ...,
    truncate: bool = ...,
    batch_size: int = ...,
    trust_remote_code: bool = ...,
    heads: str = ...,
    dtype: str | None = ...,
    device: str | None = ...,
) -> list[CapturedAttention]: ...


def capture_attention(
    texts: str | Sequence[str],
    model: str | os.PathLike[str] | LoadedModel | PreTrainedModel | None = None,
    *,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None = None,
    truncate: bool = False,
    batch_size: int = 16,
    trust_remote_code: bool = False,
    heads: str = "all",
    dtype: str | None = None,
    device: str | None = None,
) -> CapturedAttention | list[CapturedAttention]:
    """Run a text model and return its attention weights for each text, padding removed.

    Parameters
    ----------
    texts
        One text (gives one :class:`CapturedAttention`) or a sequence of texts
        (gives a list, in the same order).
    model
        Anything :func:`attnflow.capture.load_model` accepts: ``None`` for the bundled
        MiniLM, a bundled name, a folder, a cached Hugging Face id, a loaded model
        (with ``tokenizer=``) or a :class:`LoadedModel`. Pass a :class:`LoadedModel`
        to avoid loading the model again on every call.
    tokenizer
        The tokenizer, when ``model`` is a model object, or to replace the model's own.
    truncate
        Cut texts longer than the model's maximum to that maximum instead of raising.
    batch_size
        Texts per forward pass. Texts are padded on the right; the result equals
        capturing one text at a time.
    trust_remote_code
        Passed to the loader; custom model code runs only when this is true.
    heads
        ``"all"`` (default): every head, float64 ``(L, H, n, n)``. ``"mean"``,
        ``"max"`` or ``"min"``: the heads are fused layer by layer while the model
        runs, and only the float32 ``(L, 1, n, n)`` result is kept; what raw
        attention, rollout and flow with that ``head_fusion`` need, in ``1/(2H)``
        of the memory.
    dtype, device
        Load (or convert, or move) the model in this precision and onto this
        device first, as :func:`attnflow.capture.load_model` does: ``"bfloat16"``,
        ``"float16"``, ``"float32"``; ``"cpu"``, ``"cuda"``, ``"auto"``. The
        per-layer reduction runs on the model's device; only its result comes
        to the CPU.

    Returns
    -------
    CapturedAttention or list of CapturedAttention
        ``attentions`` float64 ``(L, H, n, n)`` (or fused float32 ``(L, 1, n, n)``)
        with rows summing to 1 (over ``j <= i`` for decoders), the tokens as
        strings, their ids, the positions of special tokens, the model's name,
        whether its attention is causal, and ``row_correction``, the largest
        ``|row sum - 1|`` renormalised away (half-precision models).

    Raises
    ------
    AttnflowError
        For an empty or whitespace-only text, a text longer than the model's
        maximum (unless ``truncate=True``), a model that cannot be loaded, or a
        model whose attention cannot be captured.

    Notes
    -----
    ``sdpa`` and flash attention return no weights, so the model runs with eager
    attention (the same softmax, computed explicitly) inside
    :func:`attnflow.capture.eager_attention`; its attention implementation,
    training mode and ``requires_grad`` flags are restored afterwards, also when
    an exception is raised. Gradients are not computed.

    Capture is streamed: a forward hook on each attention module
    (:func:`attnflow.capture._hooks.attention_hooks`) reduces that layer's weights
    as soon as the layer has run and the model is not asked for
    ``output_attentions``, so at most one layer's ``(H, n, n)`` weights are alive
    at a time. The reduction runs on the model's device; rows are renormalised
    in float64 (:mod:`attnflow.capture._reduce`).

    Examples
    --------
    >>> cap = capture_attention("Attention flows.")
    >>> cap.tokens
    ['[CLS]', 'attention', 'flows', '.', '[SEP]']
    >>> cap.attentions.shape, cap.special_positions, cap.model_name
    ((6, 12, 5, 5), (0, 4), 'minilm')
    >>> bool(np.allclose(cap.attentions.sum(-1), 1.0))
    True
    >>> fused = capture_attention("Attention flows.", heads="mean")
    >>> fused.attentions.shape, fused.attentions.dtype, fused.model_heads
    ((6, 1, 5, 5), dtype('float32'), 12)
    >>> bool(np.allclose(fused.fused, cap.attentions.mean(1), atol=1e-6))
    True
    """
    single, items = _check_texts(texts)
    heads = check_heads(heads)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise AttnflowError(
            f"The 'batch_size' parameter must be a positive integer; got {batch_size!r} instead."
        )
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code, dtype=dtype, device=device)
    if loaded.tokenizer is None:
        raise AttnflowError(
            f"The model {loaded.name!r} is an image model (it has no tokenizer); explain an image with "
            "`attnflow explain --image PATH` or attnflow.explain_image(PATH, model)."
        )
    encoded = [
        _encode(loaded, text, truncate, None if single else index) for index, text in enumerate(items)
    ]
    import torch

    results: list[CapturedAttention] = []
    with eager_attention(loaded.model), torch.no_grad():
        for start in range(0, len(encoded), int(batch_size)):
            results.extend(_capture_batch(loaded, encoded[start : start + int(batch_size)], heads))
    return results[0] if single else results


def capture_attention_by(
    text: str, loaded: LoadedModel, run: Any, *, truncate: bool = False
) -> CapturedAttention:
    """One text's attention, every head, from a hooked pass another part of attnflow runs.

    ``run(input_ids)`` runs the model once on the text's token ids and returns each layer's
    ``(H, n, n)`` attention weights as the model computed them (what
    :func:`attnflow.mixing.capture_text` records beside the context-mixing tensors), so
    one forward pass serves both. The text is encoded as :func:`capture_attention`
    encodes it, and rows are renormalised in float64 as it does.

    Examples
    --------
    >>> lm = load_model()
    >>> c = capture_attention_by("One pass.", lm, lambda ids: capture_attention("One pass.", lm).attentions)
    >>> c.tokens, c.attentions.shape
    (['[CLS]', 'one', 'pass', '.', '[SEP]'], (6, 12, 5, 5))
    """

    _check_texts(text)
    item = _encode(loaded, text, truncate, None)
    weights = np.stack([np.asarray(layer, dtype=np.float64) for layer in run(list(item.input_ids))])
    sums = weights.sum(-1)
    if not np.isfinite(sums).all():
        raise _not_finite(loaded, item)
    correction = float(np.abs(sums - 1.0).max()) if sums.size else 0.0
    if correction > EXACT_ROWS:
        weights = weights / np.maximum(sums, 1e-300)[..., None]
    return _captured(loaded, item, weights, row_correction=correction)


def capture_with_outputs(
    text: str, loaded: LoadedModel, *, heads: str = "all", forward: dict[str, Any] | None = None,
    truncate: bool = False,
) -> tuple[CapturedAttention, Any]:
    """One text's attention, as :func:`capture_attention` gives it, and the model's outputs of the same pass.

    ``forward``: more arguments of the pass (e.g. ``output_hidden_states``). The pass
    computes every position's logits, so a target can be read from its outputs
    (:func:`attnflow.capture.plan.capture_planned`).

    Examples
    --------
    >>> captured, outputs = capture_with_outputs("Read once.", load_model())
    >>> captured.attentions.shape[1:], tuple(outputs.last_hidden_state.shape)
    ((12, 5, 5), (1, 5, 384))
    """
    import torch

    _check_texts(text)
    heads = check_heads(heads)
    item = _encode(loaded, text, truncate, None)
    outputs: list[Any] = []
    with eager_attention(loaded.model), torch.no_grad():
        captured = _capture_batch(loaded, [item], heads, outputs=outputs, forward=forward)[0]
    return captured, outputs[0]


def _check_texts(texts: Any) -> tuple[bool, list[str]]:
    if isinstance(texts, str):
        items, single = [texts], True
    elif isinstance(texts, Sequence) and not isinstance(texts, (bytes, bytearray)):
        items, single = list(texts), False
        if not items:
            raise AttnflowError("The 'texts' parameter is an empty sequence; give at least one text.")
    else:
        raise AttnflowError(
            "The 'texts' parameter must be a string or a sequence of strings; "
            f"got {type(texts).__name__} instead."
        )
    for index, text in enumerate(items):
        where = "" if single else f" (text {index})"
        if not isinstance(text, str):
            raise AttnflowError(
                f"The 'texts' parameter must hold strings; got {type(text).__name__}{where} instead."
            )
        if not text.strip():
            raise AttnflowError(
                f"The text{where} is empty or only whitespace; give a text with at least one word."
            )
    return single, items


def _encode(loaded: LoadedModel, text: str, truncate: bool, index: int | None) -> _Encoded:
    if loaded.chat is not None:
        return _encode_chat(loaded, text, truncate, index)
    tokenizer = loaded.tokenizer
    limit = loaded.max_length
    kwargs: dict[str, Any] = {
        "add_special_tokens": True,
        "return_special_tokens_mask": True,
        "return_attention_mask": False,
        "verbose": False,
    }
    try:
        full = tokenizer(text, **kwargs)
    except Exception as exc:
        raise AttnflowError(
            f"The tokenizer of the model {loaded.name!r} failed on the text"
            f"{'' if index is None else f' {index}'}: {exc}"
        ) from None
    n_tokens = len(full["input_ids"])
    truncated = False
    if limit is not None and n_tokens > limit:
        if not truncate:
            which = "The text" if index is None else f"Text {index}"
            raise AttnflowError(
                f"{which} has {n_tokens} tokens (special tokens included) but the model "
                f"{loaded.name!r} accepts at most {limit}; pass truncate=True (CLI: --truncate) to "
                f"keep only the first {limit} tokens, or shorten the text."
            )
        full = tokenizer(text, truncation=True, max_length=limit, **kwargs)
        truncated = True
    ids = [int(i) for i in full["input_ids"]]
    if not ids:
        raise AttnflowError(
            f"The tokenizer of the model {loaded.name!r} turned the text"
            f"{'' if index is None else f' {index}'} into no tokens at all."
        )
    mask = full.get("special_tokens_mask")
    if mask is None or len(mask) != len(ids):
        mask = tokenizer.get_special_tokens_mask(ids, already_has_special_tokens=True)
    if all(int(m) for m in mask):  # e.g. only zero-width or control characters, which tokenizers drop
        raise AttnflowError(
            f"The text{'' if index is None else f' (text {index})'} is empty or only whitespace once the tokenizer "
            "drops invisible and control characters; give a text with at least one word."
        )
    types = full.get("token_type_ids")
    return _Encoded(
        text=text,
        input_ids=ids,
        special_mask=[int(m) for m in mask],
        token_type_ids=None if types is None else [int(t) for t in types],
        truncated=truncated,
    )


def _encode_chat(loaded: LoadedModel, text: str, truncate: bool, index: int | None) -> _Encoded:
    """``text`` as one user turn of the chat template (:mod:`attnflow.capture.chat`); truncation cuts the text."""
    chat = loaded.chat
    frame = len(chat.before) + len(chat.after)
    room = None if loaded.max_length is None else loaded.max_length - frame
    if room is not None and room < 1:
        raise AttnflowError(
            f"The chat template of the model {loaded.name!r} alone has {frame} tokens, as many as the model accepts."
        )
    inner = _encode(replace(loaded, chat=None, max_length=None), text, False, index)
    ids = list(inner.input_ids)
    truncated = False
    if room is not None and len(ids) > room:
        if not truncate:
            which = "The text" if index is None else f"Text {index}"
            raise AttnflowError(
                f"{which} has {len(ids) + frame} tokens in the chat template ({frame} of them the template's) but "
                f"the model {loaded.name!r} accepts at most {loaded.max_length}; pass truncate=True (CLI: "
                f"--truncate) to keep only the first {room} tokens of the text, or shorten it."
            )
        ids, truncated = ids[:room], True
    wrapped = chat.wrap(ids)
    return _Encoded(text=text, input_ids=wrapped, special_mask=special_tokens_mask(loaded, wrapped),
                    token_type_ids=None, truncated=truncated)


def _forward_parameters(model: Any) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return set()


def _attention_only(model: Any) -> dict[str, Any]:
    """Arguments that spare a capture pass the work it does not need: a causal LM's logits of every position.

    A capture reads only attention, so a model that takes ``logits_to_keep`` (transformers'
    causal LMs) computes the logits of the last position only: at 4096 tokens and a
    128 k vocabulary that is 2 GB of float32 logits never made.
    """
    return {"logits_to_keep": 1} if "logits_to_keep" in _forward_parameters(model) else {}


def _pad_id(loaded: LoadedModel) -> int:
    """A valid token id for the padding positions (never attended to by real tokens)."""
    tokenizer, config = loaded.tokenizer, getattr(loaded.model, "config", None)
    candidates = [
        getattr(tokenizer, "pad_token_id", None),
        getattr(config, "pad_token_id", None),
        getattr(tokenizer, "eos_token_id", None),
    ]
    try:
        vocab = int(loaded.model.get_input_embeddings().num_embeddings)
    except Exception:
        vocab = None
    for candidate in candidates:
        if isinstance(candidate, int) and candidate >= 0 and (vocab is None or candidate < vocab):
            return candidate
    return 0


def _batch_inputs(loaded: LoadedModel, batch: list[_Encoded]) -> dict[str, Any]:
    """The padded model inputs of a batch (right padding), on the model's device."""
    import torch

    model = loaded.model
    lengths = [len(item.input_ids) for item in batch]
    width = max(lengths)
    input_ids = torch.full((len(batch), width), _pad_id(loaded), dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        input_ids[row, : lengths[row]] = torch.tensor(item.input_ids, dtype=torch.long)
        attention_mask[row, : lengths[row]] = 1
    accepted = _forward_parameters(model)
    inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "token_type_ids" in accepted and all(item.token_type_ids is not None for item in batch):
        token_types = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            token_types[row, : lengths[row]] = torch.tensor(item.token_type_ids, dtype=torch.long)
        inputs["token_type_ids"] = token_types
    if "use_cache" in accepted:
        inputs["use_cache"] = False
    device = getattr(model, "device", None)
    if device is not None:
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return inputs


def _not_finite(loaded: LoadedModel, item: _Encoded) -> AttnflowError:
    """The error for a text whose attention weights had a NaN or infinite row, naming the fix."""
    return AttnflowError(
        f"The model {loaded.name!r} produced NaN or infinite attention weights for the text "
        f"{item.text[:40]!r}; a float16 model may overflow: load it in float32 or "
        "bfloat16 (CLI: --dtype float32)."
    )


class _LayerReducer:
    """The hook of a streamed capture: reduces each layer's weights per example as the layer returns."""

    def __init__(self, loaded: LoadedModel, batch: list[_Encoded], heads: str) -> None:
        self.loaded = loaded
        self.batch = batch
        self.heads = heads
        self.lengths = [len(item.input_ids) for item in batch]
        self.layers: list[list[Any]] = [[] for _ in batch]
        self.corrections = [0.0 for _ in batch]
        self.n_heads: int | None = None

    def __call__(self, call: AttentionCall) -> None:
        import torch

        weights = call.weights
        width = max(self.lengths)
        if (
            not isinstance(weights, torch.Tensor)
            or weights.ndim != 4
            or weights.shape[0] != len(self.batch)
            or tuple(weights.shape[-2:]) != (width, width)
        ):
            shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
            raise AttnflowError(
                f"The model {self.loaded.name!r} returned attention of layer {call.site.layer + 1} with shape "
                f"{shape}; expected (batch={len(self.batch)}, heads, {width}, {width}). attnflow cannot capture "
                "its attention."
            )
        self.n_heads = int(weights.shape[1])
        with torch.no_grad():
            for row, n in enumerate(self.lengths):
                reduced = reduce_layer(weights[row, :, :n, :n].detach(), self.heads)
                if reduced is None:
                    raise _not_finite(self.loaded, self.batch[row])
                self.layers[row].append(reduced[0])
                self.corrections[row] = max(self.corrections[row], reduced[1])
        return None


def _captured(loaded: LoadedModel, item: _Encoded, array: Any, **extra: Any) -> CapturedAttention:
    """One text's :class:`CapturedAttention` from its encoding and its attention array."""
    return CapturedAttention(
        attentions=array,
        tokens=list(loaded.tokenizer.convert_ids_to_tokens(item.input_ids)),
        input_ids=item.input_ids,
        special_positions=tuple(i for i, m in enumerate(item.special_mask) if m),
        model_name=loaded.name,
        is_causal=loaded.is_decoder,
        text=item.text,
        truncated=item.truncated,
        **extra,
    )


def _capture_batch(
    loaded: LoadedModel, batch: list[_Encoded], heads: str = "all", outputs: list[Any] | None = None,
    forward: dict[str, Any] | None = None,
) -> list[CapturedAttention]:
    """The attention of one batch; with ``outputs`` (a list), the model's outputs are appended to it.

    ``forward``: more arguments of the pass (what a target reads, :meth:`Target.forward_options`);
    a pass whose outputs are kept computes every position's logits.
    """
    import torch

    model = loaded.model
    extra = dict(forward or {}) if outputs is not None else _attention_only(model)
    if heads == "all":

        try:
            attention_sites(model)
        except AttnflowError:  # no attention modules to hook: what the model returns, per head
            arrays = _capture_batch_returned(loaded, batch, outputs, extra if outputs is not None else None)
            return [_captured(loaded, item, array) for item, array in zip(batch, arrays, strict=True)]
    elif streamable(model):
        return _capture_batch_fused(loaded, batch, heads, outputs, extra)
    inputs = _batch_inputs(loaded, batch)
    reducer = _LayerReducer(loaded, batch, heads)
    with (
        attention_hooks(model, reducer, eager=False),
        model_failures(f"The model {loaded.name!r} failed while computing attention"),
    ):
        _keep(outputs, model(**{**inputs, **extra}, return_dict=True))
    if not reducer.layers[0]:
        raise AttnflowError(
            f"The model {loaded.name!r} ({type(model).__name__}) returned no attention weights, "
            "even with eager attention: its attention modules never ran. attnflow cannot capture its "
            "attention. Encoder-decoder and non-transformer models are not supported."
        )
    results = []
    for row, item in enumerate(batch):
        layers = reducer.layers[row]
        array = torch.stack(layers).numpy()
        reducer.layers[row] = []
        results.append(
            _captured(
                loaded,
                item,
                array,
                head_fusion=None if heads == "all" else heads,
                row_correction=reducer.corrections[row],
                model_heads=reducer.n_heads,
            )
        )
    return results


def _keep(outputs: list[Any] | None, output: Any) -> None:
    if outputs is not None:
        outputs.append(output)


def _capture_batch_fused(
    loaded: LoadedModel, batch: list[_Encoded], heads: str, outputs: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> list[CapturedAttention]:
    """The head-fused capture through attnflow's attention function: no layer's ``(H, n, n)`` exists.

    Each example's float32 ``(L, n, n)`` is allocated once and every layer's fusion
    is written into it as soon as the layer has run
    (:mod:`attnflow.capture._fused_attention`).
    """
    import torch


    model = loaded.model
    n_layers = len(attention_sites(model))
    lengths = [len(item.input_ids) for item in batch]
    arrays = [torch.empty((n_layers, n, n), dtype=torch.float32) for n in lengths]
    layers = [
        [LayerAccumulator(heads, n, out=array[layer]) for n, array in zip(lengths, arrays, strict=True)]
        for layer in range(n_layers)
    ]
    inputs = _batch_inputs(loaded, batch)
    with (
        fused_attention(model, layers),
        model_failures(f"The model {loaded.name!r} failed while computing attention"),
    ):
        output = model(**{**inputs, **(_attention_only(model) if extra is None else extra)}, return_dict=True)
        _keep(outputs, output)
    results = []
    for row, (item, array) in enumerate(zip(batch, arrays, strict=True)):
        accumulators = [layers[layer][row] for layer in range(n_layers)]
        if not all(accumulator.finite for accumulator in accumulators):
            raise _not_finite(loaded, item)
        if any(accumulator.count == 0 for accumulator in accumulators):
            raise AttnflowError(
                f"The model {loaded.name!r} ({type(model).__name__}) did not run every attention layer; "
                "attnflow cannot capture its attention."
            )
        results.append(
            _captured(
                loaded,
                item,
                array.numpy(),
                head_fusion=heads,
                row_correction=max(accumulator.correction for accumulator in accumulators),
                model_heads=accumulators[0].count,
            )
        )
    return results


def _capture_batch_returned(
    loaded: LoadedModel, batch: list[_Encoded], outputs: list[Any] | None = None, extra: dict[str, Any] | None = None
) -> list[np.ndarray]:
    """The attention of a batch as ``output_attentions=True`` returns it, float64 ``(L, H, n, n)`` per text.

    The capture attnflow did before streaming: the model keeps every layer's weights
    until the forward ends. Kept as the reference the streamed capture is tested
    against, and for ``benchmarks/capture.py``; call inside :func:`eager_attention`.
    """
    import torch

    inputs = _batch_inputs(loaded, batch)
    with model_failures(f"The model {loaded.name!r} failed while computing attention"):
        output = loaded.model(**{**inputs, **(extra or {})}, output_attentions=True, return_dict=True)
    _keep(outputs, output)
    attentions = _attention_tuple(loaded, output, len(batch), inputs["input_ids"].shape[1])
    return [
        np.stack([layer[row, :, :n, :n].detach().cpu().to(torch.float64).numpy() for layer in attentions])
        for row, n in enumerate(len(item.input_ids) for item in batch)
    ]


def _attention_tuple(loaded: LoadedModel, output: Any, batch: int, width: int) -> tuple[Any, ...]:
    import torch

    attentions = getattr(output, "attentions", None)
    if attentions is None and isinstance(output, dict):
        attentions = output.get("attentions")
    if not attentions:
        raise AttnflowError(
            f"The model {loaded.name!r} ({type(loaded.model).__name__}) returned no attention weights, "
            "even with eager attention and output_attentions=True; attnflow cannot capture its "
            "attention. Encoder-decoder and non-transformer models are not supported."
        )
    for index, layer in enumerate(attentions):
        if (
            not isinstance(layer, torch.Tensor)
            or layer.ndim != 4
            or layer.shape[0] != batch
            or tuple(layer.shape[-2:]) != (width, width)
        ):
            shape = tuple(layer.shape) if isinstance(layer, torch.Tensor) else type(layer).__name__
            raise AttnflowError(
                f"The model {loaded.name!r} returned attention of layer {index + 1} with shape {shape}; "
                f"expected (batch={batch}, heads, {width}, {width}). attnflow cannot capture its attention."
            )
    return tuple(attentions)


def capture_token_ids(
    input_ids: Sequence[int], model: Any = None, *, text: str = "", heads: str = "all"
) -> CapturedAttention:
    """Capture the attention of token ids already made, e.g. a prompt and what a decoder generated after it.

    ``input_ids`` go to the model as they are (no special tokens are added; the
    tokenizer marks the special ones); ``text`` is recorded as the source text;
    ``heads`` is as for :func:`capture_attention` (``"mean"``: fused while the model runs).

    Examples
    --------
    >>> capture_token_ids([101, 7592, 102], "minilm").tokens
    ['[CLS]', 'hello', '[SEP]']
    >>> capture_token_ids([101, 7592, 102], "minilm", heads="mean").attentions.shape
    (6, 1, 3, 3)
    """
    import torch

    heads = check_heads(heads)
    loaded = load_model(model)
    ids = [int(i) for i in input_ids]
    if not ids or loaded.tokenizer is None:
        raise AttnflowError("capture_token_ids needs at least one token id and a text model with a tokenizer.")
    special = special_tokens_mask(loaded, ids)
    encoded = _Encoded(text=text, input_ids=ids, special_mask=special, token_type_ids=None,
                       truncated=False)
    with eager_attention(loaded.model), torch.no_grad():
        return _capture_batch(loaded, [encoded], heads)[0]
