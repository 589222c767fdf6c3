"""The documented "Everyday use" block, run as written on the fast profile, and what running a block takes.

The commands come from the page that documents them (docs/experiments.md, linked from README.md), so
when the page changes, this test follows it; what it checks is what the block's comments claim.
"Comparing experiments" is tests/test_readme_comparing.py's, so that the two run side by side.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.project import copy_project, dvc, ran_stages, set_params, tool_environment
from tests.test_pipeline import MODEL_STAGES

# The page that holds the experiment blocks (README.md links to it)
EXPERIMENTS_PAGE = REPO / "docs" / "experiments.md"


def readme_commands(section: str, page: Path = EXPERIMENTS_PAGE) -> list[str]:
    """The commands of the first bash block under `## <section>` of a documentation page, comments stripped."""
    text = page.read_text()
    body = text.split(f"\n## {section}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", body, flags=re.DOTALL).group(1)
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [command for command in commands if command and not command.startswith("source ")]


def run(project: Path, command: str) -> str:
    """One documented line in a shell, with the venv first on PATH (as `source .venv/bin/activate` gives)."""
    result = subprocess.run(command, shell=True, cwd=project, env=tool_environment(), capture_output=True, text=True)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def wait_for_queue(project: Path) -> None:
    deadline = time.monotonic() + 600
    while re.search(r"\b(Queued|Running)\b", dvc(project, "queue", "status")):
        assert time.monotonic() < deadline, "queued experiments did not finish in 10 minutes"
        time.sleep(10)  # each `dvc queue status` is a second of CPU taken from the experiments
    assert "Failed" not in dvc(project, "queue", "status")


def changed_params(project: Path, old: str, new: str) -> dict[str, tuple]:
    """{param: (old value, new value)} of `dvc params diff old new`."""
    diff = json.loads(dvc(project, "params", "diff", old, new, "--json")).get("params.yaml", {})
    return {name: (change["old"], change["new"]) for name, change in diff.items()}


def experiments(project: Path) -> dict[str, str]:
    """{experiment name: its git commit} of every experiment on the baseline."""
    baseline = json.loads(dvc(project, "exp", "show", "--json"))[1]
    return {experiment["name"]: experiment["revs"][0]["rev"] for experiment in baseline["experiments"] or []}


def fits_a_terminal(table: str, params_changed: int) -> bool:
    """docs/experiments.md: 160 columns for experiments changing one param, and a column more for each further one."""
    return max(len(line) for line in table.splitlines()) <= 160 + 18 * (params_changed - 1)


@pytest.fixture(scope="module")
def everyday_use(reproduced_project, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A project after "Everyday use" ran as written, and what each command printed."""
    project = copy_project(reproduced_project, tmp_path_factory.mktemp("everyday") / "project")
    set_params(project, {"predict": {"overlap": 0.125}})  # its `dvc repro` comes after an edit of params.yaml
    return project, {command: run(project, command) for command in readme_commands("Everyday use")}


@pytest.mark.slow
def test_everyday_use_does_what_its_comments_say(everyday_use):
    project, outputs = everyday_use
    # "reruns only what depends on the edit"; the card holds the test scores
    assert ran_stages(outputs["dvc repro"]) == {"predict", "evaluate", "plot", "card"}, outputs["dvc repro"]
    # "an experiment with one param changed": what reads the model reruns after training
    assert ran_stages(outputs["dvc exp run -S train.lr=0.0005"]) == set(MODEL_STAGES)
    shown = next(output for command, output in outputs.items() if command.startswith("dvc exp show"))
    assert fits_a_terminal(shown, params_changed=2), shown  # the edit of predict.overlap and the experiment's train.lr
    assert "miou_land" in outputs["dvc metrics show"]
    assert (project / "dvc_plots" / "index.html").exists()  # what `dvc plots show` writes
