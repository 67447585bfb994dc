"""The test tiers, for every item pytest collects (doctests in src/ and tests/ alike): what loads a model is marked."""

from __future__ import annotations

import re

import pytest

#: Calls in a doctest that load a model (the bundled MiniLM by default) or run a command that does.
_MODEL_CALLS = re.compile(
    r"\b(load_model|capture_attention|capture_attention_by|capture_text|capture_mixing|capture_seq2seq|mixing_graph"
    r"|explain|explain_image|explain_generation|explain_seq2seq|analyze_heads|evaluate|run_batch|image_faithfulness"
    r"|pruning_experiment|gate_pruning|graph_matrices|heads_panel_for)\("
    r"|(main|run_command|_run)\(\[?\"(explain|evaluate|batch|heads|reproduce|train)\""
)
#: Fixtures that hand out a loaded model or the path of one.
_MODEL_FIXTURES = frozenset({"minilm", "smollm2", "smollm2_path", "tiny_loaded", "tiny_model_path", "tiny_model_paths"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark what loads a model ``model``: doctests and tests that call a model entry point, tests that take a
    model fixture.

    ``make test-fast`` leaves them out, with ``slow`` and ``e2e``; ``make test`` runs everything.
    """
    from _pytest.doctest import DoctestItem

    for item in items:
        if isinstance(item, DoctestItem):
            source = "\n".join(example.source for example in item.dtest.examples)
            if _MODEL_CALLS.search(source):
                item.add_marker(pytest.mark.model)
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if "no_model" in fixtures:  # it fails should a model load
            continue
        if _MODEL_FIXTURES & fixtures or _MODEL_CALLS.search(_source(item)):
            item.add_marker(pytest.mark.model)


def _source(item: pytest.Item) -> str:
    """The test function's own source ("" when it has none to read)."""
    import inspect

    try:
        return inspect.getsource(item.function)
    except (AttributeError, OSError, TypeError):
        return ""
