"""Writing output files so that a failure never leaves a partial or corrupt file behind."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AttnflowError


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> write_bytes_atomic(target, b"hi").read_bytes()
    b'hi'
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise AttnflowError(
            f"Cannot write {os.fspath(path)!r}: the folder {os.fspath(folder)!r} does not exist."
        )
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(temporary, target)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise AttnflowError(f"Cannot write {os.fspath(path)!r}: {exc.strerror or exc}") from None
        raise
    return target


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Text version of :func:`write_bytes_atomic` (UTF-8)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def check_output_folder(path: str | os.PathLike[str] | None, option: str = "--out") -> None:
    """Refuse, before any work, an output folder path that is an existing file.

    Examples
    --------
    >>> check_output_folder("a/new/folder")
    """
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise AttnflowError(
            f"The {option} path {os.fspath(path)!r} is a file; give a folder (it is created if missing)."
        )


def write_folder(folder: str | os.PathLike[str], files: dict[str, bytes]) -> None:
    """Write ``files`` into ``folder`` all or nothing.

    They are written into a temporary folder beside ``folder`` first. A new
    ``folder`` is then that temporary folder renamed; into an existing one each
    file is moved with an atomic rename. On failure the temporary folder is
    removed and ``folder`` is as it was.
    """
    folder = Path(folder)
    parent = folder.parent if str(folder.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{folder.name}.", suffix=".part"))
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result folder should not be
    except OSError as exc:
        raise AttnflowError(f"Cannot create the folder {str(folder)!r}: {exc.strerror or exc}") from None
    try:
        for name, data in files.items():
            (staging / name).write_bytes(data)
        if not folder.exists():
            os.rename(staging, folder)
            return
        for name in files:
            os.replace(staging / name, folder / name)
        staging.rmdir()
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise AttnflowError(f"Cannot write into {str(folder)!r}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise



def to_jsonable(value: Any) -> Any:
    """Plain JSON types from nested dicts, lists, numpy arrays and scalars; NaN and infinities become ``None``.

    Every result file goes through this, so ``json.dumps(..., allow_nan=False)`` never fails
    and no file holds the non-standard ``NaN`` token.

    Examples
    --------
    >>> import numpy as np
    >>> to_jsonable({"a": np.array([1.0, np.nan]), 2: (np.int64(3), "x")})
    {'a': [1.0, None], '2': [3, 'x']}
    """
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value
