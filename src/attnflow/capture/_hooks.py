"""Find the attention modules of a transformers model and hook them, layer by layer.

This is the one place in attnflow that knows where attention lives inside a model.
Everything that needs per-layer attention while the model runs (per-head and
hooked capture, gradient capture, context-mixing graphs, encoder-decoder capture)
goes through it, and :mod:`attnflow.capture._fused_attention` uses its sites:

- :func:`attention_sites`: the modules that compute attention weights, one per layer,
  in the order they run, each with where its weights sit in its output.
- :func:`attention_output_projections`: the module of every layer that projects the
  concatenated heads back to the hidden size (used by head masks).
- :func:`attention_hooks`: a context manager that registers one forward hook (with
  keyword arguments) on every attention site, switches the model to eager attention,
  and removes the hooks again on leaving, also through an exception.

How sites are found. transformers 5 declares, on every model class, which module's
output ``output_attentions=True`` collects (``_can_record_outputs["attentions"]``: a
class, a class-name suffix, or an ``OutputRecorder`` with a layer name and an index).
:func:`attention_sites` reads that declaration the way transformers does, each
sub-model (a ``PreTrainedModel`` inside another) with its own declaration, so the
sites are exactly the modules whose outputs transformers itself would return. For
models without a declaration (MegatronBert, the bundled ``sva``, still returns its
weights the old way) the modules whose class name ends in ``SelfAttention`` are used.
Sites: ``BertSelfAttention``, ``RobertaSelfAttention``, ``DistilBertSelfAttention``,
``MegatronBertSelfAttention``, ``GPT2Attention`` (``.attn`` only, not
cross-attention), ``LlamaAttention``, ``ViTAttention``, ``DeiTAttention``,
``Dinov2Attention``; each returns ``(output, weights)`` with ``weights`` of shape
``(batch, H, n, n)``.

Hooks and the registered attention function. The head-fused capture of the
architectures whose eager attention treats heads independently runs through
:mod:`attnflow.capture._fused_attention` instead: an attention function registered
in transformers' ``AttentionInterface`` that calls the model's own eager function
one key/value group of heads at a time, so that no layer's ``(H, n, n)`` exists.
Everything else comes here: per-head capture, the backward pass of the gradient
methods (autograd needs the weights), the context-mixing graphs, and the models
that do not dispatch through the interface (MegatronBert) or whose eager path has
its own details (GPT-2 with ``reorder_and_upcast_attn``). A forward hook on the
attention module sees the very weights the model multiplied its values with, and,
since the model is not asked for ``output_attentions``, nothing keeps them once the
hook has reduced them: at most one layer's ``(H, n, n)`` scores and weights are
alive at a time in a no-grad forward.

Examples
--------
>>> import torch
>>> from attnflow.capture import load_model
>>> lm = load_model()
>>> [site.name for site in attention_sites(lm.model)][:2]
['encoder.layer.0.attention.self', 'encoder.layer.1.attention.self']
>>> shapes = []
>>> ids = lm.tokenizer("Hooks see attention.", return_tensors="pt")
>>> with attention_hooks(lm.model, lambda call: shapes.append(tuple(call.weights.shape))), torch.no_grad():
...     _ = lm.model(**ids)
>>> len(shapes), shapes[0]
(6, (1, 12, 6, 6))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import AttnflowError
from ._eager import eager_attention
from .architectures import PROJECTION_NAMES
from .models import LoadedModel

Kind = Literal["self", "cross"]
_RECORD_KEYS: dict[str, str] = {"self": "attentions", "cross": "cross_attentions"}


@dataclass(frozen=True)
class AttentionSite:
    """One module that computes attention weights.

    Attributes
    ----------
    layer
        0-based position among the sites of the same kind, in the order they run.
    name
        The module's qualified name in ``model.named_modules()``.
    module
        The module itself.
    weights_index
        Where the weights ``(batch, H, n_query, n_key)`` sit in the module's output tuple.
    """

    layer: int
    name: str
    module: Any = field(repr=False, compare=False)
    weights_index: int = 1


@dataclass
class AttentionCall:
    """What a hook registered by :func:`attention_hooks` sees of one attention module's call.

    ``args`` and ``kwargs`` are the module's inputs exactly as passed (the hidden
    states, masks, position embeddings...), ``output`` what it returned.
    """

    site: AttentionSite
    module: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any

    @property
    def weights(self) -> Any:
        """The attention weights ``(batch, H, n_query, n_key)``, or ``None`` when the kernel returned none."""
        output = self.output
        if isinstance(output, (tuple, list)) and len(output) > abs(self.site.weights_index):
            return output[self.site.weights_index]
        return None

    @property
    def hidden_states(self) -> Any:
        """The module's input hidden states ``(batch, n, hidden)``."""
        if self.args:
            return self.args[0]
        return self.kwargs.get("hidden_states")


