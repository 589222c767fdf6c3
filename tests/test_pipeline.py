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
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from landcover.data.palette import IGNORE_INDEX
from landcover.data.tilestore import TileStore, read_index, whole_images
from landcover.evaluation.metrics import read_confusion_csv
from landcover.io.imageio import read_index_png
from landcover.model.checkpoint import read_history
from stages.plot import summary as plot_summary
from tests.browser import undrawn_plots
from tests.project import (
    as_sections,
    copy_project,
    copy_repository,
    dvc,
    fast_profile,
    git,
    ran_stages,
    set_params,
    tool_environment,
)

DATA_STAGES = ("sample", "tile", "encode", "split")
MODEL_STAGES = ("train", "export", "predict", "evaluate", "calibration", "plot", "card")


@pytest.fixture
def project(reproduced_project, tmp_path) -> Path:
    """A copy of the reproduced fast-profile project, for one test to change."""
    return copy_project(reproduced_project, tmp_path / "project")


def stages_to_run(project: Path) -> set[str]:
    """Names of the stages that `dvc status` reports as changed."""
    status = json.loads(dvc(project, "status", "--json"))
    return set(status)


def test_repro_split_builds_the_data_half(tmp_path):
    project = copy_repository(tmp_path)
    set_params(project, as_sections(fast_profile()))
    output = dvc(project, "repro", "split")
    assert ran_stages(output) == set(DATA_STAGES)
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
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            assert (project / path).exists(), path
    assert len(list((project / "data/predictions").glob("*_colour.png"))) == 2
    assert stages_to_run(project) == set()


def test_evaluate_scores_the_predictions_against_the_test_masks(reproduced_project):
    """The metrics files hold the scores of the written predictions, recomputed here from scratch."""
    project = reproduced_project
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


def test_summary_sets_train_and_val_at_the_best_epoch_beside_the_test_scores(reproduced_project):
    project = reproduced_project
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
    shown = dvc(project, "metrics", "show")
    assert max(len(line) for line in shown.splitlines()) <= 160, shown
    assert "miou_land" in shown and "val.miou_land" in shown
    # the intervals' bounds: two more rows under test.json's columns, no column of their own
    rows = {line.split()[0]: line.split()[1:] for line in shown.splitlines()[1:] if line.strip()}
    header = shown.splitlines()[0].split()
    assert {"metrics/test.json", "metrics/test_low.json", "metrics/test_high.json"} <= set(rows), shown
    assert not [name for name in header if "low" in name or "high" in name], shown
    test, low, high = (
        json.loads((project / "metrics" / f"test{end}.json").read_text()) for end in ("", "_low", "_high")
    )
    for key in ("miou_land", "pixel_accuracy"):  # present on the tiny test split
        assert low[key] <= test[key] <= high[key], key
        column = header.index(key) - 1  # the Path column has a header and its row's first word
        assert [float(rows[f"metrics/test{end}.json"][column]) for end in ("_low", "", "_high")] == pytest.approx(
            [low[key], test[key], high[key]], abs=1e-5
        ), shown
    # the details are not declared as metrics, but docs/experiments.md's command shows them (a class absent
    # from the tiny test split is null in the file, and DVC leaves it out: check a present one)
    details = dvc(project, "metrics", "show", "metrics/test_details.json")
    assert "iou.agriculture_land" in details and "fw_iou" in details
    calibration = dvc(project, "metrics", "show", "metrics/calibration.json")
    assert "test.ece_before" in calibration and "temperature" in calibration


def lock_outputs(project: Path) -> dict[str, str]:
    """Every stage output's md5, as dvc.lock records it."""
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in stages.values() for out in stage.get("outs", [])}


def stages_run_by_repro(project: Path, *targets: str) -> set[str]:
    return ran_stages(dvc(project, "repro", *targets))


def test_editing_a_param_reruns_only_the_stages_that_read_it(project):
    """dvc status names the stages that read an edited param; the stages that read their outputs follow.

    (tests/test_readme.py checks whole chains: a train.lr experiment reruns every model stage, and a
    predict.overlap edit predict, evaluate, plot and card.)"""
    baseline = (project / "params.yaml").read_text()
    set_params(project, {"train": {"resume": not yaml.safe_load(baseline)["train"]["resume"]}})
    assert stages_to_run(project) == set()  # train.resume changes no result, so it is no reason to rerun
    for edit, readers in (
        ({"train": {"lr": 0.002}}, {"train"}),
        ({"augment": {"scale_min": 0.6}}, {"preview", "train"}),
        ({"predict": {"overlap": 0.125}}, {"predict", "card"}),  # the card says how the test maps were made
        ({"export": {"calibration_tiles": 8}}, {"export"}),
    ):
        (project / "params.yaml").write_text(baseline)
        set_params(project, edit)
        assert stages_to_run(project) == readers, edit
    # a new int8 model: what uses it is out of date, and nothing upstream
    assert stages_run_by_repro(project, "export") == {"export"}
    assert stages_to_run(project) == {"predict", "card"}


