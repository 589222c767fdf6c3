"""The CI pieces agree: the GitHub workflow runs the same script as CI here, with what DVC needs."""
from __future__ import annotations

import json
import subprocess
import sys

import yaml

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "experiments.yml"


def load_workflow() -> dict:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def test_workflow_runs_ci_on_pull_requests_with_full_history():
    workflow = load_workflow()
    assert "pull_request" in workflow["on"]
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    runs = [step.get("run", "") for step in steps]
    assert any(run.strip() == "bash .ci/run" for run in runs)
    assert any("git config --global user.email" in run for run in runs)  # experiment commits need one
    comment = next(step for step in steps if "gh pr comment" in step.get("run", ""))
    report = next(step for step in steps if step.get("run", "").strip() == "bash .ci/run")["env"]["EXPERIMENT_REPORT"]
    assert report.split("/")[-1] in comment["run"]
    assert workflow["permissions"]["pull-requests"] == "write"


def test_ci_runs_the_tests_then_the_experiment_comparison():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert lines.index("make test") < next(i for i, line in enumerate(lines) if line.startswith("bash .ci/experiments"))


def test_headline_check_refuses_missing_and_non_finite_metrics(tmp_path):
    check = REPO / ".ci" / "check_headline.py"
    good = {"miou_land": 0.5, "miou": 0.4, "mean_dice": 0.6, "pixel_accuracy": 0.9}
    cases = {"good": (good, 0, ""), "nan": ({**good, "miou_land": float("nan")}, 1, "miou_land is nan"),
             "missing": ({k: v for k, v in good.items() if k != "mean_dice"}, 1, "mean_dice is None")}
    for name, (metrics, code, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(metrics))
        result = subprocess.run([sys.executable, str(check), name, str(path)], capture_output=True, text=True)
        assert result.returncode == code, name
        assert message in result.stderr
    result = subprocess.run([sys.executable, str(check), "gone", str(tmp_path / "none.json")],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "none.json is missing" in result.stderr
