"""The documented "Comparing experiments" block, run as written on the fast profile (tests/test_readme.py
runs "Everyday use"; both come from docs/experiments.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.browser import undrawn_plots
from tests.project import copy_project, git, set_params
from tests.test_readme import changed_params, experiments, fits_a_terminal, readme_commands, run, wait_for_queue

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def comparing(reproduced_project, tmp_path_factory) -> tuple[Path, str, dict[str, str]]:
    """A project after "Comparing experiments" ran as written, the commit it started from, and what each
    command printed."""
    project = copy_project(reproduced_project, tmp_path_factory.mktemp("comparing") / "project")
    baseline = git(project, "rev-parse", "HEAD").strip()
    # what "Everyday use" leaves in params.yaml (an edit, and its plain `dvc exp run -S`'s override):
    # the block's first command discards it
    set_params(project, {"predict": {"overlap": 0.125}, "train": {"lr": 0.0005}})
    outputs = {}
    for command in readme_commands("Comparing experiments"):
        outputs[command] = run(project, command)
        if command.startswith("dvc queue start"):
            wait_for_queue(project)  # what `dvc queue status` is repeated for
    return project, baseline, outputs


def test_comparing_experiments_does_what_its_comments_say(comparing):
    """Each variant differs from the baseline in its own override only, although params.yaml held other edits."""
    project, baseline, outputs = comparing
    for command, output in outputs.items():
        if command.startswith("dvc params diff"):  # "what was changed: train.lr and train.loss"
            assert re.findall(r"train\.\w+", output) and set(re.findall(r"train\.\w+", output)) == {
                "train.lr",
                "train.loss",
            }
        if command == "dvc queue status":  # the queued experiment, watched by its name
            assert "loss-ce" in output, output
        if command.startswith("dvc exp show"):
            assert fits_a_terminal(output, params_changed=2), output  # train.lr and train.loss
            assert "lr-low" in output and "loss-ce" in output and "train.lr" in output and "train.loss" in output
    assert list(outputs)[-1] == "dvc exp apply lr-low"
    named = experiments(project)
    assert set(named) == {"lr-low", "loss-ce"}, named
    assert changed_params(project, baseline, named["lr-low"]) == {"train.lr": (0.003, 0.001)}
    assert changed_params(project, baseline, named["loss-ce"]) == {"train.loss": ("dice_ce", "ce")}
    # `dvc exp apply lr-low` ran last: the workspace holds its params, and params.yaml differs from
    # the baseline's in that line alone (`-S` rewrites the file: every value must round-trip)
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["lr"] == 0.001
    diff = git(project, "diff", "-U0", baseline, "--", "params.yaml")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert len(changed) == 2 and all(re.match(r"[+-]\s+lr: ", line) for line in changed), diff


def test_the_comparison_page_of_two_experiments_renders_in_a_browser(comparing, browser):
    """`dvc plots diff lr-low loss-ce -o compare`: a chart draws both; each picture is there once per experiment."""
    project, _, _ = comparing
    charts, images, problems = undrawn_plots(project / "compare" / "index.html", browser)
    assert charts == 4 and images == 14 and problems == []  # seven pictures (plots/model and plots/data), twice
