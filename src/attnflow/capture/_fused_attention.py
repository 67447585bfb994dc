"""An attention function that keeps only the head-fused weights: no layer's ``(H, n, n)`` is ever alive.

Forward hooks (:mod:`attnflow.capture._hooks`) see a layer's weights after eager
attention has computed them for every head at once, so a hooked capture briefly
holds one layer's ``(H, n, n)`` scores and weights. For the head-fused capture
(``heads="mean"``, ``"max"``, ``"min"``) this module goes one step further, as
transformers' attention interface allows: it registers an attention
implementation, :data:`IMPLEMENTATION`, that runs the model's **own** eager
attention function on one group of heads at a time (the query heads that share a
key/value head: one head without grouped-query attention, two in a Llama with
half as many key/value heads), and on a long input on one block of query rows at
a time (each row's softmax is its own; :data:`CALL_ELEMENTS`), hands each call's
weights to an accumulator and drops them, and concatenates the outputs. What is
alive at once is the fused result and one call's scores and weights (about 1 MB
each), besides the eager mask.

Why the model's own function, group by group. Calling the architecture's
``eager_attention_forward`` keeps its details (scaling, key/value repetition,
softmax precision, the additive mask) exactly as the model has them, where a
re-implementation could drift from it. It is correct only when that function
treats heads independently, so the implementation is used only for the
architectures listed in :data:`STREAMED_MODULES`, each checked against the hooked
capture in ``tests/capture/test_fused_attention.py``; every other model (MegatronBert,
which does not dispatch through the interface, GPT-2 with
``reorder_and_upcast_attn``, the bundled ``sva``) falls back to the hooks, with the
same result and one layer's ``(H, n, n)`` alive at a time. The mask is the eager
one: :data:`IMPLEMENTATION` is registered with transformers' ``eager_mask`` in
``AttentionMaskInterface``, so the additive float mask is what eager attention gets.

Calls of the implementation outside :func:`fused_attention` (another model that
picked the name up) and of modules that are not the captured sites run the
module's eager function unchanged.

Examples
--------
>>> import torch
>>> from attnflow.capture import eager_attention, load_model
>>> from attnflow.capture._reduce import LayerAccumulator
>>> lm = load_model()
>>> ids = lm.tokenizer("Heads one at a time.", return_tensors="pt")
>>> streamable(lm.model)
True
>>> layers = [[LayerAccumulator("mean", ids["input_ids"].shape[1])] for _ in range(6)]
>>> with eager_attention(lm.model), fused_attention(lm.model, layers), torch.no_grad():
...     _ = lm.model(**ids)
>>> fused = layers[0][0].out
>>> fused.shape, round(float(fused.sum(-1).mean()), 5)
(torch.Size([8, 8]), 1.0)
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import AttnflowError
from ._eager import attention_implementation
from ._hooks import attention_sites
from .architectures import streamed_modules

#: The name the implementation is registered under in transformers' attention interfaces.
IMPLEMENTATION = "attnflow_fused"

#: At most this many scores per eager call on the CPU (1 MB of float32): a long input's query
#: rows are taken in blocks, since every row's softmax is its own. Blocks this small are
#: reused by the allocator call after call (larger ones left tens of MB cached in glibc's
#: heap at 1024 tokens) and stay in cache, which makes the capture faster than one eager
#: forward.
CALL_ELEMENTS = 1 << 18
#: The same on a GPU (256 MB of float32): there each call costs a few kernel launches and a
#: synchronisation, so blocks are as large as memory allows; a GPU's caching allocator does
#: not fragment the way glibc's heap does.
DEVICE_CALL_ELEMENTS = 1 << 26


def call_elements(device: Any) -> int:
    """How many scores one eager call may make on ``device``.

    Examples
    --------
    >>> import torch
    >>> call_elements(torch.device("cpu")) < call_elements(torch.device("cuda"))
    True
    """
    return CALL_ELEMENTS if getattr(device, "type", str(device)) == "cpu" else DEVICE_CALL_ELEMENTS

#: Modelling modules whose ``eager_attention_forward`` computes each head on its own
#: (scores, optional key/value repetition, additive mask, softmax, dropout, values),
#: so that running it on a group of heads gives those heads' part of the full call.
STREAMED_MODULES = streamed_modules()  # from the architecture table


@dataclass
class _Capture:
    """One :func:`fused_attention` block: the captured modules and each batch row's accumulator per layer."""

    layers: dict[int, tuple[int, Sequence[Any]]]
    seen: set[int]


_ACTIVE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("attnflow_fused_capture", default=None)
_registered = False


