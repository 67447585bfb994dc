"""Capture the attention of a Hugging Face image model (ViT, DeiT, DINOv2 with registers, BEiT) on one image.

Shapes, written once (``L`` layers, ``H`` heads, ``n`` tokens, a grid of ``rows × cols`` patches):

- ``CapturedImageAttention.attentions``: float64 ``(L, H, n, n)``, rows summing to 1;
  ``n = n_prefix + rows * cols``.
- The first ``n_prefix`` tokens are the model's own tokens, never image patches:
  ``[CLS]`` (ViT, BEiT), ``[CLS]`` and ``[DIST]`` (DeiT's distillation token),
  ``[CLS]`` and ``[REG1]`` ... ``[REGk]`` (DINOv2 with registers). They are
  ``special_positions`` and are left out of every image map.
- ``patch_positions[r * cols + c]`` is the token index of grid cell ``(r, c)``
  (row-major, as the patch embedding flattens the image); its label is ``"patch (r,c)"``.
- ``grid = (rows, cols)`` comes from the ``pixel_values`` the model actually saw
  (``height // patch_size``, ``width // patch_size``), so non-square inputs are
  right; ``n_prefix = n - rows * cols`` is checked against what the config says.

Preprocessing: the model folder's image processor (``AutoImageProcessor``,
``local_files_only``) when it has one; otherwise the documented fallback: resize
to the config's ``image_size`` (bilinear), scale to [0, 1], normalise with mean
0.5 and std 0.5 per channel (what ``ViTImageProcessor`` does by default). With
``size=(height, width)`` the image is resized to that size instead (each a
multiple of the patch size) and ViT and DeiT are run with
``interpolate_pos_encoding=True``; DINOv2 always interpolates.

Everything runs inside :func:`attnflow.capture.eager_attention` (fused sdpa
attention returns no weights) and the model is restored afterwards.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AttnflowError
from ._eager import eager_attention
from ._failures import model_failures
from ._reduce import reduce_layer
from ._shapes import AttentionShape
from .models import LoadedModel, is_vision_config, load_model, quiet_transformers

#: Mean and std of the fallback normalisation (ViTImageProcessor's defaults).
FALLBACK_MEAN = (0.5, 0.5, 0.5)
FALLBACK_STD = (0.5, 0.5, 0.5)
#: The image model used when ``model=None``.
DEFAULT_IMAGE_MODEL = "digits-vit"
#: The largest image :func:`load_image` opens (width x height); larger files are refused before decoding,
#: so a small file that decompresses to gigabytes (a decompression bomb) cannot exhaust memory.
MAX_IMAGE_PIXELS = 50_000_000
#: The most memory the captured attention of one image may take (float64 ``(L, H, n, n)``).
MAX_ATTENTION_BYTES = 8 * 2**30


@dataclass
class CapturedImageAttention(AttentionShape):
    """The attention of one image: ``(L, H, n, n)`` weights, the patch grid and the token labels.

    Attributes
    ----------
    attentions
        float64 ``(L, H, n, n)``.
    tokens
        ``n`` labels: ``"[CLS]"``, ``"[DIST]"``, ``"[REG1]"``, ..., then ``"patch (r,c)"``.
    special_positions
        Token indices of the prefix tokens (everything that is not a patch).
    grid
        ``(rows, cols)`` of the patch grid.
    patch_positions
        ``rows * cols`` token indices, row-major: cell ``(r, c)`` is token ``patch_positions[r * cols + c]``.
    image
        The image as loaded, RGB uint8 ``(height, width, 3)``.
    model_image
        What the model saw: its ``pixel_values`` mapped back to RGB uint8 ``(H, W, 3)``
        (the normalisation undone), aligned exactly with the grid.
    model_name
        The model's name or folder.
    pixel_values
        float32 ``(1, C, H, W)`` as given to the model (to reuse for gradients or perturbation).
    source
        The image file, or ``""`` for an array.
    cropped
        True when the processor cropped the image, so ``grid`` lines up with
        ``model_image`` but not with the whole ``image``.
    row_correction
        The largest ``|row sum - 1|`` of the weights the model produced, corrected by
        renormalising in float64 (about 1e-7 in float32, up to a few 1e-3 in bfloat16).
    prediction
        A classifier's top class in the same forward pass, ``{"class", "label",
        "probability"}``; ``None`` for a model without logits.

    Examples
    --------
    >>> c = CapturedImageAttention(np.full((1, 1, 5, 5), 0.2), ["[CLS]"] + [f"patch ({r},{k})" for r in range(2)
    ...     for k in range(2)], (0,), (2, 2), (1, 2, 3, 4), np.zeros((8, 8, 3), np.uint8))
    >>> c.n_prefix, c.n_layers, c.patch_positions
    (1, 1, (1, 2, 3, 4))
    """

    attentions: np.ndarray
    tokens: list[str]
    special_positions: tuple[int, ...]
    grid: tuple[int, int]
    patch_positions: tuple[int, ...]
    image: np.ndarray
    model_image: np.ndarray | None = None
    model_name: str = ""
    pixel_values: Any = field(default=None, repr=False)
    source: str = ""
    cropped: bool = False
    row_correction: float = 0.0
    prediction: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        attentions = np.asarray(self.attentions, dtype=np.float64)
        if attentions.ndim != 4 or attentions.shape[-1] != attentions.shape[-2]:
            raise AttnflowError(
                f"CapturedImageAttention.attentions must have shape (L, H, n, n); got {attentions.shape} instead."
            )
        n = attentions.shape[-1]
        rows, cols = (int(v) for v in self.grid)
        positions = tuple(int(p) for p in self.patch_positions)
        if len(positions) != rows * cols or len(set(positions)) != len(positions):
            raise AttnflowError(
                f"CapturedImageAttention.patch_positions must hold {rows * cols} distinct token indices for a "
                f"{rows}x{cols} grid; got {len(positions)}."
            )
        special = tuple(int(p) for p in self.special_positions)
        if any(not 0 <= p < n for p in positions + special) or set(positions) & set(special):
            raise AttnflowError(
                f"CapturedImageAttention positions must lie in 0..{n - 1} and patches must not be special tokens."
            )
        if len(self.tokens) != n:
            raise AttnflowError(f"CapturedImageAttention has {n} tokens of attention but {len(self.tokens)} labels.")
        self.attentions = attentions
        self.tokens = list(self.tokens)
        self.grid = (rows, cols)
        self.patch_positions = positions
        self.special_positions = special
        self.image = np.asarray(self.image, dtype=np.uint8)

    @property
    def n_prefix(self) -> int:
        """Tokens that are not patches ([CLS], [DIST], registers)."""
        return self.n_tokens - len(self.patch_positions)


# ---------------------------------------------------------------------------- images


def load_image(image: Any) -> tuple[Any, str]:
    """An image file (any format PIL reads), a PIL image or an ``(h, w)`` / ``(h, w, 3|4)`` array → RGB PIL image.

    Returns ``(image, source)`` with ``source`` the path, or ``""``.

    Raises
    ------
    AttnflowError
        For a missing file, a folder, a file PIL cannot read as an image, or an array of another shape.

    Examples
    --------
    >>> load_image(np.zeros((4, 6), np.uint8))[0].size
    (6, 4)
    >>> load_image("/nonexistent.png")
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: Cannot read the image '/nonexistent.png': the file does not exist.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - pillow comes with matplotlib
        raise AttnflowError("Reading images needs Pillow; install it with: pip install pillow") from None
    if isinstance(image, Image.Image):
        return image.convert("RGB"), ""
    if isinstance(image, (str, os.PathLike)):
        name = os.fspath(image)
        path = Path(name).expanduser()
        if not path.exists():
            raise AttnflowError(f"Cannot read the image {name!r}: the file does not exist.")
        if path.is_dir():
            raise AttnflowError(f"Cannot read the image {name!r}: it is a folder; give an image file.")
        if not path.is_file():  # a pipe would block the read, a device never end
            raise AttnflowError(f"Cannot read the image {name!r}: it is not a regular file (a device or a pipe).")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
                with Image.open(path) as opened:
                    width, height = opened.size
                    if width * height > MAX_IMAGE_PIXELS:
                        raise AttnflowError(
                            f"Cannot read the image {name!r}: it is {width}x{height} pixels, more than the "
                            f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels attnflow opens (a decompression bomb?); "
                            "shrink it first."
                        )
                    opened.load()
                    return opened.convert("RGB"), name
        except Image.DecompressionBombError:
            raise AttnflowError(
                f"Cannot read the image {name!r}: Pillow refuses it as a decompression bomb (far too many pixels)."
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            if isinstance(exc, AttnflowError):
                raise
            raise AttnflowError(
                f"Cannot read the image {name!r}: not an image file Pillow can read ({type(exc).__name__})."
            ) from None
    array = np.asarray(image)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (1, 3, 4)):
        if array.dtype != np.uint8:
            if np.issubdtype(array.dtype, np.floating) and array.size and float(np.nanmax(array)) <= 1.0:
                array = array * 255.0
            array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        return Image.fromarray(array).convert("RGB"), ""
    raise AttnflowError(
        "The 'image' parameter must be an image file, a PIL image or an array of shape (h, w), (h, w, 3) or "
        f"(h, w, 4); got {type(image).__name__} of shape {getattr(array, 'shape', None)} instead."
    )


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def patch_size(model: Any) -> tuple[int, int]:
    """``(height, width)`` of one patch, from the model's config."""
    config = getattr(model, "config", None)
    value = getattr(config, "patch_size", None)
    if value is None:
        raise AttnflowError(f"The config of {type(model).__name__} gives no patch_size; it is not a ViT-style model.")
    return _pair(value)


