"""Examples to evaluate on: :mod:`attnflow.data`, the one data reader of ``attnflow evaluate`` and ``attnflow batch``.

Kept so that ``attnflow.evaluate.data`` imports keep working; see :mod:`attnflow.data`
for the formats and the rules (a missing text column, an empty data set, rows
without a text skipped and counted).

Examples
--------
>>> from attnflow.evaluate.data import as_examples
>>> as_examples(["A cat."])
[Example(text='A cat.', label=None)]
"""

from ..data import FORMATS, Example, Examples, as_examples, read_examples, screen_examples, screen_texts

__all__ = ["FORMATS", "Example", "Examples", "as_examples", "read_examples", "screen_examples", "screen_texts"]
