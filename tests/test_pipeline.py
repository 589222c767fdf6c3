"""End to end: the real `dvc` on a tiny sample, in a temporary copy of the repository.

The fast profile of .ci/fast-profile (64-pixel images, 32-pixel tiles, resnet18, one epoch) keeps
each full run to tens of seconds; the checks are the ones a user relies on: outputs appear, a second repro does nothing,
editing a param reruns exactly the stages that read it, and reruns reproduce dvc.lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.core.data.palette import IGNORE_INDEX
from stages.core.data.tilestore import TileStore, read_index, whole_images
from stages.core.evaluation.metrics import read_confusion_csv
from stages.core.io.imageio import read_index_png
from stages.core.model.checkpoint import read_history
from stages.plot import summary as plot_summary
from tests.browser import find_browser, undrawn_plots
from tests.conftest import REPO

FAST_PROFILE = REPO / ".ci" / "fast-profile"


def fast_profile() -> list[str]:
    """The `key=value` overrides of .ci/fast-profile, which CI's experiment comparison uses too."""
    lines = (line.strip() for line in FAST_PROFILE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def as_sections(overrides: list[str]) -> dict:
    """`train.lr=0.001` lines as nested {"train": {"lr": 0.001}} updates."""
    sections: dict = {}
    for override in overrides:
        key, value = override.split("=", 1)
        *parents, leaf = key.split(".")
        node = sections
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = yaml.safe_load(value)
    return sections


DATA_STAGES = ("sample", "tile", "encode", "split")
MODEL_STAGES = ("train", "export", "predict", "evaluate", "plot", "card")


def set_params(project: Path, sections: dict) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())

    def merge(target: dict, updates: dict) -> None:
        for key, value in updates.items():
            if isinstance(value, dict):
                merge(target[key], value)
            else:
                target[key] = value

    merge(params, sections)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def dvc(project: Path, *args: str) -> str:
    """Run the venv's dvc in `project`; fail the test with its output if it fails."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=project,
        check=True,
        capture_output=True,
    )


def copy_repository(destination: Path) -> Path:
    """The working tree as git would see it (tracked and untracked, nothing ignored), as a fresh repo."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name)
    for path in [destination / "dvc.lock", *destination.glob("metrics/**/*"), *destination.glob("plots/**/*")]:
        if path.is_file():  # start from scratch, as on a fresh clone with nothing reproduced yet
            path.unlink()
    # A clone has history, and DVCLive needs a commit to find its baseline.
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy of the repository"]):
        git(destination, *command)
    return destination


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_repository(tmp_path_factory.mktemp("repo"))
    set_params(project, as_sections(fast_profile()))
    return project


def stages_to_run(project: Path) -> set[str]:
    """Names of the stages that `dvc status` reports as changed."""
    status = json.loads(dvc(project, "status", "--json"))
    return set(status)


def test_repro_split_builds_the_data_half(project):
    dvc(project, "repro", "split")
    tiles = (project / "data/tiles/index.csv").read_text().splitlines()
    assert tiles[0].startswith("tile,image_id,y,x") and len(tiles) == 1 + 8 * 4  # 8 images of 2x2 tiles
    assert len(list((project / "data/encoded/masks").glob("*.png"))) == 8  # one class mask per image
    distribution = json.loads((project / "metrics/class_distribution.json").read_text())
    assert {name: distribution[name]["images"] for name in ("train", "val", "test")} == {
        "train": 4,
        "val": 2,
        "test": 2,
    }
    assert "Data and pipelines are up to date" in dvc(project, "status", "split")
    assert "didn't change" in dvc(project, "repro", "split")


def test_full_pipeline_outputs_every_declared_output_and_metric(project):
    dvc(project, "repro")
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            assert (project / path).exists(), path
    assert len(list((project / "data/predictions").glob("*_colour.png"))) == 2
    assert stages_to_run(project) == set()


