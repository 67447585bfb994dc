"""Tiny random-weight image models (ViT, DeiT, DINOv2 with registers) and a hand-built one-patch classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_vit(folder: Path, image_size=(32, 48), patch=8, processor: bool = True, channels: int = 3) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=list(image_size), patch_size=patch, num_channels=channels, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, encoder_stride=patch, num_labels=3, initializer_range=0.2,
    )
    ViTForImageClassification(config).eval().save_pretrained(folder)
    if processor:
        from attnflow.tasks.digits import make_processor

        proc = make_processor()
        proc.size = {"height": int(image_size[0]), "width": int(image_size[1])}
        proc.save_pretrained(folder)
    return folder


def save_deit(folder: Path) -> Path:
    import torch
    from transformers import DeiTConfig, DeiTForImageClassificationWithTeacher

    torch.manual_seed(1)
    config = DeiTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=3, initializer_range=0.2, encoder_stride=8,
    )
    DeiTForImageClassificationWithTeacher(config).eval().save_pretrained(folder)
    return folder


def save_dinov2_registers(folder: Path, registers: int = 2) -> Path:
    import torch
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersForImageClassification

    torch.manual_seed(2)
    config = Dinov2WithRegistersConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
        num_register_tokens=registers, num_labels=3, initializer_range=0.2,
    )
    Dinov2WithRegistersForImageClassification(config).eval().save_pretrained(folder)
    return folder


#: The patch (row, col) that decides the class of :func:`one_patch_model`, on a 4x4 grid.
DECIDING_PATCH = (1, 2)


def one_patch_model(folder: Path) -> Path:
    """A 1-layer ViT (16x16 grey input, 4x4 patches) whose class depends on patch ``DECIDING_PATCH`` only.

    Built by hand: the patch embedding puts each patch's mean brightness in dimension 0;
    the position embeddings mark [CLS] (dimension 2) and the deciding patch (dimension 1);
    the [CLS] query reads its marker and every key reads the patch marker, scaled by 100,
    so [CLS] attends to the deciding patch with weight 1 - O(exp(-100)); the values carry
    dimension 0 into dimension 3, the MLP is zero, and the classifier reads dimension 3
    of [CLS] (class 1 for a bright patch, class 0 for a dark one). Every other patch
    changes the output by at most exp(-100).
    """
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    hidden = 8
    config = ViTConfig(
        image_size=16, patch_size=4, num_channels=1, hidden_size=hidden, num_hidden_layers=1,
        num_attention_heads=1, intermediate_size=4, encoder_stride=4, num_labels=2, qkv_bias=True,
    )
    model = ViTForImageClassification(config).eval()
    cols = 4
    deciding = 1 + DECIDING_PATCH[0] * cols + DECIDING_PATCH[1]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        emb = model.vit.embeddings
        emb.patch_embeddings.projection.weight[0, 0] = 1.0 / 16.0
        emb.position_embeddings[0, 0, 2] = 1.0
        emb.position_embeddings[0, deciding, 1] = 1.0
        layer = model.vit.layers[0]
        layer.layernorm_before.weight.fill_(1.0)
        layer.layernorm_after.weight.fill_(1.0)
        attn = layer.attention
        attn.q_proj.weight[0, 2] = 10.0
        attn.k_proj.weight[0, 1] = 10.0
        attn.v_proj.weight[0, 0] = 1.0
        attn.o_proj.weight[3, 0] = 1.0
        model.vit.layernorm.weight.fill_(1.0)
        model.classifier.weight[1, 3] = 4.0
        model.classifier.weight[0, 3] = -4.0
    model.save_pretrained(folder)
    return folder


def grey_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)
