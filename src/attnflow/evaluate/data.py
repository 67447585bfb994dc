"""Examples to evaluate on: texts with optional labels, from files or Python objects.

File formats (UTF-8; the extension decides):

- ``.txt``: one text per line; blank lines are skipped;
- ``.jsonl``: one JSON object per line with a ``"text"`` string and an optional
  ``"label"`` (a label name or a class index); blank lines are skipped;
- ``.csv``: a header row with a ``text`` column and an optional ``label`` column
  (other columns are ignored); an empty label cell means no label.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AttnflowError

FORMATS: tuple[str, ...] = (".txt", ".jsonl", ".csv")


@dataclass(frozen=True)
class Example:
    """One text to evaluate on, with its gold label when the data has one."""

    text: str
    label: str | int | None = None


def read_examples(path: str | os.PathLike[str]) -> list[Example]:
    """Read examples from a ``.txt``, ``.jsonl`` or ``.csv`` file.

    Raises
    ------
    AttnflowError
        For a missing or unreadable file, an unknown extension, text that is not
        UTF-8, a file without examples, a malformed JSON line, a CSV without a
        ``text`` column, or an example whose text is empty. The message names the
        file and the line.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "data.jsonl"
    >>> _ = path.write_text('{"text": "Good film.", "label": "positive"}\\n\\n{"text": "Bad."}\\n')
    >>> read_examples(path)
    [Example(text='Good film.', label='positive'), Example(text='Bad.', label=None)]
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in FORMATS:
        raise AttnflowError(
            f"The data file {os.fspath(path)!r} must end in {', '.join(FORMATS)} (a text per line, JSON lines "
            f"with a 'text' field, or CSV with a 'text' column); got {suffix or 'no extension'!r}."
        )
    try:
        raw = file.read_bytes()
    except IsADirectoryError:
        raise AttnflowError(f"The data file {os.fspath(path)!r} is a folder; give a file.") from None
    except OSError as exc:
        raise AttnflowError(f"Cannot read the data file {os.fspath(path)!r}: {exc.strerror or exc}.") from None
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AttnflowError(
            f"The data file {os.fspath(path)!r} is not UTF-8 text (byte {exc.start} cannot be decoded)."
        ) from None
    reader = {".txt": _read_txt, ".jsonl": _read_jsonl, ".csv": _read_csv}[suffix]
    examples = reader(content, os.fspath(path))
    if not examples:
        raise AttnflowError(f"The data file {os.fspath(path)!r} holds no examples (no text in it).")
    return examples


def as_examples(examples: Any) -> list[Example]:
    """Turn what ``attnflow.evaluate`` accepts into a list of :class:`Example`.

    Accepted: a :class:`pathlib.Path` (read with :func:`read_examples`); a string
    naming an existing ``.txt``/``.jsonl``/``.csv`` file (read too); any other
    string (one text); or an iterable of strings, :class:`Example`, ``(text, label)``
    pairs or dicts with ``"text"`` and optional ``"label"``; or a pandas DataFrame
    with a ``text`` column.

    Examples
    --------
    >>> as_examples(["A cat.", ("A dog.", 1), {"text": "A fox.", "label": "pos"}])
    [Example(text='A cat.', label=None), Example(text='A dog.', label=1), Example(text='A fox.', label='pos')]
    """
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
    if isinstance(label, float) and label != label:  # NaN from pandas
        label = None
    if isinstance(label, str) and not label.strip():
        label = None
    if label is not None and not isinstance(label, (str, int)):
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        elif hasattr(label, "__index__"):
            label = int(label)
        else:
            raise AttnflowError(f"{where} has a label of type {type(label).__name__}; give a label name or an index.")
    return Example(text, label)


def _read_txt(content: str, name: str) -> list[Example]:
    return [
        _example(line.strip(), None, f"Line {number} of {name!r}")
        for number, line in enumerate(content.splitlines(), start=1)
        if line.strip()
    ]


def _read_jsonl(content: str, name: str) -> list[Example]:
    out = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"Line {number} of {name!r}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AttnflowError(f"{where} is not valid JSON: {exc.msg} (column {exc.colno}).") from None
        if not isinstance(record, dict):
            raise AttnflowError(f"{where} must be a JSON object with a 'text' field; got {type(record).__name__}.")
        if "text" not in record:
            raise AttnflowError(f"{where} has no 'text' field; its fields are {sorted(record)}.")
        out.append(_example(record["text"], record.get("label"), where))
    return out


def _read_csv(content: str, name: str) -> list[Example]:
    try:
        reader = csv.reader(io.StringIO(content, newline=""))
        rows = list(reader)
    except csv.Error as exc:
        raise AttnflowError(f"The data file {name!r} is not valid CSV: {exc}.") from None
    numbered = [(number, row) for number, row in enumerate(rows, start=1) if any(cell.strip() for cell in row)]
    if not numbered:
        return []
    header = [cell.strip().lower() for cell in numbered[0][1]]
    if "text" not in header:
        raise AttnflowError(
            f"The CSV data file {name!r} has no 'text' column; its header is {numbered[0][1]}. "
            "Name the column holding the texts 'text' (and the optional labels 'label')."
        )
    text_column = header.index("text")
    label_column = header.index("label") if "label" in header else None
    out = []
    for number, row in numbered[1:]:
        where = f"Row {number} of {name!r}"
        if len(row) <= text_column:
            raise AttnflowError(f"{where} has {len(row)} cells; the 'text' column is number {text_column + 1}.")
        label = row[label_column] if label_column is not None and label_column < len(row) else None
        out.append(_example(row[text_column], label.strip() if isinstance(label, str) else label, where))
    return out
