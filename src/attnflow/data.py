"""Data sets, read one way for every command: ``attnflow batch``, ``attnflow evaluate`` and the Python API.

Formats (the path decides):

- ``.jsonl``: one JSON object per line; blank lines are skipped;
- ``.csv``: a header row, then one example per row;
- ``.parquet``: a Parquet file (pyarrow);
- ``.txt``: one text per line (no label or target columns); blank lines are skipped;
- a folder written by Hugging Face ``datasets``' ``save_to_disk`` (needs the
  ``datasets`` package: ``pip install attnflow[datasets]``); a ``DatasetDict``
  folder needs ``split``.

The text column is ``text`` unless chosen (matched case-insensitively when no
column has exactly that name). Rows keep their position in the file
(``example``, 0-based, counting only non-blank lines of a ``.jsonl``/``.txt``).
Rows are split at ``"\n"`` only (a ``"\r\n"`` ending too); other characters Unicode
calls line breaks (U+2028, ``"\f"``, ...) stay inside their row.
A text cell is a string; a number becomes its text (``3`` -> ``"3"``); any other
value (true/false, a list, an object, bytes) is not taken for a text.
A row whose text is missing, blank or not a text is not an error: :func:`read_dataset`
returns it with ``text=None`` and ``Example.reason`` saying why, and every reader skips it
and counts it with that reason (:func:`read_examples`' ``skipped``, ``summary.json`` of a
batch run).

A data file must be a regular file (not a pipe or a device) of at most
:data:`MAX_FILE_BYTES`; a ``.jsonl``, ``.csv`` or ``.txt`` holding a NUL byte is not
text. Both are refused before the file is read.
:func:`screen_texts` gives the other reasons a row cannot be explained (no
tokens, too long). A missing text column, an unreadable file or an empty data set
is an :class:`~attnflow.errors.AttnflowError`, the same line whichever command
reads it.

Images: :func:`image_files` lists a folder's images (``attnflow evaluate
--images``, ``attnflow batch --images``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .capture.models import quiet_transformers
from .errors import AttnflowError

FILE_FORMATS: tuple[str, ...] = (".jsonl", ".csv", ".parquet", ".txt")

#: The largest data file read (1 GiB): its rows, their Python strings and the fingerprint take several times that.
MAX_FILE_BYTES = 1 << 30

#: ``Example.reason`` of a row whose text cell is missing or blank.
EMPTY_TEXT = "empty text"


@dataclass(frozen=True, repr=False)
class Example:
    """One input of a data set: its text, and what the row says about it.

    ``text`` is ``None`` when the row has none, and ``reason`` says why
    (:data:`EMPTY_TEXT`, or a cell that is not a text). ``label`` is the gold label,
    ``target`` the row's own target, ``decoder`` its decoder text (an encoder–decoder
    model's target, read with teacher forcing) when :func:`read_dataset` was given a
    ``decoder_column``. ``row`` is its position in the file (``None`` for an example
    made in code). Batch runs, evaluation and head analysis read the same examples.

    >>> Example("Dogs bark.", "positive")
    Example(text='Dogs bark.', label='positive')
    """

    text: str | None
    label: str | int | None = None
    target: str | None = None
    decoder: str | None = None
    row: int | None = None
    reason: str | None = None

    def __repr__(self) -> str:
        shown = [f"text={self.text!r}", f"label={self.label!r}"]
        for name in ("target", "decoder", "row", "reason"):
            if getattr(self, name) is not None:
                shown.append(f"{name}={getattr(self, name)!r}")
        return f"Example({', '.join(shown)})"


@dataclass(frozen=True)
class Dataset:
    """The rows of a data set and where they came from.

    ``fingerprint`` is a SHA-256 over every row (text, label, target, in order):
    a resumed run refuses a data set whose fingerprint changed.
    """

    source: str
    records: tuple[Example, ...]
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
    decoder_column: str | None = None,
) -> Dataset:
    """Read every row of a JSONL, CSV, Parquet or text file, or a ``datasets`` folder.

    ``label_column`` is used when the data has it (the default ``"label"`` is
    optional); ``target_column``, when given, must exist: each row's value is that
    example's target spec (a class index or label; see :mod:`attnflow.capture.targets`).
    ``decoder_column``, when given, must exist too: each row's decoder text
    (``Example.decoder``, ``None`` when blank), which then counts in the fingerprint.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = path.write_text('{"text": "Good.", "label": 1}\\n{"text": ""}\\n')
    >>> [(r.row, r.text, r.label) for r in read_dataset(path).records]
    [(0, 'Good.', 1), (1, None, None)]
    """
    file = Path(path)
    name = os.fspath(path)
    if not file.exists():
        raise AttnflowError(f"Cannot read the data file {name!r}: it does not exist.")
    if file.is_dir():
        rows, columns = _read_saved_dataset(file, split)
    else:
        suffix = file.suffix.lower()
        if suffix not in FILE_FORMATS:
            raise AttnflowError(
                f"The data file {name!r} must end in {', '.join(FILE_FORMATS)} or be a folder saved by "
                f"datasets' save_to_disk; got {suffix or 'no extension'!r}."
            )
        if split is not None:
            raise AttnflowError(
                f"The data file {name!r} is a file, not a folder saved by datasets' save_to_disk: it has no "
                "splits; leave out --split."
            )
        check_data_file(file)
        reader = {".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet, ".txt": _read_txt}[suffix]
        rows, columns = reader(file)
    if not rows:
        raise AttnflowError(f"The data set {name!r} holds no examples (no rows).")
    text_column = _column(text_column, columns)
    if text_column not in columns:
        raise AttnflowError(
            f"The data set {name!r} has no {text_column!r} column (the texts); its columns are {list(columns)} "
            "(choose one with --text-column)."
        )
    if label_column is not None:
        label_column = _column(label_column, columns)
    if target_column is not None and target_column not in columns:
        raise AttnflowError(
            f"The data set {name!r} has no target column {target_column!r}; its columns are {list(columns)}."
        )
    if decoder_column is not None and decoder_column not in columns:
        raise AttnflowError(
            f"The data set {name!r} has no decoder column {decoder_column!r}; its columns are {list(columns)}."
        )
    use_label = label_column is not None and label_column in columns
    records = []
    for index, row in enumerate(rows):
        label = _label(row.get(label_column), index, name) if use_label else None
        text, reason = _cell_text(row.get(text_column), "text")
        target, target_reason = _cell_text(row.get(target_column), "target")  # (None, EMPTY_TEXT) without it
        decoder, decoder_reason = _cell_text(row.get(decoder_column), "decoder text")
        for other in (target_reason, decoder_reason):  # a target or decoder cell that is no text skips the row
            if other not in (None, EMPTY_TEXT) and text is not None:
                text, reason = None, other
        records.append(Example(text, label, target, decoder, row=index, reason=reason if text is None else None))
    digest = hashlib.sha256()
    for record in records:
        cells = [record.text, record.label, record.target] + ([record.decoder] if decoder_column is not None else [])
        if record.reason not in (None, EMPTY_TEXT):  # a cell that is not a text: its kind counts
            cells.append(record.reason)
        digest.update(json.dumps(cells, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return Dataset(name, tuple(records), tuple(columns), digest.hexdigest())


def _column(name: str, columns: Sequence[str]) -> str:
    """``name``, or the one column equal to it up to case and surrounding spaces (else ``name`` unchanged)."""
    if name in columns:
        return name
    matches = [c for c in columns if str(c).strip().lower() == name.strip().lower()]
    return matches[0] if len(matches) == 1 else name


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell_text(value: Any, what: str) -> tuple[str | None, str | None]:
    """A text cell as ``(text, None)``, or ``(None, reason)``: missing or blank, or a value that is not a text.

    Numbers become their text; true/false, lists, objects and bytes are not texts.

    Examples
    --------
    >>> _cell_text(3, "text"), _cell_text(" ", "text")
    (('3', None), (None, 'empty text'))
    >>> _cell_text({"inner": "x"}, "text")
    (None, 'text is an object (dict), not a string')
    """
    if _missing(value):
        return None, EMPTY_TEXT
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        kinds = {bool: "true/false", list: "a list", tuple: "a list", dict: "an object", bytes: "bytes"}
        kind = next((k for t, k in kinds.items() if isinstance(value, t)), "a value")
        return None, f"{what} is {kind} ({type(value).__name__}), not a string"
    return (text, None) if text.strip() else (None, EMPTY_TEXT)


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


def check_data_file(file: str | os.PathLike[str]) -> None:
    """Refuse, before reading it, a data file that is not a regular file or is larger than :data:`MAX_FILE_BYTES`.

    ``os.stat`` follows a symbolic link, so a link to ``/dev/zero`` is a device here.

    Examples
    --------
    >>> check_data_file("/dev/zero")
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The data file '/dev/zero' is not a regular file (a device or a pipe).
    """
    import stat

    name = os.fspath(file)
    try:
        status = os.stat(name)
    except OSError as exc:
        raise AttnflowError(f"Cannot read the data file {name!r}: {exc.strerror or exc}.") from None
    if not stat.S_ISREG(status.st_mode):
        raise AttnflowError(f"The data file {name!r} is not a regular file (a device or a pipe).")
    if status.st_size > MAX_FILE_BYTES:
        raise AttnflowError(
            f"The data file {name!r} holds {status.st_size / (1 << 30):.1f} GiB; attnflow reads data files of up "
            f"to {MAX_FILE_BYTES >> 30} GiB: split it into several files and run each."
        )


def _read_bytes(file: Path) -> str:
    try:
        content = file.read_bytes()
        text = content.decode("utf-8-sig")  # first: UTF-16 text holds NULs, and "not UTF-8" says more
    except UnicodeDecodeError as exc:
        raise AttnflowError(
            f"The data file {str(file)!r} is not UTF-8 text (byte {exc.start} cannot be decoded)."
        ) from None
    except OSError as exc:
        raise AttnflowError(f"Cannot read the data file {str(file)!r}: {exc.strerror or exc}.") from None
    nul = content.find(b"\0")
    if nul >= 0:
        raise AttnflowError(f"The data file {str(file)!r} holds a NUL byte (byte {nul}): it is not a text file.")
    return text


def _lines(text: str) -> list[str]:
    r"""The rows of a text file: split at ``"\n"`` only, one ``"\r"`` before it dropped.

    Examples
    --------
    >>> _lines("first\fstill first\u2028too\r\nsecond\n")
    ['first\x0cstill first\u2028too', 'second']
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's keys and values, refusing a key given twice (``json`` would keep the last silently)."""
    record = dict(pairs)
    if len(record) < len(pairs):
        keys = [key for key, _ in pairs]
        twice = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"the key {twice!r} is given twice")
    return record


