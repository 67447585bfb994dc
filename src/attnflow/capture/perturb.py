"""Run a model on perturbed inputs and differentiate it: the raw material of ``attnflow.evaluate``.

Shapes, written once: an example is a list of ``n`` token ids (special tokens
included); importance arrays are float64 ``(n,)``, NaN at the positions that were
not scored (special tokens, by the evaluation's rule).

- :func:`score_sequences`: the target's value on many token sequences (of any
  lengths), padded on the right and batched, without gradients;
- :func:`blankout`: ``|value(x) - value(x with token j blanked)|`` for each ``j``;
- :func:`input_gradients`: ``g = dS/dx`` at the first layer's input ``x`` (the
  embedding module's output; :mod:`attnflow.capture.gradient_point`), from which
  :func:`gradient_importance` makes ``|sum_d g|`` (the paper's), gradient x input
  ``|sum_d g x|`` and saliency ``||g||_2``;
- :func:`integrated_gradients`: Captum's ``IntegratedGradients`` at the same
  point, along the straight path from the blanked input's ``x`` to the real one,
  summed over the hidden axis.

Every model run happens inside :func:`attnflow.capture.eager_attention` (the same
attention implementation as the captured weights; evaluation mode; everything
restored afterwards). Gradients are taken with ``torch.autograd.grad`` with respect
to the point only, so no ``.grad`` is left on the model's parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import AttnflowError
from ._eager import eager_attention
from .gradient_point import GradientPoint, capture_point, gradient_point, point_gradients, replace_point
from .models import LoadedModel
from .text import _pad_id

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .targets import BoundTarget, ValueKind

#: With ``batch_size=None``, sequences per forward pass are chosen so that a batch
#: holds at most this many tokens; the batch is halved on an out-of-memory error.
MAX_BATCH_TOKENS = 32768

BLANK_CHOICES = ("unk", "mask", "pad")


def attribution_blank_id(loaded: LoadedModel) -> int:
    """The blank of the attribution methods' baselines: the unknown token, or id 0 for a tokenizer without one.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> attribution_blank_id(load_model())
    100
    """
    return blank_token_id(loaded, "unk") if getattr(loaded.tokenizer, "unk_token_id", None) is not None else 0


def blank_token_id(loaded: LoadedModel, blank: str = "unk") -> int:
    """The id of the token that blanks a position out: ``"unk"``, ``"mask"``, ``"pad"`` or a token.

    Raises :class:`AttnflowError` when the tokenizer has no such token.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> lm = load_model()
    >>> blank_token_id(lm, "unk"), blank_token_id(lm, "mask"), blank_token_id(lm, "[PAD]")
    (100, 103, 0)
    """
    tokenizer = loaded.tokenizer
    if not isinstance(blank, str) or not blank.strip():
        raise AttnflowError(
            f"The 'blank' parameter must be one of {', '.join(BLANK_CHOICES)} or a token of the vocabulary; "
            f"got {blank!r} instead."
        )
    key = blank.strip().lower()
    if key in BLANK_CHOICES:
        token_id = getattr(tokenizer, f"{key}_token_id", None)
        if token_id is None:
            others = [c for c in BLANK_CHOICES if getattr(tokenizer, f"{c}_token_id", None) is not None]
            raise AttnflowError(
                f"The tokenizer of the model {loaded.name!r} has no {key} token to blank tokens out with; "
                f"use {', '.join(others) or 'a token of its vocabulary'} instead (blank=..., CLI --blank)."
            )
        return int(token_id)
    vocab = tokenizer.get_vocab()
    if blank in vocab:
        return int(vocab[blank])
    raise AttnflowError(
        f"The 'blank' parameter must be one of {', '.join(BLANK_CHOICES)} or a token of the model "
        f"{loaded.name!r}'s vocabulary; {blank!r} is neither."
    )


def score_sequences(
    loaded: LoadedModel,
    bound: BoundTarget,
    sequences: Sequence[Sequence[int]],
    *,
    kind: ValueKind = "value",
    batch_size: int | None = None,
) -> np.ndarray:
    """The target's value on each token sequence, ``(len(sequences),)``, without gradients.

    Sequences may differ in length; each batch is padded on the right. With
    ``batch_size=None`` a batch holds up to :data:`MAX_BATCH_TOKENS` tokens, so
    the blanked copies of a short example go through in one forward pass; on an
    out-of-memory error the batch is halved and retried.
    """
    import torch

    if not sequences:
        return np.zeros(0)
    if any(len(seq) == 0 for seq in sequences):
        raise AttnflowError("Cannot score an empty token sequence.")
    size = _batch_size(batch_size, max(len(seq) for seq in sequences), len(sequences))
    model = loaded.model
    pad = _pad_id(loaded)
    out = np.empty(len(sequences))
    with eager_attention(model), torch.no_grad():
        start = 0
        while start < len(sequences):
            chunk = sequences[start : start + size]
            try:
                ids, mask = _pad(chunk, pad, _device(model))
                values = bound.forward(model, input_ids=ids, attention_mask=mask, kind=kind)
            except Exception as exc:
                if size == 1 or not _out_of_memory(exc):
                    raise
                size = max(1, size // 2)  # as few passes as memory allows: halve and retry
                continue
            out[start : start + len(chunk)] = values.detach().cpu().double().numpy()
            start += len(chunk)
    return out


def blankout(
    loaded: LoadedModel,
    bound: BoundTarget,
    input_ids: Sequence[int],
    positions: Sequence[int],
    *,
    blank_id: int,
    batch_size: int | None = None,
) -> np.ndarray:
    """Blank-out importance: ``|value(x) - value(x with token j replaced by blank_id)|``.

    Parameters
    ----------
    loaded, bound
        The model and the target fixed for this example (:meth:`Target.bind`).
    input_ids
        The example's ``n`` token ids, special tokens included.
    positions
        The positions to blank out, one copy each; the others get NaN.
    blank_id
        The replacement token (see :func:`blank_token_id`).

    Returns
    -------
    ndarray ``(n,)``
        The unperturbed input is scored in the same batch as its blanked copies.
    """
    ids = [int(i) for i in input_ids]
    copies = [ids]
    for position in positions:
        blanked = list(ids)
        blanked[position] = int(blank_id)
        copies.append(blanked)
    values = score_sequences(loaded, bound, copies, kind="value", batch_size=batch_size)
    out = np.full(len(ids), np.nan)
    out[list(positions)] = np.abs(values[1:] - values[0])
    return out


def input_gradients(
    loaded: LoadedModel, bound: BoundTarget, input_ids: Sequence[int], point: GradientPoint | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of the target's score at the first layer's input, and that input.

    The point is :func:`attnflow.capture.gradient_point.gradient_point`: the vector
    that enters the first layer (the embedding module's output), where the paper's
    authors took their input gradients.

    Returns
    -------
    gradient, inputs : ndarray ``(n, d)`` each
        ``d`` is the hidden size. Importances follow from :func:`gradient_importance`.
    """
    return point_gradients(loaded, bound, list(input_ids), point)