def test_evaluate_scores_the_predictions_against_the_test_masks(project):
    """The metrics files hold the scores of the written predictions, recomputed here from scratch."""
    dvc(project, "repro")
    store = TileStore(project / "data/tiles", project / "data/encoded")
    names = store.class_table().names
    confusion = np.zeros((len(names), len(names)), dtype=np.int64)
    test_records = read_index(project / "data/splits/test.csv")
    for image_id, truth in whole_images(test_records, store.whole_class_mask):
        predicted = read_index_png(project / "data/predictions" / f"{image_id}.png")
        scored = truth != IGNORE_INDEX
        np.add.at(confusion, (truth[scored], predicted[scored]), 1)
    written, written_names = read_confusion_csv(project / "metrics/confusion.csv")
    assert written_names == names
    np.testing.assert_array_equal(written, confusion)
    assert confusion.sum() > 0.9 * 2 * 64 * 64  # two 64 px test images, few ignored pixels

    iou = {
        name: confusion[k, k] / (confusion[k].sum() + confusion[:, k].sum() - confusion[k, k])
        for k, name in enumerate(names)
        if confusion[k].sum() + confusion[:, k].sum()
    }
    test = json.loads((project / "metrics/test.json").read_text())
    assert list(test) == ["miou_land", "miou", "mean_dice", "pixel_accuracy"]
    assert test["miou_land"] == pytest.approx(np.mean([value for name, value in iou.items() if name != "unknown"]))
    assert test["miou"] == pytest.approx(np.mean(list(iou.values())))
    assert test["pixel_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    details = json.loads((project / "metrics/test_details.json").read_text())
    assert details["images"] == 2 and details["pixels"] == confusion.sum()
    assert {name: value for name, value in details["iou"].items() if value is not None} == pytest.approx(iou)
    assert [name for name, value in details["iou"].items() if value is None] == [
        name for name in names if name not in iou
    ]
    dice = [2 * value / (1 + value) for value in iou.values()]  # Dice = 2 IoU / (1 + IoU), class by class
    assert test["mean_dice"] == pytest.approx(np.mean(dice))


def test_summary_sets_train_and_val_at_the_best_epoch_beside_the_test_scores(project):
    dvc(project, "repro")
    summary = json.loads((project / "metrics/summary.json").read_text())
    history = read_history(project / "models/best.pt")
    assert summary["best_epoch"] == len(history) == 1  # the fast profile trains one epoch
    for split in ("train", "val"):
        assert set(summary[split]) == {"miou_land", "mean_dice"}
        for name in ("miou_land", "mean_dice"):
            assert summary[split][name] == round(history[-1][split][name], 6)
            assert 0 <= summary[split][name] <= 1
    logged = json.loads((project / "metrics/train/metrics.json").read_text())
    assert logged["val"]["miou_land"] == summary["val"]["miou_land"]


def test_summary_takes_the_epoch_best_pt_was_saved_at():
    epochs = [
        {"train": {"miou_land": 0.1 * k, "mean_dice": 0.2 * k}, "val": {"miou_land": 0.3 * k, "mean_dice": None}}
        for k in (1, 2)
    ]
    assert plot_summary(epochs) == {
        "best_epoch": 2,
        "train": {"miou_land": 0.2, "mean_dice": 0.4},
        "val": {"miou_land": 0.6, "mean_dice": None},
    }
    assert plot_summary(epochs[:1])["best_epoch"] == 1


def test_dvc_metrics_show_fits_a_160_column_terminal_and_details_stay_reachable(project):
    dvc(project, "repro")
    shown = dvc(project, "metrics", "show")
    assert max(len(line) for line in shown.splitlines()) <= 160, shown
    assert "miou_land" in shown and "val.miou_land" in shown
    # the details are not declared as metrics, but docs/experiments.md's command shows them (a class absent
    # from the tiny test split is null in the file, and DVC leaves it out: check a present one)
    details = dvc(project, "metrics", "show", "metrics/test_details.json")
    assert "iou.agriculture_land" in details and "fw_iou" in details


def stages_run_by_repro(project: Path) -> set[str]:
    output = dvc(project, "repro")
    return {stage for stage in (*DATA_STAGES, "preview", *MODEL_STAGES) if f"Running stage '{stage}'" in output}


def test_editing_a_param_reruns_only_the_stages_that_read_it(project):
    dvc(project, "repro")
    set_params(project, {"train": {"lr": 0.002}})
    # dvc status names the stage whose params changed; its downstream stages rerun when its outputs change
    assert stages_to_run(project) == {"train"}
    assert stages_run_by_repro(project) == set(MODEL_STAGES)
    set_params(project, {"augment": {"scale_min": 0.6}})
    assert stages_to_run(project) == {"preview", "train"}
    assert stages_run_by_repro(project) == {"preview", *MODEL_STAGES}
    set_params(project, {"predict": {"overlap": 0.125}})
    assert stages_run_by_repro(project) == {"predict", "evaluate", "plot", "card"}
    set_params(project, {"export": {"calibration_tiles": 8}})  # a new int8 model: what uses it reruns
    ran = stages_run_by_repro(project)
    assert {"export", "predict", "card"} <= ran and "train" not in ran


def lock_outputs(project: Path) -> dict[str, str]:
    """Every stage output's md5, as dvc.lock records it."""
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}


