"""The test tiers: what loads a model is marked ``model`` (conftest.py), so ``make test-fast`` leaves it out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _collected(marker: str, *paths: str) -> list[str]:
    found = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", marker, *paths],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    return [line for line in found.stdout.splitlines() if "::" in line]


def test_model_loading_doctests_and_tests_are_their_own_tier():
    paths = ("src/attnflow/capture/mixing.py", "src/attnflow/methods/rollout.py", "tests/test_options.py")
    model = _collected("model", *paths)
    fast = _collected("not model", *paths)
    # capture_mixing's doctest loads MiniLM; rollout's run on arrays; test_options fails should a model load
    assert "src/attnflow/capture/mixing.py::attnflow.capture.mixing.capture_mixing" in model
    assert any(item.startswith("src/attnflow/methods/rollout.py::") for item in fast)
    assert not any(item.startswith("src/attnflow/methods/rollout.py::") for item in model)
    assert any(item.startswith("tests/test_options.py::") for item in fast)
