"""The core's packages are layers: each imports only the layers beneath it, and no module imports in a circle.

The order is the one landcover/__init__.py draws; a new import that points upward (say, data
importing model) fails here, as does any cycle among the repository's modules, benchmarks included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# Lowest first; a layer may import any layer listed before it, never one after it.
LAYERS = ("io", "data", "model", "evaluation", "training", "inference", "geo", "region", "synthetic", "viewer", "cli")
# Layers on one level that must not import each other.
PEERS = {
    ("evaluation", "inference"),
    ("training", "inference"),
    ("training", "geo"),
    ("training", "region"),
    ("region", "synthetic"),
    ("synthetic", "viewer"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def repository_modules() -> dict[str, Path]:
    paths = [
        p for folder in ("landcover", "stages", "benchmarks", "tools", "tests") for p in (REPO / folder).rglob("*.py")
    ]
    return {module_name(path): path for path in paths}


def imports_of(path: Path, package: str, modules: dict[str, Path]) -> set[str]:
    """The repository modules `path` imports (anywhere in it: inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in candidates if name in modules)
    return found


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "landcover" else None


MODULES = repository_modules()
GRAPH = {
    name: imports_of(path, name if path.name == "__init__.py" else name.rpartition(".")[0], MODULES) - {name}
    for name, path in MODULES.items()
}


def test_every_core_module_sits_in_a_layer():
    loose = [
        name
        for name in MODULES
        if name.startswith("landcover.") and name.count(".") == 1 and name.split(".")[1] not in LAYERS
    ]
    assert loose == []


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_imports_only_layers_beneath_it(layer):
    allowed = set(LAYERS[: LAYERS.index(layer) + 1]) - {
        peer for pair in PEERS if layer in pair for peer in pair if peer != layer
    }
    upward = sorted(
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if layer_of(name) == layer
        for target in targets
        if layer_of(target) not in allowed | {None}
    )
    assert upward == []


def test_the_core_imports_no_stage_script_benchmark_or_test():
    outward = sorted(
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if name.startswith("landcover.")
        for target in targets
        if not target.startswith("landcover.")
    )
    assert outward == []


def test_no_import_cycle_anywhere():
    """Depth-first search for a back edge over every module of the repository."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycles.append(
                    " -> ".join(path[path.index(target) :] + [name, target])
                    if target in path
                    else f"{name} -> {target}"
                )
            elif target not in state:
                visit(target, path + [name])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [])
    assert cycles == []


def test_no_function_in_stages_is_over_50_lines():
    """A function that long holds several decisions: split it (stage scripts and the core alike)."""
    long = []
    for path in sorted((REPO / "stages").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 50:
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert long == []