def test_going_back_to_earlier_params_restores_train_from_the_run_cache(project):
    dvc(project, "repro")
    params = (project / "params.yaml").read_text()
    before = lock_outputs(project)
    set_params(project, {"train": {"resume": not yaml.safe_load(params)["train"]["resume"]}})
    assert stages_to_run(project) == set()  # train.resume changes no result, so it is no reason to rerun
    (project / "params.yaml").write_text(params)
    set_params(project, {"train": {"lr": 0.0015}})
    assert stages_run_by_repro(project) == set(MODEL_STAGES)
    assert lock_outputs(project)["models/best.pt"] != before["models/best.pt"]
    (project / "params.yaml").write_text(params)
    output = dvc(project, "repro")
    assert "Stage 'train' is cached - skipping run" in output and "Running stage 'train'" not in output, output
    assert lock_outputs(project) == before
    assert hashlib.md5((project / "models/best.pt").read_bytes()).hexdigest() == before["models/best.pt"]


# Where each stage stages its output while it runs (outputs.atomic_dir/atomic_file), or, for train,
# the checkpoints it writes after every epoch: seeing one means the stage is mid-way through writing.
MID_STAGE_SIGNS = {
    "sample": "data/.sample.*",
    "tile": "data/.tiles.*",
    "encode": "data/.encoded.*",
    "split": "data/.splits.*",
    "preview": "plots/.data.*",
    "train": "models/resume/*",
    "export": "models/export/.model*.tmp",
    "predict": "data/.predictions.*",
    "evaluate": "metrics/.*.tmp",
    "plot": "plots/.model.*",
    "card": "models/export/.model_card*.tmp",
}


def kill_repro_during(project: Path, stage: str) -> str:
    """Start `dvc repro` and SIGKILL it and its stage's process while `stage` runs, mid-write if seen in time.

    Returns "mid-write", "running" (killed while the stage ran, before a write was seen) or "not run".
    """
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), "repro"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    deadline, outcome = time.monotonic() + 300, "not run"
    while process.poll() is None and time.monotonic() < deadline:
        running = [line for line in lines if line.startswith("Running stage")]
        if running and running[-1].startswith(f"Running stage '{stage}'"):
            outcome = "running"
            if any(project.glob(MID_STAGE_SIGNS[stage])):
                outcome = "mid-write"
                break
        elif outcome == "running":  # the stage ended before a write was seen: kill in the next one
            break
        time.sleep(0.002)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # dvc and the stage's python: no handler runs
    process.wait()
    reader.join()
    return outcome


def test_a_kill_during_any_stage_then_repro_gives_the_outputs_of_an_uninterrupted_run(project, tmp_path_factory):
    dvc(project, "repro")
    killed = copy_repository(tmp_path_factory.mktemp("killed"))
    (killed / "params.yaml").write_text((project / "params.yaml").read_text())
    outcomes = {stage: kill_repro_during(killed, stage) for stage in MID_STAGE_SIGNS}
    # each repro starts with the stage the previous one killed, so every stage gets killed once;
    # the long-writing ones are caught mid-write
    assert "not run" not in outcomes.values(), outcomes
    assert all(outcomes[stage] == "mid-write" for stage in ("sample", "tile", "encode", "predict")), outcomes
    dvc(killed, "repro")
    assert lock_outputs(killed) == lock_outputs(project)
    left = [
        str(path.relative_to(killed))
        for folder in ("data", "models", "metrics", "plots")
        for path in (killed / folder).rglob(".*")
        if path.name != ".gitignore"
    ]
    assert left == []  # no staging copy of any output is left behind
    assert stages_to_run(killed) == set()


