"""Run an image model on copies of one image with patches blanked: deletion and insertion curves.

Shapes, written once: ``pixel_values`` is ``(1, C, H, W)`` as the model takes it;
the grid is ``(rows, cols)`` with ``P = rows * cols`` patches, numbered row-major;
an ``order`` is a permutation of ``0..P-1``, most important first.

- Deletion (Petsiuk et al. 2018, RISE): blank the first ``k`` patches of the order,
  ``k = 0 .. P``; the target class's probability should fall fast.
- Insertion: start from the blank image and restore the first ``k`` patches; the
  probability should rise fast.

"Blank" is ``fill="black"`` (default: pixel value 0 before the processor's
normalisation, which for the bundled digits is the background) or ``"mean"``
(each channel's mean over the image). All copies go through the model in
batches, in evaluation mode, and the model is restored afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import AttnflowError
from .image import _normalisation, classify
from .models import LoadedModel

FILLS: tuple[str, ...] = ("black", "mean")


def fill_values(loaded: LoadedModel, pixel_values: Any, fill: str = "black") -> Any:
    """``(1, C, 1, 1)`` tensor: the value a blanked pixel gets, in the model's normalised space."""
    import torch

    channels = int(pixel_values.shape[1])
    if fill == "black":
        mean, std = _normalisation(loaded)
        mean, std = np.resize(mean, channels), np.resize(std, channels)
        values = torch.as_tensor(-mean / std, dtype=pixel_values.dtype)
    elif fill == "mean":
        values = pixel_values[0].mean(dim=(1, 2))
    else:
        raise AttnflowError(f"The 'fill' parameter must be one of {', '.join(FILLS)}; got {fill!r} instead.")
    return values.reshape(1, channels, 1, 1)


def steps_for(n_patches: int, max_steps: int = 64) -> np.ndarray:
    """How many patches are blanked at each point of a curve: ``0 .. P``, at most ``max_steps + 1`` points.

    Examples
    --------
    >>> steps_for(4).tolist(), steps_for(196, 4).tolist()
    ([0, 1, 2, 3, 4], [0, 49, 98, 147, 196])
    """
    if n_patches <= max_steps:
        return np.arange(n_patches + 1)
    return np.unique(np.rint(np.linspace(0, n_patches, max_steps + 1)).astype(int))


def patch_masks(grid: Sequence[int], size: Sequence[int], order: Sequence[int], steps: Sequence[int]) -> np.ndarray:
    """``(len(steps), H, W)`` bool: True where a pixel lies in one of the first ``k`` patches of ``order``.

    Examples
    --------
    >>> patch_masks((1, 2), (2, 4), [1, 0], [0, 1, 2]).astype(int)[1]
    array([[0, 0, 1, 1],
           [0, 0, 1, 1]])
    """
    rows, cols = (int(v) for v in grid)
    height, width = (int(v) for v in size)
    order = np.asarray(order, dtype=np.int64)
    if sorted(order.tolist()) != list(range(rows * cols)):
        raise AttnflowError(
            f"The 'order' must be a permutation of the {rows * cols} patches; got {len(order)} entries."
        )
    ys = np.minimum((np.arange(height) * rows) // height, rows - 1)
    xs = np.minimum((np.arange(width) * cols) // width, cols - 1)
    cell = ys[:, None] * cols + xs[None, :]
    rank = np.empty(rows * cols, dtype=np.int64)
    rank[order] = np.arange(rows * cols)
    pixel_rank = rank[cell]
    return np.stack([pixel_rank < int(k) for k in steps])


def perturbation_curves(
    loaded: LoadedModel,
    pixel_values: Any,
    grid: Sequence[int],
    order: Sequence[int],
    target_class: int,
    *,
    fill: str = "black",
    max_steps: int = 64,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deletion and insertion curves of one image for one patch order.

    Returns
    -------
    fractions, deletion, insertion
        ``fractions[s] = k_s / P`` (from 0 to 1); ``deletion[s]`` is the probability of
        ``target_class`` with the first ``k_s`` patches blanked, ``insertion[s]`` with
        only they restored on the blank image.
    """
    import torch

    rows, cols = (int(v) for v in grid)
    steps = steps_for(rows * cols, max_steps)
    masks = torch.as_tensor(patch_masks(grid, pixel_values.shape[-2:], order, steps))[:, None]  # (S, 1, H, W)
    blank = fill_values(loaded, pixel_values, fill)
    image = pixel_values[:1]
    deleted = torch.where(masks, blank, image)
    inserted = torch.where(masks, image, blank)
    probabilities = classify(loaded, torch.cat([deleted, inserted]).to(pixel_values.dtype), batch_size)
    column = probabilities[:, int(target_class)]
    return steps / float(rows * cols), column[: len(steps)], column[len(steps) :]


def patch_blankout(
    loaded: LoadedModel,
    pixel_values: Any,
    grid: Sequence[int],
    target_class: int,
    *,
    fill: str = "black",
    batch_size: int = 64,
) -> np.ndarray:
    """Blank-out for images: ``|p(x) - p(x with patch k blanked)|`` for every patch, ``(rows, cols)``.

    The image analogue of the paper's blank-out ground truth (docs/design.md §8), one
    patch at a time, all copies in batches.
    """
    import torch

    rows, cols = (int(v) for v in grid)
    n_patches = rows * cols
    identity = np.arange(n_patches)
    masks = np.stack(
        [patch_masks(grid, pixel_values.shape[-2:], np.roll(identity, -k), [1])[0] for k in range(n_patches)]
    )
    mask = torch.as_tensor(masks)[:, None]
    blank = fill_values(loaded, pixel_values, fill)
    copies = torch.where(mask, blank, pixel_values[:1])
    probabilities = classify(loaded, torch.cat([pixel_values[:1], copies]).to(pixel_values.dtype), batch_size)
    column = probabilities[:, int(target_class)]
    return np.abs(column[0] - column[1:]).reshape(rows, cols)
