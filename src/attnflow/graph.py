"""The attention graph: validated, head-fused, residual-augmented attention.

Shapes, written once (docs/design.md §2–3):

- ``attentions``: ``(L, H, n, n)``, ``[l-1, h, i, j]`` is how much query ``i``
  attends to key ``j`` in head ``h`` of layer ``l``. Rows sum to 1.
- fused attention ``Abar``: ``(L, n, n)``, heads combined by ``head_fusion``.
- graph ``Ahat``: ``(L, n, n)``, ``rownorm((1 - r) * Abar + r * I)``. The edge
  ``(l-1, j) -> (l, i)`` of the layered attention graph has capacity
  ``Ahat[l-1, i, j]``.

Every method (raw, rollout, flow, ...) starts from the arrays built here, so
the validation rules live in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import AttnflowError

HeadFusion = Literal["mean", "max", "min"]
HEAD_FUSIONS: tuple[str, ...] = ("mean", "max", "min")

#: Attention captured in float16/float32 never sums to exactly 1; this is the
#: largest row-sum error accepted before input is called malformed.
ROW_SUM_TOLERANCE = 1e-3


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or ``None`` where the system does not say."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_array_size(shape: Sequence[int], name: str, *, limit: int | None = None) -> None:
    """Refuse, before any allocation, an array of ``shape`` whose float64 copy is more than ``limit`` bytes.

    ``limit`` defaults to this machine's physical memory: validation and every
    method copy the array at least once in float64, so a larger one can only end
    in a ``MemoryError`` (or the system's out-of-memory killer) after a long wait.
    A view (``np.broadcast_to``, a torch ``expand``) takes no memory until then.

    Examples
    --------
    >>> check_array_size((12, 1, 60000, 60000), "attentions", limit=8 * 2**30)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The 'attentions' parameter has shape (12, 1, 60000, 60000): as float64 it \
would take 322 GiB, more than the 8 GiB of memory there is; give fewer tokens, layers or heads.
    """
    limit = memory_bytes() if limit is None else limit
    needed = 8 * float(np.prod([int(d) for d in shape], dtype=np.float64))
    if limit is not None and needed > limit:
        raise AttnflowError(
            f"The '{name}' parameter has shape {tuple(int(d) for d in shape)}: as float64 it would take "
            f"{needed / 2**30:.0f} GiB, more than the {limit / 2**30:.0f} GiB of memory there is; give fewer "
            "tokens, layers or heads."
        )


def _to_numpy(value: Any, name: str, keep_float32: bool = False) -> np.ndarray:
    """Convert numpy arrays, torch tensors or nested lists to a float64 array (float32 kept as it is if asked;
    too large: refused first)."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        check_array_size(tuple(shape), name)
    if (isinstance(value, np.ndarray) and np.iscomplexobj(value)) or (
        callable(getattr(value, "is_complex", None)) and value.is_complex()
    ):
        raise AttnflowError(f"The '{name}' parameter must hold real numbers; got complex values.")
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        if getattr(value, "is_meta", False):
            raise AttnflowError(
                f"The '{name}' parameter is a tensor on the 'meta' device, which holds no values; "
                "run the model on a real device (cpu, cuda) to capture attention."
            )
        try:
            value = value.detach().cpu()
            value = (value if keep_float32 and str(value.dtype) == "torch.float32" else value.double()).numpy()
        except (RuntimeError, TypeError, NotImplementedError) as exc:
            raise AttnflowError(
                f"The '{name}' parameter is a tensor that cannot be read as numbers ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''})."
            ) from None
    if keep_float32 and isinstance(value, np.ndarray) and value.dtype == np.float32:
        return value
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise AttnflowError(
            f"The '{name}' parameter must be a numeric array (numpy, torch or nested lists); "
            f"got {type(value).__name__} that cannot be converted: {exc}"
        ) from None
    return array


def _half_precision(value: Any) -> str | None:
    """``"bfloat16"`` or ``"float16"`` when ``value`` (or its first layer) is an array of that type, else ``None``."""
    if isinstance(value, (list, tuple)) and value:
        value = value[0]
    dtype = str(getattr(value, "dtype", ""))
    return next((kind for kind in ("bfloat16", "float16") if dtype.endswith(kind)), None)


def as_attention_array(attentions: Any, *, name: str = "attentions", keep_float32: bool = False) -> np.ndarray:
    """Validate attention and return it as float64 ``(L, H, n, n)``.

    With ``keep_float32``, one head of float32 (a capture fused while the model ran) is
    validated and returned as it is, not copied: at 8192 tokens SmolLM2's is 8 GB, 16 GB in
    float64. Readers that fuse it (:func:`fused_layers`) keep it; every computation on it
    converts what it needs.

    Accepts ``(L, H, n, n)``, already fused ``(L, n, n)`` (returned with ``H = 1``),
    or a list of per-layer arrays of shape ``(H, n, n)`` or ``(n, n)``; numpy
    arrays, torch tensors or nested lists. Raises :class:`AttnflowError` for
    a wrong rank or shape, NaN or infinite values, negative entries, or rows
    that do not sum to 1.

    Examples
    --------
    >>> as_attention_array([[[1.0, 0.0], [0.5, 0.5]]]).shape
    (1, 1, 2, 2)
    """
    half = _half_precision(attentions)
    if isinstance(attentions, (list, tuple)) and len(attentions) > 0 and not np.isscalar(attentions[0]):
        layers = [_to_numpy(layer, name, keep_float32) for layer in attentions]
        ranks = {layer.ndim for layer in layers}
        if ranks == {2}:
            layers = [layer[None] for layer in layers]
        elif ranks != {3}:
            raise AttnflowError(
                f"The '{name}' parameter, given as a list of per-layer arrays, must hold arrays of "
                f"shape (H, n, n) or (n, n) alike; got ranks {sorted(ranks)} instead."
            )
        shapes = {layer.shape for layer in layers}
        if len(shapes) != 1:
            raise AttnflowError(
                f"The '{name}' parameter's layers must all have the same shape; "
                f"got {sorted(shapes)} instead."
            )
        check_array_size((len(layers), *layers[0].shape), name)
        array = np.stack(layers)
    else:
        array = _to_numpy(attentions, name, keep_float32)
        if array.ndim == 3:
            array = array[:, None]
        elif array.ndim != 4:
            raise AttnflowError(
                f"The '{name}' parameter must have shape (L, H, n, n) or (L, n, n); got an array "
                f"of rank {array.ndim} with shape {array.shape} instead."
            )
    n_layers, n_heads, n_query, n_key = array.shape
    if n_query != n_key:
        raise AttnflowError(
            f"The '{name}' parameter must be square in its last two axes (query, key); "
            f"got shape {array.shape} instead."
        )
    if min(array.shape) == 0:
        raise AttnflowError(
            f"The '{name}' parameter must have at least one layer, head and token; "
            f"got shape {array.shape} instead."
        )
    if not all(np.isfinite(layer).all() for layer in array):  # layer by layer: no mask of the whole array
        raise AttnflowError(
            f"The '{name}' parameter contains NaN or infinite values; "
            "attention weights must be finite probabilities."
        )
    if array.min() < 0:
        raise AttnflowError(
            f"The '{name}' parameter contains negative entries (minimum {array.min():.3g}); "
            "attention weights must be non-negative."
        )
    row_sums = array.sum(axis=-1)
    worst = float(np.abs(row_sums - 1.0).max())
    if worst > ROW_SUM_TOLERANCE:
        layer, head, row = np.unravel_index(np.abs(row_sums - 1.0).argmax(), row_sums.shape)
        advice = (
            f"{half} keeps about {3 if half == 'bfloat16' else 4} significant digits, so its rows sum to 1 only "
            "roughly: divide each row by its sum in float32 or float64 first (a / a.sum(-1, keepdims=True)), or "
            "capture in float32" if half else "Remove padding positions or pass softmax weights"
        )
        raise AttnflowError(
            f"The '{name}' parameter must hold rows that sum to 1 over the keys (softmax output, "
            f"padding removed); row {row} of head {head} in layer {layer + 1} sums to "
            f"{row_sums[layer, head, row]:.6g}. {advice}."
        )
    if array.dtype != np.float64 and n_heads != 1:  # several heads are fused in float64
        array = array.astype(np.float64)
    return array


def fuse_heads(
    attentions: np.ndarray, head_fusion: HeadFusion | np.ndarray = "mean"
) -> np.ndarray:
    """Combine heads: ``(L, H, n, n) -> (L, n, n)``.

    ``head_fusion`` is ``"mean"`` (the paper), ``"max"`` or ``"min"`` (vit-explain),
    or an array of non-negative head weights of shape ``(L, H)`` or ``(H,)``
    (a weighted mean; equal weights give the mean).

    Examples
    --------
    >>> a = np.array([[[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]]])
    >>> fuse_heads(a, "mean")[0]
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    if isinstance(head_fusion, str):
        if head_fusion == "mean":
            return attentions.mean(axis=1)
        if head_fusion == "max":
            return attentions.max(axis=1)
        if head_fusion == "min":
            return attentions.min(axis=1)
        raise AttnflowError(
            f"The 'head_fusion' parameter must be one of {', '.join(HEAD_FUSIONS)} or an array of "
            f"head weights; got {head_fusion!r} instead."
        )
    weights = _to_numpy(head_fusion, "head_fusion")
    n_layers, n_heads = attentions.shape[:2]
    if weights.ndim == 1:
        weights = np.broadcast_to(weights, (n_layers, weights.shape[0]))
    if weights.shape != (n_layers, n_heads):
        raise AttnflowError(
            f"The 'head_fusion' weights must have shape ({n_layers}, {n_heads}) or ({n_heads},); "
            f"got {weights.shape} instead."
        )
    if not np.all(np.isfinite(weights)) or weights.min() < 0:
        raise AttnflowError("The 'head_fusion' weights must be finite and non-negative.")
    totals = weights.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise AttnflowError(
            "The 'head_fusion' weights of every layer must have a positive sum; "
            f"layers {list(np.flatnonzero(totals[:, 0] <= 0) + 1)} have none."
        )
    return np.einsum("lh,lhij->lij", weights / totals, attentions)


def fused_layers(
    attentions: np.ndarray, head_fusion: HeadFusion | np.ndarray = "mean", *, writeable: bool = False
) -> np.ndarray:
    """:func:`fuse_heads`, but a view of ``attentions`` when it holds one head (already fused).

    The mean, maximum and minimum of one head are that head, so a capture fused while
    the model ran is used as it is instead of copied: at 4096 tokens a float64
    ``(L, n, n)`` copy is 128 MB a layer. The view is read-only unless ``writeable``
    (for a caller that owns ``attentions``).

    Examples
    --------
    >>> a = np.full((2, 1, 3, 3), 1 / 3)
    >>> np.shares_memory(fused_layers(a), a), fused_layers(a).shape
    (True, (2, 3, 3))
    """
    if attentions.shape[1] == 1 and isinstance(head_fusion, str) and head_fusion in HEAD_FUSIONS:
        view = attentions[:, 0]
        view.flags.writeable = writeable and attentions.flags.writeable
        return view
    return fuse_heads(attentions, head_fusion)


def check_keep_token(keep_token: Any, n_tokens: int) -> int | None:
    """Resolve ``keep_token`` (rollout's protected column) to ``0 <= j < n`` or ``None``.

    Accepts ``None``, an integer (negative counts from the end), ``"cls"``, ``"last"``
    or ``"mean"`` (no single column: ``None``). Anything else raises :class:`AttnflowError`,
    whether or not ``discard_ratio`` will use it.

    Examples
    --------
    >>> check_keep_token(-1, 4), check_keep_token("cls", 4), check_keep_token(None, 4)
    (3, 0, None)
    >>> check_keep_token(99, 4)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The 'keep_token' parameter must be a token index from 0 to 3 (negative from \
the end), 'cls', 'last', 'mean' or None; got 99 instead.
    """
    if keep_token is None:
        return None
    if isinstance(keep_token, str):
        key = keep_token.strip().lower()
        if key in ("cls", "last", "mean"):
            return {"cls": 0, "last": n_tokens - 1, "mean": None}[key]
    elif isinstance(keep_token, (int, np.integer)) and not isinstance(keep_token, (bool, np.bool_)):
        if -n_tokens <= int(keep_token) < n_tokens:
            return int(keep_token) % n_tokens
    raise AttnflowError(
        f"The 'keep_token' parameter must be a token index from 0 to {n_tokens - 1} (negative from the end), "
        f"'cls', 'last', 'mean' or None; got {keep_token!r} instead."
    )


def discard_lowest(fused: np.ndarray, ratio: float, keep_column: int | None = None) -> np.ndarray:
    """Zero the lowest ``ratio`` of each layer's fused attention, never in column ``keep_column``.

    In each layer the ``floor(ratio * m)`` smallest of the ``m`` entries outside
    column ``keep_column`` are set to 0 (every entry is a candidate when it is
    ``None``). The whole column is kept because the weights pointing at the
    explained output token carry its own information back to it; vit-explain,
    where ``discard_ratio`` comes from, keeps only entry ``(0, 0)``
    (docs/design.md §3).

    Entries in column ``keep_column`` (the output token's own column; see
    :func:`check_keep_token`) are never discarded. Rows are renormalised later,
    when the residual is added.
    """
    keep_column = check_keep_token(keep_column, fused.shape[-1])
    if ratio <= 0:
        return fused
    out = fused.copy()
    n = fused.shape[-1]
    candidates = np.ones((n, n), dtype=bool)
    if keep_column is not None:
        candidates[:, keep_column] = False
    flat_candidates = np.flatnonzero(candidates)
    n_discard = int(len(flat_candidates) * ratio)
    if n_discard == 0:
        return out
    for layer in out:
        values = layer.ravel()[flat_candidates]
        lowest = flat_candidates[np.argpartition(values, n_discard - 1)[:n_discard]]
        layer.ravel()[lowest] = 0.0
    return out


def _fresh(array: np.ndarray, source: Any) -> bool:
    """Whether ``array`` (made from ``source`` by :func:`as_attention_array`) shares no memory with it."""
    if isinstance(source, np.ndarray):
        return not np.may_share_memory(array, source)
    if hasattr(source, "detach") and hasattr(source, "cpu"):  # a torch tensor
        if str(getattr(source, "device", "cpu")) != "cpu":
            return True
        try:
            return not np.may_share_memory(array, source.detach().numpy())
        except (RuntimeError, TypeError):
            return False
    return isinstance(source, (list, tuple))  # stacked or converted: always a new array


def add_residual(fused: np.ndarray, residual: float = 0.5, *, in_place: bool = False) -> np.ndarray:
    """``Ahat = rownorm((1 - r) * Abar + r * I)``: the residual connection as attention to self.

    When the rows of ``Abar`` sum to 1 (no discarding) the normalisation changes
    nothing, and ``r = 0.5`` gives the paper's ``0.5 * Abar + 0.5 * I``.

    Examples
    --------
    >>> add_residual(np.array([[[0.0, 1.0], [1.0, 0.0]]]), 0.5)[0]
    array([[0.5, 0.5],
           [0.5, 0.5]])
    """
    n = fused.shape[-1]
    # One (L, n, n) array, updated in place (at 4096 tokens each temporary is 128 MB a layer); the same
    # numbers as (1 - r) * Abar + r * I: off the diagonal r * 0 adds exactly nothing. With
    # ``in_place`` a writeable float64 ``fused`` (one its caller owns) is that array.
    if in_place and fused.dtype == np.float64 and fused.flags.writeable:
        augmented = fused
        augmented *= 1.0 - residual
    else:  # one new float64 array, scaled in place (the same numbers as (1 - r) * Abar, one temporary fewer)
        augmented = np.array(fused, dtype=np.float64)
        augmented *= 1.0 - residual
    diagonal = np.arange(n)
    augmented[..., diagonal, diagonal] += residual
    sums = augmented.sum(axis=-1, keepdims=True)
    # Entries are non-negative, so a row summing to 0 is all zeros and stays so.
    np.divide(augmented, sums, out=augmented, where=sums > 0)
    return augmented


def check_residual(residual: float) -> float:
    if (
        isinstance(residual, bool)
        or not isinstance(residual, (int, float, np.integer, np.floating))
        or not 0.0 <= float(residual) <= 1.0
    ):
        raise AttnflowError(
            f"The 'residual' parameter must be a number in [0, 1]; got {residual!r} instead."
        )
    return float(residual)


def check_ratio(discard_ratio: float) -> float:
    if (
        isinstance(discard_ratio, bool)
        or not isinstance(discard_ratio, (int, float, np.integer, np.floating))
        or not 0.0 <= discard_ratio < 1.0
    ):
        raise AttnflowError(
            f"The 'discard_ratio' parameter must be a number in [0, 1); "
            f"got {discard_ratio!r} instead."
        )
    return float(discard_ratio)


class ResidualLayers:
    """The capacities ``Ahat[l] = rownorm((1 - r) Abar[l] + r I)`` made one layer at a time, on indexing.

    What :func:`attnflow.methods.rollout.output_walk` needs of a graph without discarding: each
    layer once, in float64, from the fused attention as it is (a float32 capture is not copied
    whole: at 8192 tokens SmolLM2's 30 layers are 8 GB in float32, 16 GB in float64; one float64
    layer is 512 MB). ``layers[k]`` equals ``AttentionGraph.from_attentions(...).capacities[k]``.

    Examples
    --------
    >>> a = np.full((2, 1, 3, 3), 1 / 3, dtype=np.float32)
    >>> lazy = ResidualLayers(fused_layers(as_attention_array(a)), 0.5)
    >>> lazy.shape, bool(np.array_equal(lazy[1], AttentionGraph.from_attentions(a).capacities[1]))
    ((2, 3, 3), True)
    """

    def __init__(self, fused: np.ndarray, residual: float = 0.5) -> None:
        self.fused = fused
        self.residual = check_residual(residual)
        self.shape = tuple(fused.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, layer: int) -> np.ndarray:
        return add_residual(self.fused[layer][None], self.residual)[0]


@dataclass(frozen=True)
class AttentionGraph:
    """The layered attention graph of docs/design.md §3, as an ``(L, n, n)`` capacity array.

    ``capacities[l-1, i, j]`` is the capacity of the edge ``(l-1, j) -> (l, i)``.

    Examples
    --------
    >>> g = AttentionGraph.from_attentions(np.full((2, 1, 3, 3), 1 / 3))
    >>> g.n_layers, g.n_tokens
    (2, 3)
    >>> bool(np.allclose(g.capacities.sum(-1), 1.0))
    True
    """

    capacities: np.ndarray

    @property
    def n_layers(self) -> int:
        return int(self.capacities.shape[0])

    @property
    def n_tokens(self) -> int:
        return int(self.capacities.shape[-1])

    @classmethod
    def from_attentions(
        cls,
        attentions: Any,
        *,
        residual: float = 0.5,
        head_fusion: HeadFusion | np.ndarray = "mean",
        discard_ratio: float = 0.0,
        keep_column: int | None = None,
    ) -> AttentionGraph:
        """Validate, fuse heads, optionally discard, add the residual."""
        residual = check_residual(residual)
        discard_ratio = check_ratio(discard_ratio)
        array = as_attention_array(attentions)
        fused = fused_layers(array, head_fusion, writeable=_fresh(array, attentions))
        del array
        fused = discard_lowest(fused, discard_ratio, keep_column)
        # Only an array made here is writeable (converted from float32 attention, fused or
        # discarded); it takes the residual in place: at 4096 tokens 128 MB a layer not copied.
        return cls(add_residual(fused, residual, in_place=True))


def layer_list(layers: Sequence[int] | int | None, n_layers: int) -> list[int]:
    """Resolve a ``layers`` argument (1-based, negative counts from the top) to sorted indices 1..L.

    Examples
    --------
    >>> layer_list([-1, 1, 1], 6)
    [1, 6]
    >>> layer_list([], 6)
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The 'layers' parameter is empty; give at least one layer number \
from 1 to 6, or None for every layer.
    """
    if layers is None:
        return list(range(1, n_layers + 1))
    if isinstance(layers, (int, np.integer)) and not isinstance(layers, (bool, np.bool_)):
        layers = [int(layers)]
    if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
        raise AttnflowError(
            f"The 'layers' parameter must be a layer number, a list of them or None; got {layers!r}."
        )
    layers = list(layers)
    if not layers:
        raise AttnflowError(
            f"The 'layers' parameter is empty; give at least one layer number from 1 to {n_layers}, "
            "or None for every layer."
        )
    resolved = set()
    for layer in layers:
        if not isinstance(layer, (int, np.integer)) or isinstance(layer, (bool, np.bool_)):
            raise AttnflowError(f"The 'layers' parameter must hold integers; got {layer!r}.")
        value = int(layer) + n_layers + 1 if layer < 0 else int(layer)
        if not 1 <= value <= n_layers:
            raise AttnflowError(
                f"The 'layers' parameter must hold layer numbers from 1 to {n_layers} "
                f"(or -1 for the top layer); got {layer} instead."
            )
        resolved.add(value)
    return sorted(resolved)


def fusion_weights(importance: Any) -> np.ndarray:
    """Head weights for ``head_fusion`` from an ``(L, H)`` importance array.

    Negative and NaN entries count 0; a layer whose heads all weigh 0 (a layer the
    target does not depend on) gets equal weights, i.e. the plain mean.

    Examples
    --------
    >>> fusion_weights(np.array([[1.0, 3.0], [0.0, 0.0]]))
    array([[1., 3.],
           [1., 1.]])
    """
    weights = np.nan_to_num(np.asarray(importance, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if weights.ndim != 2:
        raise AttnflowError(f"The 'importance' parameter must be an (L, H) array; got shape {weights.shape}.")
    weights = np.maximum(weights, 0.0)
    empty = weights.sum(axis=1) <= 0
    weights[empty] = 1.0
    return weights


@dataclass(frozen=True)
class WeightedAttention:
    """What grad-rollout keeps of a target's attention gradients: ``mean_h max(0, dy/dA[l, h] * A[l, h])``.

    ``values`` is float64 ``(L, n, n)``, one fused map per layer, reduced while the
    backward pass ran (:func:`attnflow.capture.gradients.weighted_attention`)
    instead of keeping ``dy/dA`` ``(L, H, n, n)``. Give it to :func:`grad_rollout`
    (or ``explain_attentions(..., gradients=)``) in place of the gradients; the
    attentions then only fix the shape, so a head-fused capture serves.

    Examples
    --------
    >>> a = np.array([[[[0.5, 0.5], [0.0, 1.0]]]])
    >>> g = np.array([[[[-1.0, 2.0], [0.0, 3.0]]]])
    >>> from attnflow.methods.grad_rollout import grad_rollout
    >>> w = WeightedAttention(np.maximum(a * g, 0).mean(1))
    >>> bool(np.array_equal(grad_rollout(a, w), grad_rollout(a, g)))
    True
    """

    values: np.ndarray

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 3 or values.shape[-1] != values.shape[-2]:
            raise AttnflowError(f"WeightedAttention.values must have shape (L, n, n); got {values.shape}.")
        if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
            raise AttnflowError("WeightedAttention.values must be finite and non-negative.")
        object.__setattr__(self, "values", values)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(L, n, n)``."""
        return tuple(self.values.shape)
