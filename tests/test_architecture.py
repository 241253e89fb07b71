"""The house rules of DESIGN.md, checked over the import graph of ``memories_geo``.

Every arrow points down the layers; no two modules import each other (directly or in a
longer cycle); no module imports another module's private names; accessors and the API
never touch backends or formats; formats never touch the catalog; the catalog never
reads data; no module is longer than 600 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "memories_geo"

#: Layer of each top-level module or package, bottom (0) to top. Arrows may only point
#: to the same or a lower layer; inside one layer the graph must have no cycle.
LAYERS: dict[str, int] = {
    **dict.fromkeys(
        ["errors", "types", "events", "keys", "kinds", "crs", "footprint", "query", "integrity",
         "records", "config", "_jsonvalue", "provenance", "entry", "examples", "options", "periodic",
         "progress", "display", "storage_policy", "lifecycle_policy", "operations", "units",
         "awaitable", "sqlite_wal"], 0),
    "backends": 1,
    "cache": 1,
    "formats": 2,
    "catalog": 3,
    "resolve": 4,
    **dict.fromkeys(["audit_log", "versions"], 5),
    **dict.fromkeys(["checkpoints", "lifecycle", "monitor", "stac"], 6),
    "memory": 7,
    **dict.fromkeys(["api", "aio", "storage"], 8),
    **dict.fromkeys(["accessors", "cli"], 9),
    **dict.fromkeys(["__init__", "testing"], 10),
}

#: (importer, imported) pairs of top-level parts that DESIGN.md forbids outright.
FORBIDDEN = {
    ("accessors", "backends"), ("accessors", "formats"),
    ("api", "backends"), ("api", "formats"), ("aio", "backends"), ("aio", "formats"),
    ("formats", "catalog"),
    ("catalog", "formats"), ("catalog", "backends"),
}

MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if MODULES[module].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, names, line)`` for every import of a ``memories_geo`` module."""
    tree = ast.parse(MODULES[module].read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("memories_geo")]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            if not target.startswith("memories_geo"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            if submodules:
                found += [(s, [], node.lineno) for s in submodules]
                names = [n for n in names if f"{target}.{n}" not in MODULES]
            if names or not submodules:
                found.append((target, names, node.lineno))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


EDGES = {m: _imports(m) for m in MODULES}


def test_every_part_has_a_layer():
    assert sorted({_part(m) for m in MODULES} - set(LAYERS)) == []


def upward_arrows(edges: dict[str, list[tuple[str, list[str], int]]]) -> list[str]:
    return [
        f"{m}:{line} imports {t}"
        for m, found in edges.items() for t, _, line in found
        if LAYERS.get(_part(t), -1) > LAYERS[_part(m)]
    ]


def test_no_arrow_runs_back_up():
    assert upward_arrows(EDGES) == []


def test_forbidden_arrows():
    bad = [
        f"{m}:{line} imports {t}"
        for m, edges in EDGES.items() for t, _, line in edges
        if (_part(m), _part(t)) in FORBIDDEN
    ]
    assert bad == []


def import_cycles(edges: dict[str, list[tuple[str, list[str], int]]]) -> list[list[str]]:
    graph = {m: {t for t, _, _ in found if t in edges and t != m} for m, found in edges.items()}
    # Importing a package runs its __init__, which may re-export its own submodules:
    # those arrows are not cycles of the design.
    graph = {m: {t for t in ts if m != ".".join(t.split(".")[:-1])} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle():
    assert import_cycles(EDGES) == []


def test_no_private_names_across_modules():
    bad = [
        f"{m}:{line} takes {names} from {t}"
        for m, edges in EDGES.items() for t, names, line in edges
        if t != m and any(n.startswith("_") and not n.startswith("__") for n in names)
    ]
    assert bad == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_small(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it into a package"


def test_the_checks_see_violations():
    """The graph is real (API -> Memory is seen) and the checks flag a planted cycle and upward arrow."""
    assert any(t == "memories_geo.memory" for t, _, _ in EDGES["memories_geo.api"])
    planted = {
        "memories_geo.catalog": [("memories_geo.memory", [], 1)],
        "memories_geo.memory": [("memories_geo.catalog", [], 2)],
    }
    assert upward_arrows(planted) == ["memories_geo.catalog:1 imports memories_geo.memory"]
    assert import_cycles(planted) == [["memories_geo.catalog", "memories_geo.memory"]]
