"""Scores against a confusion matrix worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from landcover.data.palette import IGNORE_INDEX, ClassTable
from landcover.evaluation.metrics import (
    confusion_matrix,
    counting,
    headline_drop,
    read_confusion_csv,
    scores,
    split_headline,
    write_confusion_csv,
)

NAMES = ("urban_land", "water", "forest_land", "unknown")


def table(names, headline=()) -> ClassTable:
    return ClassTable(tuple(names), np.arange(len(names) * 3).reshape(-1, 3), headline=headline)


TABLE = table(NAMES)  # the default headline: all but `unknown`


def test_confusion_matrix_counts_pairs_and_skips_ignored_pixels():
    truth = np.array([[0, 0, 1, IGNORE_INDEX], [1, 3, 3, 0]], dtype=np.uint8)
    prediction = np.array([[0, 1, 1, 2], [1, 3, 0, 0]], dtype=np.uint8)
    expected = np.zeros((4, 4), dtype=int)
    for t, p in [(0, 0), (0, 1), (1, 1), (1, 1), (3, 3), (3, 0), (0, 0)]:
        expected[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(truth, prediction, 4), expected)


def test_scores_by_hand():
    # rows truth, columns prediction; forest_land appears in neither (row and column empty)
    confusion = np.array([[6, 2, 0, 0], [1, 3, 0, 0], [0, 0, 0, 0], [0, 2, 0, 2]])
    result = scores(confusion, TABLE)
    # urban: TP 6, FP 1, FN 2 -> IoU 6/9, Dice 12/15; water: TP 3, FP 4, FN 1 -> 3/8, 6/11; unknown: 2/4, 4/6
    assert result["iou"] == pytest.approx({"urban_land": 6 / 9, "water": 3 / 8, "forest_land": None, "unknown": 2 / 4})
    assert result["iou"]["forest_land"] is None and result["dice"]["forest_land"] is None  # not a perfect 1.0
    assert result["dice"]["urban_land"] == pytest.approx(12 / 15)
    assert result["miou_land"] == pytest.approx((6 / 9 + 3 / 8) / 2)  # unknown and the absent class left out
    # the 2 unknown-labelled pixels predicted as water are water's false positives in the headline (GLNet's
    # convention); with unknown-labelled pixels ignored, water is TP 3, FP 2, FN 1
    assert result["miou_land_unknown_ignored"] == pytest.approx((6 / 9 + 3 / 6) / 2)
    assert (
        "false positives" in result["counting"]["miou_land"]
        and "left out" in result["counting"]["miou_land_unknown_ignored"]
    )
    assert result["miou"] == pytest.approx((6 / 9 + 3 / 8 + 2 / 4) / 3)
    assert result["mean_dice"] == pytest.approx((12 / 15 + 6 / 11 + 4 / 6) / 3)
    assert result["pixel_accuracy"] == pytest.approx(11 / 16)  # 16 pixels, 11 on the diagonal
    assert result["fw_iou"] == pytest.approx(8 / 16 * 6 / 9 + 4 / 16 * 3 / 8 + 4 / 16 * 2 / 4)


def test_class_predicted_but_never_true_scores_zero_not_none():
    result = scores(np.array([[3, 1], [0, 0]]), table("ab"))
    assert result["iou"]["b"] == 0.0


def test_confusion_csv_round_trip(tmp_path):
    confusion = np.arange(16).reshape(4, 4)
    write_confusion_csv(tmp_path / "c.csv", confusion, NAMES)
    restored, names = read_confusion_csv(tmp_path / "c.csv")
    assert b"\r" not in (tmp_path / "c.csv").read_bytes()  # "\n" line ends: the bytes DVC hashes
    np.testing.assert_array_equal(restored, confusion)
    assert names == NAMES


def test_class_index_out_of_range_is_refused_but_ignored_pixels_are_not_checked():
    with pytest.raises(ValueError, match="out of range for 4 classes"):
        confusion_matrix(np.array([0, 4]), np.array([0, 0]), 4)
    with pytest.raises(ValueError, match="out of range for 4 classes"):
        confusion_matrix(np.array([0, 3]), np.array([4, 0]), 4)
    # the prediction under an ignored pixel may be anything, and the highest class index is in range
    assert confusion_matrix(np.array([IGNORE_INDEX, 3]), np.array([9, 3]), 4)[3, 3] == 1
    assert confusion_matrix(np.array([IGNORE_INDEX]), np.array([9]), 4).sum() == 0


def test_empty_confusion_has_no_scores_rather_than_zeros():
    result = scores(np.zeros((2, 2), dtype=int), table("ab"))
    assert result == {
        "miou_land": None,
        "miou_land_unknown_ignored": None,
        "counting": counting(table("ab")),
        "miou": None,
        "mean_dice": None,
        "pixel_accuracy": None,
        "fw_iou": None,
        "iou": {"a": None, "b": None},
        "dice": {"a": None, "b": None},
        "pixels": 0,
    }


def test_headline_is_split_from_the_details():
    report = scores(np.array([[3, 1], [0, 4]]), table(("a", "unknown")))
    headline, details = split_headline(report)
    assert set(headline) == {"miou_land", "miou", "mean_dice", "pixel_accuracy"}
    assert headline["miou_land"] == pytest.approx(3 / 4)  # `unknown` left out of the headline
    assert set(details) == {"miou_land_unknown_ignored", "counting", "fw_iou", "iou", "dice", "pixels"}
    assert details["pixels"] == 8 and details["miou_land_unknown_ignored"] == pytest.approx(3 / 4)


def test_confusion_csv_is_labelled_by_class(tmp_path):
    write_confusion_csv(tmp_path / "c.csv", np.array([[1, 2], [3, 4]]), ("a", "b"))
    assert (tmp_path / "c.csv").read_text() == "truth\\prediction,a,b\na,1,2\nb,3,4\n"


def test_headline_drop_scores_both_predictions_on_the_same_pixels():
    truth = np.array([0, 0, 1, 1, 2, 3, IGNORE_INDEX], dtype=np.uint8)
    reference = np.array([0, 0, 1, 1, 2, 3, 1], dtype=np.uint8)  # every pixel right: land mIoU 1
    candidate = np.array([0, 1, 1, 1, 2, 3, 0], dtype=np.uint8)  # one urban pixel called water
    result = headline_drop(truth, reference, candidate, TABLE)
    # candidate: urban 1/2, water 2/3, forest 1 (the ignored pixel counts for neither)
    assert result["reference_miou_land"] == pytest.approx(1.0)
    assert result["candidate_miou_land"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert result["drop"] == pytest.approx(1.0 - (1 / 2 + 2 / 3 + 1) / 3)
    assert headline_drop(truth, candidate, reference, TABLE)["drop"] < 0  # above the reference: negative


def test_headline_drop_is_none_without_scores():
    ignored = np.full(4, IGNORE_INDEX, dtype=np.uint8)
    result = headline_drop(ignored, np.zeros(4, np.uint8), np.ones(4, np.uint8), TABLE)
    assert result == {"reference_miou_land": None, "candidate_miou_land": None, "drop": None}


# --- the headline set comes from the class table ---------------------------------------------------

CONFUSION = np.array([[6, 2, 0, 0], [1, 3, 0, 0], [0, 0, 0, 0], [0, 2, 0, 2]])  # as in test_scores_by_hand


def test_the_left_out_class_is_the_tables_not_the_one_named_unknown():
    """A table whose non-headline class is `water` (index 1), and whose `unknown` is a headline class."""
    names = ("urban_land", "water", "forest_land", "unknown")
    result = scores(CONFUSION, table(names, headline=(True, False, True, True)))
    # urban 6/9, unknown 2/4 (water left out of the mean, forest_land absent)
    assert result["miou_land"] == pytest.approx((6 / 9 + 2 / 4) / 2)
    # pixels labelled water ignored: urban TP 6, FP 0, FN 2 -> 6/8; unknown TP 2, FP 0, FN 2 -> 2/4
    assert result["miou_land_unknown_ignored"] == pytest.approx((6 / 8 + 2 / 4) / 2)
    assert "pixels labelled water that are predicted" in result["counting"]["miou_land"]
    assert "with the pixels labelled water left out" in result["counting"]["miou_land_unknown_ignored"]
    assert result["miou"] == pytest.approx((6 / 9 + 3 / 8 + 2 / 4) / 3)  # all classes: unchanged
    # two classes left out
    two = scores(CONFUSION, table(("a", "b", "c", "d"), headline=(True, False, True, False)))
    assert two["miou_land"] == pytest.approx(6 / 9)
    assert "pixels labelled b or d that" in two["counting"]["miou_land"]


def test_every_class_in_the_headline():
    everything = table(("urban_land", "water", "forest_land", "unknown"), headline=(True,) * 4)
    result = scores(CONFUSION, everything)
    assert result["miou_land"] == pytest.approx(result["miou"]) == pytest.approx((6 / 9 + 3 / 8 + 2 / 4) / 3)
    assert result["miou_land_unknown_ignored"] == pytest.approx(result["miou_land"])  # no pixel left out
    assert result["counting"] == counting(everything) and "none left out" in result["counting"]["miou_land"]
    truth = np.array([0, 1, 3, 3], dtype=np.uint8)
    drop = headline_drop(truth, truth, np.array([0, 1, 3, 0], dtype=np.uint8), everything)
    assert drop["candidate_miou_land"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)  # unknown counts here


def test_deepglobe_counting_text_is_what_test_details_always_said():
    """metrics/test_details.json of the default run must not change by a byte."""
    assert counting(ClassTable.deepglobe()) == {
        "miou_land": "land classes' mean IoU; pixels labelled unknown that are predicted as a land class "
        "count as that class's false positives (GLNet's convention, as in the published DeepGlobe numbers)",
        "miou_land_unknown_ignored": "land classes' mean IoU with the pixels labelled unknown left out",
    }


def test_scores_refuse_a_confusion_matrix_of_another_size():
    with pytest.raises(ValueError, match=r"confusion matrix of shape \(3, 3\) for 4 classes"):
        scores(np.zeros((3, 3)), TABLE)
