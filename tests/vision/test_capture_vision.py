"""Integration tests on tiny image models: grids, prefix tokens, errors, a model whose answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import attnflow
from attnflow import AttnflowError
from attnflow.capture import load_model
from attnflow.capture.image import _needs_interpolation, capture_image_attention, grid_of, prefix_labels
from attnflow.capture.image_perturb import patch_blankout, perturbation_curves
from tests.vision.tiny_vision import DECIDING_PATCH, grey_image


def embeddings_changed(loaded, pixel_values, cell, grid, patch):
    """Which token's input embedding changes when the pixels of grid cell ``cell`` change."""
    rows, cols = grid
    ph, pw = patch
    changed = pixel_values.clone()
    r, c = cell
    changed[..., r * ph : (r + 1) * ph, c * pw : (c + 1) * pw] += 1.0
    embed = loaded.model.base_model.embeddings
    kwargs = {}
    if "interpolate_pos_encoding" in embed.forward.__code__.co_varnames and _needs_interpolation(loaded, pixel_values):
        kwargs["interpolate_pos_encoding"] = True
    with torch.no_grad():
        diff = (embed(changed, **kwargs) - embed(pixel_values, **kwargs)).abs().sum(-1)[0]
    return set(torch.nonzero(diff > 1e-6).flatten().tolist())


