"""What the context-mixing graphs need from one normal forward pass, captured with hooks.

Per layer ``l`` (1-based in messages, 0-based in lists), as float64 numpy arrays:

- ``x``: ``(n, D)`` the layer's input, the residual stream the attention block adds to;
- ``attention_input``: ``(n, D)`` what the attention's value projection reads: ``x``
  itself in a post-LN block, the first layer norm of ``x`` in a pre-LN block;
- ``values``: ``(n, KV, d)`` the value vectors the model computed (bias included),
  ``KV`` key/value heads of size ``d`` (``KV < H`` under grouped-query attention);
- ``weights``: ``(H, n, n)`` the attention probabilities the model multiplied them with;
- ``w_o`` ``(H, d, D)`` and ``b_o`` ``(D,)``: the attention output projection, from the
  model's own weights, head ``h`` in rows ``h*d:(h+1)*d`` of the concatenation;
- post-LN blocks: ``ln1_input`` (the sum ``attention + residual`` entering the first
  layer norm), ``ln1_output``, ``ln2_input`` (``ln1_output + FFN``), ``output``, and the
  two layer norms' parameters;
- pre-LN blocks: ``block_output``, the residual stream after the attention block
  (``x + attention``), read at the input of the block's second norm.

Nothing is recomputed by forked model code: the hooks read what the model computed,
and only the output projection's weights are read from the model. The attention
modules are the ones :func:`attnflow.capture._hooks.attention_sites` finds; where
the layer norms sit comes from :mod:`attnflow.capture.architectures`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ._failures import model_failures
from ._hooks import attention_hooks, attention_output_projections, attention_sites
from .architectures import VALUE_NAMES, architecture
from .text import capture_attention_by


@dataclass
class LayerNormParams:
    """A layer norm's affine parameters and epsilon: ``gamma * (s - mean) / sqrt(var + eps) + beta``."""

    gamma: np.ndarray
    beta: np.ndarray
    eps: float


@dataclass
class LayerTensors:
    """One layer's captured tensors (see the module docstring for the shapes)."""

    x: np.ndarray
    attention_input: np.ndarray
    values: np.ndarray
    weights: np.ndarray
    w_o: np.ndarray
    b_o: np.ndarray
    output: np.ndarray
    ln1_input: np.ndarray | None = None
    ln1_output: np.ndarray | None = None
    ln2_input: np.ndarray | None = None
    ln1: LayerNormParams | None = None
    ln2: LayerNormParams | None = None
    block_output: np.ndarray | None = None

    @property
    def n_heads(self) -> int:
        return int(self.weights.shape[0])

    @property
    def head_values(self) -> np.ndarray:
        """``(H, n, d)``: the value vectors each query head reads (key/value heads repeated under GQA)."""
        n_heads, n_kv = self.n_heads, self.values.shape[1]
        group = n_heads // n_kv
        return np.repeat(self.values, group, axis=1).transpose(1, 0, 2)


@dataclass
class MixingCapture:
    """Everything the graphs need for one input: the layers' tensors and how to rerun the model.

    ``layout`` is ``"post-ln"``, ``"pre-ln"`` or ``None`` (a model type whose layer norms
    attnflow does not know: only the graphs that need none of them run).
    """

    layers: list[LayerTensors]
    model_type: str
    layout: str | None
    is_causal: bool
    loaded: Any = field(repr=False)
    inputs: dict[str, Any] = field(repr=False)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_tokens(self) -> int:
        return int(self.layers[0].x.shape[0])

    @property
    def attentions(self) -> np.ndarray:
        """``(L, H, n, n)``: the attention weights, as :func:`attnflow.capture_attention` gives them."""
        return np.stack([layer.weights for layer in self.layers])


@dataclass(frozen=True)
class LayerModules:
    """The modules of one layer the hooks sit on."""

    block: Any
    attention: Any
    value: Any
    value_slice: int | None  # GPT-2's fused c_attn: which third is the value
    projection: Any
    ln1: Any = None
    ln2: Any = None
    ln_after_attention: Any = None


def model_type(model: Any) -> str:
    """``config.model_type`` of a transformers model (its text config for composite models)."""
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", "") or type(model).__name__).lower()


def layout_of(model: Any) -> str | None:
    """``"post-ln"``, ``"pre-ln"`` or ``None`` for a model type whose block layout attnflow does not know.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> layout_of(load_model().model), layout_of(load_model("sva").model)
    ('post-ln', 'pre-ln')
    """
    entry = architecture(model_type(model))
    return None if entry is None else entry.layout


def _block_name(site_name: str) -> str:
    """The layer block that holds an attention module: the name up to the last numeric component."""
    parts = site_name.split(".")
    for index in range(len(parts) - 1, -1, -1):
        if parts[index].isdigit():
            return ".".join(parts[: index + 1])
    raise AttnflowError(f"Cannot find the layer block of the attention module {site_name!r}.")


