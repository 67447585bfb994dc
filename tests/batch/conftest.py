"""Tiny data sets for the batch tests: eight short texts, written in every supported format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EIGHT = [
    "The keys to the cabinet are on the table.",
    "A cat sat on the warm mat.",
    "I really loved this film.",
    "Dogs bark.",
    "She reads a new book every week, often two.",
    "Rain again.",
    "The author of the books is here.",
    "Where does the output draw its information from?",
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def eight_jsonl(tmp_path: Path) -> Path:
    """Eight texts with integer labels, as JSONL."""
    return write_jsonl(tmp_path / "eight.jsonl", [{"text": t, "label": i % 2} for i, t in enumerate(EIGHT)])
