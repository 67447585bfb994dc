"""Unit tests (arrays only): patch grids, upsampling, overlays, PNGs, AUC and patch orders."""

from __future__ import annotations

import numpy as np
import pytest

from attnflow import AttnflowError
from attnflow.capture.image_perturb import patch_masks, steps_for
from attnflow.evaluate.image_faithfulness import auc, patch_order, random_order
from attnflow.image_maps import image_view, normalise, overlay, patch_scores, png_bytes, scores_to_grid, upsample


@pytest.mark.parametrize("grid", [(4, 4), (4, 6), (3, 1), (1, 5)])
def test_scores_to_grid_is_row_major(grid):
    rows, cols = grid
    out = scores_to_grid(np.arange(rows * cols), grid)
    assert out.shape == grid
    for r in range(rows):
        for c in range(cols):
            assert out[r, c] == r * cols + c


def test_patch_scores_leave_prefix_tokens_out():
    scores = np.array([9.0, 8.0, 7.0] + list(range(6)))  # [CLS], [DIST], a register, then 2x3 patches
    assert patch_scores(scores, range(3, 9), (2, 3)).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_wrong_counts_raise():
    with pytest.raises(AttnflowError, match="4x6 grid needs 24"):
        scores_to_grid(np.zeros(16), (4, 6))
    with pytest.raises(AttnflowError, match="grid"):
        scores_to_grid(np.zeros(4), (0, 4))


@pytest.mark.parametrize(("grid", "size"), [((4, 4), (32, 32)), ((4, 6), (32, 48)), ((2, 3), (7, 10))])
def test_upsample_puts_each_patch_on_its_pixels(grid, size):
    rows, cols = grid
    up = upsample(scores_to_grid(np.arange(rows * cols), grid), size)
    assert up.shape == size
    height, width = size
    for y in range(height):
        for x in range(width):
            assert up[y, x] == (y * rows // height) * cols + (x * cols // width)
    if height % rows == 0 and width % cols == 0:  # exact blocks of patch size
        ph, pw = height // rows, width // cols
        assert np.array_equal(up[::ph, ::pw], scores_to_grid(np.arange(rows * cols), grid))


def test_masks_agree_with_upsampling():
    order = np.random.default_rng(0).permutation(24)
    masks = patch_masks((4, 6), (32, 48), order, [0, 5, 24])
    up = upsample(scores_to_grid(np.arange(24), (4, 6)), (32, 48))
    assert not masks[0].any() and masks[2].all()
    assert np.array_equal(masks[1], np.isin(up, order[:5]))


@pytest.mark.parametrize("shape", [(32, 48, 3), (32, 48), (5, 7, 4)])
def test_overlay_shape_dtype_and_range(shape):
    image = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    grid = np.random.default_rng(2).normal(size=(4, 6))
    out = overlay(image, grid, 0.5)
    assert out.shape == (*shape[:2], 3) and out.dtype == np.uint8
    assert out.min() >= 0 and out.max() <= 255
    rgb = image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, -1)
    assert np.array_equal(overlay(image, grid, 0.0), rgb)
    smooth = overlay(image.astype(np.float64) / 255.0, grid, 1.0, smooth=True)
    assert smooth.dtype == np.uint8 and smooth.shape == (*shape[:2], 3)


def test_overlay_full_alpha_is_the_colour_map():
    out = overlay(np.zeros((4, 4, 3), np.uint8), [[0.0, 1.0]], 1.0)
    assert np.array_equal(out[:, :2], np.broadcast_to(out[0, 0], (4, 2, 3)))
    assert out[0, 3].sum() > out[0, 0].sum()  # the high patch is brighter in inferno


def test_overlay_bad_input():
    with pytest.raises(AttnflowError, match="alpha"):
        overlay(np.zeros((4, 4, 3), np.uint8), [[1.0]], 1.5)
    with pytest.raises(AttnflowError, match="image"):
        overlay(np.zeros((4, 4, 2), np.uint8), [[1.0]])


def test_normalise_handles_constant_and_nan():
    assert normalise(np.ones((2, 2))).tolist() == [[0, 0], [0, 0]]
    assert normalise([[np.nan, 2.0], [4.0, 3.0]]).tolist() == [[0.0, 0.0], [1.0, 0.5]]


def test_png_and_image_view():
    data = png_bytes(np.zeros((3, 5, 3), np.uint8))
    assert data.startswith(b"\x89PNG")
    view = image_view(np.zeros((16, 16, 3), np.uint8), (4, 4), range(1, 17), min_side=64)
    assert view["width"] == view["height"] == 64 and view["png"].startswith("data:image/png;base64,")


def test_auc_trapezoid_and_orders():
    assert auc([0, 0.25, 1], [1, 1, 0]) == pytest.approx(0.25 + 0.375)
    assert patch_order([[0.2, np.nan], [0.9, 0.2]]).tolist() == [2, 0, 3, 1]
    assert np.array_equal(random_order(16, 0, 3), random_order(16, 0, 3))
    assert not np.array_equal(random_order(16, 0, 3), random_order(16, 0, 4))
    assert steps_for(16).tolist() == list(range(17))