def read_jsonl(file: str | os.PathLike[str]) -> list[tuple[int, Any]]:
    r"""The values of a JSON-lines file with their line numbers (from 1); blank lines are skipped.

    The file is checked with :func:`check_data_file` first. A line that is not JSON, is
    nested too deeply for Python, or gives a key twice is an :class:`AttnflowError`
    naming the line.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "d.jsonl"
    >>> _ = path.write_text('{"text": "a\u2028b"}\n\n[1]\n', encoding="utf-8")
    >>> read_jsonl(path)
    [(1, {'text': 'a\u2028b'}), (3, [1])]
    """
    file = Path(file)
    check_data_file(file)
    values = []
    for number, line in enumerate(_lines(_read_bytes(file)), start=1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line, object_pairs_hook=_unique_keys)))
        except json.JSONDecodeError as exc:
            raise AttnflowError(f"Line {number} of {str(file)!r} is not valid JSON: {exc.msg}.") from None
        except RecursionError:
            raise AttnflowError(
                f"Line {number} of {str(file)!r} is nested too deeply to read (lists or objects inside each other)."
            ) from None
        except ValueError as exc:
            raise AttnflowError(f"Line {number} of {str(file)!r} is not a valid record: {exc}.") from None
    return values


def _read_jsonl(file: Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    rows: list[dict[str, Any]] = []
    columns: dict[str, None] = {}
    for number, record in read_jsonl(file):
        if not isinstance(record, dict):
            raise AttnflowError(f"Line {number} of {str(file)!r} must be a JSON object; got {type(record).__name__}.")
        columns.update(dict.fromkeys(record))
        rows.append(record)
    return rows, tuple(columns)


def _read_csv(file: Path) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    import csv
    import io

    import pandas as pd

    text = _read_bytes(file)  # UTF-8, NUL and readability, with attnflow's messages
    try:
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error:
        header = []  # pandas names the fault below
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise AttnflowError(
            f"The CSV header of {str(file)!r} names the column {twice[0]!r} more than once; rename all but one."
        )
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
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
    rows = [{"text": line.strip()} for line in _lines(_read_bytes(file)) if line.strip()]
    return rows, ("text",)


def _read_saved_dataset(folder: Path, split: str | None) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    try:
        import datasets
    except ImportError:
        raise AttnflowError(
            f"The data set {str(folder)!r} is a folder; reading a Hugging Face datasets folder needs the "
            "datasets package: "
            "pip install 'datasets>=2.14' (attnflow's optional extra named datasets)."
        ) from None
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # FileNotFoundError and datasets' own errors
        raise AttnflowError(
            f"The data set {str(folder)!r} is a folder but not one saved by datasets' save_to_disk: "
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


def read_image_folder(folder: str | os.PathLike[str]) -> Dataset:
    """The images of a folder (:func:`image_files`) as a :class:`Dataset` for ``attnflow batch --images``.

    Each record's ``text`` is the image's path (the worker opens it) and ``example`` its
    position in name order. The fingerprint covers every file's name and bytes, so a
    resumed run refuses a folder whose images changed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "b.png").write_bytes(b"1"); _ = (folder / "a.png").write_bytes(b"2")
    >>> [pathlib.Path(r.text).name for r in read_image_folder(folder).records]
    ['a.png', 'b.png']
    """
    files = image_files(folder)
    digest = hashlib.sha256(b"attnflow.images\n")
    for file in files:
        try:
            content = file.read_bytes()
        except OSError as exc:
            raise AttnflowError(f"Cannot read the image {str(file)!r}: {exc.strerror or exc}.") from None
        digest.update(json.dumps(file.name, ensure_ascii=False).encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(content).digest())
    records = tuple(Example(str(file), row=index) for index, file in enumerate(files))
    return Dataset(os.fspath(folder), records, ("image",), digest.hexdigest())


# ---------------------------------------------------------------------------- examples (attnflow.evaluate)


class Examples(list):  # type: ignore[type-arg]
    """The examples of a data set (a list of :class:`Example`), with the rows left out and why.

    ``skipped`` lists ``{"example": row, "reason": ...}`` for every row of the file
    that has no example here (``"empty text"``); ``rows`` gives each example's row in
    the file; ``source`` names the file.
    """

    def __init__(
        self, items: Iterable[Example] = (), skipped: Sequence[dict[str, Any]] = (), source: str = "",
        rows: Sequence[int] | None = None,
    ):
        super().__init__(items)
        self.skipped: list[dict[str, Any]] = [dict(s) for s in skipped]
        self.source = source
        self.rows: list[int] = list(range(len(self))) if rows is None else [int(r) for r in rows]


#: The file endings :func:`read_examples` (and :func:`as_examples` for a path given as a string) reads.
FORMATS: tuple[str, ...] = (".txt", ".jsonl", ".csv", ".parquet")


def read_examples(
    path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    split: str | None = None,
) -> Examples:
    """Read the examples of a data set with :func:`read_dataset`; rows without a text are skipped and counted.

    Raises
    ------
    AttnflowError
        As :func:`read_dataset` (a missing or unreadable file, an unknown extension,
        text that is not UTF-8, a malformed JSON line, no text column, no rows), and
        when no row has a text.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.jsonl"
    >>> _ = path.write_text('{"text": "Good film.", "label": "positive"}\\n{"text": " "}\\n{"text": "Bad."}\\n')
    >>> examples = read_examples(path)
    >>> examples
    [Example(text='Good film.', label='positive'), Example(text='Bad.', label=None)]
    >>> examples.skipped
    [{'example': 1, 'reason': 'empty text'}]
    """
    dataset = read_dataset(path, text_column=text_column, label_column=label_column, split=split)
    kept = [Example(r.text, r.label) for r in dataset.records if r.text is not None]
    skipped = [{"example": r.row, "reason": r.reason or EMPTY_TEXT} for r in dataset.records if r.text is None]
    if not kept:
        raise AttnflowError(
            f"No row of {dataset.source!r} can be explained: {len(skipped)} rows skipped "
            f"({', '.join(sorted({s['reason'] for s in skipped}))})."
        )
    rows = [r.row for r in dataset.records if r.text is not None]
    return Examples(kept, skipped, dataset.source, rows)


def screen_examples(examples: Examples, loaded: Any, *, truncate: bool = False) -> Examples:
    """``examples`` without the rows ``loaded`` cannot explain (:func:`screen_texts`), which join ``skipped``.

    What ``attnflow evaluate --data`` runs on: the rows ``attnflow batch`` would explain,
    the others counted with the same reasons.

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> kept = screen_examples(Examples([Example("Dogs bark."), Example("\u200b")]), load_model())
    >>> kept, kept.rows
    ([Example(text='Dogs bark.', label=None)], [0])
    >>> kept.skipped
    [{'example': 1, 'reason': 'no tokens (the tokenizer keeps nothing)'}]
    """
    reasons = screen_texts([e.text for e in examples], loaded, truncate=truncate)
    kept = [(e, row) for e, row, why in zip(examples, examples.rows, reasons, strict=True) if why is None]
    skipped = examples.skipped + [
        {"example": row, "reason": why}
        for row, why in zip(examples.rows, reasons, strict=True) if why is not None
    ]
    if not kept:
        raise AttnflowError(
            f"No row of {examples.source!r} can be explained: {len(skipped)} rows skipped "
            f"({', '.join(sorted({s['reason'] for s in skipped}))})."
        )
    return Examples([e for e, _ in kept], sorted(skipped, key=lambda s: s["example"]), examples.source,
                    [row for _, row in kept])


def screen_texts(texts: Sequence[str], loaded: Any, *, truncate: bool = False) -> list[str | None]:
    """Per text, why it cannot be explained with ``loaded`` (``None`` when it can): no tokens, or too long.

    The reasons are the ones ``summary.json`` of ``attnflow batch`` counts:
    ``"no tokens (the tokenizer keeps nothing)"`` (only special tokens are left) and
    ``"too long (more than N tokens)"`` (unless ``truncate``).

    Examples
    --------
    >>> from attnflow.capture import load_model
    >>> screen_texts(["Dogs bark.", "\\u200b", "word " * 600], load_model())
    [None, 'no tokens (the tokenizer keeps nothing)', 'too long (more than 512 tokens)']
    """
    return [reason for reason, _ in screen_lengths(texts, loaded, truncate=truncate)]


def screen_lengths(texts: Sequence[str], loaded: Any, *, truncate: bool = False) -> list[tuple[str | None, int]]:
    """:func:`screen_texts` with each text's number of tokens (special tokens included, before truncation)."""

    if loaded.tokenizer is None:
        raise AttnflowError(f"The model {loaded.name!r} is an image model; it explains images, not texts.")
    out: list[tuple[str | None, int]] = []
    with quiet_transformers():
        for start in range(0, len(texts), 1024):
            chunk = list(texts[start : start + 1024])
            encoded = loaded.tokenizer(chunk, add_special_tokens=True, return_special_tokens_mask=True)
            for ids, mask in zip(encoded["input_ids"], encoded["special_tokens_mask"], strict=True):
                if all(int(m) for m in mask):
                    out.append(("no tokens (the tokenizer keeps nothing)", len(ids)))
                elif loaded.max_length is not None and len(ids) > loaded.max_length and not truncate:
                    out.append((f"too long (more than {loaded.max_length} tokens)", len(ids)))
                else:
                    out.append((None, len(ids)))
    return out


def as_examples(examples: Any) -> list[Example]:
    """Turn what ``attnflow.evaluate`` accepts into a list of :class:`Example`.

    Accepted: a :class:`pathlib.Path` (read with :func:`read_examples`); a string
    naming an existing ``.txt``/``.jsonl``/``.csv``/``.parquet`` file (read too); any other
    string (one text); or an iterable of strings, :class:`Example`, ``(text, label)``
    pairs or dicts with ``"text"`` and optional ``"label"``; or a pandas DataFrame
    with a ``text`` column. Examples given in Python must each have a text (an
    empty one is an error: there is no file row to count it against).

    Examples
    --------
    >>> as_examples(["A cat.", ("A dog.", 1), {"text": "A fox.", "label": "pos"}])
    [Example(text='A cat.', label=None), Example(text='A dog.', label=1), Example(text='A fox.', label='pos')]
    """
    if isinstance(examples, Examples):
        return examples
    if isinstance(examples, os.PathLike):
        return read_examples(examples)
    if isinstance(examples, str):
        candidate = Path(examples)
        if candidate.suffix.lower() in FORMATS and "\n" not in examples and candidate.is_file():
            return read_examples(candidate)
        return [_example(examples, None, "The text")]
    if hasattr(examples, "columns") and hasattr(examples, "to_dict"):  # a pandas DataFrame
        columns = {str(c).strip().lower(): c for c in examples.columns}
        if "text" not in columns:
            raise AttnflowError(
                f"The 'examples' DataFrame has no 'text' column; its columns are {list(examples.columns)}."
            )
        labels = examples[columns["label"]].tolist() if "label" in columns else [None] * len(examples)
        items: Iterable[Any] = list(zip(examples[columns["text"]].tolist(), labels, strict=True))
    elif isinstance(examples, Iterable):
        items = list(examples)
    else:
        raise AttnflowError(
            "The 'examples' parameter must be a path, a text, or a list of texts, (text, label) pairs, "
            f"dicts or Examples; got {type(examples).__name__} instead."
        )
    out = []
    for index, item in enumerate(items):
        where = f"Example {index}"
        if isinstance(item, Example):
            out.append(_example(item.text, item.label, where))
        elif isinstance(item, str):
            out.append(_example(item, None, where))
        elif isinstance(item, dict):
            if "text" not in item:
                raise AttnflowError(f"{where} is a dict without a 'text' key; it has {sorted(item)}.")
            out.append(_example(item["text"], item.get("label"), where))
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            out.append(_example(item[0], item[1], where))
        else:
            raise AttnflowError(
                f"{where} must be a text, a (text, label) pair, a dict or an Example; got {type(item).__name__}."
            )
    if not out:
        raise AttnflowError("The 'examples' parameter holds no examples; give at least one text.")
    return out


def _example(text: Any, label: Any, where: str) -> Example:
    if not isinstance(text, str):
        raise AttnflowError(f"{where} must have a string text; got {type(text).__name__} instead.")
    if not text.strip():
        raise AttnflowError(f"{where} has an empty text; give a text with at least one word.")
    if _missing(label) or (isinstance(label, str) and not label.strip()):
        return Example(text, None)
    if isinstance(label, bool):
        return Example(text, int(label))
    if isinstance(label, (str, int)):
        return Example(text, label)
    if isinstance(label, float) and label.is_integer():
        return Example(text, int(label))
    if hasattr(label, "__index__"):
        return Example(text, int(label))
    raise AttnflowError(f"{where} has a label of type {type(label).__name__}; give a label name or an index.")
