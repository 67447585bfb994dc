"""Data sets for :func:`attnflow.batch.run_batch`: every row of a file, nothing dropped silently.

Formats (the path decides):

- ``.jsonl``: one JSON object per line; blank lines are skipped;
- ``.csv``: a header row, then one example per row;
- ``.parquet``: a Parquet file (pyarrow);
- ``.txt``: one text per line (no label or target columns);
- a folder written by Hugging Face ``datasets``' ``save_to_disk`` (needs the
  ``datasets`` package: ``pip install attnflow[datasets]``); a ``DatasetDict``
  folder needs ``split``.

Rows keep their position in the file (``example``, 0-based, counting only
non-blank lines of a ``.jsonl``/``.txt``). A row whose text is missing or blank is
not an error here: it is returned with ``text=None`` and skipped (and counted) by
the run. A missing text column, an unreadable file or an empty data set is an
:class:`~attnflow.errors.AttnflowError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import AttnflowError

FILE_FORMATS: tuple[str, ...] = (".jsonl", ".csv", ".parquet", ".txt")


@dataclass(frozen=True)
class Record:
    """One row of a data set: its position, its text (``None`` when missing) and optional label and target."""

    example: int
    text: str | None
    label: str | int | None = None
    target: str | None = None


@dataclass(frozen=True)
class Dataset:
    """The rows of a data set and where they came from.

    ``fingerprint`` is a SHA-256 over every row (text, label, target, in order):
    a resumed run refuses a data set whose fingerprint changed.
    """

    source: str
    records: tuple[Record, ...]
    columns: tuple[str, ...]
    fingerprint: str

    @property
    def label_type(self) -> str:
        """``"int"`` when every present label is an integer, else ``"string"`` (the Parquet column's type)."""
        labels = [r.label for r in self.records if r.label is not None]
        return "int" if labels and all(isinstance(x, int) for x in labels) else "string"


def read_dataset(
    path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    target_column: str | None = None,
    split: str | None = None,
) -> Dataset:
    """Read every row of a JSONL, CSV, Parquet or text file, or a ``datasets`` folder.

    ``label_column`` is used when the data has it (the default ``"label"`` is
    optional); ``target_column``, when given, must exist: each row's value is that
    example's target spec (a class index or label; see :mod:`attnflow.capture.targets`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = path.write_text('{"text": "Good.", "label": 1}\\n{"text": ""}\\n')
    >>> [(r.example, r.text, r.label) for r in read_dataset(path).records]
    [(0, 'Good.', 1), (1, None, None)]
    """
    file = Path(path)
    name = os.fspath(path)
    if not file.exists():
        raise AttnflowError(f"The data set {name!r} does not exist.")
    if file.is_dir():
        rows, columns = _read_saved_dataset(file, split)
    else:
        suffix = file.suffix.lower()
        if suffix not in FILE_FORMATS:
            raise AttnflowError(
                f"The data file {name!r} must end in {', '.join(FILE_FORMATS)} or be a folder saved by "
                f"datasets' save_to_disk; got {suffix or 'no extension'!r}."
            )
        reader = {".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet, ".txt": _read_txt}[suffix]
        rows, columns = reader(file)
    if not rows:
        raise AttnflowError(f"The data set {name!r} holds no rows.")
    if text_column not in columns:
        raise AttnflowError(
            f"The data set {name!r} has no text column {text_column!r}; its columns are {list(columns)} "
            "(choose one with --text-column)."
        )
    if target_column is not None and target_column not in columns:
        raise AttnflowError(
            f"The data set {name!r} has no target column {target_column!r}; its columns are {list(columns)}."
        )
    use_label = label_column is not None and label_column in columns
    records = []
    for index, row in enumerate(rows):
        label = _label(row.get(label_column), index, name) if use_label else None
        target = _cell_text(row.get(target_column)) if target_column is not None else None
        records.append(Record(index, _cell_text(row.get(text_column)), label, target))
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps([record.text, record.label, record.target], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return Dataset(name, tuple(records), tuple(columns), digest.hexdigest())


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell_text(value: Any) -> str | None:
    """A text cell: ``None`` when missing or blank; numbers become their text."""
    if _missing(value):
        return None
    text = value if isinstance(value, str) else str(value)
    return text if text.strip() else None


def _label(value: Any, index: int, name: str) -> str | int | None:
    if _missing(value) or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "__index__"):
        return int(value)
    if isinstance(value, str):
        return value.strip()
    raise AttnflowError(f"Row {index} of {name!r} has a label of type {type(value).__name__}; give a name or an index.")


def _read_bytes(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AttnflowError(f"The data file {str(file)!r} is not UTF-8 text (byte {exc.start}).") from None
    except OSError as exc:
        raise AttnflowError(f"Cannot read the data file {str(file)!r}: {exc.strerror or exc}.") from None


def _read_jsonl(file: Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for number, line in enumerate(_read_bytes(file).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AttnflowError(f"Line {number} of {str(file)!r} is not valid JSON: {exc.msg}.") from None
        if not isinstance(record, dict):
            raise AttnflowError(f"Line {number} of {str(file)!r} must be a JSON object; got {type(record).__name__}.")
        columns.update(dict.fromkeys(record))
        rows.append(record)
    return rows, tuple(columns)


def _read_csv(file: Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    import pandas as pd

    _read_bytes(file)  # UTF-8 and readability, with attnflow's messages
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        return [], ()
    except (pd.errors.ParserError, ValueError) as exc:
        raise AttnflowError(f"The data file {str(file)!r} is not valid CSV: {str(exc).splitlines()[0]}") from None
    return frame.to_dict(orient="records"), tuple(str(c) for c in frame.columns)


def _read_parquet(file: Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise AttnflowError(f"Cannot read the Parquet file {str(file)!r}: {str(exc).splitlines()[0]}") from None
    return table.to_pylist(), tuple(table.column_names)


def _read_txt(file: Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    rows = [{"text": line} for line in _read_bytes(file).splitlines() if line.strip()]
    return rows, ("text",)


def _read_saved_dataset(folder: Path, split: str | None) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    try:
        import datasets
    except ImportError:
        raise AttnflowError(
            f"{str(folder)!r} is a folder; reading a Hugging Face datasets folder needs the datasets package: "
            "pip install 'datasets>=2.14' (attnflow's optional extra named datasets)."
        ) from None
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # FileNotFoundError and datasets' own errors
        raise AttnflowError(
            f"The folder {str(folder)!r} is not a data set saved by datasets' save_to_disk: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        if split is None and len(loaded) == 1:
            split = next(iter(loaded))
        if split not in loaded:
            raise AttnflowError(
                f"The data set folder {str(folder)!r} has the splits {list(loaded)}; choose one with --split"
                + (f" (got {split!r})." if split is not None else ".")
            )
        loaded = loaded[split]
    elif split is not None:
        raise AttnflowError(f"The data set folder {str(folder)!r} has no splits; leave out --split.")
    return loaded.to_list(), tuple(loaded.column_names)


#: File endings read as images from a folder (``attnflow evaluate --images``, ``attnflow batch --images``).
IMAGE_FORMATS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly inside ``folder`` (by ending, case-insensitive), sorted by name.

    A missing folder, a file, or a folder without images is an :class:`~attnflow.errors.AttnflowError`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.PNG", "a.jpg", "notes.txt"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> [p.name for p in image_files(folder)]
    ['a.jpg', 'b.PNG']
    """
    path = Path(folder)
    name = os.fspath(folder)
    if not path.exists():
        raise AttnflowError(f"The image folder {name!r} does not exist.")
    if not path.is_dir():
        raise AttnflowError(f"{name!r} is a file; --images takes a folder of images (or 'digits').")
    try:
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_FORMATS)
    except OSError as exc:
        raise AttnflowError(f"Cannot read the image folder {name!r}: {exc.strerror or exc}.") from None
    if not files:
        raise AttnflowError(
            f"The folder {name!r} holds no images (files ending in {', '.join(IMAGE_FORMATS)})."
        )
    return files
