"""The test tiers, for every item pytest collects (doctests in src/ and tests/ alike): what loads a model is marked."""

from __future__ import annotations

import functools
import re

import pytest

#: Calls in a doctest that load a model (the bundled MiniLM by default) or run a command that does.
_MODEL_CALLS = re.compile(
    r"\b(load_model|capture_attention|capture_attention_by|capture_text|capture_mixing|capture_seq2seq|mixing_graph"
    r"|capture_image_attention|capture_token_ids|explain|explain_image|explain_generation|explain_seq2seq"
    r"|analyze_heads|evaluate|run_batch|image_faithfulness|pruning_experiment|gate_pruning|graph_matrices"
    r"|heads_panel_for|flow_saturation|committed_saturation|plausibility|save_tiny_\w+|from_pretrained"
    r"|reproduce_\w+|attention_gradients|evaluate_seq2seq)\("
    r"|(main|run_command|_run|run_cli)\((capsys, )?\[?\"(explain|evaluate|batch|heads|reproduce|train)\""
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
        if _MODEL_FIXTURES & fixtures or _MODEL_CALLS.search(_source(item)) or _model_fixture(item):
            item.add_marker(pytest.mark.model)


def _model_fixture(item: pytest.Item) -> bool:
    """Whether a fixture the test takes (directly or through another) calls a model entry point."""
    info = getattr(item, "_fixtureinfo", None)
    for definitions in (info.name2fixturedefs.values() if info is not None else ()):
        for definition in definitions:
            if _MODEL_CALLS.search(_function_source(definition.func)):
                return True
    return False


def _source(item: pytest.Item) -> str:
    """The test function's own source ("" when it has none to read)."""
    return _function_source(getattr(item, "function", None))


@functools.cache
def _function_source(function: object) -> str:
    import inspect

    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""
