"""Segmentation scores from one confusion matrix accumulated over a whole split.

IoU_c = TP / (TP + FP + FN) and Dice_c = 2TP / (2TP + FP + FN), per class, pooled over every
pixel of the split before averaging (the DeepGlobe challenge's definition). A class absent from
both ground truth and prediction has no score (None) and is left out of the means; counting it
as a perfect 1.0 would flatter small test sets.

The headline `miou_land` averages the IoU of the class table's headline classes (the "land
classes"; DeepGlobe's: all but `unknown`), but the pixels labelled with a class left out of the
headline still count: one the model calls a headline class is that class's false positive. That is
GLNet's convention, which the published DeepGlobe numbers use, so the headline keeps it;
`miou_land_unknown_ignored` (in the details) leaves those pixels out altogether. The key names stay
as they are whatever the table (renaming them would break `dvc metrics diff` across versions).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from landcover.data.palette import IGNORE_INDEX, ClassTable

# The scores that `dvc metrics show` and `dvc exp show` display; the rest go to a details file, so
# the default views stay readable (a column per key, whatever file it is in).
HEADLINE = ("miou_land", "miou", "mean_dice", "pixel_accuracy")


def confusion_matrix(target: np.ndarray, prediction: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts, rows = ground truth, columns = prediction.

    Pixels whose ground truth is IGNORE_INDEX are left out.
    """
    target = np.asarray(target).ravel()
    prediction = np.asarray(prediction).ravel()
    valid = target != IGNORE_INDEX
    if valid.any() and (target[valid].max() >= num_classes or prediction[valid].max() >= num_classes):
        raise ValueError(f"class index out of range for {num_classes} classes")
    pairs = target[valid].astype(np.int64) * num_classes + prediction[valid]
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return float(np.mean(present)) if present else None


def counting(table: ClassTable) -> dict[str, str]:
    """What metrics/test_details.json says about the two headline means (a JSON file holds no comments).

    DeepGlobe's table gives the text the pipeline always wrote (`unknown` the one class left out).
    """
    left_out = " or ".join(table.left_out)
    if not left_out:
        return {
            "miou_land": "land classes' mean IoU; every class of the class table is in the headline, none left out",
            "miou_land_unknown_ignored": "the same as miou_land: no class is left out of the headline",
        }
    return {
        "miou_land": f"land classes' mean IoU; pixels labelled {left_out} that are predicted as a land class "
        "count as that class's false positives (GLNet's convention, as in the published DeepGlobe numbers)",
        "miou_land_unknown_ignored": f"land classes' mean IoU with the pixels labelled {left_out} left out",
    }


def class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and Dice per class over the last two axes of `confusion` (one matrix, or a stack of them: the bootstrap's
    resamples); NaN for a class absent from both ground truth and prediction."""
    confusion = np.asarray(confusion, dtype=np.int64)
    true_positive = np.diagonal(confusion, axis1=-2, axis2=-1)
    false_positive = confusion.sum(axis=-2) - true_positive
    false_negative = confusion.sum(axis=-1) - true_positive
    union = true_positive + false_positive + false_negative
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, true_positive / union, np.nan)
        dice = np.where(union > 0, 2 * true_positive / (union + true_positive), np.nan)
    return iou, dice


def _iou_and_dice(confusion: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    iou, dice = ([None if np.isnan(value) else float(value) for value in scores] for scores in class_scores(confusion))
    return iou, dice


def _mean_present(values: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the counted values that are not NaN; NaN where there is none."""
    present = counted & ~np.isnan(values)
    count = present.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, np.where(present, values, 0.0).sum(axis=-1) / count, np.nan)


