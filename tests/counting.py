"""Count the work a call does: forward passes of one model, and max-flow problems at the kernel's entry."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from attnflow.methods import _maxflow_kernel
from tests.helpers import patch_everywhere


@contextmanager
def counted_work(model: Any, monkeypatch: Any) -> Iterator[dict[str, Any]]:
    """``{"forward": passes of model, "problems": [(depth, sink capacities' bytes, source), ...]}``, live.

    A forward hook on ``model`` (removed on exit) counts its passes; each problem handed to
    the compiled kernel (``LayeredMaxFlow.solve_certified``, which every exact solve goes
    through) is recorded, so a problem solved twice shows up twice.
    """
    counts: dict[str, Any] = {"forward": 0, "problems": []}
    handle = model.register_forward_hook(lambda *_: counts.__setitem__("forward", counts["forward"] + 1))
    solve = _maxflow_kernel.LayeredMaxFlow.solve_certified

    def solve_and_count(self, depths, rows, sources, sink_caps, **kwargs):
        counts["problems"].extend(
            (int(d), np.asarray(sink_caps[r]).tobytes(), int(s)) for d, r, s in zip(depths, rows, sources, strict=True)
        )
        return solve(self, depths, rows, sources, sink_caps, **kwargs)

    monkeypatch.setattr(_maxflow_kernel.LayeredMaxFlow, "solve_certified", solve_and_count)
    try:
        yield counts
    finally:
        handle.remove()


def spans_of(monkeypatch: Any, module: Any, name: str, counts: dict[str, Any]) -> list[tuple[tuple[int, int], ...]]:
    """Wrap ``module.name``: each call appends ``((passes, problems) at its start, (passes, problems) at its end)``.

    Callers that import the function inside their body (``from ..evaluate import evaluate``) get the wrapper.
    """
    spans: list[tuple[tuple[int, int], ...]] = []
    real = getattr(module, name)

    def now() -> tuple[int, int]:
        return counts["forward"], len(counts["problems"])

    def spanned(*args: Any, **kwargs: Any) -> Any:
        start = now()
        result = real(*args, **kwargs)
        spans.append((start, now()))
        return result

    patch_everywhere(monkeypatch, module, name, spanned)
    return spans
