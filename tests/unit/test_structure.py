"""The tooling's shape: no import cycle between its modules (imports inside functions included), none between the
tools' packages either (they are layers: a lower one never imports a higher one), and no two modules or classes of
the same name."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("iris_tools", "shared")
SAME_ROLE = {"__init__", "__main__", "errors"}  # each package's own entry, front and error ladder


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        found |= {name for name in names if name in known}
    return found


def cycles_of(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                cycles.append(trail[trail.index(other):] + [other] if other in trail else [name, other])
            elif other not in state:
                visit(other, [*trail, other])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return cycles


def test_no_module_imports_itself_through_others() -> None:
    known = modules()
    assert cycles_of({name: imports(path, set(known)) - {name} for name, path in known.items()}) == []


def layer(module: str) -> str:
    """A module's layer: its package below iris_tools (iris_tools.rollout.walk: iris_tools.rollout), or the
    module itself for one that stands alone (iris_tools.environment, shared.*'s package)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def test_the_tools_packages_are_layers_no_lower_one_imports_a_higher_one() -> None:
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        graph.setdefault(layer(name), set()).update(layer(other) for other in imports(path, set(known)))
    for name, others in graph.items():
        others.discard(name)
    assert cycles_of(graph) == []


def test_no_two_modules_or_classes_share_a_name() -> None:
    known = modules()
    stems = Counter(path.stem for path in known.values() if path.stem not in SAME_ROLE)
    classes = Counter(node.name for path in known.values()
                      for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef))
    assert [stem for stem, count in stems.items() if count > 1] == []
    assert [name for name, count in classes.items() if count > 1] == []
