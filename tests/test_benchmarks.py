"""The speed benchmark's reference side does what the seed notebooks did, and its report judges targets.

Speeds themselves are measured by `make bench`, never asserted here.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO
from stages.core.model import IMAGENET_MEAN, IMAGENET_STD
from stages.core.palette import ClassTable, colour_to_index, one_hot

sys.path.insert(0, str(REPO / "benchmarks"))
import seed_style  # noqa: E402
import speed  # noqa: E402

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
    inference = {"seconds_per_image": 2.0, "windows": 169, "window": 256, "image_flops": 3e12, "peak_rss_mb": 1000,
                 "settings": {"overlap": 0.25, "batch_size": 8}}
    return {
        "peaks": {"bf16_matmul_gflops": 1000.0, "fp32_matmul_gflops": 250.0, "bf16_conv_gflops": 1100.0,
                  "fp32_conv_gflops": 500.0, "peak_rss_mb": 300},
        "training": {"project_step_seconds": [1.0, 1.1, 0.9], "seed_step_seconds": [2.5, 2.4, 2.6],
                     "step_flops": 4.4e11, "project_peak_rss_mb": 2700, "seed_peak_rss_mb": 2600},
        "loading": {"project": loading, "seed": {**loading, "ms_per_mp": 9000.0, "ms_per_sample": 600.0}},
        "inference": {"project": inference, "seed": {**inference, "seconds_per_image": inference_seed_seconds,
                                                     "windows": 100}},
        "tiling": {"stage": {"mp_per_second": 9.0, "peak_rss_mb": 600}, "bare": {"mp_per_second": 10.0,
                                                                              "peak_rss_mb": 590}},
    }


def test_summary_ratios_and_fractions_of_peak():
    summary = speed.summarise(canned_results(inference_seed_seconds=7.0))
    assert summary["training_speedup"] == pytest.approx(2.5)  # medians: 2.5 s against 1.0 s
    assert summary["training_fraction_of_bf16_matmul_peak"] == pytest.approx(0.44)  # 4.4e11 FLOP in 1 s of 1e12/s
    assert summary["bf16_over_fp32_convolution"] == pytest.approx(2.2)
    assert summary["loading_speedup_per_mp"] == pytest.approx(300)
    assert summary["loader_over_training_rate"] == pytest.approx(500 / 8)
    assert summary["inference_speedup"] == pytest.approx(3.5)
    assert summary["inference_speedup_bound_at_conv_peak"] == pytest.approx(7.0 / (3e12 / 1.1e12))
    assert summary["tile_fraction_of_bare"] == pytest.approx(0.9)


@pytest.mark.parametrize("seed_seconds, expected", [(7.0, "met (target 3)"), (5.0, "MISSED (target 3)")])
def test_report_marks_each_target_met_or_missed(seed_seconds, expected):
    results = canned_results(inference_seed_seconds=seed_seconds)
    table = speed.report(results, speed.summarise(results))
    inference_row = next(line for line in table.splitlines() if line.startswith("| inference"))
    assert expected in inference_row
