"""Where the gradient yardsticks are taken: the vector that enters the first layer.

The paper's input gradients (Abnar & Zuidema 2020) score token ``j`` by
``|sum_d g_jd|``, ``g = dS/dx`` at some input ``x`` of width ``d``. Which ``x``
matters:

- at the *word embedding* of a post-LN encoder (BERT, MiniLM), ``x`` reaches the
  network only through the embedding LayerNorm, which ignores a shift of ``x_j``
  along the all-ones direction, so ``sum_d g_jd = 0`` exactly and float32 returns
  round-off (about ``1e-7 * ||g_j||``);
- at the *embedding module's output*, the vector entering the first layer, the
  first layer of a post-LN encoder reads ``x`` through linear maps and the
  residual: the sum is an honest directional derivative. This is where the
  paper's authors took it (``embeddings(input_ids)``, then ``sum(grad, -1)``);
- in a pre-LN model (``sva``'s Megatron-BERT, GPT-2, ViT) every read of the
  residual stream goes through a LayerNorm, and a shift along the all-ones
  direction passes every residual add unchanged, so the sum is zero at the
  first layer's input too. There the paper's form is undefined.

:func:`gradient_point` finds the point: the first positional input of the first
layer (the module holding the first attention site), or, for a model with no
layers attnflow can find, the output of the input embedding. :func:`point_gradients`
returns ``g`` and ``x`` there; :func:`sum_is_defined` decides, by measurement on
a probe input, whether ``|sum_d g|`` means anything at that point (it does not
when ``||sum_d g|| < SHIFT_TOLERANCE * ||g||``). RMSNorm (Llama) is not
shift-invariant, and the probe says so rather than a list of architectures.

Examples
--------
>>> from attnflow.capture import load_model
>>> point = gradient_point(load_model())
>>> point.where
'input of encoder.layer.0 (the output of the embedding module)'
>>> sum_is_defined(load_model())
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AttnflowError
from ._eager import eager_attention
from ._hooks import attention_sites
from .models import LoadedModel

if TYPE_CHECKING:  # pragma: no cover
    from .targets import BoundTarget

#: ``|sum_d g| / ||g||`` below this on the probe means "zero by construction". Float32
#: round-off of a sum that is zero in exact arithmetic is about ``sqrt(d) * eps32 ~ 1e-6``
#: at ``d = 384``; an honest directional derivative is of order 1.
SHIFT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class GradientPoint:
    """A point in the model where gradients are taken.

    ``module`` is the module whose first positional input (``layer_input=True``)
    or whose output (``False``) is the point; ``where`` says it in words, for
    tables and ``results.json``.
    """

    module: Any
    layer_input: bool
    where: str


def gradient_point(model: Any) -> GradientPoint:
    """The input of the first layer of ``model`` (a :class:`LoadedModel` or a transformers module).

    The first layer is the child of a ``ModuleList`` that holds the first attention
    module. Without one, the point is the output of ``get_input_embeddings()``.
    For an encoder-decoder model pass ``model.get_encoder()``.
    """

    module = model.model if isinstance(model, LoadedModel) else model
    try:
        site = attention_sites(module)[0]
    except AttnflowError:
        site = None
    if site is not None:
        parts = site.name.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            if parts[cut - 1].isdigit():
                name = ".".join(parts[:cut])
                return GradientPoint(
                    module.get_submodule(name), True, f"input of {name} (the output of the embedding module)"
                )
    embedding = module.get_input_embeddings() if hasattr(module, "get_input_embeddings") else None
    if embedding is None:
        raise AttnflowError(
            f"Cannot find the first layer or the input embedding of {type(module).__name__}; attnflow cannot "
            "take gradients at its input."
        )
    return GradientPoint(embedding, False, "output of the input embedding (no layers found)")


@contextlib.contextmanager
def replace_point(point: GradientPoint, make: Callable[[Any], Any]) -> Iterator[None]:
    """Inside the block, the value at ``point`` is replaced by ``make(value)``; the hook is removed on leaving."""
    if point.layer_input:

        def pre(_module: Any, args: tuple[Any, ...]) -> Any:
            if not args:
                raise AttnflowError("The first layer was called without positional hidden states.")
            return (make(args[0]), *args[1:])

        handle = point.module.register_forward_pre_hook(pre)
    else:
        handle = point.module.register_forward_hook(lambda _m, _i, output: make(output))
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def capture_point(point: GradientPoint) -> Iterator[list[Any]]:
    """Inside the block, each pass through ``point`` records a leaf tensor with ``requires_grad``.

    The model computes on from that leaf, so ``torch.autograd.grad(S, leaf)`` is
    ``dS/dx`` at the point.
    """
    seen: list[Any] = []

    def leaf(value: Any) -> Any:
        value = value.detach().requires_grad_(True)
        seen.append(value)
        return value

    with replace_point(point, leaf):
        yield seen


@dataclass(frozen=True)
class SourceTargetPoint:
    """An encoder–decoder model's point: the encoder's first layer's input, then the decoder's.

    Its value is the two side by side, ``(B, ns + nt, d)``: the ``source_length``
    source tokens as they enter the encoder's first layer, then the target positions
    as they enter the decoder's (:func:`source_target_point`).
    """

    encoder: GradientPoint
    decoder: GradientPoint
    source_length: int
    where: str


def source_target_point(model: Any, source_length: int) -> SourceTargetPoint:
    """The point of an encoder–decoder ``model``: its encoder's and its decoder's first layer's input.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> source_target_point(load_model("reverse"), 5).where
    'source: input of layers.0 of the encoder; target: input of layers.0 of the decoder'
    """
    module = model.model if isinstance(model, LoadedModel) else model
    encoder, decoder = gradient_point(module.get_encoder()), gradient_point(module.get_decoder())
    named = [point.where.replace(" (the output of the embedding module)", "") for point in (encoder, decoder)]
    return SourceTargetPoint(
        encoder, decoder, int(source_length), f"source: {named[0]} of the encoder; target: {named[1]} of the decoder"
    )


def record_point(point: GradientPoint | SourceTargetPoint, run: Callable[[], Any]) -> Any:
    """The value at ``point`` while ``run()`` runs the model once: ``(B, n, d)``, detached.

    For a :class:`SourceTargetPoint`, the source's and the target's values side by side.
    """
    import torch

    if isinstance(point, SourceTargetPoint):
        with capture_point(point.encoder) as source, capture_point(point.decoder) as target:
            run()
        if source[0].shape[-1] != target[0].shape[-1]:
            raise AttnflowError(
                f"The encoder's and the decoder's hidden sizes differ ({source[0].shape[-1]} and "
                f"{target[0].shape[-1]}); attribution methods need one width for the source and the target."
            )
        return torch.cat([source[0], target[0]], dim=1).detach()
    with capture_point(point) as seen:
        run()
    return seen[0].detach()


@contextlib.contextmanager
def set_point(point: GradientPoint | SourceTargetPoint, values: Any) -> Iterator[None]:
    """Inside the block, the model's value at ``point`` is ``values`` ``(B, n, d)`` (split at the source length)."""
    if isinstance(point, SourceTargetPoint):
        ns = point.source_length
        with replace_point(point.encoder, lambda _old: values[:, :ns]), \
                replace_point(point.decoder, lambda _old: values[:, ns:]):
            yield
        return
    with replace_point(point, lambda _old: values):
        yield