def layer_modules(model: Any) -> list[LayerModules]:
    """The modules of every layer: block, attention, value projection, output projection, layer norms.

    Raises
    ------
    AttnflowError
        When a layer has no value or output projection attnflow can recognise.
    """
    sites = attention_sites(model)
    projections = attention_output_projections(model)
    if len(projections) != len(sites):
        raise AttnflowError(
            f"{type(model).__name__} has {len(sites)} attention modules but {len(projections)} output "
            "projections; attnflow cannot pair them to build context-mixing graphs."
        )
    entry = architecture(model_type(model))
    layout = None if entry is None else entry.layout
    found = []
    for site, projection in zip(sites, projections, strict=True):
        block_name = _block_name(site.name)
        block = model.get_submodule(block_name)
        value, value_slice = None, None
        for child_name, child in site.module.named_modules():
            last = child_name.split(".")[-1]
            if last in VALUE_NAMES:
                value, value_slice = child, (2 if last == "c_attn" else None)
                break
        if value is None:
            raise AttnflowError(
                f"Cannot find the value projection of {site.name!r} ({type(site.module).__name__}; modules named "
                f"{', '.join(VALUE_NAMES)}); attnflow cannot build context-mixing graphs for {type(model).__name__}."
            )
        ln1 = ln2 = after = None
        if layout == "post-ln":
            ln1, ln2 = (block.get_submodule(name) for name in entry.norms)
        elif layout == "pre-ln":
            after = block.get_submodule(entry.norms[0])
        found.append(LayerModules(block, site.module, value, value_slice, projection, ln1, ln2, after))
    return found


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().to("cpu").double().numpy()


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if args:
        return args[0]
    for key in ("hidden_states", "x", "input"):
        if key in kwargs:
            return kwargs[key]
    raise AttnflowError("A hooked module was called without hidden states; attnflow cannot read its input.")


def _output_tensor(output: Any) -> Any:
    return output[0] if isinstance(output, (tuple, list)) else output


