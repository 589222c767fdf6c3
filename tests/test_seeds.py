"""The spread of the test scores over training seeds: the summary (landcover/evaluation/seeds.py) on hand-made
numbers, the command that runs the seeds as queued DVC experiments (tools/seed_spread.py) on a one-stage project,
and `make seeds`' command end to end on the fast profile."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from landcover.evaluation.intervals import parse_region_confusions
from landcover.evaluation.metrics import HEADLINE
from landcover.evaluation.seeds import as_json, check_only_seeds_differ, markdown, spreads
from landcover.io.errors import PipelineError
from tests.conftest import REPO
from tests.project import copy_project, git, tool_environment
from tests.test_readme import changed_params, experiments
from tools import seed_spread


def scores(miou_land: float, **others: float) -> dict[str, float]:
    """A run's headline scores: miou_land as given, the others 0.5 unless given."""
    return {**dict.fromkeys(HEADLINE, 0.5), "miou_land": miou_land, **others}


def test_the_spread_of_three_runs_is_their_mean_sample_sd_min_and_max():
    runs = {"seed-1": scores(0.70, miou=0.1), "seed-2": scores(0.74, miou=0.2), "seed-3": scores(0.72, miou=0.6)}
    summary = spreads(runs)
    assert list(summary) == list(HEADLINE)
    land = summary["miou_land"]
    assert land.n == 3 and land.mean == pytest.approx(0.72) and (land.min, land.max) == (0.70, 0.74)
    assert land.sd == pytest.approx(0.02)  # sqrt((0.02² + 0.02² + 0) / (3 - 1)): the sample sd, n - 1
    assert summary["miou"].mean == pytest.approx(0.3)  # not the median, 0.2
    assert summary["miou"].sd == pytest.approx(math.sqrt(((0.1 - 0.3) ** 2 + (0.2 - 0.3) ** 2 + 0.3**2) / 2))
    assert summary["mean_dice"].sd == 0 and summary["mean_dice"].mean == 0.5


def test_the_table_and_the_json_show_each_metric_and_each_run():
    runs = {"seed-1": scores(0.70), "seed-2": scores(0.74)}
    summary = spreads(runs)
    table = markdown(summary, list(runs))
    assert "2 runs that differ only in train.seed (seed-1, seed-2)" in table
    assert "| miou_land | 2 | 0.7200 | 0.0283 | 0.7000 | 0.7400 |" in table
    assert len(re.findall(r"^\| \w+ \| 2 \|", table, flags=re.MULTILINE)) == len(HEADLINE)
    report = json.loads(json.dumps(as_json(summary, runs, {"seed-1": {"train.seed": 1}})))
    assert (
        report["runs"]["seed-1"] == {"train.seed": 1, **runs["seed-1"]} and report["runs"]["seed-2"] == runs["seed-2"]
    )
    expected = {"n": 2, "mean": 0.72, "sd": 0.0283, "min": 0.7, "max": 0.74}
    assert report["spread"]["miou_land"] == pytest.approx(expected, abs=1e-4)


def test_one_run_has_no_standard_deviation_and_says_so():
    summary = spreads({"seed-1": scores(0.7)})
    assert summary["miou_land"].sd is None and summary["miou_land"].mean == summary["miou_land"].min == 0.7
    table = markdown(summary, ["seed-1"])
    assert "One run has no spread" in table and "| miou_land | 1 | 0.7000 | - | 0.7000 | 0.7000 |" in table
    report = json.dumps(as_json(summary, {"seed-1": scores(0.7)}))
    assert '"sd": null' in report and "NaN" not in report  # JSON has no NaN: null, and the file says why


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (None, "seed-2: its test score mean_dice is missing"),
        (float("nan"), "mean_dice is nan, not a finite number"),
        ("0.7", "mean_dice is '0.7', not a number"),
        (True, "mean_dice is True, not a number"),
    ],
)
def test_a_run_without_a_score_is_named_with_the_score(value, said):
    broken = scores(0.7)
    if value is None:
        del broken["mean_dice"]
    else:
        broken["mean_dice"] = value
    with pytest.raises(PipelineError, match=re.escape(said)):
        spreads({"seed-1": scores(0.7), "seed-2": broken})


