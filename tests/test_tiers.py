"""The test tiers: what loads a model is marked ``model`` (conftest.py), so ``make test-fast`` leaves it out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def _module_scoped() -> int:
    return 1


def test_tests_sharing_a_module_fixture_reach_xdist_as_one_group(request, _module_scoped) -> None:
    """conftest groups tests that share a module fixture; `--dist loadgroup` reads the group from the node id.

    pytest 9.2 builds the node id from a structured id that pytest-xdist 3.8 cannot suffix, so every group
    was lost and both workers built the reproduction fixture (four minutes twice); requirements-dev.txt pins
    a pytest whose node ids xdist can mark. Outside `make test` (no loadgroup) there is nothing to check.
    """
    if not getattr(request.config.option, "loadgroup", False):  # set on xdist's workers by --dist loadgroup
        pytest.skip("not run with --dist loadgroup")
    assert request.node.nodeid.endswith(f"@module:{__name__}")
