"""The speed benchmark's reference side does what the seed notebooks did, and its report judges targets;
the scale benchmark runs end to end at a tiny size and reports every figure; every benchmark's command line
answers --help.

Speeds themselves are measured by `make bench` and `make bench-scale`, never asserted here.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import gpu, scale_dataset, scale_dvc, seed_style
from benchmarks.common import time_alternating
from benchmarks.speed_report import cpu_class, hardware_line, report, summarise
from landcover.data.geometry import tile_grid
from landcover.data.palette import ClassTable, colour_to_index, one_hot
from landcover.data.scaling import IMAGENET_MEAN, IMAGENET_STD
from landcover.io.imageio import read_rgb, write_jpeg
from landcover.synthetic.scene import generate_scene
from tests.conftest import REPO
from tests.optional import need_group

TABLE = ClassTable.deepglobe()


def random_colour_mask(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    labels = np.random.default_rng(seed).integers(0, len(TABLE), (height, width))
    return labels, TABLE.colours[labels]


def test_seed_one_hot_matches_the_projects_encoding():
    _, mask = random_colour_mask(40, 30)
    expected = one_hot(colour_to_index(mask, TABLE)[0], len(TABLE))
    np.testing.assert_array_equal(seed_style.one_hot_encode(mask, TABLE.colours), expected.astype(bool))


def test_seed_dataset_decodes_whole_images_and_gives_float_one_hot_crops(tmp_path):
    labels, mask = random_colour_mask(100, 120, seed=1)
    image = np.random.default_rng(2).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "1_sat.jpg")
    Image.fromarray(mask).save(tmp_path / "1_mask.png")
    dataset = seed_style.SeedDataset([(tmp_path / "1_sat.jpg", tmp_path / "1_mask.png")], TABLE.colours, crop=64)
    crop, target = dataset[0]
    assert crop.shape == (3, 64, 64) and crop.dtype == np.float32
    assert target.shape == (len(TABLE), 64, 64) and target.dtype == np.float32
    np.testing.assert_array_equal(target.sum(axis=0), 1)  # every pixel of an in-palette mask has one class


def test_seed_dice_loss_is_zero_for_a_perfect_prediction_and_near_one_for_a_disjoint_one():
    target = torch.zeros(1, 2, 4, 4)
    target[:, 0, :2], target[:, 1, 2:] = 1, 1
    assert seed_style.dice_loss(target, target).item() == pytest.approx(0)
    assert seed_style.dice_loss(1 - target, target).item() == pytest.approx(1, abs=0.05)


def test_seed_predict_covers_every_pixel_of_an_image_the_tile_does_not_divide():
    labels = np.random.default_rng(3).integers(0, len(TABLE), (70, 90)).astype(np.uint8)
    image = np.stack([labels * 20] * 3, axis=-1).astype(np.uint8)

    class ReadsLabels(torch.nn.Module):
        """Un-normalises the red channel back to the label written there; one-hot scores."""

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            red = batch[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
            classes = torch.round(red * 255 / 20).long()
            return torch.nn.functional.one_hot(classes, len(TABLE)).permute(0, 3, 1, 2).float()

    np.testing.assert_array_equal(seed_style.seed_predict(ReadsLabels(), image, tile=32), labels)


def canned_results(inference_seed_seconds: float) -> dict:
    """Results shaped as run_all returns them; project inference takes 2 s per image."""
    loading = {"ms_per_sample": 2.0, "ms_per_mp": 30.0, "first_batch_seconds": 0.1, "peak_rss_mb": 500}
    inference = {
        "seconds_per_image": 2.0,
        "windows": 169,
        "window": 256,
        "image_flops": 3e12,
        "peak_rss_mb": 1000,
        "settings": {"overlap": 0.25, "batch_size": 8},
    }
    return {
        "peaks": {
            "bf16_matmul_gflops": 1000.0,
            "fp32_matmul_gflops": 250.0,
            "bf16_conv_gflops": 1100.0,
            "fp32_conv_gflops": 500.0,
            "peak_rss_mb": 300,
        },
        "training": {
            "project_step_seconds": [1.0, 1.1, 0.9],
            "seed_step_seconds": [2.5, 2.4, 2.6],
            "step_flops": 4.4e11,
            "project_peak_rss_mb": 2700,
            "seed_peak_rss_mb": 2600,
        },
        "loading": {"project": loading, "seed": {**loading, "ms_per_mp": 9000.0, "ms_per_sample": 600.0}},
        "inference": {
            "project": inference,
            "seed": {**inference, "seconds_per_image": inference_seed_seconds, "windows": 100},
        },
        "tiling": {
            "stage": {"mp_per_second": 9.0, "peak_rss_mb": 600},
            "bare": {"mp_per_second": 10.0, "peak_rss_mb": 590},
        },
    }


def test_summary_ratios_and_fractions_of_peak():
    summary = summarise(canned_results(inference_seed_seconds=7.0))
    assert summary["training_speedup"] == pytest.approx(2.5)  # medians: 2.5 s against 1.0 s
    assert summary["training_fraction_of_bf16_matmul_peak"] == pytest.approx(0.44)  # 4.4e11 FLOP in 1 s of 1e12/s
    assert summary["bf16_over_fp32_convolution"] == pytest.approx(2.2)
    assert summary["loading_speedup_per_mp"] == pytest.approx(300)
    assert summary["loader_over_training_rate"] == pytest.approx(500 / 8)
    assert summary["inference_speedup"] == pytest.approx(3.5)
    assert summary["inference_speedup_bound_at_conv_peak"] == pytest.approx(7.0 / (3e12 / 1.1e12))
    assert summary["tile_fraction_of_bare"] == pytest.approx(0.9)


@pytest.mark.parametrize(
    "flags, klass",
    [
        (["amx_bf16", "amx_tile", "avx512_bf16"], "AMX"),
        (["avx512_bf16"], "AVX512-BF16 without AMX"),
        ([], "no native bf16"),
        (["avx_vnni"], "no native bf16"),
    ],
)
def test_each_cpu_is_judged_by_its_class_target(flags, klass):
    assert cpu_class(flags) == klass


def test_the_training_step_is_judged_against_the_ceiling_of_its_own_precision_and_its_cpus_class():
    results = canned_results(inference_seed_seconds=7.0)
    results["cpu_bf16"] = []
    results["training"]["precision"] = "fp32"  # 4.4e11 FLOP in a 1 s median step against 5e11/s: 88%
    results["training_compiled"] = {
        "project_step_seconds": [1.0],
        "compiled_step_seconds": [0.8],
        "step_flops": 4.4e11,
        "compile_seconds": 150.0,
    }
    summary = summarise(results)
    assert summary["training_fraction_of_conv_peak"] == pytest.approx(0.88)
    assert summary["compiled_over_eager_step"] == pytest.approx(1.25)
    assert summary["compiled_training_fraction_of_conv_peak"] == pytest.approx(0.88 * 1.25)
    line = hardware_line(summary)
    assert "88% of the fp32 convolution peak eager, compiled 110% (1.25x the eager step, after a 150 s compile)" in line
    assert "no native bf16: target 60% of the fp32 peak, met (target 0.6)" in line
    results["training"]["project_step_seconds"] = [2.0]
    del results["training_compiled"]
    assert "44% of the fp32 convolution peak eager;" in hardware_line(summarise(results))
    assert "MISSED (target 0.6)" in hardware_line(summarise(results))
    assert "of the bf16 matmul peak" not in report(results, summarise(results))  # no share of an emulated peak
    results["cpu_bf16"] = ["amx_bf16"]  # an AMX CPU's target is of the bf16 ceiling, which an fp32 step is not run at
    assert "not judged: the step ran in fp32" in hardware_line(summarise(results))


@pytest.mark.parametrize("seed_seconds, expected", [(7.0, "met (target 3)"), (5.0, "MISSED (target 3)")])
def test_report_marks_each_target_met_or_missed(seed_seconds, expected):
    results = canned_results(inference_seed_seconds=seed_seconds)
    table = report(results, summarise(results))
    inference_row = next(line for line in table.splitlines() if line.startswith("| inference"))
    assert expected in inference_row
    assert "- training reaches 44% of the bf16 matmul peak" in table  # a bf16 step: its share of the bf16 peaks


# --- The scale benchmark ------------------------------------------------------------------------------


def test_scale_dataset_has_deepglobes_counts_and_distinct_ids_of_3_to_6_digits():
    assert scale_dataset.split_counts(803) == {"train": 803, "valid": 171, "test": 172}
    assert scale_dataset.split_counts(4) == {"train": 4, "valid": 1, "test": 1}
    ids = scale_dataset.image_ids(scale_dataset.SEED, 1146)
    assert len(set(ids)) == 1146 and all(100 <= i <= 999_999 for i in ids)


def test_every_image_of_a_base_scene_gets_its_own_colour_offset_and_odd_shifts():
    plans = scale_dataset.plan_derivations(scale_dataset.SEED, 803 + 171 + 172, 2448)
    offsets = defaultdict(list)
    for plan in plans:
        offsets[plan.base].append(plan.colour_offset)
        assert all(shift % 2 and shift % 3 for shift in plan.shift)  # primes: a multiple of no tile size
    assert len(offsets) == scale_dataset.BASE_SCENES
    assert all(len(set(values)) == len(values) for values in offsets.values())


def test_two_images_derived_from_one_base_scene_share_no_tile(tmp_path):
    """Not one image tile (as JPEG-decoded, at the tile sizes a run may use) is byte-equal between the two,
    so DVC's cache stores every tile of every image, as with real data. (Mask tiles of a single class
    are alike between images, as they are in DeepGlobe.)"""
    size = 256
    plans = scale_dataset.plan_derivations(scale_dataset.SEED, 2 * scale_dataset.BASE_SCENES, size)
    first, second = plans[0], plans[scale_dataset.BASE_SCENES]
    assert first.base == second.base
    image, labels = generate_scene(np.random.default_rng(0), size)
    tiles = []
    for k, plan in enumerate((first, second)):
        derived, derived_labels = scale_dataset.derive(image, labels, plan)
        assert derived.shape == image.shape and derived_labels.shape == labels.shape
        write_jpeg(tmp_path / f"{k}.jpg", derived, scale_dataset.JPEG_QUALITY)
        decoded = read_rgb(tmp_path / f"{k}.jpg")
        tiles.append(
            {decoded[y : y + t, x : x + t].tobytes() for t in (32, 64, 128) for y, x in tile_grid(size, size, t, t)}
        )
    assert len(tiles[0]) == len(tiles[1]) == 64 + 16 + 4
    assert not tiles[0] & tiles[1]


def test_scale_refuses_a_run_the_disk_cannot_hold_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(scale_dvc.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 10**9})())
    with pytest.raises(SystemExit) as refused:
        scale_dvc.check_disk(tmp_path / "cache", tmp_path / "cache", 803, 2448, dataset_exists=False)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("error: not enough disk space")
    assert "needs about 18.3 GB" in message and "1.0 GB free" in message  # 8x a ~2.3 GB raw dataset
    scale_dvc.check_disk(tmp_path / "cache", tmp_path / "cache", 4, 256, dataset_exists=False)  # 0.1 MB fits


def test_scale_benchmark_refuses_a_tile_size_the_model_cannot_take(tmp_path, monkeypatch, capsys):
    """The tile stage's own rule, before a dataset is built: smp takes multiples of 16 only."""
    from benchmarks import scale

    def past_the_arguments(*args, **kwargs):  # a size let through would go on to build a dataset
        raise AssertionError("--tile-size 100 got past the argument checks")

    monkeypatch.setattr(scale, "check_disk", past_the_arguments)
    with pytest.raises(SystemExit) as exit_info:
        scale.main(["--tile-size", "100", "--cache", str(tmp_path / "cache")])
    assert exit_info.value.code == 2
    assert "--tile-size: params: tile.size must be a positive multiple of 16" in capsys.readouterr().err


