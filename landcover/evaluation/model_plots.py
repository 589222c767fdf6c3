"""Pictures of a trained model: learning curves, per-class IoU, confusion matrix, test examples, reliability."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from landcover.data.palette import IGNORE_INDEX, ClassTable, index_to_colour
from landcover.evaluation.figures import class_legend, save_figure, shown


def series(history: list[dict], split: str, name: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one metric of the training history; epochs without a value are left out.

    Values are rounded to 6 decimals, as DVCLive logs them, so these curves and `dvc plots show` draw the same numbers.
    """
    points = [
        (epoch, round(record[split][name], 6))
        for epoch, record in enumerate(history, start=1)
        if record[split].get(name) is not None
    ]
    return [epoch for epoch, _ in points], [value for _, value in points]


def plot_curves(history: list[dict], path: Path) -> None:
    """Mean Dice and mIoU (land classes) per epoch, train against validation."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, (name, label) in zip(axes, [("mean_dice", "mean Dice"), ("miou_land", "mIoU, land classes")]):
        for split, style in (("train", "-o"), ("val", "-s")):
            epochs, values = series(history, split, name)
            axis.plot(epochs, values, style, label=split)
        axis.set_xlabel("epoch")
        axis.set_title(label)
        axis.grid(alpha=0.3)
        axis.legend()
    save_figure(figure, path)


def plot_class_iou(test_scores: dict, path: Path) -> None:
    """Test IoU per class; a class absent from ground truth and prediction is marked n/a, not 0 or 1."""
    names = list(test_scores["iou"])
    values = [test_scores["iou"][name] for name in names]
    figure, axis = plt.subplots(figsize=(9, 4))
    bars = axis.bar(names, [value or 0 for value in values], color="tab:blue")
    for bar, value in zip(bars, values):
        axis.text(
            bar.get_x() + bar.get_width() / 2,
            (value or 0) + 0.01,
            "n/a" if value is None else f"{value:.2f}",
            ha="center",
            va="bottom",
            fontsize=9,
        )
    axis.axhline(
        test_scores["miou_land"] or 0,
        color="tab:red",
        linestyle="--",
        label=f"mIoU land classes {test_scores['miou_land'] or 0:.3f}",
    )
    axis.set_ylim(0, 1.08)
    axis.set_ylabel("IoU")
    axis.set_title("test IoU per class")
    axis.legend(loc="lower right")
    plt.setp(axis.get_xticklabels(), rotation=20, ha="right")
    save_figure(figure, path)


def plot_confusion(confusion: np.ndarray, names: tuple[str, ...], path: Path) -> None:
    """Rows normalised to 1: row c shows where the pixels of true class c went."""
    totals = confusion.sum(axis=1, keepdims=True)
    normalised = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=float), where=totals > 0)
    figure, axis = plt.subplots(figsize=(7.5, 6.5))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    for (row, column), value in np.ndenumerate(normalised):
        axis.text(
            column, row, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white" if value > 0.5 else "black"
        )
    axis.set_xticks(range(len(names)), names, rotation=35, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("prediction")
    axis.set_ylabel("ground truth")
    axis.set_title("test confusion matrix (rows normalised)")
    figure.colorbar(image, ax=axis, fraction=0.046)
    save_figure(figure, path)


def plot_examples(
    examples: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], table: ClassTable, path: Path
) -> None:
    """One row per (id, image, truth, prediction): image, ground truth, prediction, errors in red."""
    figure, axes = plt.subplots(len(examples), 4, figsize=(14, 3.6 * len(examples)), squeeze=False)
    for row, (image_id, image, truth, prediction) in enumerate(examples):
        errors = np.full((*truth.shape, 3), 255, dtype=np.uint8)
        errors[(prediction != truth) & (truth != IGNORE_INDEX)] = (220, 20, 20)
        errors[truth == IGNORE_INDEX] = (160, 160, 160)
        accuracy = np.mean(prediction[truth != IGNORE_INDEX] == truth[truth != IGNORE_INDEX])
        panels = [
            (image, f"test image {image_id}"),
            (index_to_colour(truth, table), "ground truth"),
            (index_to_colour(prediction, table), "prediction"),
            (errors, f"errors in red ({1 - accuracy:.1%} of pixels)"),
        ]
        for axis, (picture, title) in zip(axes[row], panels):
            axis.imshow(shown(picture), interpolation="nearest")
            axis.set_title(title, fontsize=9)
            axis.axis("off")
    class_legend(figure, table, with_ignored=False)
    save_figure(figure, path)


def plot_reliability(details: dict, path: Path) -> None:
    """Reliability diagrams of the test pixels at T = 1 and at the calibration temperature, side by side: each
    confidence bin's accuracy (bars) against its mean confidence (dots), the diagonal perfect calibration, and
    the share of pixels per bin below. `details` is the calibration stage's metrics/calibration_details.json."""
    temperature, test = details["temperature"], details["test"]
    figure, axes = plt.subplots(
        2, 2, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}, squeeze=False
    )
    panels = [("before", "T = 1 (uncalibrated)"), ("after", f"T = {temperature:.3f} (calibrated)")]
    for column, (key, label) in enumerate(panels):
        bins = test[key]["reliability"]
        edges = np.array(bins["edges"])
        centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        filled = [value is not None for value in bins["accuracy"]]
        accuracy = np.array([value or 0.0 for value in bins["accuracy"]])
        confidence = np.array([value if value is not None else np.nan for value in bins["confidence"]])
        top, bottom = axes[0][column], axes[1][column]
        top.bar(centres, accuracy, width=width, color="tab:blue", edgecolor="black", label="accuracy")
        top.plot(centres[filled], confidence[filled], "o", color="tab:red", markersize=4, label="mean confidence")
        top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(f"{label}: ECE {test[key]['ece']:.4f}, NLL {test[key]['nll']:.4f}", fontsize=10)
        top.grid(alpha=0.3)
        top.legend(loc="upper left", fontsize=8)
        pixels = np.array(bins["pixels"], dtype=float)
        bottom.bar(centres, pixels / max(pixels.sum(), 1), width=width, color="tab:grey", edgecolor="black")
        bottom.set_xlabel("confidence (largest class probability)")
        bottom.set_ylabel("share of pixels")
        bottom.grid(alpha=0.3)
    figure.suptitle(f"test split reliability, {test['pixels']} pixels, {test['bins']} bins")
    save_figure(figure, path)
