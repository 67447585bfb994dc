from __future__ import annotations

from pathlib import Path

import pytest

from tests.vision import tiny_vision


@pytest.fixture(scope="session")
def vision_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of tiny image models: a non-square ViT (32x48, patch 8), DeiT, DINOv2 with 2 registers, one-patch."""
    root = tmp_path_factory.mktemp("tiny_vision")
    return {
        "vit": tiny_vision.save_vit(root / "vit"),
        "vit-square": tiny_vision.save_vit(root / "vit-square", image_size=(32, 32), processor=False),
        "deit": tiny_vision.save_deit(root / "deit"),
        "dinov2-registers": tiny_vision.save_dinov2_registers(root / "dinov2-registers"),
        "one-patch": tiny_vision.one_patch_model(root / "one-patch"),
    }
