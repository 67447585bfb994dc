"""A rich table that never loses a column: too wide for its space, it prints as a stack of narrower tables.

Rich fits a table that is too wide by squeezing its columns (cutting token texts
to "…") and then cropping whatever is left, which is what a pipe (80 columns), a
redirect or a narrow terminal used to get. A :class:`StackingTable` measures
itself against the width it is given when it is printed. If it fits it prints as
one ordinary table; if not, it prints as several tables, one under the other:
each repeats the key columns (``#``, ``token``) and carries as many of the other
column blocks as fit, so every row keeps its text and every number. The layout
does not know which columns there are, so columns other code adds later (a flow
interval, an attribution baseline) stack the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

#: Width given to a table to measure its natural (unsqueezed) width.
_UNBOUNDED = 1 << 20


class StackingTable(Table):
    """A :class:`rich.table.Table` whose columns come in blocks that are stacked when the table is too wide.

    The first ``keys`` columns are repeated in every part. Each later column
    belongs to a block (:meth:`add_column` with ``block=``, default: a block of
    its own); a block is never split, and its columns keep together in the order
    they were added even when they are not next to each other in the full table
    (a method's "flow cut" column joins that method's score and bar). Blocks with
    different ``group`` names (one per ``--graph``) start a new part.

    Examples
    --------
    >>> from rich.console import Console
    >>> table = StackingTable(keys=1)
    >>> table.add_column("token")
    >>> for name in ("first", "second"):
    ...     table.add_column(name, block=name)
    >>> table.add_row("the", "0.1", "0.2")
    >>> console = Console(width=24, record=True, color_system=None)
    >>> console.print(table)  # doctest: +NORMALIZE_WHITESPACE
    ┏━━━━━━━┳━━━━━━━┓
    ┃ token ┃ first ┃
    ┡━━━━━━━╇━━━━━━━┩
    │ the   │ 0.1   │
    └───────┴───────┘
    ┏━━━━━━━┳━━━━━━━━┓
    ┃ token ┃ second ┃
    ┡━━━━━━━╇━━━━━━━━┩
    │ the   │ 0.2    │
    └───────┴────────┘
    """

    def __init__(self, *args: Any, keys: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys = keys
        self._blocks: dict[Any, list[int]] = {}
        self._groups: dict[Any, Any] = {}

    def add_column(self, *args: Any, block: Any = None, group: Any = None, **kwargs: Any) -> None:
        """Add a column, as :meth:`rich.table.Table.add_column`; ``block`` names the block it belongs to.

        Columns with the same ``block`` stack together; ``None`` gives the column a
        block of its own. ``group`` (for example the graph a block's method ran
        over) makes a new part start where the group changes. Key columns (the
        first ``keys``) ignore both.
        """
        index = len(self.columns)
        super().add_column(*args, **kwargs)
        if index < self.keys:
            return
        key = ("column", index) if block is None else block
        self._blocks.setdefault(key, []).append(index)
        self._groups.setdefault(key, group)

    def natural_width(self, console: Console, options: ConsoleOptions) -> int:
        """The width this table takes with no column squeezed."""
        return Measurement.get(console, options.update_width(_UNBOUNDED), _plain(self)).maximum

    def parts(self, console: Console, options: ConsoleOptions) -> list[Table]:
        """The tables this one prints as in ``options.max_width``: itself, or its stacked parts (no title, caption).

        Each part is as many whole blocks, in order, as fit beside the key columns;
        a block too wide even alone gets a part of its own (rich then squeezes it).
        """
        if self.natural_width(console, options) <= options.max_width or not self._blocks:
            return [_plain(self)]
        keys = list(range(self.keys))
        parts: list[list[int]] = []
        current: list[int] = []
        group = object()
        for key, columns in self._blocks.items():
            trial = current + columns
            same_group = self._groups[key] == group
            if current and same_group and self._width(keys + trial, console, options) <= options.max_width:
                current = trial
            else:
                if current:
                    parts.append(current)
                current = list(columns)
            group = self._groups[key]
        parts.append(current)
        return [self._subtable(keys + columns) for columns in parts]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        parts = self.parts(console, options)
        if len(parts) == 1:
            yield from parts[0].__rich_console__(console, options)
            return
        yield from _annotation(self.title, "table.title", self.title_style, console, options)
        for part in parts:
            yield from part.__rich_console__(console, options)
        yield from _annotation(self.caption, "table.caption", self.caption_style, console, options)

    def _width(self, columns: list[int], console: Console, options: ConsoleOptions) -> int:
        return Measurement.get(console, options.update_width(_UNBOUNDED), self._subtable(columns)).maximum

    def _subtable(self, columns: list[int]) -> Table:
        part = _plain(self)
        part.title = part.caption = None
        part.columns = []
        for position, index in enumerate(columns):
            column = self.columns[index].copy()  # copy() leaves the cells out
            column._cells = self.columns[index]._cells
            column._index = position
            part.columns.append(column)
        return part


def _plain(table: StackingTable) -> Table:
    """A shallow copy of ``table`` as an ordinary rich Table (rows and cells shared, never changed)."""
    plain = copy.copy(table)
    plain.__class__ = Table
    plain.columns = list(table.columns)
    return plain


def _annotation(text: Any, default_style: str, style: Any, console: Console, options: ConsoleOptions) -> Iterator:
    """A stacked table's title or caption, left-aligned and wrapped (never cut) at the full width."""
    if not text:
        return
    from rich.style import Style

    shown = console.render_str(text, style=Style.pick_first(style, default_style), highlight=False) \
        if isinstance(text, str) else text
    if isinstance(shown, Text):
        shown.justify = "left"
    yield from console.render(shown, options.update(justify="left"))
