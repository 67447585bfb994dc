"""Reading results files and writing outputs, by one policy for every command.

The output policy (docs: README "Output files"):

- Every file is written to a temporary file beside it and renamed into place,
  so a failure or an interrupt never leaves a partial or corrupt file.
- No command writes over one of its own inputs (``report r.json -o r.json``,
  ``evaluate --data out/examples.csv --out out``): that is refused before any work.
- A file option checks its extension (``-o`` wants ``.html``, ``--json`` ``.json``...),
  so an output never replaces a file of another kind.
- An existing file is replaced only when it is one of attnflow's own kinds
  (:func:`is_replaceable`: a JSON or HTML file attnflow wrote, an image of the
  same type), or when the command is given ``--overwrite``.
- Replacing an existing file keeps its permission bits (a 0600 file stays 0600);
  a new file gets the usual ``0666 & ~umask``.
- An output path that is a symbolic link is written *through*: the file it
  points to is replaced and the link stays a link.

Every results file is a JSON object with ``"format": "attnflow.KIND"`` and an
integer ``"version"``; :func:`check_format` reads it back by one rule.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AttnflowError

PathLike = str | os.PathLike[str]

#: Every file this process has written (newest last); the CLI names them when interrupted.
_WRITTEN: list[Path] = []


def written_files() -> list[Path]:
    """The files written so far by this process, oldest first.

    Examples
    --------
    >>> isinstance(written_files(), list)
    True
    """
    return list(_WRITTEN)


def _real_target(path: PathLike) -> Path:
    """Where writing ``path`` lands: the path itself, or for a symbolic link the file it points to."""
    target = Path(path)
    if not target.is_symlink():
        return target
    real = Path(os.path.realpath(target))
    if real.is_symlink():  # realpath gives up on loops
        raise AttnflowError(f"Cannot write {os.fspath(path)!r}: it is a symbolic link that loops.")
    return real


def _mode_for(target: Path) -> int:
    """The permission bits a written file gets: those of the file it replaces, else ``0666 & ~umask``."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place.

    An existing file keeps its permission bits; a symbolic link is written
    through (its target is replaced, the link stays). Returns ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> write_bytes_atomic(target, b"hi").read_bytes()
    b'hi'
    """
    given = Path(path)
    target = _real_target(given)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise AttnflowError(f"Cannot write {os.fspath(path)!r}: it is a folder; give a file name.")
    if not folder.is_dir():
        raise AttnflowError(
            f"Cannot write {os.fspath(path)!r}: the folder {os.fspath(folder)!r} does not exist."
        )
    mode = _mode_for(target)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)  # mkstemp makes 0600
        os.replace(temporary, target)
    except BaseException as exc:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise AttnflowError(f"Cannot write {os.fspath(path)!r}: {exc.strerror or exc}") from None
        raise
    _WRITTEN.append(given)
    return given


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Text version of :func:`write_bytes_atomic` (UTF-8)."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name the same file: the same path after following links, or the same inode.

    Examples
    --------
    >>> same_file("a/../b.txt", "b.txt")
    True
    """
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


_SNIFF_BYTES = 8192
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_replaceable(path: PathLike) -> bool:
    """Whether an existing output may be replaced without ``--overwrite``: it is one of attnflow's own kinds.

    A ``.json`` file whose ``"format"`` is ``attnflow.*`` (every results file
    starts with it), an ``.html`` file attnflow generated (its ``generator``
    meta tag), a PNG or SVG image, a CSV, Markdown or JSON-lines table (the
    fixed names of a results folder). A missing file is replaceable too.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "mine.json").write_text('{"format": "attnflow.explanation", "version": 1}')
    >>> _ = (folder / "package.json").write_text('{"name": "something else"}')
    >>> is_replaceable(folder / "mine.json"), is_replaceable(folder / "package.json")
    (True, False)
    """
    target = Path(path)
    try:
        if not target.exists():
            return True
        if not target.is_file():
            return False
        with open(target, "rb") as stream:
            head = stream.read(_SNIFF_BYTES)
    except OSError:
        return False
    suffix = target.suffix.lower()
    if suffix == ".json":
        return re.search(rb'^\s*\{\s*"format"\s*:\s*"attnflow\.', head) is not None
    if suffix in (".html", ".htm"):
        return re.search(rb'<meta name="generator" content="attnflow', head) is not None
    if suffix == ".png":
        return head.startswith(_PNG_SIGNATURE)
    if suffix == ".svg":
        return b"<svg" in head
    return suffix in (".csv", ".md", ".jsonl", ".txt")


def _check_replaceable(path: PathLike, option: str, overwrite: bool) -> None:
    if not overwrite and not is_replaceable(_real_target(Path(path))):
        raise AttnflowError(
            f"Refusing to replace {os.fspath(path)!r} ({option}): it exists and is not a file attnflow wrote; "
            "give another name, or pass --overwrite to replace it."
        )