@pytest.mark.parametrize(
    ("name", "size", "grid", "prefix"),
    [
        ("vit", None, (4, 6), ["[CLS]"]),  # non-square config 32x48, patch 8
        ("vit-square", (32, 48), (4, 6), ["[CLS]"]),  # square config, non-square input, interpolated positions
        ("vit-square", None, (4, 4), ["[CLS]"]),
        ("deit", None, (4, 4), ["[CLS]", "[DIST]"]),
        ("deit", (24, 40), (3, 5), ["[CLS]", "[DIST]"]),
        ("dinov2-registers", None, (4, 4), ["[CLS]", "[REG1]", "[REG2]"]),
        ("dinov2-registers", (32, 48), (4, 6), ["[CLS]", "[REG1]", "[REG2]"]),
    ],
)
def test_grid_prefix_tokens_and_patch_positions(vision_paths, name, size, grid, prefix):
    loaded = load_model(vision_paths[name])
    assert loaded.tokenizer is None and loaded.is_vision
    captured = capture_image_attention(grey_image(30, 50), loaded, size=size)
    rows, cols = grid
    n = len(prefix) + rows * cols
    assert captured.grid == grid and captured.attentions.shape[-1] == n
    assert captured.tokens[: len(prefix)] == prefix
    assert captured.special_positions == tuple(range(len(prefix)))
    assert captured.tokens[len(prefix)] == "patch (0,0)" and captured.tokens[-1] == f"patch ({rows - 1},{cols - 1})"
    assert np.allclose(captured.attentions.sum(-1), 1.0)
    assert captured.image.shape == (30, 50, 3) and captured.image.dtype == np.uint8
    # the token of each grid cell is the one whose embedding the cell's pixels change
    patch = (captured.pixel_values.shape[-2] // rows, captured.pixel_values.shape[-1] // cols)
    for cell in [(0, 0), (rows - 1, cols - 1), (1, cols - 2), (rows - 1, 0)]:
        assert embeddings_changed(loaded, captured.pixel_values, cell, grid, patch) == {
            captured.patch_positions[cell[0] * cols + cell[1]]
        }
    # the model is restored: sdpa again, eval mode
    assert not loaded.model.training


def test_prefix_labels_fallback():
    from transformers import BeitConfig

    assert prefix_labels(BeitConfig(), 1) == ["[CLS]"]
    assert prefix_labels(BeitConfig(), 3) == ["[CLS]", "[PREFIX1]", "[PREFIX2]"]


def test_explain_image_explanation_round_trips(vision_paths, tmp_path):
    e = attnflow.explain_image(grey_image(32, 48), vision_paths["deit"], methods=("raw", "rollout", "flow"))
    assert e.special_positions == (0, 1) and e.image["grid"] == [4, 4]
    assert e.grid_scores("flow").shape == (4, 4)
    path = tmp_path / "e.json"
    e.to_json(path)
    back = attnflow.Explanation.from_json(path)
    assert back.image == json.loads(json.dumps(e.image))
    assert np.allclose(back.grid_scores("rollout"), e.grid_scores("rollout"))
    out = e.overlay("rollout")
    assert out.shape == (32, 48, 3) and out.dtype == np.uint8
    assert e.to_png(tmp_path / "o.png").read_bytes().startswith(b"\x89PNG")


def test_output_can_be_the_distillation_token(vision_paths):
    e = attnflow.explain_image(grey_image(32, 32), vision_paths["deit"], methods="rollout", output=1)
    assert e.output == 1


def test_grad_rollout_on_images_and_targets(vision_paths):
    e = attnflow.explain_image(grey_image(32, 48), vision_paths["vit"], methods="grad-rollout", target=2)
    assert e.target["class"] == 2 and e.target["label"] == "LABEL_2"
    with pytest.raises(AttnflowError, match="out of range"):
        attnflow.explain_image(grey_image(32, 48), vision_paths["vit"], methods="grad-rollout", target=7)
    with pytest.raises(AttnflowError, match="not a class"):
        attnflow.explain_image(grey_image(32, 48), vision_paths["vit"], methods="grad-rollout", target="cat")


def test_bad_inputs_give_clear_errors(vision_paths, tmp_path, tiny_bert_path):
    with pytest.raises(AttnflowError, match="does not exist"):
        capture_image_attention(tmp_path / "missing.png", vision_paths["vit"])
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    with pytest.raises(AttnflowError, match="not an image file"):
        capture_image_attention(fake, vision_paths["vit"])
    with pytest.raises(AttnflowError, match="is a folder"):
        capture_image_attention(tmp_path, vision_paths["vit"])
    with pytest.raises(AttnflowError, match="not an image model"):
        capture_image_attention(grey_image(8, 8), tiny_bert_path)
    with pytest.raises(AttnflowError, match="multiple of its 8x8 patches"):
        capture_image_attention(grey_image(8, 8), vision_paths["vit"], size=(30, 48))
    with pytest.raises(AttnflowError, match="image model"):
        attnflow.explain("hello", vision_paths["vit"])


def test_grid_of_uses_the_pixels(vision_paths):
    loaded = load_model(vision_paths["vit"])
    assert grid_of(loaded, torch.zeros(1, 3, 16, 40)) == (2, 5)


# ---------------------------------------------------------------------------- the one-patch model


def bright_deciding_patch(seed: int = 0) -> np.ndarray:
    image = grey_image(16, 16, seed) // 4  # dark everywhere...
    r, c = DECIDING_PATCH
    image[r * 4 : (r + 1) * 4, c * 4 : (c + 1) * 4] = 255  # ...but the deciding patch
    return image


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_patch_model_every_method_ranks_the_deciding_patch_first(vision_paths, seed):
    """raw, rollout, flow and grad-rollout all put the deciding patch first: [CLS] reads only it."""
    e = attnflow.explain_image(
        bright_deciding_patch(seed), vision_paths["one-patch"], methods=("raw", "rollout", "flow", "grad-rollout")
    )
    assert e.target["class"] == 1
    for method in e.methods:
        grid = e.grid_scores(method)
        assert np.unravel_index(np.argmax(grid), grid.shape) == DECIDING_PATCH, method
        others = np.delete(grid.reshape(-1), DECIDING_PATCH[0] * 4 + DECIDING_PATCH[1])
        assert others.max() < 1e-6 * grid.max(), method


def test_one_patch_model_ground_truths_find_the_patch(vision_paths):
    """Blank-out, input gradients and the deletion curve: only the deciding patch matters."""
    loaded = load_model(vision_paths["one-patch"])
    captured = capture_image_attention(bright_deciding_patch(), loaded)
    blank = patch_blankout(loaded, captured.pixel_values, (4, 4), 1)
    assert np.unravel_index(np.argmax(blank), blank.shape) == DECIDING_PATCH
    assert np.delete(blank.reshape(-1), 6).max() < 1e-9 and blank.max() > 0.1
    pixels = captured.pixel_values.clone().requires_grad_(True)
    grad = torch.autograd.grad(loaded.model(pixel_values=pixels).logits[0, 1], pixels)[0][0].abs().sum(0)
    per_patch = grad.reshape(4, 4, 4, 4).sum((1, 3)).numpy()
    assert np.unravel_index(np.argmax(per_patch), (4, 4)) == DECIDING_PATCH
    assert np.delete(per_patch.reshape(-1), 6).max() < 1e-6 * per_patch.max()
    first = [6] + [k for k in range(16) if k != 6]
    last = [k for k in range(16) if k != 6] + [6]
    _, good, good_in = perturbation_curves(loaded, captured.pixel_values, (4, 4), first, 1)
    _, bad, bad_in = perturbation_curves(loaded, captured.pixel_values, (4, 4), last, 1)
    assert good[1] < good[0] - 0.1 and np.allclose(bad[:16], bad[0])
    assert good_in[1] > good_in[0] + 0.1


def test_capture_restores_the_model(vision_paths):
    loaded = load_model(vision_paths["vit"])
    before = loaded.model.config._attn_implementation
    loaded.model.train()
    capture_image_attention(grey_image(32, 48), loaded)
    assert loaded.model.config._attn_implementation == before and loaded.model.training