@pytest.mark.slow
def test_scale_benchmark_end_to_end_at_a_tiny_size(tmp_path):
    """The whole run (dataset, dvc repro of the data stages, sizes, no-op checks, push/pull, loader, a training
    step) on 4 images of 256 px; scale.json gets every figure, merged beside an earlier run's."""
    output = tmp_path / "scale.json"
    earlier = {
        "dataset": {"image_size": 2448},
        "stages": {name: {"seconds_per_image": 1.5, "peak_rss_mb": 123.0} for name in scale_dvc.DATA_STAGES},
    }
    output.write_text(json.dumps({"runs": {"80": earlier}}))
    command = [
        sys.executable,
        "-m",
        "benchmarks.scale",
        "--images",
        "4",
        "--image-size",
        "256",
        "--tile-size",
        "128",
        "--batch-size",
        "4",
        "--train-steps",
        "1",
        "--loader-batches",
        "2",
        "--cache",
        str(tmp_path / "cache"),
        "--output",
        str(output),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = json.loads(output.read_text())["runs"]
    assert runs["80"] == earlier and list(runs) == ["4", "80"]
    run = runs["4"]
    assert not list((tmp_path / "cache").glob("run-*"))  # the clone, remote and pulled clone are gone
    assert (tmp_path / "cache" / "deepglobe-4-256px" / "metadata.csv").is_file()
    assert run["dataset"]["images"] == {"train": 4, "valid": 1, "test": 1}
    assert run["dataset"]["generation"]["method"].startswith("derived: 6 base scenes")
    assert run["date"] and run["machine"]["cpu"] and run["params"]["tile.size"] == 128
    assert run["params"]["split.method"] == "ratios" and run["params"]["train.batch_size"] == 4

    for name in scale_dvc.DATA_STAGES:
        stage = run["stages"][name]
        assert stage["seconds"] > stage["stage_seconds"] > 0 and stage["seconds_per_image"] > 0
        assert 10 < stage["peak_rss_mb"] < 4000 and stage["dvc_peak_rss_mb"] > 10
    storage = run["storage"]
    for path in ("data/tiles", "data/encoded", "data/splits"):
        output_usage = storage["outputs"][path]
        assert output_usage["workspace"]["files"] > 0 and output_usage["workspace"]["bytes"] > 0
        # one object per distinct file (equal files, e.g. masks of one class, are stored once) and the .dir listing
        assert 1 < output_usage["cache"]["files"] <= output_usage["workspace"]["files"] + 1
    plots = storage["outputs"]["plots/data"]
    assert plots["workspace"]["files"] == 2 and plots["cache"]["files"] == 0  # cache: false
    assert storage["raw"]["files"] == 4 * 2 + 2 + 3  # pairs, valid and test images, metadata, class_dict, description
    assert storage["derived_over_raw"] > 1 and storage["cache_type"].startswith("unset")
    assert run["noop"]["status_clean"] and run["noop"]["repro_ran_nothing"]
    assert 0 < run["noop"]["status_seconds"] < 60 and 0 < run["noop"]["repro_seconds"] < 60
    remote = run["remote"]
    assert remote["fresh_clone_restored"] and remote["fresh_clone_status_clean"]
    assert remote["push_pull_seconds"] == pytest.approx(remote["push_seconds"] + remote["pull_seconds"])
    assert remote["remote"]["files"] > 0
    for workers in ("0", "2"):
        loader = run["loader"][workers]
        assert loader["samples"] == 2 * 4 and loader["samples_per_second"] > 0 and loader["tile_size"] == 128
        assert run["loader_over_consumption"][workers] > 0
    step = run["train_step"]
    assert step["batch_size"] == 4 and step["tile_size"] == 128 and step["samples_per_second"] > 0
    assert run["disk"]["used_over_raw"] > 1
    targets = {row["measure"]: row for row in run["targets"]}
    assert len(targets) == 8 and targets["tile+encode+split, min (803 images)"]["met"] is None  # 256 px: not judged
    assert all(row["met"] in (True, False) for name, row in targets.items() if "803" not in name)
    assert (
        "loader (2 workers) / training consumption" in result.stdout and "derived (workspace + cache)" in result.stdout
    )
    side_by_side = result.stdout[result.stdout.index("per image, by labelled image count") :]
    assert "4 img: s/img" in side_by_side and "80 img: s/img" in side_by_side
    assert next(line for line in side_by_side.splitlines() if line.startswith("tile ")).split()[-2:] == ["1.500", "123"]


# --- The GPU section (benchmarks.gpu) --------------------------------------------------------------


def test_gpu_section_says_it_was_skipped_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    section = gpu.run_section("quick", {"bf16_matmul_gflops": 1000.0})
    assert section == {"skipped": "no CUDA device"}
    assert "GPU section: skipped (no CUDA device)" in capsys.readouterr().out
    assert gpu.report(section).strip() == "GPU section: skipped (no CUDA device)"


def test_gpu_report_gives_fractions_of_peak_and_scaling_efficiency():
    one = {"step_seconds": 0.5, "images_per_second": 32.0, "step_flops_per_gpu": 2e14}
    four = {"step_seconds": 0.625, "images_per_second": 102.4, "step_flops_per_gpu": 2e14}
    section = {
        "gpu": "Some GPU",
        "gpus": 4,
        "bf16_matmul_gflops": 800_000.0,
        "training": {1: one, 4: four},
        "inference": {
            "device_blending_seconds_per_image": 0.4,
            "host_blending_seconds_per_image": 0.6,
            "image_size": 2448,
        },
    }
    summary = gpu.summarise(section)
    assert summary["training"][1]["fraction_of_bf16_matmul_peak"] == pytest.approx(0.5)  # 4e14 FLOP/s of 8e14
    assert summary["training"][4]["fraction_of_bf16_matmul_peak"] == pytest.approx(0.4)
    assert summary["training"][4]["scaling_efficiency"] == pytest.approx(0.8)  # 102.4 / (4 x 32)
    assert summary["host_over_device_blending"] == pytest.approx(1.5)
    table = gpu.report(section)
    assert "| 4 | 102.4 | 40% | 80% |" in table and "0.400 blending on the GPU" in table


@pytest.mark.slow
def test_gpu_measurements_run_end_to_end_on_the_cpu_with_two_ranks():
    """The plumbing only (gloo instead of NCCL, tiny tiles): torchrun, DDP, rank 0's report."""
    training = gpu.launch(
        "training", {"cpu": True, "encoder": "resnet18", "tile": 64, "batch": 2, "warmup": 1, "steps": 1}, processes=2
    )
    assert training["gpus"] == 2 and training["images_per_second"] > 0 and training["step_flops_per_gpu"] > 0
    inference = gpu.measure_inference({"cpu": True, "encoder": "resnet18", "size": 256, "images": 1})
    assert inference["device_blending_seconds_per_image"] > 0 and inference["host_blending_seconds_per_image"] > 0


# --- What the benchmarks share ----------------------------------------------------------------------


def test_alternating_timing_warms_each_run_up_then_alternates_and_compares_outputs():
    calls = []

    def recorded(name):
        def run(item):
            calls.append((name, item))
            return item % 2

        return run

    runs = {"a": recorded("a"), "b": recorded("b")}
    seconds = time_alternating(runs, [1, 3], warmup=0, same_output=lambda x, y: x == y)
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 3), ("b", 3)]
    assert {name: len(times) for name, times in seconds.items()} == {"a": 2, "b": 2}
    runs["b"] = lambda item: item + 1
    with pytest.raises(SystemExit, match="outputs of a, b differ"):
        time_alternating(runs, [1], warmup=0, same_output=lambda x, y: x == y)


