"""``attnflow.explain_image``: an image in, per-method patch scores (and a heatmap) out."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..capture import load_model
from ..capture.image import DEFAULT_IMAGE_MODEL, capture_image_attention, image_attention_gradients
from ..errors import AttnflowError
from ..explanation import Explanation
from ..image_maps import overlay, overlay_figure
from ..io import write_bytes_atomic
from .text import correction_note, explain_attentions, target_needed

DEFAULT_IMAGE_METHODS: tuple[str, ...] = ("rollout",)


@dataclass
class ImageExplanation(Explanation):
    """An :class:`~attnflow.Explanation` of an image, holding the image and its capture besides.

    ``image`` (the metadata: grid, patch positions, sizes) is saved in the JSON;
    ``captured`` (the pixels and attention, an
    :class:`attnflow.capture.image.CapturedImageAttention`) is not.
    """

    captured: Any = field(default=None, repr=False, compare=False)

    def picture(self) -> np.ndarray:
        """The RGB uint8 image the grid lines up with: the loaded image, or what the model saw if it was cropped."""
        if self.captured is None:
            raise AttnflowError("This image explanation holds no pixels (it was read from JSON).")
        cap = self.captured
        return cap.model_image if cap.cropped and cap.model_image is not None else cap.image

    def overlay(self, method: str | None = None, layer: int = -1, alpha: float = 0.5, **options: Any) -> np.ndarray:
        """The heatmap of ``method`` (default: the first) after ``layer`` over the image, RGB uint8 ``(H, W, 3)``."""

        name = method or self.methods[0]
        return overlay(self.picture(), self.grid_scores(name, layer), alpha, **options)

    def to_png(
        self, path: str | os.PathLike[str], methods: Sequence[str] | None = None, layer: int = -1, alpha: float = 0.5
    ) -> Path:
        """Write the image and one overlay per method (default: all), side by side, as a PNG (atomically)."""

        names = list(methods) if methods else self.methods
        maps = {name: self.grid_scores(name, layer) for name in names}
        label = self.target.get("label") if isinstance(self.target, dict) else None
        title = f"{self.model_name} · layer {layer if layer > 0 else self.n_layers + layer + 1}"
        if label is not None:
            title += f" · class {label}"
        if Path(path).is_dir():
            raise AttnflowError(f"Cannot write the image to {os.fspath(path)!r}: it is a folder; give a file name.")
        return write_bytes_atomic(path, overlay_figure(self.picture(), maps, alpha=alpha, title=title))


def explain_image(
    path: Any,
    model: Any = None,
    methods: Sequence[str] | str = DEFAULT_IMAGE_METHODS,
    output: Any = "cls",
    target: Any = None,
    *,
    size: Any = None,
    trust_remote_code: bool = False,
    progress: Callable[[int, int], None] | None = None,
    dtype: str | None = None,
    device: str | None = None,
    **method_options: Any,
) -> ImageExplanation:
    """Explain which image patches a ViT-style model's output draws on, with each method in ``methods``.

    Parameters
    ----------
    path
        An image file (PNG, JPEG, ...), a PIL image or an array ``(h, w[, 3])``.
    model
        ``None`` for the bundled ``digits-vit``, a bundled name, a folder or cached
        Hugging Face id of an image model (ViT, DeiT, DINOv2 with registers, BEiT),
        a loaded one, or an :class:`attnflow.capture.LoadedModel`.
    methods
        Registered method names: ``raw``, ``rollout``, ``flow``, ``grad-rollout``.
    output
        The token to explain: ``"cls"`` (default), ``"mean"`` or a token index
        (e.g. 1 for DeiT's distillation token).
    target
        For ``grad-rollout``: ``"predicted"`` (default), a class index or a label.
    size
        ``(height, width)`` to resize the image to instead of the processor's size
        (multiples of the patch size; position embeddings are interpolated).
    dtype, device
        Load (or convert, or move) the model in this precision and onto this device,
        as :func:`attnflow.capture.load_model` does: ``"bfloat16"``, ``"float16"``,
        ``"float32"``; ``"cpu"``, ``"cuda"``, ``"auto"``. Half-precision rows are
        renormalised in float64 and the correction is noted in ``notes``.
    **method_options
        ``residual``, ``head_fusion`` (mean, max, min or weights), ``discard_ratio``, ``start_layer``.

    Returns
    -------
    ImageExplanation
        Scores ``(L, n)`` over every token; the prefix tokens ([CLS], [DIST],
        registers) are ``special_positions``, and ``image`` says where the patches
        lie: ``e.grid_scores("rollout")`` is the ``(rows, cols)`` map, ``e.overlay(...)``
        the heatmap over the image, ``e.to_png(path)`` the figure.

    Examples
    --------
    >>> e = explain_image(np.zeros((8, 8), np.uint8), "digits-vit", methods=("rollout",))
    >>> e.image["grid"], e.grid_scores("rollout").shape, e.tokens[0]
    ([4, 4], (4, 4), '[CLS]')
    """

    if isinstance(method_options.get("head_fusion"), str) and method_options["head_fusion"].lower() == "importance":
        raise AttnflowError(
            "head_fusion='importance' is available for text only; for images give mean, max, min or (L, H) weights."
        )
    loaded = load_model(
        DEFAULT_IMAGE_MODEL if model is None else model, trust_remote_code=trust_remote_code, dtype=dtype,
        device=device,
    )
    captured = capture_image_attention(path, loaded, size=size)
    gradients, described = None, target
    if target_needed(methods, method_options):
        found = image_attention_gradients(loaded, captured.pixel_values, target)
        gradients, described = found.gradients, found.target
    result = explain_attentions(
        captured.attentions,
        captured.tokens,
        methods=methods,
        output=output,
        progress=progress,
        gradients=gradients,
        **method_options,
    )
    notes = list(result.notes)
    if captured.cropped:
        notes.append(
            "The model's image processor crops the image; the maps line up with the cropped image the model saw."
        )
    note = correction_note(captured)
    if note:
        notes.append(note)
    model_size = [int(v) for v in captured.pixel_values.shape[-2:]]
    return ImageExplanation(
        tokens=result.tokens,
        scores=result.scores,
        output=result.output,
        target=described,
        model_name=captured.model_name,
        special_positions=captured.special_positions,
        text=captured.source,
        options=result.options,
        notes=notes,
        solutions=result.solutions,
        image={
            "source": captured.source,
            "grid": list(captured.grid),
            "patch_positions": list(captured.patch_positions),
            "size": [int(v) for v in captured.image.shape[:2]],
            "model_size": model_size,
            "cropped": bool(captured.cropped),
        },
        captured=captured,
    )