def test_no_runs_is_an_error():
    with pytest.raises(PipelineError, match="no runs"):
        spreads({})


def test_runs_must_differ_in_the_seed_alone_and_each_have_their_own():
    def params(seed: int, lr: float = 0.003) -> dict:
        return {"split": {"seed": 42}, "train": {"seed": seed, "lr": lr}}

    check_only_seeds_differ({"seed-1": params(1), "seed-2": params(2), "seed-3": params(3)})
    with pytest.raises(PipelineError, match=r"seed-1 and lr-low differ in train\.lr, not only in train\.seed"):
        check_only_seeds_differ({"seed-1": params(1), "lr-low": params(2, lr=0.001)})
    with pytest.raises(PipelineError, match=r"differ in split\.seed"):
        check_only_seeds_differ({"seed-1": params(1), "other-split": {**params(2), "split": {"seed": 1}}})
    with pytest.raises(PipelineError, match=r"seed-1 and again have the same train\.seed \(1\)"):
        check_only_seeds_differ({"seed-1": params(1), "seed-2": params(2), "again": params(1)})


def test_the_queue_status_is_read_task_by_task(monkeypatch):
    status = (
        "Task     Name     Created    Status\n"
        "a5c6f5c  seed-13  06:40 PM   Queued\n"
        "3ca0b92  seed-13  Dec 07, 2025   Failed\n"
        "abff44c  seed-1   06:39 PM   Success\n"
        "\nWorker status: 1 active, 0 idle\n"
    )
    monkeypatch.setattr(seed_spread, "dvc", lambda *args: status)
    assert seed_spread.queue_tasks() == {
        "a5c6f5c": ("seed-13", "Queued"),
        "3ca0b92": ("seed-13", "Failed"),
        "abff44c": ("seed-1", "Success"),
    }


def test_the_command_refuses_to_set_the_seed_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside any repository: were the check gone, nothing could be queued
    with pytest.raises(PipelineError, match="--set train.seed=3: give KEY=VALUE for a param other than train.seed"):
        seed_spread.main(["--seeds", "2", "--set", "train.seed=3"])


def test_make_seeds_runs_the_command_over_n_seeds():
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^seeds: .*\n\t(.*)\n", makefile, flags=re.MULTILINE).group(1)
    assert recipe == "$(BIN)/python -m tools.seed_spread --seeds $(N) --json metrics/seeds.json $(SEEDS_ARGS)"
    assert re.search(r"^N \?= 5$", makefile, flags=re.MULTILINE)


# A one-stage project whose "test scores" follow train.seed, and whose seed 13 fails: the queue driven for real.
TRAIN = """\
import json, random, yaml
seed = yaml.safe_load(open("params.yaml"))["train"]["seed"]
assert seed != 13, "seed 13 fails"
scores = random.Random(seed)
json.dump({key: scores.random() for key in %r}, open("metrics/test.json", "w"))
""" % (HEADLINE,)  # noqa: UP031 (the braces of the script stay as they are)


@pytest.fixture
def tiny_project(tmp_path, monkeypatch) -> Path:
    project = tmp_path / "project"
    (project / "metrics").mkdir(parents=True)
    (project / "train.py").write_text(TRAIN)
    (project / "params.yaml").write_text("train:\n  seed: 7\n  lr: 0.1\n")
    (project / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python train.py\n    deps: [train.py]\n    params: [train]\n"
        "    metrics:\n      - metrics/test.json:\n          cache: false\n"
    )
    for name, value in tool_environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(project)
    git(project, "init", "-q")
    subprocess.run([seed_spread.DVC, "init", "-q"], check=True)
    subprocess.run([seed_spread.DVC, "repro", "-q"], check=True)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "baseline")
    monkeypatch.setattr(seed_spread, "POLL_S", 1)
    return project


