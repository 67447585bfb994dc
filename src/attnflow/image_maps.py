"""Image maps: token scores onto the patch grid, and the heatmap overlaid on the image.

Pure arrays (numpy); matplotlib is imported only to colour a map (its colormaps)
and Pillow only to encode a PNG.

- :func:`scores_to_grid`: ``(rows * cols,)`` patch scores → ``(rows, cols)``, row-major,
  the order in which ViT-style models flatten their patches.
- :func:`patch_scores`: an ``(n,)`` score vector over all tokens → the grid, with the
  prefix tokens ([CLS], [DIST], registers) left out.
- :func:`overlay`: ``(H, W, 3)`` uint8 image and a grid → ``(H, W, 3)`` uint8, the grid
  upsampled to the image (each patch a block; bilinear with ``smooth=True``).
- :func:`png_bytes` / :func:`write_png`: encode and write atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AttnflowError
from .io import write_bytes_atomic


def _grid(grid: Sequence[int]) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise AttnflowError(f"The 'grid' parameter must be (rows, cols); got {grid!r} instead.") from None
    if rows < 1 or cols < 1:
        raise AttnflowError(f"The 'grid' parameter must be positive (rows, cols); got {grid!r} instead.")
    return rows, cols


def scores_to_grid(scores_for_patches: Any, grid: Sequence[int]) -> np.ndarray:
    """Lay ``rows * cols`` patch scores out on the ``(rows, cols)`` grid, row by row.

    Examples
    --------
    >>> scores_to_grid(np.arange(6.0), (2, 3))
    array([[0., 1., 2.],
           [3., 4., 5.]])
    >>> scores_to_grid(np.arange(6.0), (3, 3))
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: A 3x3 grid needs 9 patch scores; got 6 instead.
    """
    rows, cols = _grid(grid)
    values = np.asarray(scores_for_patches, dtype=np.float64).reshape(-1)
    if values.size != rows * cols:
        raise AttnflowError(f"A {rows}x{cols} grid needs {rows * cols} patch scores; got {values.size} instead.")
    return values.reshape(rows, cols)


def patch_scores(scores: Any, patch_positions: Sequence[int], grid: Sequence[int]) -> np.ndarray:
    """Scores of all ``n`` tokens → ``(rows, cols)``: only the patches, in grid order.

    Examples
    --------
    >>> patch_scores([0.9, 0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4], (2, 2))
    array([[0.1, 0.2],
           [0.3, 0.4]])
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    positions = np.asarray(list(patch_positions), dtype=np.int64)
    if positions.size and (positions.min() < 0 or positions.max() >= values.size):
        raise AttnflowError(
            f"Patch positions must lie in 0..{values.size - 1}; got {positions.min()}..{positions.max()}."
        )
    return scores_to_grid(values[positions], grid)