def test_going_back_to_earlier_params_restores_train_from_the_run_cache(project):
    baseline = (project / "params.yaml").read_text()
    before = lock_outputs(project)
    set_params(project, {"train": {"lr": 0.0015}})
    assert stages_run_by_repro(project, "train") == {"train"}
    assert lock_outputs(project)["models/best.pt"] != before["models/best.pt"]
    # the stages that read the model
    assert stages_to_run(project) == {"export", "predict", "calibration", "plot", "card"}
    (project / "params.yaml").write_text(baseline)
    output = dvc(project, "repro")
    assert "Stage 'train' is cached - skipping run" in output and "Running stage" not in output, output
    assert lock_outputs(project) == before
    assert hashlib.md5((project / "models/best.pt").read_bytes()).hexdigest() == before["models/best.pt"]


def test_rerunning_train_where_its_outputs_are_gives_the_same_bytes(project):
    """Training does not pick up the finished run's checkpoints: a forced rerun in place changes nothing."""
    before = (project / "dvc.lock").read_text()
    assert stages_run_by_repro(project, "--force", "--single-item", "train") == {"train"}
    assert (project / "dvc.lock").read_text() == before
    assert stages_to_run(project) == set()


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
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), "repro"],
        cwd=project,
        env={**tool_environment(), "PYTHONUNBUFFERED": "1"},
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
        # glance while earlier stages run; look closely once the stage has started
        time.sleep(0.002 if outcome == "running" else 0.02)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # dvc and the stage's python: no handler runs
    process.wait()
    reader.join()
    return outcome


def test_a_kill_during_any_stage_then_repro_gives_the_outputs_of_an_uninterrupted_run(request, tmp_path):
    """From scratch, with every stage killed once on the way: the same dvc.lock as the uninterrupted run."""
    killed = copy_repository(tmp_path)
    set_params(killed, as_sections(fast_profile()))
    outcomes = {stage: kill_repro_during(killed, stage) for stage in MID_STAGE_SIGNS}
    # each repro starts with the stage the previous one killed, so every stage gets killed once;
    # the long-writing ones are caught mid-write
    assert "not run" not in outcomes.values(), outcomes
    assert all(outcomes[stage] == "mid-write" for stage in ("sample", "tile", "encode", "predict")), outcomes
    dvc(killed, "repro")
    # asked for only now: the uninterrupted run may be built meanwhile, by another pytest-xdist worker
    uninterrupted = request.getfixturevalue("reproduced_project")
    assert (killed / "dvc.lock").read_text() == (uninterrupted / "dvc.lock").read_text()
    left = [
        str(path.relative_to(killed))
        for folder in ("data", "models", "metrics", "plots")
        for path in (killed / folder).rglob(".*")
        if path.name != ".gitignore"
    ]
    assert left == []  # no staging copy of any output is left behind
    assert stages_to_run(killed) == set()


@pytest.fixture(scope="module")
def plots_page(reproduced_project, tmp_path_factory) -> Path:
    """`dvc plots show`'s page of the reproduced project."""
    project = copy_project(reproduced_project, tmp_path_factory.mktemp("plots") / "project")
    dvc(project, "plots", "show", "-o", "shown")
    return project / "shown" / "index.html"


def test_plots_show_writes_an_html_page_with_the_curves(reproduced_project, plots_page):
    page = plots_page.read_text()
    titles = [
        next(iter(entry))
        for entry in yaml.safe_load((reproduced_project / "dvc.yaml").read_text())["plots"]
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


def test_plots_show_renders_in_a_browser(plots_page, browser):
    charts, images, problems = undrawn_plots(plots_page, browser)
    # the charts dvc.yaml defines (loss, mIoU, mean Dice, IoU per class) and the seven pictures in plots/
    # (the reliability diagram among them): nothing else, such as a chart per DVCLive series
    # (tests/test_readme_comparing.py renders a `dvc plots diff` page of two experiments)
    assert charts == 4 and images == 7 and problems == []


def test_the_browser_check_catches_a_chart_or_image_that_did_not_render(plots_page, browser):
    page = plots_page.read_text()
    first_chart = re.search(r"vegaEmbed\('#([^']+)'", page).group(1)
    broken = page.replace(f"vegaEmbed('#{first_chart}'", f"void('#{first_chart}'", 1)
    head, body = broken.split("<body>", 1)  # the inlined vega-embed source holds "<img src=" text too
    broken = head + "<body>" + re.sub(r'<img src="[^"]+"', '<img src="missing.png"', body, count=1)
    (plots_page.parent / "broken.html").write_text(broken)
    _, _, problems = undrawn_plots(plots_page.parent / "broken.html", browser)
    assert problems == [f"chart {first_chart}: no line was drawn", "image missing.png: did not load"]


def test_a_second_clone_gets_the_model_with_dvc_pull(project, tmp_path):
    """Push to a local directory remote; a fresh clone pulls the model and needs no retraining."""
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
