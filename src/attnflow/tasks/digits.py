"""A small ViT trained here on scikit-learn's handwritten digits: the bundled image model ``digits-vit``.

The data: ``sklearn.datasets.load_digits`` (1,797 grey 8×8 images of the digits 0-9,
ink 0-16). Each becomes an 8-bit image (ink ``v`` → ``round(255 · v / 16)``, white
ink on black, as the data set has it), given to the model as RGB; the saved image
processor (``ViTImageProcessor``: bilinear resize to 16×16, rescale to [0, 1],
normalise with mean 0.5 and std 0.5) prepares it, for training and use alike, so
any PNG of a digit, of any size, goes through the same steps.

The model: a stock ``ViTForImageClassification`` (``transformers``), 4 layers,
4 heads, hidden size 64, MLP 128, patch 4 on 16×16 inputs: a 4×4 grid of 16
patches and one [CLS] token (17 tokens); the class is read from [CLS]. Trained
from scratch with AdamW and a cosine schedule, random shifts of up to 2 pixels
as augmentation, seeded, with one torch thread (on a busy 2-core machine two threads were 30 times slower).

The split: stratified 80 % / 20 % (``random_state=0``): 1,437 training and 360
test images (:func:`digits_split`), the same split everywhere (``train_report.json``,
the tests, ``docs/vision.md``'s faithfulness table).

Importing this module registers the bundled model ``digits-vit``; it imports
neither torch nor scikit-learn until they are needed.

Train afresh (the bundled folder was made with the defaults)::

    attnflow train digits-vit DIR
    attnflow samples digits DIR --n 10     # test digits as PNG files, for explain --image

Examples
--------
>>> from attnflow.capture import BUNDLED_MODELS
>>> "digits-vit" in BUNDLED_MODELS
True
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..bundled import DIGITS_MODEL_DIR, bundled_digits_path  # noqa: F401  (re-exported: where the model lies)
from ..errors import AttnflowError
from ..io import write_bytes_atomic

#: Folder of the bundled model inside the installed package.

IMAGE_SIZE = 16
PATCH_SIZE = 4
SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _sklearn_digits() -> Any:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - optional dependency
        raise AttnflowError(
            "The digits data set needs scikit-learn; install it with: pip install scikit-learn"
        ) from None
    return load_digits()


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as 8-bit images ``(N, 8, 8)`` uint8 (white ink on black) and their labels ``(N,)``.

    Examples
    --------
    >>> images, labels = load_digit_images()
    >>> images.shape, images.dtype, int(images.max()), sorted(set(labels.tolist())) == list(range(10))
    ((1797, 8, 8), dtype('uint8'), 255, True)
    """
    data = _sklearn_digits()
    images = np.rint(np.asarray(data.images, dtype=np.float64) * 255.0 / 16.0).clip(0, 255).astype(np.uint8)
    return images, np.asarray(data.target, dtype=np.int64)