@pytest.mark.slow
def test_the_command_queues_the_seeds_and_names_the_one_that_failed(tiny_project, capsys):
    with pytest.raises(PipelineError) as failed:
        seed_spread.main(["--seeds", "3", "--first-seed", "12", "--set", "train.lr=0.2"])
    message = str(failed.value)
    assert re.fullmatch(
        r"1 of 3 seeds failed: seed-13 \(Failed; its log: dvc queue logs \w{7}\); "
        r"summarise the others with --experiments seed-12 seed-14",
        message,
    ), message
    progress = capsys.readouterr().err
    assert re.search(r"seed-12 finished: miou_land 0\.\d{4}; \d of 3 done", progress), progress
    assert "seed-13 failed" in progress and "train.seed 12 to 14; train.lr=0.2" in progress
    assert yaml.safe_load((tiny_project / "params.yaml").read_text())["train"] == {"seed": 7, "lr": 0.1}  # untouched

    seed_spread.main(["--experiments", "seed-12", "seed-14", "--json", "seeds.json", "--markdown", "seeds.md"])
    report = json.loads((tiny_project / "seeds.json").read_text())
    assert {run: values["train.seed"] for run, values in report["runs"].items()} == {"seed-12": 12, "seed-14": 14}
    for values in report["runs"].values():  # --set reached every seed
        assert yaml.safe_load(git(tiny_project, "show", f"{values['commit']}:params.yaml"))["train"]["lr"] == 0.2
    assert report["spread"]["miou_land"]["n"] == 2
    assert (tiny_project / "seeds.md").read_text() in capsys.readouterr().out

    with pytest.raises(PipelineError, match="seed-12, seed-14: already run or queued on this commit"):
        seed_spread.main(["--seeds", "3", "--first-seed", "12"])
    with pytest.raises(PipelineError, match="seed-12 and HEAD differ in train.lr, not only in train.seed"):
        seed_spread.main(["--experiments", "seed-12", "HEAD"])


@pytest.mark.slow
def test_make_seeds_command_runs_two_seeds_on_the_fast_profile(reproduced_project, tmp_path):
    """The command `make seeds` runs, over 2 seeds: two experiments differing in train.seed alone, scored on the
    same test images, summarised; the workspace left as it was."""
    project = copy_project(reproduced_project, tmp_path / "project")
    command = [sys.executable, "-m", "tools.seed_spread", "--seeds", "2", "--json", "metrics/seeds.json"]
    result = subprocess.run(command, cwd=project, env=tool_environment(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"^seed-\d finished: miou_land 0\.\d{4}; \d of 2 done", result.stderr, re.MULTILINE)) == 2

    named = experiments(project)
    assert set(named) == {"seed-1", "seed-2"}, named
    assert changed_params(project, named["seed-1"], named["seed-2"]) == {"train.seed": (1, 2)}
    test_images = [
        set(parse_region_confusions(git(project, "show", f"{commit}:metrics/confusion_per_image.json"), name)[1])
        for name, commit in named.items()
    ]
    assert test_images[0] == test_images[1] and test_images[0]  # split.seed stays: the same test images

    report = json.loads((project / "metrics" / "seeds.json").read_text())
    assert {run: values["train.seed"] for run, values in report["runs"].items()} == {"seed-1": 1, "seed-2": 2}
    for metric in HEADLINE:
        spread = report["spread"][metric]
        assert spread["n"] == 2 and spread["min"] <= spread["mean"] <= spread["max"], (metric, spread)
        assert {spread["min"], spread["max"]} <= {values[metric] for values in report["runs"].values()}
    assert "| miou_land | 2 |" in result.stdout
    # queued experiments run in copies: the workspace holds only the summary it was asked for (new, or the
    # committed one rewritten)
    assert [line[3:] for line in git(project, "status", "--porcelain").splitlines()] == ["metrics/seeds.json"]