def _record_specs(model: Any, key: str) -> list[Any] | None:
    """``model``'s own ``_can_record_outputs[key]`` as a list, or ``None`` when it declares none."""
    table: Any = None
    with contextlib.suppress(Exception):
        from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

        table = _CAN_RECORD_REGISTRY.get(model)
    if not table:
        table = getattr(type(model), "_can_record_outputs", None)
    if not isinstance(table, dict) or key not in table:
        return None
    specs = table[key]
    return list(specs) if isinstance(specs, (list, tuple)) else [specs]


def _matches(spec: Any, module: Any, name: str) -> int | None:
    """The weights index when ``module`` (called ``name``) is what ``spec`` records, else ``None``."""
    if isinstance(spec, str):
        return 1 if name.endswith(spec) else None
    if isinstance(spec, type):
        return 1 if isinstance(module, spec) else None
    target = getattr(spec, "target_class", None)
    class_name = getattr(spec, "class_name", None)
    hit = (target is not None and isinstance(module, target)) or (
        class_name is not None and name.endswith(class_name)
    )
    if not hit:
        return None
    layer_name = getattr(spec, "layer_name", None)
    if layer_name is not None and f".{layer_name.strip('.')}." not in f".{name}.":
        return None
    return int(getattr(spec, "index", 1))


def attention_sites(model: Any, kind: Kind = "self") -> list[AttentionSite]:
    """The modules of ``model`` that compute attention weights, one per layer, in the order they run.

    Parameters
    ----------
    model
        A ``transformers`` model or an :class:`attnflow.capture.LoadedModel`.
    kind
        ``"self"`` (default) for self-attention; ``"cross"`` for the cross-attention
        of encoder-decoder models (what transformers returns as ``cross_attentions``).
        For an encoder-decoder model ``"self"`` lists the encoder's layers, then the
        decoder's; tell them apart by :attr:`AttentionSite.name`.

    Raises
    ------
    AttnflowError
        When ``model`` has no attention module attnflow can find.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> sites = attention_sites(load_model())
    >>> len(sites), sites[0].layer, type(sites[0].module).__name__, sites[0].weights_index
    (6, 0, 'BertSelfAttention', 1)
    """
    from transformers import PreTrainedModel


    if isinstance(model, LoadedModel):
        model = model.model
    if kind not in _RECORD_KEYS:
        raise AttnflowError(f"The 'kind' parameter must be 'self' or 'cross'; got {kind!r}.")
    key = _RECORD_KEYS[kind]
    found: list[tuple[str, Any, int]] = []
    seen: set[int] = set()

    def visit(module: Any, name: str, specs: list[Any] | None) -> None:
        if isinstance(module, PreTrainedModel):
            own = _record_specs(module, key)
            if own is not None:
                specs = own
        if specs and id(module) not in seen:
            for spec in specs:
                index = _matches(spec, module, name)
                if index is not None:
                    seen.add(id(module))
                    found.append((name, module, index))
                    break
        for child_name, child in module.named_children():
            visit(child, f"{name}.{child_name}" if name else child_name, specs)

    visit(model, "", None)
    if not found and kind == "self":
        for name, module in model.named_modules():
            cls = type(module).__name__
            if cls.endswith("SelfAttention") and "cross" not in cls.lower() and "cross" not in name.lower():
                found.append((name, module, 1))
    if not found:
        what = "cross-attention" if kind == "cross" else "attention"
        raise AttnflowError(
            f"Cannot find the {what} modules of {type(model).__name__} (transformers declares none in "
            f"_can_record_outputs[{key!r}] and no module class ends in 'SelfAttention'); attnflow cannot "
            "capture its attention."
        )
    return [AttentionSite(layer, name, module, index) for layer, (name, module, index) in enumerate(found)]