def gradient_importance(
    gradient: np.ndarray, inputs: np.ndarray, *, sum_defined: bool = True
) -> dict[str, np.ndarray]:
    """The gradient yardsticks from ``(n, d)`` arrays ``g`` and ``x``.

    ``gradient`` is the paper's ``|sum_d g|`` (NaN everywhere when ``sum_defined`` is
    false: the point is shift-invariant and the sum is round-off), ``grad_x_input``
    is ``|sum_d g * x|`` and ``saliency`` is ``||g||_2``.

    Examples
    --------
    >>> g = np.array([[1.0, -3.0], [0.5, 0.5]]); x = np.array([[2.0, 1.0], [1.0, -1.0]])
    >>> {k: v.round(3).tolist() for k, v in gradient_importance(g, x).items()}
    {'gradient': [2.0, 1.0], 'grad_x_input': [1.0, 0.0], 'saliency': [3.162, 0.707]}
    >>> gradient_importance(g, x, sum_defined=False)["gradient"].tolist()
    [nan, nan]
    """
    paper = np.abs(gradient.sum(axis=-1)) if sum_defined else np.full(gradient.shape[0], np.nan)
    return {
        "gradient": paper,
        "grad_x_input": np.abs((gradient * inputs).sum(axis=-1)),
        "saliency": np.linalg.norm(gradient, axis=-1),
    }


class IntegratedGradients(NamedTuple):
    """What :func:`integrated_gradients` returns: per-token importance and the convergence delta."""

    importance: np.ndarray
    delta: float
    relative_delta: float


