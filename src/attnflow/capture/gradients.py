"""Gradients of a target with respect to the attention weights and to per-head masks.

Shapes, written once (``L`` layers, ``H`` heads, ``n`` tokens, padding removed):

- ``TargetGradients.attentions`` and ``.gradients``: float64 ``(L, H, n, n)``;
  ``gradients[l-1, h, i, j] = dS / dA[l, h, i, j]`` for the target's objective ``S``.
- ``TargetGradients.head_gradients``: float64 ``(L, H)``, ``dS / dxi[l, h]`` at
  ``xi = 1``, where ``xi`` scales the output of head ``h`` of layer ``l`` (the
  per-head mask of Michel et al. 2019).

Attention gradients need no hooks. In eager attention with
``output_attentions=True`` the tensors a model returns are the very softmax
weights it multiplies the values with (dropout is the identity in evaluation
mode, and :func:`attnflow.capture.eager_attention` puts the model in evaluation
mode), so ``torch.autograd.grad(S, attentions)`` gives ``dS/dA`` without touching
the model's code. ``tests/capture/test_gradients.py`` checks this on BERT,
RoBERTa, DistilBERT, GPT-2, Llama and Megatron-BERT (the SVA model): for every
head, ``sum_ij A * dS/dA`` equals the head-mask gradient, which is computed by a
different route (a hook on the output projection) and checked against finite
differences. The identity holds because the head's output is ``A @ V`` and
scaling it by ``xi`` scales ``A``'s contribution by ``xi``.

Per-head masks: transformers 5 removed the ``head_mask`` argument (5.24 has none
in BERT, RoBERTa, DistilBERT, GPT-2, Llama or Megatron-BERT). :func:`head_mask`
therefore scales each head's slice of the input of the attention output
projection (``attention.output.dense``, ``out_lin``, ``c_proj``, ``o_proj``)
with forward pre-hooks, inside a context manager whose ``finally`` removes them.
Scaling head ``h``'s context vector by ``xi`` is exactly what the old
``head_mask`` did (it multiplied the attention probabilities).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import AttnflowError
from ..graph import WeightedAttention
from ._eager import eager_attention
from ._hooks import attention_hooks, attention_output_projections
from ._reduce import EXACT_ROWS
from ._shapes import AttentionShape
from .chat import special_tokens_mask
from .models import LoadedModel, load_model
from .targets import Target, resolve_target, run_model
from .text import _attention_tuple, _batch_inputs, _check_texts, _encode, _Encoded

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .targets import BoundTarget

Objective = Literal["score", "log_probability"]
OBJECTIVES: tuple[str, ...] = ("score", "log_probability")

#: Config attributes holding the number of attention heads, by architecture.
_HEAD_ATTRS = ("num_attention_heads", "n_head", "n_heads", "num_heads")


@dataclass
class TargetGradients(AttentionShape):
    """Attention, its gradient and the head-mask gradient of one input for one target.

    Attributes
    ----------
    attentions, gradients
        float64 ``(L, H, n, n)``: the attention weights of the forward pass that was
        differentiated, and ``dS/dA``. Zero where the objective does not depend on
        the attention (a model that reports attention it does not use).
    head_gradients
        float64 ``(L, H)``: ``dS/dxi`` at ``xi = 1`` for a mask ``xi`` scaling each head's output.
    objective
        ``"score"`` (the target's logit, or the cosine / norm: what Chefer et al.
        differentiate) or ``"log_probability"`` (the log-probability of the class or
        token, the negative loss of Michel et al.; the score for cosine / norm targets).
    value
        The objective's value on this input.
    tokens, input_ids, special_positions
        The ``n`` tokens, their ids, and the positions of special tokens.
    target
        The bound target's description (:meth:`BoundTarget.describe`).

    Examples
    --------
    >>> g = TargetGradients(np.full((1, 1, 2, 2), 0.5), np.zeros((1, 1, 2, 2)), np.zeros((1, 1)),
    ...                     "score", 0.0, ["a", "b"], [1, 2], ())
    >>> g.n_layers, g.n_heads, g.n_tokens
    (1, 1, 2)
    """

    attentions: np.ndarray
    gradients: np.ndarray
    head_gradients: np.ndarray
    objective: str
    value: float
    tokens: list[str]
    input_ids: list[int]
    special_positions: tuple[int, ...]
    target: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.attentions = np.asarray(self.attentions, dtype=np.float64)
        self.gradients = np.asarray(self.gradients, dtype=np.float64)
        self.head_gradients = np.asarray(self.head_gradients, dtype=np.float64)
        shape = self.attentions.shape
        if len(shape) != 4 or shape[-1] != shape[-2] or self.gradients.shape != shape:
            raise AttnflowError(
                f"TargetGradients needs attentions and gradients of the same shape (L, H, n, n); got "
                f"{shape} and {self.gradients.shape}."
            )
        if self.head_gradients.shape != shape[:2]:
            raise AttnflowError(
                f"TargetGradients.head_gradients must have shape {shape[:2]}; got {self.head_gradients.shape}."
            )
        if len(self.tokens) != shape[-1] or len(self.input_ids) != shape[-1]:
            raise AttnflowError(
                f"TargetGradients has attention over {shape[-1]} tokens but {len(self.tokens)} tokens and "
                f"{len(self.input_ids)} input ids."
            )


def count_heads(model: Any) -> int:
    """The number of attention heads per layer, from the model's config.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> count_heads(load_model().model)
    12
    """
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    for attr in _HEAD_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise AttnflowError(
        f"The config of {type(model).__name__} gives no number of attention heads ({', '.join(_HEAD_ATTRS)})."
    )


@contextlib.contextmanager
def head_mask(model: Any, mask: Any) -> Iterator[Any]:
    """Inside the block, the output of head ``h`` of layer ``l`` is multiplied by ``mask[l-1, h]``.

    Parameters
    ----------
    model
        A ``transformers`` model or an :class:`attnflow.capture.LoadedModel`.
    mask
        ``(L, H)``: numpy, nested lists or a torch tensor (a tensor that requires
        grad makes the mask differentiable). 0 prunes a head, 1 keeps it.

    Yields
    ------
    torch.Tensor
        The mask as used, ``(L, H)``, in the model's dtype.

    Notes
    -----
    One forward pre-hook per layer on the attention output projection scales
    that head's slice of its input; works with any attention implementation.
    The hooks are removed on leaving the block, also through an exception.

    Examples
    --------
    >>> import torch
    >>> from attnflow.capture import load_model
    >>> lm = load_model()
    >>> ids = lm.tokenizer("Heads matter.", return_tensors="pt")
    >>> with torch.no_grad():
    ...     full = lm.model(**ids).last_hidden_state
    ...     with head_mask(lm, np.ones((6, 12))):
    ...         same = lm.model(**ids).last_hidden_state
    ...     with head_mask(lm, np.zeros((6, 12))):
    ...         pruned = lm.model(**ids).last_hidden_state
    >>> bool(torch.allclose(full, same)), bool(torch.allclose(full, pruned))
    (True, False)
    """
    import torch

    if isinstance(model, LoadedModel):
        model = model.model
    projections = attention_output_projections(model)
    n_heads = count_heads(model)
    if isinstance(mask, torch.Tensor):
        tensor = mask
    else:
        try:
            tensor = torch.as_tensor(np.asarray(mask, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise AttnflowError(f"The 'mask' parameter must be a numeric (L, H) array; {exc}") from None
    if tuple(tensor.shape) != (len(projections), n_heads):
        raise AttnflowError(
            f"The 'mask' parameter must have shape ({len(projections)}, {n_heads}) (layers, heads) for "
            f"{type(model).__name__}; got {tuple(tensor.shape)} instead."
        )
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    device = next((p.device for p in model.parameters()), None)
    tensor = tensor.to(dtype=dtype, device=device)

    with _scaled_heads(projections, n_heads, lambda layer, hidden: tensor[layer].to(hidden.dtype)[:, None]):
        yield tensor


def target_gradients(
    loaded: LoadedModel,
    bound: BoundTarget | Target,
    input_ids: Sequence[int],
    *,
    objective: Objective = "score",
    head_gradients: bool = True,
    label: Any = None,
) -> TargetGradients:
    """Differentiate a target with respect to every attention weight and every head's mask.

    One forward and one backward pass, with eager attention in evaluation mode;
    the model is restored afterwards and no ``.grad`` is left on its parameters.

    Parameters
    ----------
    loaded
        The model.
    bound
        The target fixed for this input (:meth:`attnflow.capture.targets.Target.bind`); or a
        :class:`~attnflow.capture.targets.Target`, fixed from this pass's own outputs
        (``label``: the input's gold label, for ``"gold"``).
    input_ids
        The input's ``n`` token ids, special tokens included.
    objective
        ``"score"``: the target's logit (or the cosine / norm), as Chefer et al.
        2021 differentiate it. ``"log_probability"``: the log-probability of the
        class or token (the negative cross-entropy of Michel et al. 2019); for
        cosine and norm targets the same as ``"score"``.
    head_gradients
        Also compute the head-mask gradients (adds the mask hooks for the pass).

    Returns
    -------
    TargetGradients

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> from attnflow.capture.targets import resolve_target
    >>> lm = load_model()
    >>> ids = lm.tokenizer("Heads matter.")["input_ids"]
    >>> g = target_gradients(lm, resolve_target("norm", lm).bind(lm, ids), ids)
    >>> g.gradients.shape, g.head_gradients.shape
    ((6, 12, 5, 5), (6, 12))
    >>> bool(np.allclose((g.gradients * g.attentions).sum((-1, -2)), g.head_gradients, atol=1e-4))
    True
    """
    import torch

    if objective not in OBJECTIVES:
        raise AttnflowError(f"The 'objective' parameter must be one of {', '.join(OBJECTIVES)}; got {objective!r}.")
    model = loaded.model
    ids = [int(i) for i in input_ids]
    if not ids:
        raise AttnflowError("Cannot differentiate a target on an empty token sequence.")
    device = getattr(model, "device", None)
    tensor = torch.tensor([ids], dtype=torch.long, device=device)
    attention_mask = torch.ones_like(tensor)
    with contextlib.ExitStack() as stack:
        stack.enter_context(eager_attention(model))
        stack.enter_context(torch.enable_grad())
        mask = None
        if head_gradients:
            ones = torch.ones(len(attention_output_projections(model)), count_heads(model), dtype=torch.float64)
            mask = stack.enter_context(head_mask(model, ones.requires_grad_(True)))
        outputs = run_model(
            model, bound if isinstance(bound, Target) else bound.target, input_ids=tensor,
            attention_mask=attention_mask, output_attentions=True,
        )
        if isinstance(bound, Target):
            bound = bound.bind_outputs(outputs, attention_mask, label)
        attentions = _attentions(loaded, outputs, len(ids))
        value = _objective(bound, outputs, attention_mask, objective)[0]
        wanted = [a for a in attentions if a.requires_grad]
        if mask is not None and mask.requires_grad:
            wanted.append(mask)
        grads = list(torch.autograd.grad(value, wanted, allow_unused=True)) if value.requires_grad and wanted else []
    attention_grads = []
    for layer in attentions:
        grad = grads.pop(0) if layer.requires_grad and grads else None
        attention_grads.append(torch.zeros_like(layer) if grad is None else grad)
    mask_grad = grads.pop(0) if mask is not None and mask.requires_grad and grads else None

    def to_numpy(layers: list[Any]) -> np.ndarray:
        return np.stack([layer[0].detach().cpu().to(torch.float64).numpy() for layer in layers])

    n_layers, n_heads = len(attentions), int(attentions[0].shape[1])
    special = special_tokens_mask(loaded, ids)
    return TargetGradients(
        attentions=to_numpy(list(attentions)),
        gradients=to_numpy(attention_grads),
        head_gradients=(
            np.zeros((n_layers, n_heads))
            if mask_grad is None
            else mask_grad.detach().cpu().to(torch.float64).numpy().reshape(n_layers, n_heads)
        ),
        objective=objective,
        value=float(value.detach()),
        tokens=list(loaded.tokenizer.convert_ids_to_tokens(ids)),
        input_ids=ids,
        special_positions=tuple(i for i, m in enumerate(special) if m),
        target=bound.describe(),
    )


def attention_gradients(
    text: str,
    model: Any = None,
    target: Any = None,
    *,
    tokenizer: Any = None,
    label: Any = None,
    objective: Objective = "score",
    truncate: bool = False,
    trust_remote_code: bool = False,
) -> TargetGradients:
    """Attention and its gradient for one text and one target, from any model attnflow can load.

    Parameters
    ----------
    text
        The input text.
    model, tokenizer, truncate, trust_remote_code
        As in :func:`attnflow.capture.capture_attention`.
    target
        Any target spec of :mod:`attnflow.capture.targets` (``"predicted"``, a class
        index or label, ``"cosine:TEXT"``, ``"norm"``, a next token for causal LMs).
    label
        The text's gold label, for ``target="gold"``.
    objective
        ``"score"`` (default) or ``"log_probability"``; see :func:`target_gradients`.

    Examples
    --------
    >>> g = attention_gradients("Heads matter.", target="norm")
    >>> g.tokens, g.target["kind"]
    (['[CLS]', 'heads', 'matter', '.', '[SEP]'], 'norm')
    """

    _check_texts(text)
    loaded = load_model(model, tokenizer, trust_remote_code=trust_remote_code)
    resolved = resolve_target(target, loaded)
    ids = _encode(loaded, text, truncate, None).input_ids
    return target_gradients(loaded, resolved, ids, objective=objective, label=label)  # bound in its own pass


def _attentions(loaded: LoadedModel, outputs: Any, n: int) -> tuple[Any, ...]:

    return _attention_tuple(loaded, outputs, 1, n)


def _objective(bound: BoundTarget, outputs: Any, attention_mask: torch.Tensor, objective: str) -> torch.Tensor:
    if objective == "log_probability" and bound.target.kind in ("class", "next_token"):
        return bound.from_outputs(outputs, attention_mask, "value").log()
    return bound.from_outputs(outputs, attention_mask, "score")


def weighted_attention(loaded: LoadedModel, bound: BoundTarget, input_ids: Sequence[int]) -> Any:
    """``mean_h max(0, dS/dA ⊙ A)`` per layer for the target's score: what grad-rollout needs, and only that.

    One forward and one backward pass, as :func:`target_gradients` with
    ``objective="score"``, but neither ``dS/dA`` nor ``A`` is kept per head: a forward
    hook on each attention module (:func:`attnflow.capture._hooks.attention_hooks`)
    registers a gradient hook on that layer's weights, and when the backward pass
    reaches them the hook reduces ``(H, n, n)`` to the fused ``(n, n)`` in float64,
    head by head, on the model's device; only that comes to the CPU. Autograd
    still keeps what the backward pass needs (each layer's weights, as the model
    saved them); the ``(L, H, n, n)`` float64 gradients and attentions of
    :func:`target_gradients` are never made. Rows further than
    :data:`attnflow.capture._reduce.EXACT_ROWS` from 1 (half-precision weights) are
    renormalised in float64 first, as capture does.

    Returns
    -------
    attnflow.graph.WeightedAttention
        float64 ``(L, n, n)``; zero for a layer the score does not depend on.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> from attnflow.capture.targets import resolve_target
    >>> lm = load_model()
    >>> ids = lm.tokenizer("Heads matter.")["input_ids"]
    >>> bound = resolve_target("norm", lm).bind(lm, ids)
    >>> w = weighted_attention(lm, bound, ids)
    >>> g = target_gradients(lm, bound, ids, head_gradients=False)
    >>> w.shape, bool(np.allclose(w.values, np.maximum(g.gradients * g.attentions, 0).mean(1), atol=1e-12))
    ((6, 5, 5), True)
    """
    import torch


    model = loaded.model
    ids = [int(i) for i in input_ids]
    if not ids:
        raise AttnflowError("Cannot differentiate a target on an empty token sequence.")
    n = len(ids)
    device = getattr(model, "device", None)
    tensor = torch.tensor([ids], dtype=torch.long, device=device)
    attention_mask = torch.ones_like(tensor)
    reduced: dict[int, Any] = {}
    first: list[Any] = []

    def reduce(layer: int, weights: Any) -> Any:
        def on_gradient(grad: Any) -> None:
            acc = torch.zeros((n, n), dtype=torch.float64, device=grad.device)
            heads = weights.shape[1]
            sums = weights[0].detach().sum(-1, dtype=torch.float64)
            exact = weights.dtype in (torch.float32, torch.float64) and float((sums - 1).abs().max()) <= EXACT_ROWS
            for head in range(heads):
                a = weights[0, head].detach().to(torch.float64)
                if not exact:  # as capture does: half-precision rows renormalised in float64
                    a = a / sums[head].clamp_min(1e-300)[:, None]
                acc += (grad[0, head].to(torch.float64) * a).clamp_min_(0.0)
                del a
            reduced[layer] = (acc / heads).cpu().numpy()
            return None

        return on_gradient

    def on_layer(call: Any) -> None:
        weights = call.weights
        if not isinstance(weights, torch.Tensor) or tuple(weights.shape[-2:]) != (n, n) or weights.shape[0] != 1:
            shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
            raise AttnflowError(
                f"The model {loaded.name!r} returned attention of layer {call.site.layer + 1} with shape {shape}; "
                f"expected (1, heads, {n}, {n}). attnflow cannot capture its attention."
            )
        if weights.requires_grad:
            weights.register_hook(reduce(call.site.layer, weights))
            if not first:
                first.append(weights)
        return None

    with attention_hooks(model, on_layer) as sites, torch.enable_grad():
        outputs = run_model(model, bound.target, input_ids=tensor, attention_mask=attention_mask)
        value = _objective(bound, outputs, attention_mask, "score")[0]
        if value.requires_grad and first:
            # Differentiating for the first layer's weights sends the backward pass through every later
            # layer's weights too, so every hook fires; nothing else is kept.
            torch.autograd.grad(value, first, allow_unused=True)
        del outputs, value, first[:]
    values = np.zeros((len(sites), n, n))
    for layer, array in reduced.items():
        values[layer] = array
    return WeightedAttention(values)


@dataclass
class HeadGradients(AttentionShape):
    """One example's attention and head-mask gradient from a batched pass (:func:`batch_head_gradients`).

    ``attentions`` float64 ``(L, H, n, n)`` and ``head_gradients`` float64 ``(L, H)``,
    as in :class:`TargetGradients`, without the attention gradients.
    """

    attentions: np.ndarray
    head_gradients: np.ndarray
    objective: str
    value: float
    tokens: list[str]
    input_ids: list[int]
    special_positions: tuple[int, ...]
    target: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def _batched_head_mask(model: Any, mask: Any) -> Iterator[Any]:
    """:func:`head_mask` with one mask per example: ``mask`` ``(B, L, H)`` scales head ``h`` of row ``b``."""
    projections = attention_output_projections(model)
    n_heads = count_heads(model)

    # (B, 1, H, 1) against the projection's input split to (B, n, H, d)
    with _scaled_heads(projections, n_heads, lambda layer, hidden: mask[:, layer].to(hidden.dtype)[:, None, :, None]):
        yield mask


@contextlib.contextmanager
def _scaled_heads(projections: Sequence[Any], n_heads: int, scale: Callable[[int, Any], Any]) -> Iterator[None]:
    """Forward pre-hooks that multiply each head's slice of the output projections' input by ``scale(layer, x)``.

    The one mechanism under :func:`head_mask` (one ``(L, H)`` mask) and the batched
    head gradients (one mask per example); removed on leaving, also through an exception.
    """

    def make_hook(layer: int) -> Any:
        def scale_heads(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
            hidden = args[0]
            width = hidden.shape[-1]
            if width % n_heads:
                raise AttnflowError(
                    f"The attention output projection of layer {layer + 1} takes {width} features, not a "
                    f"multiple of {n_heads} heads; attnflow cannot mask the heads of this model."
                )
            split = hidden.reshape(*hidden.shape[:-1], n_heads, width // n_heads)
            return ((split * scale(layer, hidden)).reshape(hidden.shape), *args[1:])

        return scale_heads

    handles = []
    try:
        for layer, module in enumerate(projections):
            handles.append(module.register_forward_pre_hook(make_hook(layer)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def batch_head_gradients(
    loaded: LoadedModel,
    bounds: Sequence[BoundTarget] | Target,
    input_ids: Sequence[Sequence[int]],
    *,
    objective: Objective = "log_probability",
    labels: Sequence[Any] | None = None,
) -> list[HeadGradients]:
    """Attention and head-mask gradients of several examples in one padded forward and backward pass.

    ``bounds``: each example's bound target; or one :class:`~attnflow.capture.targets.Target`,
    bound to each example from this same pass (:meth:`Target.bind_rows`, ``labels`` the
    examples' gold labels), so no pass of its own fixes the predicted class.

    What :func:`target_gradients` gives one example at a time (its ``attentions`` and
    ``head_gradients``), for a batch: the inputs are padded on the right, each
    example gets its own ``(L, H)`` head mask (a ``(B, L, H)`` tensor scaling each
    row's heads), and the sum of the examples' objectives is differentiated once.
    Rows of a batch do not interact, so ``d(sum)/dxi[b]`` is example ``b``'s own
    gradient. A model whose real tokens attend to the padding (one that ignores the
    attention mask) is run one example at a time instead.
    ``tests/capture/test_batched_heads.py`` checks the results against one example
    at a time.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> from attnflow.capture.targets import resolve_target
    >>> lm = load_model()
    >>> ids = [lm.tokenizer(t)["input_ids"] for t in ("Heads matter.", "Batches of heads matter too.")]
    >>> target = resolve_target("norm", lm)
    >>> found = batch_head_gradients(lm, [target.bind(lm, i) for i in ids], ids)
    >>> one = target_gradients(lm, target.bind(lm, ids[1]), ids[1], objective="log_probability")
    >>> found[1].attentions.shape, bool(np.allclose(found[1].head_gradients, one.head_gradients, atol=1e-5))
    ((6, 12, 9, 9), True)
    """
    import torch

    if objective not in OBJECTIVES:
        raise AttnflowError(f"The 'objective' parameter must be one of {', '.join(OBJECTIVES)}; got {objective!r}.")
    rows = [[int(i) for i in ids] for ids in input_ids]
    target = bounds if isinstance(bounds, Target) else None
    if target is not None:
        labels = [None] * len(rows) if labels is None else list(labels)
        bounds = [None] * len(labels)  # bound from the pass below
    if not rows or len(rows) != len(bounds) or any(not ids for ids in rows):
        raise AttnflowError("batch_head_gradients needs one bound target per example and non-empty token ids.")

    model = loaded.model

    batch = [_Encoded("", ids, [0] * len(ids), None, False) for ids in rows]
    inputs = _batch_inputs(loaded, batch)
    width = inputs["input_ids"].shape[1]
    attention_mask = inputs["attention_mask"]
    n_layers, n_heads = len(attention_output_projections(model)), count_heads(model)
    with contextlib.ExitStack() as stack:
        stack.enter_context(eager_attention(model))
        stack.enter_context(torch.enable_grad())
        ones = torch.ones(len(rows), n_layers, n_heads, dtype=torch.float64, device=attention_mask.device)
        mask = stack.enter_context(_batched_head_mask(model, ones.requires_grad_(True)))
        outputs = run_model(
            model, target or bounds[0].target, input_ids=inputs["input_ids"], attention_mask=attention_mask,
            output_attentions=True,
        )
        attentions = _attention_tuple_batch(loaded, outputs, len(rows), width)
        leaks = len(rows) > 1 and _attends_to_padding(attentions, [len(ids) for ids in rows])
        if not leaks:
            if target is not None:
                bounds = target.bind_rows(outputs, attention_mask, labels)
            values = [_objective(bound, outputs, attention_mask, objective)[row] for row, bound in enumerate(bounds)]
            total = torch.stack(values).sum()
            grads = torch.autograd.grad(total, [mask], allow_unused=True) if total.requires_grad else (None,)
        del outputs
    if leaks:  # a model that ignores the attention mask: padding would change its numbers, so one at a time
        return [found for row in range(len(rows))
                for found in batch_head_gradients(loaded, target or [bounds[row]], [rows[row]], objective=objective,
                                                  labels=None if target is None else [labels[row]])]
    mask_grad = grads[0]
    special_tokens = [special_tokens_mask(loaded, ids) for ids in rows]
    found = []
    for row, ids in enumerate(rows):
        n = len(ids)
        found.append(
            HeadGradients(
                attentions=np.stack(
                    [layer[row, :, :n, :n].detach().cpu().to(torch.float64).numpy() for layer in attentions]
                ),
                head_gradients=(
                    np.zeros((n_layers, n_heads))
                    if mask_grad is None
                    else mask_grad[row].detach().cpu().to(torch.float64).numpy()
                ),
                objective=objective,
                value=float(values[row].detach()),
                tokens=list(loaded.tokenizer.convert_ids_to_tokens(ids)),
                input_ids=ids,
                special_positions=tuple(i for i, m in enumerate(special_tokens[row]) if m),
                target=bounds[row].describe(),
            )
        )
    return found


def _attends_to_padding(attentions: Sequence[Any], lengths: Sequence[int]) -> bool:
    """Whether any real query of a padded batch gives weight to a padding key (the model ignores the mask)."""
    width = attentions[0].shape[-1]
    for row, n in enumerate(lengths):
        if n < width and any(float(layer[row, :, :n, n:].detach().abs().max()) > 1e-6 for layer in attentions):
            return True
    return False


def _attention_tuple_batch(loaded: LoadedModel, outputs: Any, batch: int, width: int) -> tuple[Any, ...]:

    return _attention_tuple(loaded, outputs, batch, width)