def check_vision_model(loaded: LoadedModel) -> None:
    """Raise a clear error when ``loaded`` is not an image model attnflow can capture."""
    config = getattr(loaded.model, "config", None)
    if not is_vision_config(config) or "pixel_values" not in _forward_parameters(loaded.model):
        kind = getattr(config, "model_type", type(loaded.model).__name__)
        raise AttnflowError(
            f"The model {loaded.name!r} ({kind}) is not an image model: it takes no pixel_values and its config "
            "has no image_size and patch_size. Give a ViT, DeiT, DINOv2 or BEiT model (e.g. --model digits-vit), "
            "or explain text without --image."
        )
    if getattr(config, "model_type", "") in ("swin", "swinv2", "levit", "mobilevit", "mobilevitv2"):
        raise AttnflowError(
            f"The model {loaded.name!r} ({config.model_type}) does not attend over the whole image at once "
            "(windowed or convolutional attention); attnflow needs global attention over the patches."
        )


def preprocess(loaded: LoadedModel, image: Any, size: tuple[int, int] | None = None) -> tuple[Any, bool]:
    """``pixel_values`` ``(1, C, H, W)`` float32 for one RGB PIL image, and whether the processor cropped it.

    With the model's processor when it has one, else the documented fallback (resize to the
    config's ``image_size`` or ``size``, bilinear; [0, 1]; mean 0.5, std 0.5).
    """
    import torch

    processor = loaded.processor
    if processor is not None:
        kwargs: dict[str, Any] = {"return_tensors": "pt"}
        cropped = bool(getattr(processor, "do_center_crop", False))
        if size is not None:
            kwargs["size"] = {"height": int(size[0]), "width": int(size[1])}
            kwargs["do_center_crop"] = False
            cropped = False
        try:
            with quiet_transformers():
                values = processor(images=image, **kwargs)["pixel_values"]
        except Exception as exc:
            raise AttnflowError(
                f"The image processor of the model {loaded.name!r} failed: {type(exc).__name__}: {exc}"
            ) from None
        return torch.as_tensor(values, dtype=torch.float32), cropped
    from PIL import Image

    height, width = size if size is not None else _pair(getattr(loaded.model.config, "image_size", 224))
    resized = image.resize((int(width), int(height)), Image.BILINEAR)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    channels = int(getattr(loaded.model.config, "num_channels", 3))
    array = (array - np.array(FALLBACK_MEAN, dtype=np.float32)) / np.array(FALLBACK_STD, dtype=np.float32)
    if channels == 1:
        array = array.mean(axis=-1, keepdims=True)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None], False


