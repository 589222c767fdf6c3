"""The prepared GPU check (tools/gpu_check.sh, tools/gpu_check.py): its dry run on the CPU, and the wheel list
against the lock. The GPU runs themselves need a lent GPU machine (docs/gpu-check.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu
from tests.conftest import REPO
from tools import gpu_check

# Installed here, missing on the GPU machine: the dry run imports none of them (each is blocked below)
NOT_ON_THE_GPU_MACHINE = ("albumentations", "albucore", "cv2", "dvc", "dvclive", "rasterio", "scipy", "openvino")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """`bash tools/gpu_check.sh --dry-run`, as CI and a maintainer run it, with this Python and no carried wheels,
    and the packages the GPU machine lacks made to fail on import, as they would there."""
    out = tmp_path_factory.mktemp("gpu-check")
    blocked = tmp_path_factory.mktemp("blocked")
    for name in NOT_ON_THE_GPU_MACHINE:
        (blocked / f"{name}.py").write_text(f"raise ImportError('{name} is not on the GPU machine')\n")
    env = {**os.environ, "PYTHON": sys.executable, "GPU_WHEELS": str(out / "no-wheels"), "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(blocked), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("OUT", None)
    process = subprocess.run(
        ["bash", "tools/gpu_check.sh", "--dry-run", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return process, out


@pytest.mark.slow
def test_the_dry_run_prints_one_verdict_line_per_check_in_order(dry_run):
    process, out = dry_run
    assert process.returncode == 0, process.stdout + process.stderr
    verdicts = re.findall(r"^(PASS|FAIL|SKIP) (\w+): (.+)$", process.stdout, re.MULTILINE)
    assert [name for _, name, _ in verdicts] == list(gpu_check.CHECKS)
    statuses = {name: status for status, name, _ in verdicts}
    assert statuses["packages"] == statuses["wheel_list"] == "PASS"
    # what needs CUDA is skipped, saying why; what ran on the CPU instead gives its figure
    summaries = {name: summary for _, name, summary in verdicts}
    for name in ("train_bf16_deterministic", "train_fp16_gradscaler", "predict_cuda_vs_cpu", "benchmark"):
        assert statuses[name] == "SKIP" and summaries[name].startswith("no CUDA"), (name, summaries[name])
    assert "weights identical in 2 runs" in summaries["train_bf16_deterministic"]
    assert "bit-identical" in summaries["blending_device_vs_host"]
    assert re.search(r"gpu_check PASS: 2 PASS, 0 FAIL, 6 SKIP in \d+ s", process.stdout)


@pytest.mark.slow
def test_the_dry_run_writes_the_json_report_and_the_log(dry_run):
    process, out = dry_run
    report = json.loads((out / "gpu_check.json").read_text())
    assert set(report) == {
        "format",
        "mode",
        "complete",
        "verdict",
        "counts",
        "started",
        "seconds",
        "budget_seconds",
        "environment",
        "sizes",
        "checks",
    }
    assert (report["format"], report["mode"], report["complete"], report["verdict"]) == (1, "dry-run", True, "PASS")
    assert report["counts"] == {"PASS": 2, "FAIL": 0, "SKIP": 6}
    assert list(report["checks"]) == list(gpu_check.CHECKS)
    for result in report["checks"].values():
        assert set(result) == {"status", "summary", "seconds", "figures"}
    assert {"gpu", "gpus", "python", "torch", "cuda"} <= set(report["environment"])
    bf16 = report["checks"]["train_bf16_deterministic"]["figures"]
    assert bf16["identical_weights"] and bf16["identical_files"] and bf16["finite"]
    assert bf16["max_abs_difference"] == 0 and bf16["tensors"] > 100
    # the trainer's own epochs, logged to a plain folder: one loss per epoch, falling
    losses = [run["train_loss"] for run in bf16["runs"]]
    assert losses[0] == losses[1] and len(losses[0]) == report["sizes"]["epochs"] and losses[0][-1] < losses[0][0]
    predict = report["checks"]["predict_cuda_vs_cpu"]["figures"]
    assert 0.9 < predict["agreement"] <= 1 and predict["pixels"] == 64 * 64
    blending = report["checks"]["blending_device_vs_host"]["figures"]
    assert blending["identical_probabilities"] and blending["identical_classes"] and blending["values_differing"] == 0
    wheels = report["checks"]["wheel_list"]["figures"]
    assert "segmentation-models-pytorch" in wheels["imported"] and "albumentations" not in wheels["imported"]
    log = (out / "gpu_check.log").read_text()
    assert process.stdout.strip().splitlines()[-1] in log  # the verdicts, and the training processes' output
    assert log.count("-m tools.gpu_check --train") == 2


def test_the_wheel_list_agrees_with_the_lock():
    assert gpu_check.list_problems() == []
    assert gpu_check.read_pins(gpu_check.WHEEL_LIST) == {"segmentation-models-pytorch": "0.6.0"}


def test_a_wheel_list_that_disagrees_with_the_lock_fails(tmp_path):
    wheel_list = tmp_path / "gpu-wheels.txt"
    wheel_list.write_text("# comment\nsegmentation_models_pytorch==0.5.0\nnot-locked==1.0\n")
    assert gpu_check.list_problems(wheel_list) == [
        "gpu-wheels.txt: segmentation-models-pytorch==0.5.0, but requirements.lock has 0.6.0",
        "gpu-wheels.txt: not-locked is not in requirements.lock",
    ]
    with pytest.raises(SystemExit, match="0.5.0, but requirements.lock has 0.6.0"):
        gpu_check.wheel_requirements(wheel_list)


def test_the_wheel_requirements_are_the_locks_entries_with_their_hashes():
    lines = gpu_check.wheel_requirements().splitlines()
    assert lines[0] == "segmentation-models-pytorch==0.6.0 \\"
    assert len(lines) > 1 and all(re.fullmatch(r" +--hash=sha256:[0-9a-f]{64}( \\)?", line) for line in lines[1:])


def test_a_wheel_folder_must_be_the_list_within_the_size_limit(tmp_path):
    wheel = tmp_path / "segmentation_models_pytorch-0.6.0-py3-none-any.whl"
    wheel.write_bytes(b"x" * 1000)
    assert gpu_check.wheel_folder_problems(tmp_path) == []
    assert gpu_check.wheel_folder_problems(tmp_path, limit=999) == [
        f"{tmp_path}: the wheels take 0.0 MiB, more than 0 MiB"
    ]
    (tmp_path / "tqdm-4.70.1-py3-none-any.whl").write_bytes(b"")
    assert gpu_check.wheel_folder_problems(tmp_path) == [f"{tmp_path}: tqdm is not in gpu-wheels.txt"]
    wheel.rename(tmp_path / "segmentation_models_pytorch-0.5.0-py3-none-any.whl")
    assert f"{tmp_path}: no wheel of segmentation-models-pytorch==0.6.0" in gpu_check.wheel_folder_problems(tmp_path)


def test_what_the_check_imports_must_be_on_the_machine_or_in_the_list():
    provided = gpu_check.provided_by_machine()
    # timm brings what smp needs besides torch: the machine has them
    assert {"torchvision", "huggingface-hub", "safetensors", "pyyaml", "tqdm", "pillow", "numpy"} <= provided
    assert not {"segmentation-models-pytorch", "albumentations", "dvclive", "rasterio"} & provided
    listed = {"segmentation-models-pytorch"}
    assert gpu_check.coverage_problems({"torch", "segmentation-models-pytorch"}, listed, provided) == []
    assert gpu_check.coverage_problems({"albumentations"}, listed, provided) == [
        "albumentations: imported by this run, but neither on the GPU machine nor in the wheel list"
    ]
    carried = gpu_check.coverage_problems(set(), listed | {"timm"}, provided)
    assert len(carried) == 1 and carried[0].startswith("timm: in the wheel list, but the GPU machine has it")
    assert gpu_check.coverage_problems(set(), listed | {"timm"}, provided, {"timm"}) == []


def test_a_listed_package_marked_as_replacing_the_machines_is_allowed(tmp_path):
    wheel_list = tmp_path / "gpu-wheels.txt"
    wheel_list.write_text("segmentation-models-pytorch==0.6.0\ntimm==1.0.31  # replaces the machine's older timm\n")
    assert gpu_check.replacements(wheel_list) == {"timm"}


def test_the_benchmark_verdict_reads_benchmarks_gpu_section():
    training = {"step_seconds": 0.25, "images_per_second": 64.0, "step_flops_per_gpu": 2e14}
    inference = {"device_blending_seconds_per_image": 0.5, "host_blending_seconds_per_image": 0.8, "image_size": 2448}
    section = {"gpu": "Some GPU", "gpus": 1, "bf16_matmul_gflops": 800_000.0, "training": {1: training}}
    section["inference"] = inference
    line = gpu_check.benchmark_line(section, gpu.summarise(section))
    assert line == (
        "training 64.0 img/s (512 px, batch 16), 100% of the bf16 matmul peak (800 TFLOP/s); "
        "0.50 s per 2448 px image (0.80 s blending on the host)"
    )