def integrated_gradients(
    loaded: LoadedModel,
    bound: BoundTarget,
    input_ids: Sequence[int],
    baseline_ids: Sequence[int],
    *,
    n_steps: int = 50,
    batch_size: int | None = None,
    point: GradientPoint | None = None,
) -> IntegratedGradients:
    """Integrated gradients (Captum) at the first layer's input of the target's score: ``|sum_d IG|``.

    The path is the straight line, at the first layer's input (the point of
    :func:`input_gradients`), from that input for ``baseline_ids`` (the example
    with its non-special tokens blanked) to the one for the real tokens, in
    ``n_steps`` Gauss-Legendre steps, with the attention mask of the real input.

    Returns
    -------
    IntegratedGradients
        ``(importance, delta, relative_delta)``: ``importance`` ``(n,)``; ``delta``,
        Captum's convergence delta ``sum(attributions) - (S(x) - S(baseline))``;
        ``relative_delta``, ``delta / |S(x) - S(baseline)|`` (NaN when that is 0).
        Near 0 when ``n_steps`` is enough (docs/evaluation.md has measured figures).

    Raises
    ------
    AttnflowError
        When Captum is not installed (``pip install captum``).
    """
    signed, gap = layer_integrated_gradients(
        loaded, bound, input_ids, baseline_ids, n_steps=n_steps, batch_size=batch_size, point=point
    )
    per_token = signed.sum(axis=-1)
    change = float(per_token.sum()) - gap  # S(x) - S(baseline)
    relative = gap / abs(change) if change != 0 else float("nan")
    return IntegratedGradients(np.abs(per_token), gap, relative)


def layer_integrated_gradients(
    loaded: LoadedModel,
    bound: BoundTarget,
    input_ids: Sequence[int],
    baseline_ids: Sequence[int],
    *,
    n_steps: int = 50,
    batch_size: int | None = None,
    point: GradientPoint | None = None,
) -> tuple[np.ndarray, float]:
    """Captum's signed integrated gradients at the point, ``(n, d)``, and the convergence delta.

    Captum integrates the model as a function of the point's value (the forward
    pass runs on the real ids with that value substituted by a hook).
    """
    import torch

    try:
        from captum.attr import IntegratedGradients as CaptumIG
    except ImportError:  # pragma: no cover - a declared dependency of the evaluation
        raise AttnflowError(
            "Integrated gradients need Captum; install it with: pip install captum"
        ) from None
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise AttnflowError(f"The 'ig_steps' parameter must be a positive integer; got {n_steps!r} instead.")
    if len(baseline_ids) != len(input_ids):
        raise AttnflowError("The baseline of integrated gradients must have as many tokens as the input.")
    point = point or gradient_point(loaded)
    model = loaded.model
    device = _device(model)
    ids = torch.tensor([list(input_ids), list(baseline_ids)], dtype=torch.long, device=device)
    internal = _batch_size(batch_size, len(input_ids), n_steps)
    with eager_attention(model), torch.no_grad(), capture_point(point) as seen:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), **_extra_inputs(model, ids))
    inputs, baselines = seen[0].detach()[:1], seen[0].detach()[1:]

    def forward(values: torch.Tensor) -> torch.Tensor:  # the model with the point's value replaced
        batch = ids[:1].expand(values.shape[0], -1)
        with replace_point(point, lambda _old: values):
            return bound.forward(model, input_ids=batch, attention_mask=torch.ones_like(batch), kind="score")

    with eager_attention(model), torch.enable_grad():
        attributions, delta = CaptumIG(forward).attribute(
            inputs,
            baselines=baselines,
            n_steps=n_steps,
            internal_batch_size=internal,
            return_convergence_delta=True,
        )
    signed = attributions[0].detach().cpu().double().numpy()
    return signed, float(delta.detach().cpu().double().reshape(-1)[0])


def _extra_inputs(model: Any, ids: torch.Tensor) -> dict[str, Any]:
    """What a forward pass needs besides the ids: decoder ids for an encoder-decoder model."""
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return {"decoder_input_ids": ids[:, :1]}
    return {}


def _device(model: Any) -> Any:
    return getattr(model, "device", None)


def _out_of_memory(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it wraps) is an out-of-memory error of torch or the host."""
    while exc is not None:
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            return True
        if isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower():
            return True
        exc = exc.__cause__
    return False


def _batch_size(batch_size: int | None, length: int, count: int) -> int:
    if batch_size is None:
        return max(1, min(count, MAX_BATCH_TOKENS // max(1, length)))
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise AttnflowError(
            f"The 'batch_size' parameter must be a positive integer or None; got {batch_size!r} instead."
        )
    return int(batch_size)


def _pad(sequences: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids.to(device), mask.to(device)