def _normalisation(loaded: LoadedModel) -> tuple[np.ndarray, np.ndarray]:
    processor = loaded.processor
    if processor is not None and getattr(processor, "do_normalize", True):
        mean = getattr(processor, "image_mean", None)
        std = getattr(processor, "image_std", None)
        if mean is not None and std is not None:
            return np.asarray(mean, dtype=np.float64).reshape(-1), np.asarray(std, dtype=np.float64).reshape(-1)
    if processor is not None:
        return np.zeros(1), np.ones(1)
    return np.asarray(FALLBACK_MEAN), np.asarray(FALLBACK_STD)


def pixels_to_image(loaded: LoadedModel, pixel_values: Any) -> np.ndarray:
    """Undo the normalisation of ``(1, C, H, W)`` pixel values → RGB uint8 ``(H, W, 3)``."""
    values = np.asarray(pixel_values.detach().cpu().double().numpy() if hasattr(pixel_values, "detach")
                        else pixel_values, dtype=np.float64)[0]
    mean, std = _normalisation(loaded)
    channels = values.shape[0]
    mean = np.resize(mean, channels)[:, None, None]
    std = np.resize(std, channels)[:, None, None]
    rgb = (values * std + mean).transpose(1, 2, 0)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    return np.clip(np.rint(rgb[..., :3] * 255.0), 0, 255).astype(np.uint8)