def digits_split(seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of the stratified 80 % / 20 % split (1,437 and 360 images).

    Examples
    --------
    >>> train, test = digits_split()
    >>> len(train), len(test), len(set(train) & set(test))
    (1437, 360, 0)
    """
    from sklearn.model_selection import train_test_split

    _, labels = load_digit_images()
    indices = np.arange(len(labels))
    train, test = train_test_split(
        indices, test_size=TEST_FRACTION, random_state=seed, stratify=labels, shuffle=True
    )
    return np.sort(train), np.sort(test)


def digits_test_set(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` test images ``(n, 8, 8)`` uint8 and labels (all 360 when ``n`` is None)."""
    images, labels = load_digit_images()
    _, test = digits_split()
    chosen = test if n is None else test[:n]
    return images[chosen], labels[chosen]


def to_pil(image: np.ndarray) -> Any:
    """An ``(h, w)`` uint8 grey image as an RGB ``PIL.Image`` (what the model's processor expects)."""
    from PIL import Image

    return Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").convert("RGB")


def digit_png(image: np.ndarray, scale: int = 8) -> bytes:
    """An 8×8 digit as PNG bytes, enlarged ``scale`` times with nearest neighbours.

    Examples
    --------
    >>> images, _ = digits_test_set(1)
    >>> digit_png(images[0])[:4]
    b'\\x89PNG'
    """
    import io

    from PIL import Image

    pil = to_pil(image)
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return buffer.getvalue()


def save_digit_png(image: np.ndarray, path: str | os.PathLike[str], scale: int = 8) -> Path:
    """Write an 8×8 digit as a PNG, enlarged ``scale`` times with nearest neighbours (atomically)."""

    return write_bytes_atomic(path, digit_png(image, scale))


def make_processor(image_size: int = IMAGE_SIZE) -> Any:
    """The image processor saved with the model: bilinear resize to ``image_size``, mean 0.5, std 0.5."""
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        resample=2,  # PIL bilinear
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def make_model(image_size: int = IMAGE_SIZE, patch_size: int = PATCH_SIZE, seed: int = 0) -> Any:
    """A fresh ``ViTForImageClassification`` of the bundled shape (4 layers, 4 heads, width 64)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        num_channels=3,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        encoder_stride=patch_size,
        num_labels=10,
        id2label={i: str(i) for i in range(10)},
        label2id={str(i): i for i in range(10)},
    )
    return ViTForImageClassification(config)


def pixel_values(images: np.ndarray, processor: Any) -> Any:
    """``(N, 3, H, W)`` float32 tensor: the images through ``processor``."""
    out = processor([to_pil(image) for image in images], return_tensors="pt")
    return out["pixel_values"]


def _shift(batch: Any, max_shift: int, generator: Any) -> Any:
    """Shift each image by up to ``max_shift`` pixels, filling with the background (the minimum)."""
    import torch

    if max_shift <= 0:
        return batch
    n, _, h, w = batch.shape
    background = batch.amin(dim=(1, 2, 3), keepdim=True)
    padded = background.expand(n, batch.shape[1], h + 2 * max_shift, w + 2 * max_shift).clone()
    padded[:, :, max_shift : max_shift + h, max_shift : max_shift + w] = batch
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())])


def accuracy(model: Any, values: Any, labels: np.ndarray, batch_size: int = 256) -> float:
    """Share of ``labels`` the model predicts from ``pixel_values`` ``values``."""
    import torch

    model.eval()
    predicted = []
    with torch.no_grad():
        for start in range(0, len(values), batch_size):
            predicted.append(model(pixel_values=values[start : start + batch_size]).logits.argmax(-1))
    return float((torch.cat(predicted).numpy() == labels).mean())


def train(
    out_dir: str | os.PathLike[str],
    *,
    epochs: int = 150,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    weight_decay: float = 0.05,
    max_shift: int = 2,
    seed: int = 0,
    threads: int = 1,
    max_seconds: float = 540.0,
    log: Any = print,
) -> dict[str, Any]:
    """Train the digits ViT and save it as a Hugging Face folder with ``train_report.json``.

    Stops after ``epochs`` or once ``max_seconds`` have passed (the report says
    which). Writes ``config.json``, ``model.safetensors``, ``preprocessor_config.json``
    and ``train_report.json`` (test accuracy, time, settings) into ``out_dir``.

    Returns
    -------
    dict
        The training report.
    """
    import torch

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return _train(out_dir, epochs, batch_size, learning_rate, weight_decay, max_shift, seed, int(threads),
                      max_seconds, log)
    finally:
        torch.set_num_threads(saved_threads)  # the caller's setting, as sva_train.train does


def _train(
    out_dir: str | os.PathLike[str], epochs: int, batch_size: int, learning_rate: float, weight_decay: float,
    max_shift: int, seed: int, threads: int, max_seconds: float, log: Any,
) -> dict[str, Any]:
    import torch
    import transformers

    torch.manual_seed(seed)
    started = time.perf_counter()
    images, labels = load_digit_images()
    train_idx, test_idx = digits_split()
    processor = make_processor()
    values = pixel_values(images, processor)
    x_train, y_train = values[train_idx], torch.as_tensor(labels[train_idx])
    x_test, y_test = values[test_idx], labels[test_idx]
    model = make_model(seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = (len(x_train) + batch_size - 1) // batch_size
    total_steps = epochs * steps_per_epoch
    warmup = 5 * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup)
        * 0.5
        * (1 + np.cos(np.pi * min(step, total_steps) / total_steps)),
    )
    generator = torch.Generator().manual_seed(seed)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    stopped_early = False
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = _shift(x_train[chosen], max_shift, generator)
            loss = loss_fn(model(pixel_values=batch).logits, y_train[chosen])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(chosen)
        if epoch % 10 == 0 or epoch == 1:
            log(
                f"epoch {epoch:3d}  loss {total / len(x_train):.4f}  test accuracy "
                f"{accuracy(model, x_test, y_test):.4f}  {time.perf_counter() - started:.0f} s"
            )
        if time.perf_counter() - started > max_seconds:
            stopped_early = epoch < epochs
            break
    seconds = time.perf_counter() - started
    test_accuracy = accuracy(model, x_test, y_test)
    train_accuracy = accuracy(model, x_train, labels[train_idx])
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    report = {
        "model": "digits-vit",
        "data": "sklearn.datasets.load_digits: 1797 grey 8x8 digits, stratified 80/20 split (random_state=0)",
        "n_train": int(len(train_idx)),
        "n_test": int(len(test_idx)),
        "test_accuracy": round(test_accuracy, 6),
        "train_accuracy": round(train_accuracy, 6),
        "epochs": int(epoch),
        "stopped_by_time_limit": bool(stopped_early),
        "seconds": round(seconds, 1),
        "threads": int(threads),
        "seed": int(seed),
        "settings": {
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "weight_decay": weight_decay,
            "max_shift": max_shift,
            "label_smoothing": 0.05,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "note": "timed on 2 CPU cores shared with other jobs",
    }
    (folder / "train_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log(f"test accuracy {test_accuracy:.4f} after {epoch} epochs, {seconds:.0f} s; saved to {folder}")
    return report