def attention_output_projections(model: Any) -> list[Any]:
    """The module of every layer that maps the concatenated heads back to the hidden size, in layer order.

    Found by name: a module called ``dense``, ``o_proj``, ``out_proj``, ``c_proj`` or
    ``out_lin`` under a module whose name contains ``attn`` or ``attention`` (not
    cross-attention). Its input is ``(batch, n, H * head_dim)`` with head ``h`` in
    the slice ``h * head_dim : (h + 1) * head_dim``, in every supported architecture.

    Raises
    ------
    AttnflowError
        When no such module is found (an architecture attnflow cannot mask).

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> len(attention_output_projections(load_model().model))
    6
    """

    if isinstance(model, LoadedModel):
        model = model.model
    found = []
    for name, module in model.named_modules():
        parts = name.lower().split(".")
        if not parts or parts[-1] not in PROJECTION_NAMES:
            continue
        owners = parts[:-1]
        if any("cross" in part for part in owners):
            continue
        if any("attn" in part or "attention" in part for part in owners):
            found.append(module)
    if not found:
        raise AttnflowError(
            f"Cannot find the attention output projections of {type(model).__name__} (modules named "
            f"{', '.join(sorted(PROJECTION_NAMES))} under an attention module); attnflow cannot mask its heads."
        )
    return found


def no_weights_error(model: Any, site: AttentionSite) -> AttnflowError:
    """The error for an attention module that returned no weights, naming the fix."""
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return AttnflowError(
        f"The attention module {site.name!r} ({type(site.module).__name__}) of {type(model).__name__} returned "
        f"no attention weights (attention implementation {implementation!r}); attnflow needs a kernel that "
        "materialises them: load the model with attn_implementation='eager' or leave the switch to attnflow."
    )


@contextlib.contextmanager
def attention_hooks(
    model: Any,
    callback: Callable[[AttentionCall], Any],
    *,
    kind: Kind = "self",
    eager: bool = True,
    require_weights: bool = True,
) -> Iterator[list[AttentionSite]]:
    """Call ``callback`` after every attention module runs, inside the block; remove the hooks on leaving.

    Parameters
    ----------
    model
        A ``transformers`` model or an :class:`attnflow.capture.LoadedModel`.
    callback
        Called with an :class:`AttentionCall` (site, module, args, kwargs, output)
        each time an attention module of ``model`` finishes its forward. Return
        ``None`` to leave the output alone, or a replacement output (as a torch
        forward hook may). Exceptions raised in it propagate out of the model call.
    kind
        ``"self"`` or ``"cross"``, as in :func:`attention_sites`.
    eager
        Run the block inside :func:`attnflow.capture.eager_attention` (eager
        attention, evaluation mode, restored afterwards), so the weights exist.
    require_weights
        Raise :class:`AttnflowError` from the hook when a module returns no weights
        (a fused kernel), instead of calling ``callback`` with ``call.weights`` ``None``.

    Yields
    ------
    list of AttentionSite
        The hooked sites, in layer order.

    Notes
    -----
    Hooks are registered with ``with_kwargs=True`` and removed in a ``finally``
    block, so none is left behind after an exception (in the model or in
    ``callback``). The model is not asked for ``output_attentions``: what
    ``callback`` does not keep is freed as soon as the layer returns.

    Examples
    --------
    >>> import torch
    >>> from attnflow.capture import load_model
    >>> lm = load_model()
    >>> ids = lm.tokenizer("Row sums.", return_tensors="pt")
    >>> sums = []
    >>> with attention_hooks(lm, lambda call: sums.append(float(call.weights.sum(-1).mean()))), torch.no_grad():
    ...     _ = lm.model(**ids)
    >>> [round(s, 4) for s in sums] == [1.0] * 6
    True
    """

    if isinstance(model, LoadedModel):
        model = model.model
    sites = attention_sites(model, kind)

    def make_hook(site: AttentionSite) -> Callable[..., Any]:
        def attnflow_attention_hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
            call = AttentionCall(site, module, args, kwargs, output)
            if require_weights and call.weights is None:
                raise no_weights_error(model, site)
            return callback(call)

        return attnflow_attention_hook

    handles = []
    with contextlib.ExitStack() as stack:
        try:
            if eager:
                stack.enter_context(eager_attention(model))
            for site in sites:
                handles.append(site.module.register_forward_hook(make_hook(site), with_kwargs=True))
            yield sites
        finally:
            for handle in handles:
                handle.remove()