def _forward_parameters(model: Any) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        return set()


def grid_of(loaded: LoadedModel, pixel_values: Any) -> tuple[int, int]:
    """``(rows, cols)``: the patch grid of these pixel values."""
    height, width = int(pixel_values.shape[-2]), int(pixel_values.shape[-1])
    ph, pw = patch_size(loaded.model)
    if height % ph or width % pw:
        raise AttnflowError(
            f"The image reaches the model as {height}x{width} pixels, not a multiple of its {ph}x{pw} patches; "
            f"give size= (CLI: --image-size) as multiples of {ph}x{pw}."
        )
    return height // ph, width // pw


def prefix_labels(config: Any, n_prefix: int) -> list[str]:
    """Labels of the tokens before the patches: ``[CLS]``, DeiT's ``[DIST]``, ``[REG1]`` ... registers.

    Examples
    --------
    >>> from transformers import DeiTConfig, Dinov2WithRegistersConfig, ViTConfig
    >>> prefix_labels(ViTConfig(), 1), prefix_labels(DeiTConfig(), 2)
    (['[CLS]'], ['[CLS]', '[DIST]'])
    >>> prefix_labels(Dinov2WithRegistersConfig(num_register_tokens=2), 3)
    ['[CLS]', '[REG1]', '[REG2]']
    """
    if n_prefix <= 0:
        return []
    registers = int(getattr(config, "num_register_tokens", 0) or 0)
    model_type = str(getattr(config, "model_type", ""))
    labels = ["[CLS]"]
    if model_type == "deit" and n_prefix >= 2:
        labels.append("[DIST]")
    if registers and len(labels) + registers == n_prefix:
        labels.extend(f"[REG{i}]" for i in range(1, registers + 1))
    while len(labels) < n_prefix:
        labels.append(f"[PREFIX{len(labels)}]")
    return labels


def expected_prefix(config: Any) -> int | None:
    """How many non-patch tokens the config says the model has, when it says (``None`` otherwise)."""
    model_type = str(getattr(config, "model_type", ""))
    if model_type == "deit":
        return 2
    if model_type in ("vit", "dinov2", "beit", "data2vec-vision", "vit_msn"):
        return 1
    if model_type == "dinov2_with_registers":
        return 1 + int(getattr(config, "num_register_tokens", 0) or 0)
    return None


def _image_forward(loaded: LoadedModel, pixel_values: Any, interpolate: bool) -> Any:
    model = loaded.model
    kwargs: dict[str, Any] = {"pixel_values": pixel_values, "output_attentions": True, "return_dict": True}
    if interpolate and "interpolate_pos_encoding" in _forward_parameters(model):
        kwargs["interpolate_pos_encoding"] = True
    device = getattr(model, "device", None)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if device is not None:
        kwargs["pixel_values"] = pixel_values.to(device=device, dtype=dtype or pixel_values.dtype)
    with model_failures(f"The model {loaded.name!r} failed on the image"):
        return model(**kwargs)


def _attention_layers(loaded: LoadedModel, output: Any) -> tuple[Any, ...]:
    import torch

    attentions = getattr(output, "attentions", None)
    if not attentions:
        raise AttnflowError(
            f"The model {loaded.name!r} ({type(loaded.model).__name__}) returned no attention weights, even with "
            "eager attention and output_attentions=True; attnflow cannot capture its attention."
        )
    n = attentions[0].shape[-1]
    for index, layer in enumerate(attentions):
        if not isinstance(layer, torch.Tensor) or layer.ndim != 4 or tuple(layer.shape[-2:]) != (n, n):
            shape = tuple(layer.shape) if isinstance(layer, torch.Tensor) else type(layer).__name__
            raise AttnflowError(
                f"The model {loaded.name!r} returned attention of layer {index + 1} with shape {shape}; attnflow "
                "needs the same (batch, heads, n, n) in every layer (global attention over all patches)."
            )
    return tuple(attentions)


