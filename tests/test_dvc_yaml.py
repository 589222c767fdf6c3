"""dvc.yaml declares exactly what each stage uses, so DVC reruns a stage when, and only when, it must.

A stage's deps must list its script and every shared module it imports (directly or not), with the
`__init__.py` of the packages they sit in;
listing a module it does not import would rerun it needlessly. Its params must be exactly the
sections its script reads with read_section.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


# These packages hold nothing but their docstrings (checked below), so they are no stage's dependency.
ROOT_PACKAGES = (
    "stages",
    "landcover",
    *(f"landcover.{layer}" for layer in ("io", "data", "model", "evaluation", "training", "inference", "geo", "cli")),
)


def module_files(module: str) -> set[str]:
    """The file of a `landcover` module and the `__init__.py` of each package it sits in below the roots."""
    parts = module.split(".")
    files = set()
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        package = REPO / Path(*parts[:depth]) / "__init__.py"
        if package.exists():
            if name not in ROOT_PACKAGES:
                files.add(package.relative_to(REPO).as_posix())
        elif depth == len(parts):
            files.add("/".join(parts) + ".py")
    return files


def code_closure(script: Path) -> set[str]:
    """Paths of the library's modules (landcover) that `script` imports, transitively."""
    seen: set[str] = set()
    pending = [script]
    while pending:
        for module in imported_modules(pending.pop()):
            if module.startswith("landcover."):
                for path in module_files(module) - seen:
                    seen.add(path)
                    pending.append(REPO / path)
    return seen


def sections_read(script: Path) -> set[str]:
    return {
        node.args[1].value
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "read_section"
        and isinstance(node.args[1], ast.Constant)
    }


# `python -m stages.launch N stages.<name> ...`: the stage in N processes
LAUNCHED = re.compile(r"python -m stages\.launch \S+\s+stages\.(\w+)")


def stage_script(stage: dict) -> str:
    """`stages/<name>.py` for a stage whose command is `python -m stages.<name> ...` or is launched."""
    match = LAUNCHED.match(stage["cmd"]) or re.match(r"python -m stages\.(\w+)", stage["cmd"])
    return f"stages/{match.group(1)}.py"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_are_exactly_the_script_and_its_core_imports(name):
    """A launched stage depends on the launcher too: it decides how the stage's processes start."""
    stage = STAGES[name]
    script_path = stage_script(stage)
    launcher = {"stages/launch.py"} if LAUNCHED.match(stage["cmd"]) else set()
    code_deps = {dep for dep in stage["deps"] if dep.startswith(("stages/", "landcover/"))}
    assert code_deps == {script_path} | code_closure(REPO / script_path) | launcher


def test_the_launcher_imports_nothing_of_the_project():
    """Its deps entry is the file alone, and it stays light: it runs before every launched stage."""
    imported = imported_modules(REPO / "stages/launch.py")
    assert not [module for module in imported if module.startswith(("landcover", "stages", "torch"))], imported


def test_train_and_predict_start_through_the_launcher_with_their_processes_param():
    assert LAUNCHED.match(STAGES["train"]["cmd"]) and "launch ${train.processes} stages.train" in STAGES["train"]["cmd"]
    assert "launch ${predict.processes} stages.predict" in STAGES["predict"]["cmd"]


@pytest.mark.parametrize("package", ROOT_PACKAGES)
def test_root_packages_hold_only_a_docstring(package):
    """No stage lists them as a dependency, so code in them would change results without a rerun."""
    tree = ast.parse((REPO / Path(*package.split(".")) / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Constant)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_are_exactly_the_sections_the_script_reads(name):
    stage = STAGES[name]
    script = REPO / stage_script(stage)
    declared = {key.split(".")[0] for key in stage.get("params", []) if key != "data.raw"}
    assert declared == sections_read(script)
    # data.raw reaches a stage through its command line, never through read_section.
    assert ("data.raw" in stage.get("params", [])) == ("${data.raw}" in stage["cmd"])


def test_the_test_scores_and_their_interval_bounds_are_metrics_that_the_card_reads():
    """`dvc metrics show` prints the bounds as rows under test.json's columns: all three are metrics, committed."""
    evaluate, card = STAGES["evaluate"], STAGES["card"]
    bounds = ["metrics/test.json", "metrics/test_low.json", "metrics/test_high.json"]
    assert [next(iter(entry)) for entry in evaluate["metrics"]] == bounds
    assert all(entry[path] == {"cache": False} for entry, path in zip(evaluate["metrics"], bounds))
    outs = [next(iter(entry)) for entry in evaluate["outs"]]
    assert "metrics/test_intervals.json" in outs and not set(outs) & set(bounds)
    for path in [*bounds, "metrics/test_intervals.json"]:
        assert path in evaluate["cmd"] and path in card["cmd"] and path in card["deps"], path
