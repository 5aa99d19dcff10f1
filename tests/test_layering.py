"""The packages of elfctl form layers: no package imports another that imports it back, directly or round a cycle.

Read from the source with ``ast`` (lazy imports inside functions count too), so a new back-edge fails here before it
becomes an import-order bug. Top-level modules (``elfctl/config.py``, ``elfctl/family.py``, ...) are shared ground and
not part of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import elfctl

ROOT = Path(elfctl.__file__).parent
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())


def _imported_names(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def package_graph() -> dict[str, set[str]]:
    """package -> the other packages of elfctl its modules import."""
    graph: dict[str, set[str]] = {name: set() for name in PACKAGES}
    for name in PACKAGES:
        for path in (ROOT / name).rglob("*.py"):
            for imported in _imported_names(ast.parse(path.read_text(encoding="utf-8"))):
                parts = imported.split(".")
                if parts[0] == "elfctl" and len(parts) > 1 and parts[1] in graph and parts[1] != name:
                    graph[name].add(parts[1])
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph as a path [a, b, ..., a], or [] when it is acyclic."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_the_package_graph_is_read_from_the_source():
    graph = package_graph()
    assert {"commands", "train", "sampling", "data", "rundir"} <= set(graph)
    assert "train" in graph["commands"] and "rundir" in graph["train"]  # edges are seen, lazy imports included


def test_no_two_packages_import_each_other():
    graph = package_graph()
    pairs = sorted((a, b) for a in graph for b in graph[a] if a < b and a in graph[b])
    assert pairs == [], f"packages importing each other: {pairs}"


def test_no_cycle_among_packages():
    assert find_cycle(package_graph()) == []


def test_find_cycle_finds_a_three_package_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_run_directory_and_data_layers_import_no_other_package():
    graph = package_graph()
    assert graph["rundir"] == set()
    assert graph["data"] <= {"rundir"}