def point_gradients(
    loaded: LoadedModel, bound: BoundTarget, input_ids: list[int], point: GradientPoint | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(g, x)``, float64 ``(n, d)`` each: the target score's gradient at the point, and the point's value."""
    import torch

    point = point or gradient_point(loaded)
    model = loaded.model
    ids = torch.tensor([list(input_ids)], dtype=torch.long, device=getattr(model, "device", None))
    with eager_attention(model), torch.enable_grad(), capture_point(point) as seen:
        score = bound.forward(model, input_ids=ids, attention_mask=torch.ones_like(ids), kind="score")
        (gradient,) = torch.autograd.grad(score.sum(), seen[0])
    return gradient[0].detach().cpu().double().numpy(), seen[0][0].detach().cpu().double().numpy()


def shift_ratio(gradient: np.ndarray) -> float:
    """``||sum_d g|| / ||g||`` over the tokens of a ``(n, d)`` gradient: 0 when the point is shift-invariant.

    Examples
    --------
    >>> shift_ratio(np.array([[1.0, -1.0], [2.0, -2.0]]))
    0.0
    """
    total = float(np.linalg.norm(gradient))
    return float(np.linalg.norm(gradient.sum(axis=-1)) / total) if total > 0 else float("nan")


def probe_shift_ratio(loaded: LoadedModel, point: GradientPoint | None = None) -> float:
    """:func:`shift_ratio` of a fixed random readout of the model's first output on a short probe input.

    The readout is ``sum(w * output)`` with ``w`` drawn from a fixed seed, so every
    output unit contributes; the probe is ten token ids from the middle of the vocabulary.
    """
    import torch

    point = point or gradient_point(loaded)
    model = loaded.model
    vocab = int(model.get_input_embeddings().num_embeddings)
    ids = torch.arange(vocab // 2, vocab // 2 + 10, device=getattr(model, "device", None))[None] % vocab
    kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "return_dict": True}
    if getattr(model.config, "is_encoder_decoder", False):
        kwargs["decoder_input_ids"] = ids[:, :3]
    with eager_attention(model), torch.enable_grad(), capture_point(point) as seen:
        output = model(**kwargs)[0]
        weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        readout = (output.double() * weights.to(output.device)).sum()
        (gradient,) = torch.autograd.grad(readout, seen[0])
    return shift_ratio(gradient[0].detach().cpu().double().numpy())


def sum_is_defined(loaded: LoadedModel, point: GradientPoint | None = None) -> bool:
    """Whether ``|sum_d g|`` at the point is more than round-off (see :data:`SHIFT_TOLERANCE`)."""
    return bool(probe_shift_ratio(loaded, point) >= SHIFT_TOLERANCE)