def test_reproducing_from_scratch_gives_the_same_lock(project):
    dvc(project, "repro")
    before = (project / "dvc.lock").read_text()
    dvc(project, "repro", "--force")
    assert (project / "dvc.lock").read_text() == before


def test_plots_show_writes_an_html_page_with_the_curves(project):
    dvc(project, "repro")
    dvc(project, "plots", "show", "-o", "plots_html")
    page = (project / "plots_html" / "index.html").read_text()
    titles = [
        next(iter(entry))
        for entry in yaml.safe_load((project / "dvc.yaml").read_text())["plots"]
        if isinstance(entry, dict)
    ]
    assert titles == [
        "Loss per epoch",
        "mIoU (land classes) per epoch",
        "Mean Dice per epoch",
        "Validation IoU per class per epoch",
    ]
    assert all(title in page for title in titles)
    # those charts and no other, such as one per DVCLive series
    assert len(re.findall(r"vegaEmbed\('#", page)) == len(titles)


@pytest.fixture(scope="module")
def browser() -> str:
    found = find_browser()
    if found is None:
        pytest.skip(
            "no headless browser: install Debian's chromium (`apt-get install chromium`; .ci/run does "
            "this when it runs as root) to check that the plot pages render"
        )
    return found


def test_plots_show_and_diff_render_in_a_browser(project, browser):
    dvc(project, "repro")
    dvc(project, "plots", "show", "-o", "shown")
    charts, images, problems = undrawn_plots(project / "shown" / "index.html", browser)
    # the charts dvc.yaml defines (loss, mIoU, mean Dice, IoU per class) and the six pictures in
    # plots/: nothing else, such as a chart per DVCLive series
    assert charts == 4 and images == 6 and problems == []
    for name, lr in (("lr-a", "0.001"), ("lr-b", "0.002")):
        dvc(project, "exp", "run", "--quiet", "-n", name, "-S", f"train.lr={lr}")
    dvc(project, "plots", "diff", "lr-a", "lr-b", "-o", "diffed")
    charts, images, problems = undrawn_plots(project / "diffed" / "index.html", browser)
    assert charts == 4 and images == 12 and problems == []  # a chart draws both; each picture once per experiment


def test_the_browser_check_catches_a_chart_or_image_that_did_not_render(project, browser):
    dvc(project, "repro")
    dvc(project, "plots", "show", "-o", "shown")
    page = (project / "shown" / "index.html").read_text()
    first_chart = re.search(r"vegaEmbed\('#([^']+)'", page).group(1)
    broken = page.replace(f"vegaEmbed('#{first_chart}'", f"void('#{first_chart}'", 1)
    head, body = broken.split("<body>", 1)  # the inlined vega-embed source holds "<img src=" text too
    broken = head + "<body>" + re.sub(r'<img src="[^"]+"', '<img src="missing.png"', body, count=1)
    (project / "shown" / "broken.html").write_text(broken)
    _, _, problems = undrawn_plots(project / "shown" / "broken.html", browser)
    assert problems == [f"chart {first_chart}: no line was drawn", "image missing.png: did not load"]


def test_a_second_clone_gets_the_model_with_dvc_pull(project, tmp_path):
    """Push to a local directory remote; a fresh clone pulls the model and needs no retraining."""
    dvc(project, "repro")
    dvc(project, "remote", "add", "--default", "--force", "shared", str(tmp_path / "remote"))
    dvc(project, "push")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "reproduced, with a remote")
    second = tmp_path / "second"
    git(tmp_path, "clone", "-q", str(project), str(second))
    assert not (second / "models" / "best.pt").exists()
    dvc(second, "pull")
    assert (second / "models" / "best.pt").read_bytes() == (project / "models" / "best.pt").read_bytes()
    assert "Data and pipelines are up to date" in dvc(second, "status")
    assert "didn't change" in dvc(second, "repro", "train") and "Running stage" not in dvc(second, "repro")
