"""Get attention out of models: Hugging Face text models, loaded offline.

The only part of attnflow that touches ``transformers`` and ``torch``; everything
downstream receives plain numpy arrays laid out ``[layer, head, query, key]``.

- :func:`load_model`: a bundled name, folder, cached hub id or model object ->
  :class:`LoadedModel` (model, tokenizer, name, is_decoder, max_length).
- :func:`capture_attention`: text(s) -> :class:`CapturedAttention` per text,
  float64 ``(L, H, n, n)`` with padding removed; ``heads="mean"`` fuses the heads
  layer by layer while the model runs (float32 ``(L, 1, n, n)``), ``dtype=`` and
  ``device=`` load the model in half precision or on a GPU (docs/capture.md).
- :func:`eager_attention`: a context manager that runs a model with eager
  attention and restores it afterwards.

Examples
--------
>>> from attnflow.capture import BUNDLED_MODELS, capture_attention
>>> "minilm" in BUNDLED_MODELS      # and sva, digits-vit (attnflow.bundled)
True
>>> capture_attention("hello").tokens
['[CLS]', 'hello', '[SEP]']
"""

from __future__ import annotations

from ..bundled import BUNDLED_MODELS, DEFAULT_MODEL, register_bundled_model, resolve_bundled
from ._eager import eager_attention
from .models import LoadedModel, is_causal_model, load_model, model_max_length, quiet_transformers
from .text import CapturedAttention, capture_attention

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "CapturedAttention",
    "LoadedModel",
    "capture_attention",
    "eager_attention",
    "is_causal_model",
    "load_model",
    "model_max_length",
    "quiet_transformers",
    "register_bundled_model",
    "resolve_bundled",
]