@pytest.mark.parametrize(
    "name",
    [
        "speed",
        "blending",
        "scale",
        "gpu",
        "geotiff_streaming",
        "large_image_memory",
        "tile_memory",
        "predict_settings",
        "region_overhead",
    ],
)
def test_every_benchmark_answers_help_as_python_m_benchmarks_name(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as exited:
        module.main(["--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m benchmarks.{name}")


@pytest.mark.slow
def test_scenes_benchmark_end_to_end_at_a_tiny_size(tmp_path):
    need_group("vector")  # the scenes benchmark's polygon labels
    output = tmp_path / "scenes.json"
    args = ["--scenes", "3", "--size", "256", "--tile-size", "64", "--loader-samples", "5"]
    subprocess.run(
        [sys.executable, "-m", "benchmarks.scenes", *args, "--cache", str(tmp_path / "cache"), "--output", str(output)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    results = json.loads(output.read_text())
    loaders = {"256 px scenes", "128 px scenes", "128 px scenes, tile.images uncompressed"}
    assert set(results["stages"]) == {"3 scenes", "2 scenes"} | loaders - {"256 px scenes"}
    for stages in results["stages"].values():
        assert set(stages) == {"tile", "encode", "split"}
        assert all(stats["peak_rss_mb"] > 0 and stats["seconds_per_megapixel"] > 0 for stats in stages.values())
    assert set(results["loader"]) == set(results["loader_processes_per_gpu"]) == loaders
    assert all(processes >= 1 for processes in results["loader_processes_per_gpu"].values())