def _eager_function(module: Any) -> Callable[..., Any] | None:
    """The eager attention function of ``module``'s modelling module, when it is one we stream."""
    name = type(module).__module__
    if name not in STREAMED_MODULES:
        return None
    return getattr(sys.modules.get(name), "eager_attention_forward", None)


def streamable(model: Any) -> bool:
    """Whether every attention site of ``model`` can run under :data:`IMPLEMENTATION`.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> streamable(load_model().model)
    True
    """
    try:
        sites = attention_sites(model)
    except AttnflowError:
        return False
    for site in sites:
        if _eager_function(site.module) is None or getattr(site.module, "reorder_and_upcast_attn", False):
            return False
        if getattr(getattr(site.module, "config", None), "_attn_implementation", None) is None:
            return False
    return True


def _register() -> None:
    global _registered
    if _registered:
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(IMPLEMENTATION, _attention)
    AttentionMaskInterface.register(IMPLEMENTATION, eager_mask)
    _registered = True


def _attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> tuple[Any, None]:
    """The registered function: the module's eager attention, one key/value group of heads at a time."""
    import torch

    eager = _eager_function(module)
    capture = _ACTIVE.get()
    entry = None if capture is None else capture.layers.get(id(module))
    if eager is None:
        raise AttnflowError(
            f"The attention implementation {IMPLEMENTATION!r} was selected for {type(module).__name__}, which "
            "attnflow does not stream; load the model with attn_implementation='eager' instead."
        )
    if entry is None:
        return eager(module, query, key, value, attention_mask, **kwargs)
    layer, accumulators = entry
    if id(module) in capture.seen:
        raise AttnflowError(
            f"The attention module of layer {layer + 1} ({type(module).__name__}) ran twice in one forward pass; "
            "attnflow cannot tell its calls apart."
        )
    capture.seen.add(id(module))
    heads, groups = int(query.shape[1]), int(key.shape[1])
    if groups < 1 or heads % groups:
        raise AttnflowError(
            f"The attention module of layer {layer + 1} ({type(module).__name__}) has {heads} query heads and "
            f"{groups} key/value heads; attnflow expects the query heads to be a multiple of the key/value heads."
        )
    size = heads // groups
    n_query, n_key = int(query.shape[2]), int(key.shape[2])
    rows = max(1, min(n_query, call_elements(query.device) // max(1, size * n_key)))
    mask_rows = attention_mask is not None and attention_mask.ndim == 4 and attention_mask.shape[-2] == n_query
    outputs = []
    for group in range(groups):
        pieces = []
        for start in range(0, n_query, rows):
            stop = min(n_query, start + rows)
            out, weights = eager(
                module,
                query[:, group * size : (group + 1) * size, start:stop],
                key[:, group : group + 1],
                value[:, group : group + 1],
                attention_mask[:, :, start:stop] if mask_rows else attention_mask,
                **kwargs,
            )
            with torch.no_grad():
                for row, accumulator in enumerate(accumulators):
                    accumulator.add(weights[row].detach(), start)
            del weights
            pieces.append(out)
        outputs.append(pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1))
    for accumulator in accumulators:
        accumulator.close()
    return torch.cat(outputs, dim=2), None


@contextlib.contextmanager
def fused_attention(model: Any, layers: Sequence[Sequence[Any]]) -> Iterator[None]:
    """Inside the block, ``model``'s attention runs under :data:`IMPLEMENTATION`, feeding ``layers``.

    ``layers[l][row]`` is the accumulator (:class:`attnflow.capture._reduce.LayerAccumulator`)
    of batch row ``row`` at layer ``l``; each group of heads' weights
    ``(heads_in_group, n, n)`` goes to its ``add``, and it is closed (its float32
    result written) as soon as the layer has run. On leaving, also through an
    exception, the model's attention implementation is what it was. Raises
    :class:`AttnflowError` when ``model`` is not :func:`streamable` or when ``layers``
    does not have one entry per attention site; after the block, a site that never
    ran is an error too.
    """

    if not streamable(model):
        raise AttnflowError(
            f"{type(model).__name__} cannot run attnflow's fused attention; capture it with forward hooks."
        )
    sites = attention_sites(model)
    if len(layers) != len(sites):
        raise AttnflowError(f"fused_attention needs one entry per layer ({len(sites)}); got {len(layers)}.")
    _register()
    capture = _Capture({id(site.module): (site.layer, layers[site.layer]) for site in sites}, set())
    token = _ACTIVE.set(capture)
    try:
        with attention_implementation(model, IMPLEMENTATION):
            yield
    finally:
        _ACTIVE.reset(token)
