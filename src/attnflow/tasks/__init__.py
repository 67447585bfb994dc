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

from pathlib import Path

from ..capture.models import register_bundled_model
from ..errors import AttnflowError
from . import sva
from .sva import SVAExample, generate, make_splits

#: Folder of the bundled SVA model inside the installed package.
SVA_MODEL_DIR = Path(__file__).resolve().parent / "bundled" / "sva"


def bundled_sva_path() -> Path:
    """The folder of the bundled SVA model; raises when the package was installed without it.

    Examples
    --------
    >>> (bundled_sva_path() / "model.safetensors").is_file()
    True
    """
    if not (SVA_MODEL_DIR / "config.json").is_file() or not any(SVA_MODEL_DIR.glob("*.safetensors")):
        raise AttnflowError(
            f"The bundled model 'sva' is missing from {str(SVA_MODEL_DIR)!r} (an installation without "
            "package data?); reinstall attnflow, or train it afresh: python -m attnflow.tasks.sva_train DIR"
        )
    return SVA_MODEL_DIR


register_bundled_model(
    "sva",
    "subject-verb agreement classifier (singular/plural verb) trained by attnflow on generated "
    "sentences: the paper's 6-layer, 8-head, 128-wide bidirectional pre-LN transformer with a [CLS] token",
    bundled_sva_path,
)

__all__ = ["SVA_MODEL_DIR", "SVAExample", "bundled_sva_path", "generate", "make_splits", "sva"]
