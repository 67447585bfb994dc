"""Writing output files so that a failure never leaves a partial or corrupt file behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

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
        os.replace(temporary, target)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise AttnflowError(f"Cannot write {os.fspath(path)!r}: {exc.strerror or exc}") from None
        raise
    return target


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Text version of :func:`write_bytes_atomic` (UTF-8)."""
    return write_bytes_atomic(path, text.encode("utf-8"))
