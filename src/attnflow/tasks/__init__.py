"""Data sets and small models that attnflow makes itself: subject-verb agreement (SVA).

- :mod:`attnflow.tasks.sva`: a seeded generator of English-like sentences cut before the
  verb, with the verb's number, the subject's position and the attractors' positions.
- :mod:`attnflow.tasks.sva_model`: the paper's 6-layer, 8-head, 128-wide bidirectional
  pre-LN transformer (a stock ``MegatronBertForSequenceClassification``).
- :mod:`attnflow.tasks.sva_train`: CPU training, saved as a Hugging Face folder.

Importing this package registers the bundled model ``sva`` (trained with
:func:`attnflow.tasks.sva_train.train`'s defaults and shipped inside the package), so that
``load_model("sva")``, ``explain(..., model="sva")`` and ``--model sva`` work offline.

Examples
--------
>>> from attnflow.capture import BUNDLED_MODELS, capture_attention
>>> "sva" in BUNDLED_MODELS
True
>>> capture_attention("the keys to the cabinet", "sva").attentions.shape
(6, 8, 6, 6)
"""

from __future__ import annotations

from ..bundled import SVA_MODEL_DIR, bundled_sva_path
from . import sva
from .sva import SVAExample, generate, make_splits

__all__ = ["SVA_MODEL_DIR", "SVAExample", "bundled_sva_path", "generate", "make_splits", "sva"]
