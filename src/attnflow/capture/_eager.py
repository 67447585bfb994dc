"""Run a model with eager attention for a while, then put it back exactly as it was.

``sdpa`` (the default in transformers 5) and flash attention never materialise the
attention weights, so ``output_attentions=True`` returns nothing for them. Eager
attention computes the same softmax explicitly; switching to it is the only way to
see the weights. The switch is undone in a ``finally`` block, together with the
training mode of every module and the ``requires_grad`` flag of every parameter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import AttnflowError
from .models import quiet_transformers

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedModel

_MISSING = object()
_ATTR = "_attn_implementation_internal"


def _attention_configs(model: Any) -> list[Any]:
    """Every config whose ``_attn_implementation`` steers some part of ``model``, each once."""
    from transformers import PreTrainedModel

    found: dict[int, Any] = {}
    pending = [module.config for module in model.modules() if isinstance(module, PreTrainedModel)]
    while pending:
        config = pending.pop()
        if config is None or id(config) in found:
            continue
        found[id(config)] = config
        for key in getattr(config, "sub_configs", None) or {}:
            pending.append(getattr(config, key, None))
    return list(found.values())


def _implementation(config: Any) -> Any:
    return getattr(config, "_attn_implementation", None)


@contextlib.contextmanager
def eager_attention(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """Inside the block, ``model`` uses eager attention and is in evaluation mode.

    On leaving, even through an exception, the attention implementation of the
    model and of all its sub-models, the training mode of every module and the
    ``requires_grad`` flag of every parameter are restored. The weights are never
    touched and no hooks are added.

    Raises :class:`AttnflowError` when ``model`` is not a ``transformers`` model.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> model = load_model().model
    >>> model.config._attn_implementation
    'sdpa'
    >>> with eager_attention(model):
    ...     model.config._attn_implementation
    'eager'
    >>> model.config._attn_implementation
    'sdpa'
    """
    with attention_implementation(model, "eager"):
        yield model


@contextlib.contextmanager
def attention_implementation(model: PreTrainedModel, implementation: str) -> Iterator[PreTrainedModel]:
    """Inside the block, ``model`` uses the attention ``implementation`` and is in evaluation mode.

    ``"eager"`` goes through ``set_attn_implementation`` (which validates it and
    reaches sub-models) and then the configs; any other name, one attnflow
    registered in transformers' attention interface
    (:mod:`attnflow.capture._fused_attention`), is set on every config directly.
    Everything is restored on leaving, as :func:`eager_attention` says.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> model = load_model().model
    >>> with attention_implementation(model, "eager"):
    ...     model.config._attn_implementation
    'eager'
    """
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise AttnflowError(
            "Attention can be captured only from transformers models (PreTrainedModel); got "
            f"{type(model).__module__}.{type(model).__qualname__} instead."
        )
    configs = _attention_configs(model)
    saved_implementations = [(config, getattr(config, _ATTR, _MISSING)) for config in configs]
    saved_training = [(module, module.training) for module in model.modules()]
    saved_grad = [(param, param.requires_grad) for param in model.parameters()]
    try:
        _switch(model, configs, implementation)
        model.eval()
        yield model
    finally:
        for config, value in saved_implementations:
            if value is _MISSING:
                with contextlib.suppress(AttributeError):
                    delattr(config, _ATTR)
            else:
                setattr(config, _ATTR, value)
        for module, training in saved_training:
            module.training = training
        for param, requires_grad in saved_grad:
            if param.requires_grad != requires_grad:
                param.requires_grad_(requires_grad)


def _switch(model: Any, configs: list[Any], implementation: str) -> None:
    if all(_implementation(config) == implementation for config in configs):
        return
    setter = getattr(model, "set_attn_implementation", None)
    if implementation == "eager" and callable(setter):
        with quiet_transformers(), contextlib.suppress(Exception):
            # Validates and dispatches to sub-models; models that cannot switch dynamically
            # only log a warning, which the loop below covers.
            setter("eager")
    for config in configs:
        if _implementation(config) != implementation:
            setattr(config, _ATTR, implementation)
