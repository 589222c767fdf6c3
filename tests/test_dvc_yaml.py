"""dvc.yaml declares exactly what each stage uses, so DVC reruns a stage when, and only when, it must.

A stage's deps must list its script and every shared-core module it imports (directly or not);
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


def core_closure(script: Path) -> set[str]:
    """Paths of the stages.core modules that `script` imports, transitively."""
    seen: set[str] = set()
    pending = [script]
    while pending:
        for module in imported_modules(pending.pop()):
            if module.startswith("stages.core.") and module not in seen:
                seen.add(module)
                pending.append(REPO / (module.replace(".", "/") + ".py"))
    return {module.replace(".", "/") + ".py" for module in seen}


def sections_read(script: Path) -> set[str]:
    return {node.args[1].value for node in ast.walk(ast.parse(script.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "read_section"
            and isinstance(node.args[1], ast.Constant)}


def stage_script(stage: dict) -> str:
    """`stages/<name>.py` for a stage whose command is `python -m stages.<name> ...`."""
    return "stages/{}.py".format(re.match(r"python -m stages\.(\w+)", stage["cmd"]).group(1))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_are_exactly_the_script_and_its_core_imports(name):
    stage = STAGES[name]
    script_path = stage_script(stage)
    code_deps = {dep for dep in stage["deps"] if dep.startswith("stages/")}
    assert code_deps == {script_path} | core_closure(REPO / script_path)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_are_exactly_the_sections_the_script_reads(name):
    stage = STAGES[name]
    script = REPO / stage_script(stage)
    declared = {key.split(".")[0] for key in stage.get("params", []) if key != "data.raw"}
    assert declared == sections_read(script)
    # data.raw reaches a stage through its command line, never through read_section.
    assert ("data.raw" in stage.get("params", [])) == ("${data.raw}" in stage["cmd"])
