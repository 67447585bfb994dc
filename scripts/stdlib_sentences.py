"""Write sentences of ordinary English taken from the docstrings of Python's standard library (PSF licence).

    python scripts/stdlib_sentences.py --n 150 --out docs/results/heads-smollm2-stdlib.txt

The first sentence of each public function's, class's and method's docstring in a fixed list
of modules, kept when it reads as prose: 8 to 24 words, letters and ordinary punctuation
only, ending with a full stop, no code-like words (underscores, dots inside words,
parentheses). Deduplicated, sorted, and the first ``n`` of a fixed shuffle (seed 0) kept,
one a line: the data file docs/heads.md runs ``attnflow heads --model smollm2`` on. Which
sentences come out depends on the Python version's docstrings (the file says which).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import platform
import random
import re
import sys
from pathlib import Path

MODULES = ("argparse", "asyncio", "calendar", "collections", "concurrent.futures", "configparser", "contextlib",
           "csv", "datetime", "decimal", "difflib", "email", "fractions", "functools", "gzip", "heapq", "http.client",
           "inspect", "io", "itertools", "json", "logging", "mailbox", "os", "pathlib", "pickle", "queue", "random",
           "shutil", "smtplib", "socket", "sqlite3", "statistics", "string", "subprocess", "tarfile", "tempfile",
           "textwrap", "threading", "tkinter", "turtle", "unittest", "urllib.request", "uuid", "warnings", "wave",
           "zipfile")
PROSE = re.compile(r"^[A-Z][A-Za-z ,;'\-]+\.$")


def first_sentence(doc: str) -> str | None:
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    match = re.match(r"(.+?\.)(\s|$)", paragraph)
    if match is None:
        return None
    sentence = match.group(1)
    words = sentence.split()
    if not 8 <= len(words) <= 24 or not PROSE.match(sentence):
        return None
    return sentence


def sentences() -> list[str]:
    found: set[str] = set()
    for name in MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # e.g. tkinter without Tk
            continue
        objects = [obj for key, obj in vars(module).items() if not key.startswith("_")]
        objects += [member for obj in objects if inspect.isclass(obj)
                    for key, member in vars(obj).items() if not key.startswith("_")]
        for obj in objects:
            doc = inspect.getdoc(obj) if callable(obj) or inspect.isclass(obj) else None
            sentence = first_sentence(doc) if doc else None
            if sentence:
                found.add(sentence)
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    pool = sentences()
    random.Random(0).shuffle(pool)
    chosen = pool[: args.n]
    args.out.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    print(f"wrote {len(chosen)} of {len(pool)} sentences (Python {platform.python_version()}) to {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