def normalise(grid_scores: Any) -> np.ndarray:
    """Scale to [0, 1] by the range (min → 0, max → 1); constant or empty maps become 0; NaN become 0.

    Examples
    --------
    >>> normalise([[1.0, 3.0], [2.0, np.nan]]).tolist()
    [[0.0, 1.0], [0.5, 0.0]]
    """
    values = np.asarray(grid_scores, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros_like(values)
    low, high = float(values[finite].min()), float(values[finite].max())
    out = np.zeros_like(values)
    if high > low:
        out[finite] = (values[finite] - low) / (high - low)
    return out


def _range(grid_scores: Any) -> tuple[float, float]:
    """The finite range :func:`normalise` maps to [0, 1] (a constant or empty map: a unit range, drawn as 0)."""
    values = np.asarray(grid_scores, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    return (low, high) if high > low else (low, low + 1.0)


def upsample(grid_scores: Any, size: Sequence[int], smooth: bool = False) -> np.ndarray:
    """A ``(rows, cols)`` map → ``(height, width)``: every pixel takes its patch's value (or bilinear).

    Pixel ``(y, x)`` lies in patch ``(floor(y * rows / height), floor(x * cols / width))``,
    so a grid that divides the image maps each patch onto exactly its pixels.

    Examples
    --------
    >>> upsample([[0.0, 1.0]], (2, 4))
    array([[0., 0., 1., 1.],
           [0., 0., 1., 1.]])
    """
    values = np.asarray(grid_scores, dtype=np.float64)
    if values.ndim != 2:
        raise AttnflowError(f"The grid scores must be 2-D (rows, cols); got shape {values.shape} instead.")
    height, width = (int(v) for v in size)
    rows, cols = values.shape
    if not smooth:
        ys = np.minimum((np.arange(height) * rows) // height, rows - 1)
        xs = np.minimum((np.arange(width) * cols) // width, cols - 1)
        return values[ys[:, None], xs[None, :]]
    # bilinear between patch centres, clamped at the borders
    yc = np.clip((np.arange(height) + 0.5) * rows / height - 0.5, 0, rows - 1)
    xc = np.clip((np.arange(width) + 0.5) * cols / width - 0.5, 0, cols - 1)
    y0, x0 = np.floor(yc).astype(int), np.floor(xc).astype(int)
    y1, x1 = np.minimum(y0 + 1, rows - 1), np.minimum(x0 + 1, cols - 1)
    fy, fx = (yc - y0)[:, None], (xc - x0)[None, :]
    top = values[y0][:, x0] * (1 - fx) + values[y0][:, x1] * fx
    bottom = values[y1][:, x0] * (1 - fx) + values[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def colourise(unit: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """Values in [0, 1] → RGB uint8 through a matplotlib colormap."""
    try:
        from matplotlib import colormaps
    except ImportError:  # pragma: no cover - optional dependency
        raise AttnflowError("Image overlays need matplotlib; install it with: pip install 'attnflow[plot]'") from None
    try:
        colormap = colormaps[cmap]
    except KeyError:
        raise AttnflowError(f"Unknown colormap {cmap!r}; use a matplotlib colormap name such as inferno.") from None
    rgba = colormap(np.clip(np.asarray(unit, dtype=np.float64), 0.0, 1.0))
    return np.clip(np.rint(rgba[..., :3] * 255.0), 0, 255).astype(np.uint8)


def overlay(
    image: Any,
    grid_scores: Any,
    alpha: float = 0.5,
    *,
    cmap: str = "inferno",
    smooth: bool = False,
) -> np.ndarray:
    """The heatmap of ``grid_scores`` laid over ``image``: RGB uint8 of the image's size.

    Parameters
    ----------
    image
        ``(H, W, 3)`` or ``(H, W)`` uint8 (or floats in [0, 1]).
    grid_scores
        ``(rows, cols)`` scores; scaled to [0, 1] by their range (:func:`normalise`).
    alpha
        Weight of the heatmap: ``out = (1 - alpha) * image + alpha * colour``; 0 gives
        the image, 1 the heatmap alone.
    cmap
        A matplotlib colormap name.
    smooth
        Bilinear between patch centres instead of one block per patch.

    Returns
    -------
    ndarray
        ``(H, W, 3)`` uint8.

    Examples
    --------
    >>> out = overlay(np.zeros((8, 12, 3), np.uint8), [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    >>> out.shape, out.dtype
    ((8, 12, 3), dtype('uint8'))
    """
    rgb = _rgb(image)
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise AttnflowError(f"The 'alpha' parameter must be in [0, 1]; got {alpha} instead.")
    heat = colourise(upsample(normalise(grid_scores), rgb.shape[:2], smooth=smooth), cmap)
    mixed = (1.0 - alpha) * rgb.astype(np.float64) + alpha * heat.astype(np.float64)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _rgb(image: Any) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.asarray(array, dtype=np.float64)
        if array.size and np.nanmax(array) <= 1.0:
            array = array * 255.0
        array = np.clip(np.rint(np.nan_to_num(array)), 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or min(array.shape[:2]) < 1:
        raise AttnflowError(f"The 'image' must be (H, W), (H, W, 3) or (H, W, 4); got shape {array.shape} instead.")
    return array[..., :3]


def enlarge(image: Any, min_side: int = 256) -> np.ndarray:
    """Enlarge a small image by an integer factor (nearest neighbour) until its shorter side is ``min_side``.

    Examples
    --------
    >>> enlarge(np.zeros((16, 16, 3), np.uint8), 64).shape
    (64, 64, 3)
    """
    rgb = _rgb(image)
    factor = max(1, int(np.ceil(min_side / max(1, min(rgb.shape[:2])))))
    if factor == 1:
        return rgb
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def png_bytes(image: Any) -> bytes:
    """Encode an RGB uint8 image as PNG bytes (Pillow)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        raise AttnflowError("Writing PNG images needs Pillow; install it with: pip install pillow") from None
    buffer = io.BytesIO()
    Image.fromarray(_rgb(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(image: Any, path: str | os.PathLike[str]) -> Path:
    """Write an RGB uint8 image as a PNG at ``path``, atomically."""

    if Path(path).is_dir():
        raise AttnflowError(f"Cannot write the image to {os.fspath(path)!r}: it is a folder; give a file name.")
    return write_bytes_atomic(path, png_bytes(image))


def overlay_figure(
    image: Any,
    maps: dict[str, np.ndarray],
    *,
    alpha: float = 0.5,
    cmap: str = "inferno",
    title: str = "",
    min_side: int = 192,
) -> bytes:
    """PNG bytes: the image, then one overlay per method, side by side, with titles (matplotlib).

    Each overlay is scaled to its own range (:func:`normalise`), so a colour bar
    under it gives that range: a nearly flat map (flow's 0.050 to 0.064) is not
    mistaken for a contrasted one. The figure's title says the scales differ.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        raise AttnflowError("Image figures need matplotlib; install it with: pip install 'attnflow[plot]'") from None
    base = enlarge(image, min_side)
    panels = [("image", base)] + [(name, overlay(base, grid, alpha, cmap=cmap)) for name, grid in maps.items()]
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.4), squeeze=False)
    try:
        for axis, (name, picture) in zip(axes[0], panels, strict=True):
            axis.imshow(picture, interpolation="nearest")
            axis.set_title(name, fontsize=10)
            axis.set_axis_off()
            if name in maps:
                low, high = _range(maps[name])
                bar = figure.colorbar(ScalarMappable(Normalize(low, high), cmap=cmap), ax=axis,
                                      orientation="horizontal", fraction=0.06, pad=0.04)
                bar.set_ticks([low, high], labels=[f"{low:.3g}", f"{high:.3g}"], fontsize=8)
        note = "colours: each panel from its own minimum to maximum (its bar)"
        figure.suptitle(f"{title}\n{note}" if title else note, fontsize=9)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(figure)
    return buffer.getvalue()


def image_view(
    picture: Any,
    grid: Sequence[int],
    patch_positions: Sequence[int],
    *,
    min_side: int = 192,
    source: str = "",
) -> dict[str, Any]:
    """What the HTML report's image view needs: the picture as a PNG data URL and where the patches lie.

    Small pictures are enlarged by an integer factor (nearest neighbour) so that
    patches stay crisp; the page lays the grid over the picture.

    Examples
    --------
    >>> view = image_view(np.zeros((16, 16, 3), np.uint8), (4, 4), range(1, 17), min_side=32)
    >>> view["grid"], view["width"], view["png"].startswith("data:image/png;base64,")
    ([4, 4], 32, True)
    """
    import base64

    rows, cols = _grid(grid)
    positions = [int(p) for p in patch_positions]
    if len(positions) != rows * cols:
        raise AttnflowError(f"A {rows}x{cols} grid needs {rows * cols} patch positions; got {len(positions)}.")
    big = enlarge(picture, min_side)
    encoded = base64.b64encode(png_bytes(big)).decode("ascii")
    return {
        "grid": [rows, cols],
        "patch_positions": positions,
        "png": "data:image/png;base64," + encoded,
        "width": int(big.shape[1]),
        "height": int(big.shape[0]),
        "source": str(source),
    }