def _projection_weights(module: Any, n_heads: int) -> tuple[np.ndarray, np.ndarray]:
    """``W_O`` as ``(H, d, D)`` (``y = concat @ W + b``) and ``b_O`` ``(D,)`` from a Linear or GPT-2 Conv1D."""
    weight = _numpy(module.weight)
    if type(module).__name__ != "Conv1D":  # nn.Linear stores (out, in)
        weight = weight.T
    width, hidden = weight.shape
    bias = getattr(module, "bias", None)
    b_o = np.zeros(hidden) if bias is None else _numpy(bias)
    return weight.reshape(n_heads, width // n_heads, hidden), b_o


def _ln_params(module: Any) -> LayerNormParams:
    bias = getattr(module, "bias", None)
    gamma = _numpy(module.weight)
    eps = getattr(module, "eps", None)
    if eps is None:
        eps = getattr(module, "variance_epsilon", 1e-12)
    return LayerNormParams(gamma, np.zeros_like(gamma) if bias is None else _numpy(bias), float(eps))


def forward_inputs(loaded: Any, input_ids: Any) -> dict[str, Any]:
    """The keyword arguments of one unpadded forward pass over ``input_ids`` (batch of 1)."""
    import torch

    ids = torch.as_tensor([list(int(i) for i in input_ids)], dtype=torch.long)
    device = getattr(loaded.model, "device", None)
    inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if device is not None:
        inputs = {key: value.to(device) for key, value in inputs.items()}
    return inputs


def run_model(loaded: Any, inputs: dict[str, Any], forward: dict[str, Any] | None = None) -> Any:
    """Call the model on ``inputs`` (no cache) and ``forward``'s arguments, under ``torch.no_grad``."""
    import inspect

    import torch

    kwargs = {**inputs, **(forward or {})}
    with contextlib.suppress(TypeError, ValueError):
        if "use_cache" in inspect.signature(loaded.model.forward).parameters:
            kwargs["use_cache"] = False
    with torch.no_grad(), model_failures(f"The model {loaded.name!r} failed while building a context-mixing graph"):
        return loaded.model(**kwargs)


@contextlib.contextmanager
def _hooks(pairs: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Register ``(module, "pre" | "post", hook)`` forward hooks (with kwargs); always remove them."""
    handles = []
    try:
        for module, when, hook in pairs:
            if when == "pre":
                handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
            else:
                handles.append(module.register_forward_hook(hook, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


def capture_mixing(
    loaded: Any, input_ids: Any = None, *, inputs: dict[str, Any] | None = None,
    forward: dict[str, Any] | None = None, outputs: list[Any] | None = None,
) -> MixingCapture:
    """Run the model once on one input and capture what every context-mixing graph needs.

    Parameters
    ----------
    loaded
        An :class:`attnflow.capture.LoadedModel`.
    input_ids
        The token ids of one text (special tokens included), as
        :func:`attnflow.capture_attention` gives them; or give ``inputs``.
    inputs
        The model's keyword arguments for a batch of one (e.g. ``pixel_values``).
    forward, outputs
        More arguments of the pass, and a list the model's outputs are appended to, so
        the same pass also gives what a target reads (:func:`attnflow.capture.plan.capture_planned`).

    Examples
    --------
    >>> from attnflow.capture import load_model, capture_attention
    >>> lm = load_model()
    >>> cap = capture_mixing(lm, capture_attention("Mixing tokens.", lm).input_ids)
    >>> cap.n_layers, cap.n_tokens, cap.layout, cap.layers[0].values.shape
    (6, 6, 'post-ln', (6, 12, 32))
    """
    if inputs is None:
        inputs = forward_inputs(loaded, input_ids)
    model = loaded.model
    modules = layer_modules(model)
    layout = layout_of(model)
    store: list[dict[str, Any]] = [{} for _ in modules]
    site_index = {id(m.attention): index for index, m in enumerate(modules)}

    def keep_weights(call: Any) -> None:
        store[site_index[id(call.module)]]["weights"] = _numpy(call.weights[0])

    pairs: list[tuple[Any, str, Any]] = []
    for index, parts in enumerate(modules):
        record = store[index]

        def block_in(module: Any, args: Any, kwargs: Any, record: dict = record) -> None:
            record["x"] = _numpy(_first_tensor(args, kwargs)[0])

        def block_out(module: Any, args: Any, kwargs: Any, output: Any, record: dict = record) -> None:
            record["output"] = _numpy(_output_tensor(output)[0])

        def value_out(module: Any, args: Any, kwargs: Any, output: Any, record: dict = record, parts=parts) -> None:
            record["attention_input"] = _numpy(_first_tensor(args, kwargs)[0])
            out = _numpy(output[0])
            if parts.value_slice is not None:
                third = out.shape[-1] // 3
                out = out[:, parts.value_slice * third : (parts.value_slice + 1) * third]
            record["values"] = out

        pairs += [(parts.block, "pre", block_in), (parts.block, "post", block_out), (parts.value, "post", value_out)]
        for module, key in ((parts.ln1, "ln1"), (parts.ln2, "ln2"), (parts.ln_after_attention, "after")):
            if module is None:
                continue

            def norm_io(m: Any, args: Any, kwargs: Any, output: Any, record: dict = record, key: str = key) -> None:
                record[f"{key}_input"] = _numpy(_first_tensor(args, kwargs)[0])
                record[f"{key}_output"] = _numpy(_output_tensor(output)[0])

            pairs.append((module, "post", norm_io))

    with attention_hooks(model, keep_weights), _hooks(pairs):
        output = run_model(loaded, inputs, forward)
    if outputs is not None:
        outputs.append(output)

    layers = []
    for index, (parts, record) in enumerate(zip(modules, store, strict=True)):
        missing = [key for key in ("x", "attention_input", "values", "weights", "output") if key not in record]
        if missing:
            raise AttnflowError(
                f"Layer {index + 1} of {type(model).__name__} did not run through the hooked modules "
                f"(missing {', '.join(missing)}); attnflow cannot build context-mixing graphs for it."
            )
        n_heads = record["weights"].shape[0]
        w_o, b_o = _projection_weights(parts.projection, n_heads)
        head_dim = w_o.shape[1]
        n = record["values"].shape[0]
        values = record["values"].reshape(n, -1, head_dim)
        layer = LayerTensors(
            x=record["x"], attention_input=record["attention_input"], values=values,
            weights=record["weights"], w_o=w_o, b_o=b_o, output=record["output"],
        )
        if parts.ln1 is not None:
            layer.ln1_input, layer.ln1_output = record["ln1_input"], record["ln1_output"]
            layer.ln2_input = record["ln2_input"]
            layer.ln1, layer.ln2 = _ln_params(parts.ln1), _ln_params(parts.ln2)
        if parts.ln_after_attention is not None:
            layer.block_output = record["after_input"]
        layers.append(layer)
    return MixingCapture(
        layers=layers,
        model_type=model_type(model),
        layout=layout,
        is_causal=bool(getattr(loaded, "is_decoder", False)),
        loaded=loaded,
        inputs=inputs,
    )


def capture_text(text: str, loaded: Any, *, truncate: bool = False) -> tuple[Any, MixingCapture]:
    """One forward pass over ``text``: its attention (every head) and what every context-mixing graph needs.

    Returns ``(captured, capture)``: the :class:`attnflow.capture.CapturedAttention` built
    from the weights this pass recorded, and the :class:`MixingCapture`. ``attnflow
    explain --graph`` runs the model this once for the scores and the report.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> captured, capture = capture_text("One pass.", load_model())
    >>> captured.attentions.shape, capture.n_tokens
    ((6, 12, 5, 5), 5)
    """
    kept: list[MixingCapture] = []

    def run(input_ids: list[int]) -> list[np.ndarray]:
        kept.append(capture_mixing(loaded, input_ids))
        return [layer.weights for layer in kept[0].layers]

    captured = capture_attention_by(text, loaded, run, truncate=truncate)
    return captured, kept[0]
