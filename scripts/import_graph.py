"""attnflow's import graph at package level: cycles and upward arrows.

A "package" is a direct child of ``attnflow``: a subpackage (``methods``, ``capture``) or a
top-level module (``graph``, ``generation``). Every import of an attnflow module counts, the
ones made inside functions included. ``LAYERS`` is the intended stack of docs/design.md §9,
lowest first; an arrow from a package to one in a higher layer runs upward.

Usage::

    python scripts/import_graph.py            # summary: arrows, cycles, upward arrows
    python scripts/import_graph.py --verbose  # each upward arrow with the files that make it

>>> graph = import_graph()
>>> ("methods", "graph") in graph.arrows
True
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "attnflow"

# The intended stack (docs/design.md §9), lowest first. A package may import any package in its
# own layer or a lower one; an import of a higher layer is an upward arrow.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "io", "outputs", "image_maps", "plots", "bundled", "smollm2", "_version"),
    ("graph",),
    ("methods", "capture"),
    ("mixing", "words", "data"),
    ("explanation",),
    ("core",),
    ("heads",),
    ("explainers", "generation"),
    ("evaluate",),
    ("report",),
    ("batch", "tasks"),
    ("commands",),
    ("cli", "__main__", "__init__"),
)


@dataclass
class ImportGraph:
    """Package-level arrows, each with the ``(file, line)`` places that make it."""

    arrows: dict[tuple[str, str], list[tuple[str, int]]] = field(default_factory=dict)

    def cycles(self) -> list[list[str]]:
        """The strongly connected components with more than one package (Tarjan)."""
        nodes = sorted({p for arrow in self.arrows for p in arrow})
        succ: dict[str, list[str]] = {p: [] for p in nodes}
        for a, b in self.arrows:
            succ[a].append(b)
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []

        def visit(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            for w in succ[v]:
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

        for v in nodes:
            if v not in index:
                visit(v)
        return found

    def upward(self) -> list[tuple[str, str]]:
        """Arrows from a package to one in a higher layer of ``LAYERS``."""
        rank = {p: i for i, layer in enumerate(LAYERS) for p in layer}
        unknown = {p for arrow in self.arrows for p in arrow} - rank.keys()
        if unknown:
            raise ValueError(f"packages missing from LAYERS: {sorted(unknown)}")
        return sorted((a, b) for a, b in self.arrows if rank[b] > rank[a])


def _node(module: str, modules: bool) -> str | None:
    parts = module.split(".")
    if parts[0] != "attnflow" or len(parts) < 2:
        return None
    if not modules:
        return parts[1]
    while parts and not (SRC.parent / Path(*parts)).with_suffix(".py").is_file():
        if (SRC.parent / Path(*parts) / "__init__.py").is_file():
            return ".".join(parts[1:]) + ".__init__"
        parts = parts[:-1]  # from attnflow.methods.flow import solve_flow
    return ".".join(parts[1:]) or None


def _imported(node: ast.AST, here: str) -> list[str]:
    """The attnflow modules an import statement names (``here`` is the importing module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = here.split(".")[: -node.level]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        if module == "attnflow":  # from attnflow import methods, or a name of attnflow/__init__.py
            return [
                f"attnflow.{alias.name}"
                if (SRC / alias.name).is_dir() or (SRC / f"{alias.name}.py").is_file()
                else "attnflow.__init__"
                for alias in node.names
            ]
        return [module]
    return []


def import_graph(src: Path = SRC, modules: bool = False) -> ImportGraph:
    """Every package-level arrow in ``src``, imports inside functions included.

    With ``modules=True`` the nodes are modules (``methods.flow``) instead of packages.
    """
    graph = ImportGraph()
    for path in sorted(src.rglob("*.py")):
        relative = path.relative_to(src.parent).with_suffix("")
        here = ".".join(relative.parts)
        if path.name == "__init__.py":
            here = ".".join(relative.parts[:-1]) + ".__init__"
        source_package = relative.parts[1] if len(relative.parts) > 1 else None
        if source_package is None:
            continue
        source_package = source_package.removesuffix(".py")
        if modules:
            source_package = here.removeprefix("attnflow.")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for module in _imported(node, here):
                target = _node(module, modules)
                if target is None or target == source_package:
                    continue
                graph.arrows.setdefault((source_package, target), []).append(
                    (str(path.relative_to(src.parent)), node.lineno)
                )
    return graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true", help="name the files behind each upward arrow")
    args = parser.parse_args()
    for cycle in import_graph(modules=True).cycles():
        print("module cycle:", " ".join(cycle))
    graph = import_graph()
    cycles = graph.cycles()
    upward = graph.upward()
    print(f"{len(graph.arrows)} package arrows, {len(cycles)} cycles, {len(upward)} upward arrows")
    for cycle in cycles:
        print("cycle:", " ".join(cycle))
    for a, b in upward:
        places = graph.arrows[(a, b)]
        print(f"up: {a} -> {b} ({len(places)} imports)")
        if args.verbose:
            for file, line in places:
                print(f"    {file}:{line}")


if __name__ == "__main__":
    main()
