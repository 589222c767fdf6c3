"""The documented "Everyday use" and "Comparing experiments" blocks, run as written on the fast profile.

The commands come from the page that documents them (docs/experiments.md, linked from README.md), so
when the page changes, this test follows it; what it checks is what the blocks' comments claim.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import REPO
from tests.test_pipeline import as_sections, copy_repository, dvc, fast_profile, git, set_params

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
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    result = subprocess.run(command, shell=True, cwd=project, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def wait_for_queue(project: Path) -> None:
    deadline = time.monotonic() + 600
    while re.search(r"\b(Queued|Running)\b", dvc(project, "queue", "status")):
        assert time.monotonic() < deadline, "queued experiments did not finish in 10 minutes"
        time.sleep(2)
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


def test_readme_experiment_commands_do_what_their_comments_say(tmp_path_factory):
    project = copy_repository(tmp_path_factory.mktemp("readme"))
    set_params(project, as_sections(fast_profile()))
    dvc(project, "repro")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "fast profile as the baseline")
    baseline = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()

    # "Everyday use": its `dvc repro` comes after an edit of params.yaml
    set_params(project, {"predict": {"overlap": 0.125}})
    for command in readme_commands("Everyday use"):
        output = run(project, command)
        if command == "dvc repro":  # "reruns only what depends on the edit"
            ran = set(re.findall(r"Running stage '(\w+)'", output))
            assert ran == {"predict", "evaluate", "plot", "card"}, output  # the card holds the test scores
        if command.startswith("dvc exp show"):  # the edit of predict.overlap and the experiment's train.lr
            assert fits_a_terminal(output, params_changed=2), output
        if command == "dvc plots show":
            assert (project / "dvc_plots" / "index.html").exists()

    # "Comparing experiments": each variant differs from the baseline in its own override only,
    # although "Everyday use" left its own edits and override in params.yaml
    commands = readme_commands("Comparing experiments")
    for command in commands:
        output = run(project, command)
        if command.startswith("dvc queue start"):
            wait_for_queue(project)  # what `dvc queue status` is repeated for
        if command.startswith("dvc params diff"):  # "what was changed: train.lr and train.loss"
            assert re.findall(r"train\.\w+", output) and set(re.findall(r"train\.\w+", output)) == {
                "train.lr",
                "train.loss",
            }
        if command.startswith("dvc exp show"):
            assert fits_a_terminal(output, params_changed=3), output  # the workspace's overlap, lr, loss
            assert "lr-low" in output and "loss-ce" in output and "train.lr" in output and "train.loss" in output
    assert "dvc exp apply lr-low" in commands
    named = experiments(project)
    assert changed_params(project, baseline, named["lr-low"]) == {"train.lr": (0.003, 0.001)}
    assert changed_params(project, baseline, named["loss-ce"]) == {"train.loss": ("dice_ce", "ce")}
    others = [
        changed_params(project, baseline, rev) for name, rev in named.items() if name not in ("lr-low", "loss-ce")
    ]
    # Everyday's plain `dvc exp run -S train.lr=0.0005` also carries the edit made before it; the
    # grid's two differ from the baseline in train.lr alone
    grid = [changes for changes in others if "predict.overlap" not in changes]
    assert sorted(changes["train.lr"][1] for changes in grid) == [0.0003, 0.001] and all(
        set(changes) == {"train.lr"} for changes in grid
    ), others
    # `dvc exp apply lr-low` ran last: the workspace holds its params, and params.yaml differs from
    # the baseline's in that line alone (`-S` rewrites the file: every value must round-trip)
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["lr"] == 0.001
    diff = subprocess.run(
        ["git", "diff", "-U0", baseline, "--", "params.yaml"], cwd=project, capture_output=True, text=True, check=True
    ).stdout
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(changed) == 2 and all(re.match(r"[+-]\s+lr: ", line) for line in changed), diff
    assert (project / "compare" / "index.html").exists()