def _layout(loaded: LoadedModel, n: int, grid: tuple[int, int]) -> tuple[list[str], tuple[int, ...], tuple[int, ...]]:
    rows, cols = grid
    n_prefix = n - rows * cols
    config = loaded.model.config
    expected = expected_prefix(config)
    if n_prefix < 0 or (expected is not None and n_prefix != expected):
        raise AttnflowError(
            f"The model {loaded.name!r} attends over {n} tokens, which does not fit a {rows}x{cols} patch grid "
            f"with {expected if expected is not None else 'its'} prefix token(s); attnflow cannot tell its patches."
        )
    labels = prefix_labels(config, n_prefix) + [f"patch ({r},{c})" for r in range(rows) for c in range(cols)]
    return labels, tuple(range(n_prefix)), tuple(range(n_prefix, n))


def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        height, width = _pair(size)
    except (TypeError, ValueError, IndexError):
        raise AttnflowError(f"The 'size' parameter must be (height, width) in pixels; got {size!r} instead.") from None
    if height < 1 or width < 1:
        raise AttnflowError(f"The 'size' parameter must be positive (height, width); got {size!r} instead.")
    return height, width


def prepare_image(
    image: Any,
    model: Any = None,
    *,
    size: Any = None,
    trust_remote_code: bool = False,
    dtype: str | None = None,
    device: str | None = None,
) -> tuple[LoadedModel, Any, Any, str, bool]:
    """Load the model (in ``dtype``, on ``device``) and the image, and preprocess.

    Returns ``(loaded, pil_image, pixel_values, source, cropped)``.
    """
    loaded = load_model(
        DEFAULT_IMAGE_MODEL if model is None else model, trust_remote_code=trust_remote_code, dtype=dtype,
        device=device,
    )
    check_vision_model(loaded)
    size = _check_size(size)
    check_attention_size(loaded, size)
    pil, source = load_image(image)
    pixel_values, cropped = preprocess(loaded, pil, size)
    return loaded, pil, pixel_values, source, cropped


