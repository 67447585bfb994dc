"""Judge explanations against what the model really uses: ground truths, correlation, faithfulness.

``attnflow.evaluate`` is both this package and a function: ``attnflow.evaluate(examples, ...)``
runs :func:`attnflow.evaluate.runner.evaluate`, while ``attnflow.evaluate.spearman``,
``attnflow.evaluate.faithfulness`` and the rest stay reachable as module members.

Why a callable module: the issue asks for ``attnflow.evaluate(examples, ...)`` and for a
module ``attnflow.evaluate`` holding blank-out, gradients, correlation and faithfulness.
A package attribute can be only one object, and ``import attnflow.evaluate.runner``
(which Python runs for any submodule import) always rebinds ``attnflow.evaluate`` to
the package, so a function of that name could not survive. Giving the package module
a ``ModuleType`` subclass with ``__call__`` makes both spellings work.

Modules:

- :mod:`.data`: reading ``.txt``/``.jsonl``/``.csv`` examples;
- :mod:`.correlation`: per-example Spearman correlations, mean ± sd per layer;
- :mod:`.faithfulness`: comprehensiveness, sufficiency, AOPC, random baseline;
- :mod:`.runner`: :func:`evaluate` and :class:`EvaluationResult`.

Model runs (blank-out, gradients, integrated gradients) live in
:mod:`attnflow.capture.perturb`, targets in :mod:`attnflow.capture.targets`.

Examples
--------
>>> import attnflow.evaluate as ev
>>> callable(ev), ev.spearman([1, 2, 3], [1, 3, 2])
(True, 0.5)
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ..data import Example, as_examples, read_examples
from .correlation import layer_correlations, mean_sd, spearman
from .faithfulness import (
    DEFAULT_PERCENTS,
    FaithfulnessScores,
    faithfulness_many,
    n_removed,
    removal_masks,
    removal_order,
)
from .faithfulness import faithfulness as faithfulness_scores
from .runner import (
    GROUND_TRUTHS,
    SPECIAL_TOKEN_RULE,
    EvaluationResult,
    ExampleResult,
    default_methods,
    evaluate,
)

__all__ = [
    "DEFAULT_PERCENTS",
    "GROUND_TRUTHS",
    "SPECIAL_TOKEN_RULE",
    "EvaluationResult",
    "Example",
    "ExampleResult",
    "FaithfulnessScores",
    "as_examples",
    "default_methods",
    "evaluate",
    "faithfulness_many",
    "faithfulness_scores",
    "layer_correlations",
    "mean_sd",
    "n_removed",
    "read_examples",
    "removal_masks",
    "removal_order",
    "spearman",
]


class _CallableModule(types.ModuleType):
    """The ``attnflow.evaluate`` module, callable as :func:`attnflow.evaluate.runner.evaluate`."""

    def __call__(self, *args: Any, **kwargs: Any) -> EvaluationResult:
        """Run :func:`attnflow.evaluate.runner.evaluate` (see its documentation)."""
        return evaluate(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
