"""The package's import graph: a one-way stack (docs/design.md §9), imports made inside functions included."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up while it is built
    spec.loader.exec_module(module)
    return module


def test_no_import_cycle_between_packages():
    graph = _import_graph().import_graph()
    assert graph.arrows, "the script found no imports at all"
    assert graph.cycles() == []


def test_at_most_three_upward_arrows_each_named_in_the_design():
    graph = _import_graph().import_graph()
    design = (ROOT / "docs" / "design.md").read_text()
    upward = graph.upward()
    assert len(upward) <= 3, upward
    for a, b in upward:
        assert f"`{a}` → `{b}`" in design, f"{a} -> {b} is not named and justified in docs/design.md"


def test_the_script_finds_a_cycle_and_an_upward_arrow(tmp_path):
    """The checks above can fail: a cycle through an import inside a function, and an arrow up the stack."""
    package = tmp_path / "attnflow"
    (package / "methods").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "methods" / "__init__.py").write_text("from ..graph import x\n")
    (package / "graph.py").write_text("def f():\n    from .methods import y\n")
    (package / "report.py").write_text("")
    (package / "capture.py").write_text("from . import report\n")
    graph = _import_graph().import_graph(package)
    assert graph.cycles() == [["graph", "methods"]]
    assert ("capture", "report") in graph.upward()