def check_attention_size(loaded: LoadedModel, size: tuple[int, int] | None) -> None:
    """Refuse a ``size`` whose attention would not fit in memory (``MAX_ATTENTION_BYTES``), before resizing.

    The captured attention is float64 ``(L, H, n, n)`` with ``n`` the patches plus
    the prefix tokens; an ``--image-size`` of 100000x100000 would ask for exabytes.
    """
    if size is None:
        return
    height, width = size
    if height * width > MAX_IMAGE_PIXELS:
        raise AttnflowError(
            f"The 'size' {height}x{width} is more than the {MAX_IMAGE_PIXELS // 1_000_000} megapixels attnflow "
            "resizes an image to; give a smaller size (CLI: --image-size)."
        )
    config = loaded.model.config
    patch_h, patch_w = patch_size(loaded.model)
    n = (height // max(patch_h, 1)) * (width // max(patch_w, 1)) + 1
    layers = int(getattr(config, "num_hidden_layers", 1) or 1)
    heads = int(getattr(config, "num_attention_heads", 1) or 1)
    needed = layers * heads * n * n * 8
    if needed > MAX_ATTENTION_BYTES:
        raise AttnflowError(
            f"The 'size' {height}x{width} makes {n} tokens: their attention ({layers} layers x {heads} heads x "
            f"{n}x{n}) would need {needed / 2**30:.0f} GiB, more than the {MAX_ATTENTION_BYTES / 2**30:.0f} GiB "
            "attnflow allows; give a smaller size (CLI: --image-size)."
        )


def _needs_interpolation(loaded: LoadedModel, pixel_values: Any) -> bool:
    configured = _pair(getattr(loaded.model.config, "image_size", 0) or 0)
    return tuple(int(v) for v in pixel_values.shape[-2:]) != configured


def capture_image_attention(
    image: Any,
    model: Any = None,
    *,
    size: Any = None,
    trust_remote_code: bool = False,
    dtype: str | None = None,
    device: str | None = None,
) -> CapturedImageAttention:
    """Run an image model on one image and return its attention with the patch grid.

    Parameters
    ----------
    image
        An image file (PNG, JPEG, ... anything Pillow reads), a PIL image, or an
        array ``(h, w)`` / ``(h, w, 3)`` (uint8, or floats in [0, 1]).
    model
        ``None`` for the bundled ``digits-vit``, a bundled name, a folder, a cached
        Hugging Face id, a loaded image model, or a :class:`LoadedModel`.
    size
        ``(height, width)`` to resize to instead of the processor's size (multiples
        of the patch size; non-square is fine). Position embeddings are interpolated.
    trust_remote_code
        As for :func:`attnflow.capture.load_model`.
    dtype, device
        Load (or convert, or move) the model in this precision and onto this device
        first, as :func:`attnflow.capture.load_model` does (``"bfloat16"``,
        ``"float16"``, ``"float32"``; ``"cpu"``, ``"cuda"``, ``"auto"``). Rows of
        half-precision weights are renormalised in float64; the largest correction
        is ``row_correction``.

    Returns
    -------
    CapturedImageAttention

    Raises
    ------
    AttnflowError
        A missing or unreadable image, a text model, a model without global attention
        over its patches, or a token count that does not fit the patch grid.

    Examples
    --------
    >>> c = capture_image_attention(np.zeros((8, 8), np.uint8), "digits-vit")
    >>> c.attentions.shape, c.grid, c.tokens[:2]
    ((4, 4, 17, 17), (4, 4), ['[CLS]', 'patch (0,0)'])
    """
    import torch

    loaded, pil, pixel_values, source, cropped = prepare_image(
        image, model, size=size, trust_remote_code=trust_remote_code, dtype=dtype, device=device
    )
    grid = grid_of(loaded, pixel_values)
    with eager_attention(loaded.model), torch.no_grad():
        output = _image_forward(loaded, pixel_values, _needs_interpolation(loaded, pixel_values))
        layers = _attention_layers(loaded, output)
        array, correction = _renormalised(loaded, layers)
        prediction = _prediction(loaded, getattr(output, "logits", None))
    labels, special, patches = _layout(loaded, array.shape[-1], grid)
    return CapturedImageAttention(
        attentions=array,
        tokens=labels,
        special_positions=special,
        grid=grid,
        patch_positions=patches,
        image=np.asarray(pil),
        model_image=pixels_to_image(loaded, pixel_values),
        model_name=loaded.name,
        pixel_values=pixel_values,
        source=source,
        cropped=cropped,
        row_correction=correction,
        prediction=prediction,
    )


def _prediction(loaded: LoadedModel, logits: Any) -> dict[str, Any] | None:
    """The top class of the first image's ``logits``, its label and softmax probability (``None``: no logits)."""
    import torch

    if logits is None or getattr(logits, "ndim", 0) != 2:
        return None
    probabilities = torch.softmax(logits.detach()[0].double(), -1)
    index = int(probabilities.argmax())
    labels = getattr(loaded.model.config, "id2label", None) or {}
    return {"class": index, "label": str(labels.get(index, index)), "probability": float(probabilities[index])}


def _renormalised(loaded: LoadedModel, layers: Sequence[Any]) -> tuple[np.ndarray, float]:
    """Each layer's weights of the first image, float64 ``(L, H, n, n)`` with rows renormalised; the largest correction.

    As text capture does (:func:`attnflow.capture._reduce.reduce_layer`): float32 rows
    within ``EXACT_ROWS`` of 1 are kept as they are; half-precision rows are divided by
    their float64 sums.
    """

    arrays, correction = [], 0.0
    for layer in layers:
        reduced = reduce_layer(layer[0].detach(), "all")
        if reduced is None:
            raise AttnflowError(
                f"The model {loaded.name!r} produced NaN or infinite attention weights for the image; a float16 "
                "model may overflow: load it in float32 or bfloat16 (CLI: --dtype float32)."
            )
        arrays.append(reduced[0].numpy())
        correction = max(correction, reduced[1])
    return np.stack(arrays), correction


def resolve_image_target(loaded: LoadedModel, target: Any, logits: Any) -> tuple[int, str]:
    """The class a gradient method explains: ``None`` / ``"predicted"``, an index or a label → ``(index, label)``."""
    config = loaded.model.config
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    n_classes = int(logits.shape[-1])
    if target is None or (isinstance(target, str) and target.strip().lower() == "predicted"):
        index = int(logits[0].argmax())
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        index = int(target)
    elif isinstance(target, str):
        text = target.strip()
        text = text[len("label:") :] if text.lower().startswith("label:") else text
        by_label = {label: i for i, label in id2label.items()}
        if text in by_label:
            index = by_label[text]
        elif text.lstrip("-").isdigit():
            index = int(text)
        else:
            raise AttnflowError(
                f"The 'target' parameter {target!r} is not a class of the model {loaded.name!r}; its labels: "
                f"{', '.join(id2label[i] for i in sorted(id2label)[:20])}."
            )
    else:
        raise AttnflowError(
            f"The 'target' parameter must be 'predicted', a class index or a label; got {target!r} instead."
        )
    if not 0 <= index < n_classes:
        raise AttnflowError(
            f"The 'target' class {index} is out of range: the model {loaded.name!r} has {n_classes} classes."
        )
    return index, id2label.get(index, str(index))


@dataclass
class ImageGradients:
    """Attention ``(L, H, n, n)`` and ``dS/dA`` for the logit ``S`` of one class, with the class and its probability."""

    attentions: np.ndarray
    gradients: np.ndarray
    target: dict[str, Any]


def image_attention_gradients(loaded: LoadedModel, pixel_values: Any, target: Any = None) -> ImageGradients:
    """Differentiate a class logit with respect to every attention weight (Chefer et al.), one image.

    No hooks: in eager attention the returned weights are the tensors the model
    multiplies the values with, so ``torch.autograd.grad`` gives ``dS/dA``.
    The model is restored afterwards and no ``.grad`` is left on it.
    """
    import torch

    if not hasattr(getattr(loaded.model, "config", None), "id2label") or "logits" not in _output_fields(loaded):
        raise AttnflowError(
            f"The model {loaded.name!r} has no classification head; gradient methods on images need a classifier "
            "(...ForImageClassification)."
        )
    with eager_attention(loaded.model), torch.enable_grad():
        output = _image_forward(loaded, pixel_values, _needs_interpolation(loaded, pixel_values))
        logits = getattr(output, "logits", None)
        if logits is None:
            raise AttnflowError(f"The model {loaded.name!r} returned no logits; it is not a classifier.")
        index, label = resolve_image_target(loaded, target, logits.detach())
        layers = _attention_layers(loaded, output)
        score = logits[0, index]
        wanted = [layer for layer in layers if layer.requires_grad]
        grads = list(torch.autograd.grad(score, wanted, allow_unused=True)) if wanted else []
    attention_grads = []
    for layer in layers:
        grad = grads.pop(0) if layer.requires_grad and grads else None
        attention_grads.append(torch.zeros_like(layer) if grad is None else grad)
    probability = float(torch.softmax(logits.detach()[0].double(), -1)[index])

    def to_numpy(items: Sequence[Any]) -> np.ndarray:
        return np.stack([item[0].detach().cpu().to(torch.float64).numpy() for item in items])

    return ImageGradients(
        attentions=_renormalised(loaded, layers)[0],
        gradients=to_numpy(attention_grads),
        target={"kind": "class", "class": index, "label": label, "value": probability, "score": float(score.detach())},
    )


def _output_fields(loaded: LoadedModel) -> set[str]:
    name = type(loaded.model).__name__
    return {"logits"} if "ImageClassification" in name or hasattr(loaded.model, "classifier") else set()


def classify(loaded: LoadedModel, pixel_values: Any, batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(N, classes)`` float64 for ``(N, C, H, W)`` pixel values (eval mode, no grad)."""
    import torch

    interpolate = _needs_interpolation(loaded, pixel_values)
    chunks = []
    with eager_attention(loaded.model), torch.no_grad():
        for start in range(0, int(pixel_values.shape[0]), batch_size):
            batch = pixel_values[start : start + batch_size]
            kwargs: dict[str, Any] = {"pixel_values": batch, "return_dict": True}
            if interpolate and "interpolate_pos_encoding" in _forward_parameters(loaded.model):
                kwargs["interpolate_pos_encoding"] = True
            logits = loaded.model(**kwargs).logits
            chunks.append(torch.softmax(logits.double(), -1).cpu().numpy())
    return np.concatenate(chunks)