def check_output_file(
    path: PathLike | None,
    option: str,
    suffixes: Sequence[str],
    *,
    inputs: Iterable[PathLike | None] = (),
    also: Iterable[PathLike] = (),
    overwrite: bool = False,
) -> None:
    """Refuse, before any work, an output file path that cannot be right.

    ``path`` must end in one of ``suffixes``, lie in an existing folder, not be
    a folder, and neither it nor any path in ``also`` (files written beside it,
    e.g. ``NAME-heatmap.png``) may be one of the command's ``inputs``; an
    existing one must be :func:`is_replaceable` unless ``overwrite``.

    Examples
    --------
    >>> check_output_file("report.html", "--out", (".html", ".htm"))
    >>> check_output_file("r.json", "--out", (".html", ".htm"))
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: --out needs a file name ending in .html or .htm; got 'r.json'.
    >>> check_output_file("r.json", "--json", (".json",), inputs=["./r.json"])
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: Refusing to write --json 'r.json': it is one of this command's inputs ('./r.json').
    """
    if path is None:
        return
    try:
        _check_output_file(Path(path), option, suffixes, list(inputs), list(also), overwrite)
    except OSError as exc:  # a name too long, a loop of links, a folder we may not read
        raise AttnflowError(f"Cannot write {option} {os.fspath(path)!r}: {exc.strerror or exc}.") from None


def _check_output_file(
    target: Path, option: str, suffixes: Sequence[str], sources: list[Any], also: list[Any], overwrite: bool
) -> None:
    path = target
    if target.is_dir():
        raise AttnflowError(f"Cannot write {option} {os.fspath(path)!r}: it is a folder; give a file name.")
    if suffixes and target.suffix.lower() not in suffixes:
        raise AttnflowError(
            f"{option} needs a file name ending in {' or '.join(suffixes)}; got {os.fspath(path)!r}."
        )
    real = _real_target(target)
    folder = real.parent if str(real.parent) else Path(".")
    if not folder.is_dir():
        raise AttnflowError(f"Cannot write {os.fspath(path)!r}: the folder {os.fspath(folder)!r} does not exist.")
    for written in (target, *map(Path, also)):
        for source in sources:
            if source is not None and same_file(written, source):
                raise AttnflowError(
                    f"Refusing to write {option} {os.fspath(written)!r}: it is one of this command's inputs "
                    f"({os.fspath(source)!r})."
                )
        _check_replaceable(written, option, overwrite)


def check_output_folder(
    path: PathLike | None,
    option: str = "--out",
    *,
    inputs: Iterable[PathLike | None] = (),
    names: Iterable[str] = (),
    overwrite: bool = False,
) -> None:
    """Refuse, before any work, an output folder that is a file, or whose files ``names`` include an input.

    An existing file of ``names`` must be :func:`is_replaceable` unless ``overwrite``.

    Examples
    --------
    >>> check_output_folder("a/new/folder")
    >>> check_output_folder("out", names=["examples.csv"], inputs=["out/examples.csv"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: Refusing to write into --out 'out': its examples.csv would replace ...
    """
    if path is None:
        return
    try:
        _check_output_folder(Path(path), option, [s for s in inputs if s is not None], list(names), overwrite)
    except OSError as exc:
        raise AttnflowError(f"Cannot write into {option} {os.fspath(path)!r}: {exc.strerror or exc}.") from None


def _check_output_folder(folder: Path, option: str, sources: list[Any], names: list[str], overwrite: bool) -> None:
    path = folder
    if folder.exists() and not folder.is_dir():
        raise AttnflowError(
            f"The {option} path {os.fspath(path)!r} is a file; give a folder (it is created if missing)."
        )
    _check_writable(folder, option)
    for name in names:
        for source in sources:
            if same_file(folder / name, source):
                raise AttnflowError(
                    f"Refusing to write into {option} {os.fspath(path)!r}: its {name} would replace this "
                    f"command's input {os.fspath(source)!r}; choose another folder."
                )
        _check_replaceable(folder / name, option, overwrite)


def _check_writable(folder: Path, option: str) -> None:
    """Before any work: :func:`write_folder` can stage beside ``folder`` (and move files into it, if it exists).

    Tried, not judged from permission bits (which root ignores and a read-only file
    system overrides): a temporary folder is made and removed where the writer will
    make its own.
    """
    parent = folder.parent if str(folder.parent) else Path(".")
    nearest = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    for place in dict.fromkeys(p for p in (nearest, folder) if p.is_dir()):
        try:
            os.rmdir(tempfile.mkdtemp(dir=place, prefix=".attnflow-check."))
        except OSError as exc:
            raise AttnflowError(
                f"Cannot write {option} {os.fspath(folder)!r}: {os.fspath(place)!r} is not writable "
                f"({exc.strerror or exc}); choose another folder."
            ) from None


def check_input_file(path: PathLike | None, option: str) -> None:
    """Refuse an input that exists but is not a regular file: a device or a pipe (``/dev/zero`` never ends).

    Missing files and folders are left to the reader, which names what it expected.

    Examples
    --------
    >>> check_input_file("/dev/null", "--data")
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The --data file '/dev/null' is not a regular file (a device or a pipe).
    """
    if path is None:
        return
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise AttnflowError(f"The {option} file {os.fspath(path)!r} is not a regular file (a device or a pipe).")