def headline_arrays(confusions: np.ndarray, table: ClassTable) -> dict[str, np.ndarray]:
    """The headline scores (HEADLINE) and per-class IoU of a stack of confusion matrices (..., C, C), as arrays
    over the leading axes (NaN where a score is undefined): each matrix scored as `scores` scores one, so a
    bootstrap resample's scores are computed as the headline is."""
    confusions = np.asarray(confusions, dtype=np.int64)
    iou, dice = class_scores(confusions)
    every_class = np.ones(len(table), dtype=bool)
    total = confusions.sum(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.where(total > 0, np.trace(confusions, axis1=-2, axis2=-1) / total, np.nan)
    return {
        "miou_land": _mean_present(iou, np.array(table.headline, dtype=bool)),
        "miou": _mean_present(iou, every_class),
        "mean_dice": _mean_present(dice, every_class),
        "pixel_accuracy": accuracy,
        "iou": iou,
    }


def _headline_mean(values: list[float | None], table: ClassTable) -> float | None:
    return _mean([value for value, counted in zip(values, table.headline) if counted])


def scores(confusion: np.ndarray, table: ClassTable) -> dict:
    """Every reported number: headline mIoU (the table's headline classes), mIoU (all), per-class IoU and
    Dice, and more. `confusion` is over the table's classes, in its order."""
    confusion = np.asarray(confusion, dtype=np.int64)
    if confusion.shape != (len(table), len(table)):
        raise ValueError(f"confusion matrix of shape {confusion.shape} for {len(table)} classes")
    class_names = table.names
    iou, dice = _iou_and_dice(confusion)
    labelled_headline = confusion.copy()
    labelled_headline[[not counted for counted in table.headline], :] = 0  # the left-out classes' truth rows
    total = int(confusion.sum())
    frequency = confusion.sum(axis=1) / total if total else np.zeros(len(class_names))
    return {
        "miou_land": _headline_mean(iou, table),
        "miou_land_unknown_ignored": _headline_mean(_iou_and_dice(labelled_headline)[0], table),
        "counting": counting(table),
        "miou": _mean(iou),
        "mean_dice": _mean(dice),
        "pixel_accuracy": float(np.trace(confusion) / total) if total else None,
        "fw_iou": float(sum(f * value for f, value in zip(frequency, iou) if value is not None)) if total else None,
        "iou": dict(zip(class_names, iou)),
        "dice": dict(zip(class_names, dice)),
        "pixels": total,
    }


def headline_drop(target: np.ndarray, reference: np.ndarray, candidate: np.ndarray, table: ClassTable) -> dict:
    """Two predictions of the same pixels scored against `target`: each one's headline mIoU (the table's
    headline classes) and how far the candidate's is below the reference's (`drop`; negative where it is
    above, None where either has no score)."""
    first, second = (
        scores(confusion_matrix(target, p, len(table)), table)["miou_land"] for p in (reference, candidate)
    )
    return {
        "reference_miou_land": first,
        "candidate_miou_land": second,
        "drop": None if first is None or second is None else first - second,
    }


def split_headline(report: dict) -> tuple[dict, dict]:
    """(headline scores, everything else) of a `scores()` report."""
    return (
        {key: report[key] for key in HEADLINE},
        {key: value for key, value in report.items() if key not in HEADLINE},
    )


def write_confusion_csv(path: str | Path, confusion: np.ndarray, class_names: tuple[str, ...]) -> None:
    """Rows are ground truth, columns prediction, both labelled by class name."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["truth\\prediction", *class_names])
        writer.writerows([name, *row] for name, row in zip(class_names, np.asarray(confusion).tolist()))


def read_confusion_csv(path: str | Path) -> tuple[np.ndarray, tuple[str, ...]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=np.int64), tuple(rows[0][1:])


def area_bias(confusion: np.ndarray, table: ClassTable) -> dict[str, dict]:
    """Each class's mapped area (pixels predicted as it: its column's sum) against its true area (pixels labelled
    it: its row's sum), over the pixels the confusion matrix counts (those with a label): the bias in pixels,
    mapped minus true, and in percent of the true area where that is not 0."""
    confusion = np.asarray(confusion, dtype=np.int64)
    true_pixels, mapped_pixels = confusion.sum(axis=1), confusion.sum(axis=0)
    return {
        name: {
            "true_pixels": int(true),
            "mapped_pixels": int(mapped),
            "bias_pixels": int(mapped - true),
            "bias_percent": float(100 * (mapped - true) / true) if true else None,
        }
        for name, true, mapped in zip(table.names, true_pixels, mapped_pixels)
    }
