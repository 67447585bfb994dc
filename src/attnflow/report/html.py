"""The HTML report: one self-contained file (inline data, script and style) that works offline.

The page embeds a :class:`~attnflow.report.data.ReportData` as JSON in a
``<script type="application/json">`` block and draws it with a small script
written for it (no frameworks, nothing fetched): token heatmaps per method and
layer, the layered attention graph with the route into the chosen output,
a side-by-side method comparison and, when the data has them, evaluation
tables and plots.

Safety: every token, label and name reaches the page either HTML-escaped (the
title) or inside the JSON block with ``<``, ``>`` and ``&`` written as ``\\u003c``,
``\\u003e``, ``\\u0026`` (so no ``</script>`` or ``<!--`` can end it), and the script
inserts it with ``textContent``. A Content-Security-Policy allows only the
page's own script (by hash), so even markup that slipped through could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import AttnflowError
from ..io import write_text_atomic
from ..methods import available_methods, get_method
from ..methods.attribution import get_attribution, is_attribution
from ..mixing.registry import available_graphs, get_graph, split_key
from .data import ReportData

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@cache
def _template(name: str) -> str:
    return resources.files("attnflow.report").joinpath("templates", name).read_text(encoding="utf-8")


def json_for_script(value: Any) -> str:
    """JSON that can sit inside ``<script type="application/json">``: no ``<``, ``>`` or ``&`` left.

    JSON allows ``\\u003c`` wherever a string holds ``<``, so the data reads back
    unchanged with ``JSON.parse``; no ``</script>``, ``<!--`` or ``<script`` can appear.

    Examples
    --------
    >>> json_for_script({"token": "</script><!--"})
    '{"token":"\\\\u003c/script\\\\u003e\\\\u003c!--"}'
    >>> json.loads(json_for_script(["a<b"]))
    ['a<b']
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def render_html(data: ReportData, *, title: str | None = None) -> str:
    """The report as one HTML document (a string), self-contained and safe for any tokens.

    Parameters
    ----------
    data
        What to show; see :func:`attnflow.report.data.report_data` and
        :func:`attnflow.report.data.load_report_data`.
    title
        The page title; by default the explained text (or the model, for an
        evaluation-only report).

    Returns
    -------
    str
        UTF-8 HTML that needs no network access.

    Examples
    --------
    >>> import numpy as np
    >>> from attnflow.report.data import report_data
    >>> page = render_html(report_data(np.full((2, 1, 3, 3), 1 / 3), ["a", "<b>", "c"]))
    >>> page.startswith("<!DOCTYPE html>"), "<b>" in page
    (True, False)
    """

    payload = data.to_dict()
    payload["generator"] = f"attnflow {__version__}"
    payload["summaries"] = {
        name: get_method(name).summary for name in data.methods if name in available_methods()
    }
    payload["input_methods"] = [name for name in data.methods if is_attribution(name)]  # "(input)" in the page
    payload["summaries"].update({name: f"{get_attribution(name).summary} (layer input: the same at every layer)"
                                 for name in data.methods if is_attribution(name)})
    payload["summaries"].update(_graph_summaries(data.methods))
    heading = title if title is not None else _default_heading(data)
    script = "\n" + _template("report.js") + "\n"
    if "</script" in script.lower() or "<!--" in script:
        raise AssertionError("the report script must not contain '</script' or '<!--'")  # our own file, not input
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    csp = (
        "default-src 'none'; "
        f"script-src 'sha256-{digest}'; "
        "style-src 'unsafe-inline'; "
        "img-src data:; "
        "base-uri 'none'; form-action 'none'"
    )
    values = {
        "csp": csp,
        "generator": html.escape(payload["generator"]),
        "title": html.escape(f"{heading} · attnflow report" if heading else "attnflow report"),
        "heading": html.escape(heading or "attnflow report"),
        "style": _template("report.css"),
        "data": json_for_script(payload),
        "script": script[1:-1],
    }
    # one pass over the template only, so text inside a value is never taken for a placeholder
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], _template("report.html"))


def write_html(data: ReportData, path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """Render the report and write it to ``path`` atomically (no partial file on failure).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from attnflow.report.data import report_data
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "report.html"
    >>> write_html(report_data(np.full((1, 1, 2, 2), 0.5)), target).stat().st_size > 10_000
    True
    """

    if Path(path).is_dir():
        raise AttnflowError(f"Cannot write the report to {os.fspath(path)!r}: it is a folder; give a file name.")
    return write_text_atomic(path, render_html(data, title=title))


def _graph_summaries(names: list[str]) -> dict[str, str]:
    """Summaries of ``GRAPH/METHOD`` entries: the method's, then the graph's and its reference.

    Examples
    --------
    >>> _graph_summaries(["rollout", "alti/rollout"])["alti/rollout"][:40]
    'attention rollout: products of residual-'
    """

    out = {}
    for name in names:
        graph, method = split_key(name)
        if "/" in name and graph in available_graphs() and method in available_methods():
            chosen = get_graph(graph)
            out[name] = (f"{get_method(method).summary}; here over the {graph} graph: {chosen.summary} "
                         f"({chosen.reference.split(';')[0]}).")
    return out


def _default_heading(data: ReportData) -> str:
    if data.text:
        text = " ".join(data.text.split())
        return f"“{text[:157]}…”" if len(text) > 160 else f"“{text}”"
    if data.tokens:
        return " ".join(data.tokens[:40])
    if data.evaluation is not None:
        model = data.model_name or (data.evaluation.get("model") or "")
        return f"Evaluation of {model}" if model else "Evaluation"
    return "attnflow report"