def write_folder(folder: PathLike, files: dict[str, bytes]) -> None:
    """Write ``files`` into ``folder`` all or nothing.

    They are written into a temporary folder beside ``folder`` first. A new
    ``folder`` is then that temporary folder renamed; into an existing one each
    file is moved with an atomic rename (keeping the permission bits of the
    file it replaces; a file that is a symbolic link is written through). On
    failure the temporary folder is removed and ``folder`` is as it was. Two
    runs writing the same new folder at once both succeed; the later one's
    files win.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "new"
    >>> write_folder(out, {"a.txt": b"1"}); sorted(p.name for p in out.iterdir())
    ['a.txt']
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
            os.chmod(staging / name, 0o666 & ~_umask())
        if not folder.exists():
            try:
                os.rename(staging, folder)
            except OSError:
                if not folder.is_dir():  # not a race with another run creating it
                    raise
            else:
                _WRITTEN.extend(folder / name for name in files)
                return
        for name in files:
            destination = _real_target(folder / name)
            if destination.exists():
                os.chmod(staging / name, _mode_for(destination))
            try:
                os.replace(staging / name, destination)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                write_bytes_atomic(destination, (staging / name).read_bytes())  # a link to another file system
            _WRITTEN.append(folder / name)
        shutil.rmtree(staging, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise AttnflowError(f"Cannot write into {str(folder)!r}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


#: What a spreadsheet reads as the start of a formula in a text cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_bytes(frame: Any) -> bytes:
    """A DataFrame as UTF-8 CSV in which no text cell is a live spreadsheet formula.

    A text cell that starts like a formula (``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return: ``=HYPERLINK(...)`` in a data set) gets a leading ``'``, as
    spreadsheets themselves write a literal; numbers are written as they are.

    Examples
    --------
    >>> import pandas as pd
    >>> print(csv_bytes(pd.DataFrame({"text": ["=HYPERLINK(1)", "fine"], "score": [-0.5, 1.0]})).decode(), end="")
    text,score
    '=HYPERLINK(1),-0.5
    fine,1.0
    """
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or str(safe[column].dtype).startswith("str"):
            safe[column] = safe[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(FORMULA_STARTS) else v
            )
    return str(safe.to_csv(index=False)).encode("utf-8")


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number (attnflow writes null for undefined values)")


def read_json(path: PathLike, what: str = "results file") -> Any:
    """Parse a JSON file strictly: ``NaN``, ``Infinity`` and ``-Infinity`` are refused.

    Raises
    ------
    AttnflowError
        One line naming the file, when it is missing, a folder, not UTF-8, not JSON
        or holds a non-standard number.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> bad = pathlib.Path(tempfile.mkdtemp()) / "x.json"
    >>> _ = bad.write_text('{"scores": [Infinity]}')
    >>> read_json(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: Cannot read results file '...x.json': Infinity is not a JSON number ...
    """
    name = os.fspath(path)
    if not os.path.exists(name):
        raise AttnflowError(f"Cannot read {what} {name!r}: it does not exist.")
    if os.path.isdir(name):
        raise AttnflowError(
            f"Cannot read {what} {name!r}: it is a folder (for evaluate's output, give its results.json)."
        )
    try:
        with open(name, encoding="utf-8-sig") as handle:  # a byte-order mark, as some editors save, is no fault
            return json.load(handle, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise AttnflowError(f"Cannot read {what} {name!r}: it is not UTF-8 text (not a JSON file).") from None
    except json.JSONDecodeError as exc:
        raise AttnflowError(f"Cannot read {what} {name!r}: not valid JSON ({exc}).") from None
    except RecursionError:
        raise AttnflowError(f"Cannot read {what} {name!r}: nested too deeply to be an attnflow file.") from None
    except ValueError as exc:
        raise AttnflowError(f"Cannot read {what} {name!r}: {exc}.") from None
    except OSError as exc:
        raise AttnflowError(f"Cannot read {what} {name!r}: {exc.strerror or exc}.") from None


def check_format(data: Mapping[str, Any], kind: str, supported: int) -> int:
    """Check a results file's ``format`` and ``version``; returns the version (files without one are version 1).

    Older versions load (their readers convert them); a newer version than this
    attnflow reads is refused with a message naming both.

    Examples
    --------
    >>> check_format({"format": "attnflow.explanation", "version": 1}, "attnflow.explanation", 1)
    1
    >>> check_format({"format": "attnflow.explanation", "version": 999}, "attnflow.explanation", 1)
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: This attnflow.explanation file has format version 999; this attnflow ...
    """
    if data.get("format") != kind:
        raise AttnflowError(f"This JSON is not an {kind} file (its 'format' is {data.get('format')!r}).")
    version = data.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise AttnflowError(f"This {kind} file has an invalid 'version' {version!r}; expected an integer >= 1.")
    if version > supported:
        raise AttnflowError(
            f"This {kind} file has format version {version}; this attnflow reads versions up to {supported}: "
            "upgrade attnflow to read it."
        )
    return version


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
