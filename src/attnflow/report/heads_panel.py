"""The HTML report's heads panel: every head's roles and importance as a layer x head grid.

The panel's data is a plain dict, made from a :class:`attnflow.heads.HeadReport` (computed
for the explained text by ``attnflow explain --html FILE --heads``) or from the
``heads.json`` that ``attnflow heads`` writes (``attnflow report RESULTS --heads
heads.json``), and checked here, so the page only draws it::

    {"model": str, "target": str, "n_examples": int, "n_layers": L, "n_heads": H,
     "source": str, "thresholds": {...}, "relevance_definition": str,
     "roles": [[[label, ...], ...], ...],          # [layer][head], layer 1 first
     "importance" | "relevance" | "confidence": [[number or None]]}

Every string (role labels come from relation names, which a CoNLL-U file chooses)
reaches the page inside the JSON block and is inserted with ``textContent``, as the
rest of the report's data is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from ..errors import AttnflowError
from ..heads import HeadReport
from ..heads.analysis import FORMAT_VERSION
from ..io import check_format, read_json

FORMAT = "attnflow.heads"
#: The scores the panel shows, besides the roles.
PANEL_SCORES = ("importance", "relevance", "confidence")


def heads_panel(source: Any, *, origin: str = "") -> dict[str, Any]:
    """The panel's data from a :class:`HeadReport`, the dict ``HeadReport.to_dict()`` gives, or a heads.json path.

    Parameters
    ----------
    source
        What ``attnflow heads`` computed: the report itself, its JSON as a dict, or
        the path of its ``heads.json``.
    origin
        Where it came from, shown in the panel's caption (default: the file's name,
        or "computed for this text").

    Examples
    --------
    >>> import numpy as np
    >>> from attnflow.heads import HeadReport
    >>> z = np.zeros((1, 2))
    >>> r = HeadReport(np.array([[0.1, 0.9]]), z, z, z, z, z, previous_max=np.array([[0.95, 0.0]]))
    >>> panel = heads_panel(r)
    >>> panel["roles"], panel["importance"]
    ([[['previous'], []]], [[0.1, 0.9]])
    """

    if isinstance(source, HeadReport):
        data: Any = source.to_dict()
        origin = origin or "computed for this text"
    elif isinstance(source, (str, os.PathLike)):

        name = os.fspath(source)
        data = read_json(name, "heads file")
        origin = origin or os.path.basename(name)
    else:
        data = source
    try:
        return check_heads_panel(_from_heads_json(data, origin))
    except AttnflowError as exc:
        if isinstance(source, (str, os.PathLike)):
            raise AttnflowError(f"{os.fspath(source)}: {exc}") from None
        raise


def _from_heads_json(data: Any, origin: str) -> dict[str, Any]:
    """The panel's fields out of an ``attnflow.heads`` dict (``HeadReport.to_dict``)."""

    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
        raise AttnflowError(
            f"This is not the heads.json `attnflow heads` writes (format 'attnflow.heads'); found {found!r}."
        )

    check_format(data, FORMAT, FORMAT_VERSION)
    scores = data.get("scores")
    if not isinstance(scores, Mapping):
        raise AttnflowError("The heads file has no 'scores' object.")
    target = data.get("target")
    spec = target.get("spec", "") if isinstance(target, Mapping) else ("" if target is None else target)
    return {
        "model": data.get("model", ""),
        "target": spec,
        "n_examples": data.get("n_examples", 0),
        "n_layers": data.get("n_layers"),
        "n_heads": data.get("n_heads"),
        "source": origin,
        "thresholds": data.get("thresholds", {}),
        "relevance_definition": data.get("relevance_definition", ""),
        "roles": data.get("roles"),
        **{name: scores.get(name) for name in PANEL_SCORES},
    }


def check_heads_panel(panel: Any) -> dict[str, Any]:
    """Check the panel's data (see the module docstring) and return a clean copy; one clear error otherwise.

    Examples
    --------
    >>> check_heads_panel({"n_layers": 1, "n_heads": 1, "roles": [[["det"]]], "importance": [[0.5]]})["relevance"]
    [[None]]
    >>> check_heads_panel({"n_layers": 1, "n_heads": 2, "roles": [[[]]]})
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The heads panel's 'roles' must be 1 layers x 2 heads of lists of labels.
    """
    if not isinstance(panel, Mapping):
        raise AttnflowError(f"The heads panel must be an object; got {type(panel).__name__}.")
    layers, heads = panel.get("n_layers"), panel.get("n_heads")
    for name, value in (("n_layers", layers), ("n_heads", heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AttnflowError(f"The heads panel's '{name}' must be a positive integer; got {value!r}.")
    assert isinstance(layers, int) and isinstance(heads, int)
    roles = panel.get("roles")
    if not _grid(roles, layers, heads) or not all(
        isinstance(cell, list) and all(isinstance(label, str) for label in cell) for row in roles for cell in row
    ):
        raise AttnflowError(f"The heads panel's 'roles' must be {layers} layers x {heads} heads of lists of labels.")
    out: dict[str, Any] = {
        "model": str(panel.get("model") or ""),
        "target": str(panel.get("target") or ""),
        "n_examples": _count(panel.get("n_examples", 0)),
        "n_layers": layers,
        "n_heads": heads,
        "source": str(panel.get("source") or ""),
        "relevance_definition": str(panel.get("relevance_definition") or ""),
        "thresholds": {
            str(key): float(value)
            for key, value in dict(panel.get("thresholds") or {}).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        },
        "roles": [[list(cell) for cell in row] for row in roles],
    }
    for name in PANEL_SCORES:
        value = panel.get(name)
        if value is None:
            out[name] = [[None] * heads for _ in range(layers)]
            continue
        if not _grid(value, layers, heads):
            raise AttnflowError(f"The heads panel's '{name}' must be {layers} layers x {heads} heads of numbers.")
        out[name] = [[_number(name, v) for v in row] for row in value]
    return out


def _grid(value: Any, layers: int, heads: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == layers
        and all(isinstance(row, list) and len(row) == heads for row in value)
    )


def _number(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AttnflowError(f"The heads panel's '{name}' holds {value!r}; expected numbers (or null).")
    return float(f"{float(value):.6g}")


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AttnflowError(f"The heads panel's 'n_examples' must be an integer >= 0; got {value!r}.")
    return value
