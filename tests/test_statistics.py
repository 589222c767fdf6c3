"""The test scores' bootstrap intervals, paired comparisons, class areas, and the evaluate stage and compare command
that report them."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
import yaml

from landcover.cli import compare
from landcover.data.palette import ClassTable
from landcover.data.tilestore import TileRecord, write_index
from landcover.evaluation.intervals import (
    MIN_TRUSTED_REGIONS,
    TOO_FEW,
    expanded_level,
    paired_comparison,
    percentile_interval,
    read_region_confusions,
    resample_counts,
    resampled_scores,
    score_intervals,
    verdict,
    write_region_confusions,
)
from landcover.evaluation.metrics import HEADLINE, area_bias, headline_arrays, scores
from landcover.io.errors import PipelineError
from landcover.io.imageio import write_png
from stages import evaluate as evaluate_stage
from tests.conftest import REPO

TABLE = ClassTable(("urban_land", "water", "forest_land", "unknown"), np.zeros((4, 3)))  # unknown left out


def random_confusions(regions: int, seed: int = 0, classes: int = 4) -> np.ndarray:
    """Per-region confusion matrices of a fair classifier: mostly diagonal, some classes absent from a region."""
    rng = np.random.default_rng(seed)
    confusions = rng.integers(0, 30, size=(regions, classes, classes))
    confusions += np.eye(classes, dtype=np.int64) * rng.integers(50, 500, size=(regions, 1, classes))
    confusions[rng.random((regions, classes)) < 0.2] = 0  # a class not labelled in a region
    return confusions


def test_each_resample_is_scored_as_the_headline_is():
    """A resample's sum of confusion matrices gets exactly the scores `scores` gives that sum."""
    per_region = random_confusions(7)
    counts = resample_counts(7, 20, seed=3)
    assert (counts.sum(axis=1) == 7).all() and counts.shape == (20, 7)
    resampled = resampled_scores(per_region, counts, TABLE)
    for row, drawn in enumerate(counts):
        summed = (per_region * drawn[:, None, None]).sum(axis=0)
        report = scores(summed, TABLE)
        for key in HEADLINE:
            assert resampled[key][row] == pytest.approx(report[key], abs=1e-15)
        expected_iou = [np.nan if value is None else value for value in report["iou"].values()]
        np.testing.assert_allclose(resampled["iou"][row], expected_iou, rtol=0, atol=1e-15)


def test_headline_arrays_leave_out_absent_classes_and_the_classes_outside_the_headline():
    confusion = np.array([[6, 2, 0, 0], [1, 3, 0, 0], [0, 0, 0, 0], [0, 2, 0, 2]])  # tests/test_metrics.py's by hand
    arrays = headline_arrays(np.stack([confusion, np.zeros_like(confusion)]), TABLE)
    assert arrays["miou_land"][0] == pytest.approx((6 / 9 + 3 / 8) / 2)
    assert arrays["miou"][0] == pytest.approx((6 / 9 + 3 / 8 + 2 / 4) / 3)
    assert arrays["pixel_accuracy"][0] == pytest.approx(11 / 16)
    assert all(np.isnan(arrays[key][1]) for key in HEADLINE)  # an empty matrix has no scores, not zeros


def test_the_intervals_are_seeded_and_hold_the_score():
    per_region = random_confusions(12)
    first = score_intervals(per_region, TABLE, seed=5, resamples=1000, unit="images")
    assert first == score_intervals(per_region, TABLE, seed=5, resamples=1000, unit="images")
    assert first != score_intervals(per_region, TABLE, seed=6, resamples=1000, unit="images")
    report = scores(per_region.sum(axis=0), TABLE)
    for key in HEADLINE:
        assert first["low"][key] < report[key] < first["high"][key], key
    assert list(first["low"]) == list(first["high"]) == list(HEADLINE)  # keyed as test.json, for `dvc metrics show`
    assert set(first["iou"]) == set(TABLE.names) and first["images"] == 12 and first["level"] == 0.95
    assert first["percentile_level"] == round(expanded_level(12), 6) and "Hesterberg 2015" in first["method"]
    assert first["trust"].startswith("12 test images resampled with replacement")


def test_the_interval_narrows_as_test_images_are_added():
    few, many = (random_confusions(n, seed=1) for n in (10, 160))
    widths = [
        (lambda i: i["high"]["miou_land"] - i["low"]["miou_land"])(score_intervals(c, TABLE, 0, 1000, "images"))
        for c in (few, many)
    ]
    assert widths[1] < widths[0] / 2  # sixteen times the images: about a quarter of the width


def test_fewer_than_five_test_images_are_said_to_be_too_few_in_words():
    intervals = score_intervals(random_confusions(MIN_TRUSTED_REGIONS - 1), TABLE, 0, 1000, "blocks")
    assert intervals["blocks"] == 4 and intervals["low"]["miou_land"] is not None  # still shown, not hidden
    assert (
        intervals["trust"].startswith("only 4 test blocks: too few (under 5)")
        and "too wide to trust" in intervals["trust"]
    )
    enough = score_intervals(random_confusions(MIN_TRUSTED_REGIONS), TABLE, 0, 1000, "blocks")
    assert "too few" not in enough["trust"]


def test_the_expanded_level_for_8_regions_is_hesterbergs():
    """z = sqrt(8 / 7) t(7, 0.975), with t(7, 0.975) = 2.364624 from a printed t table; level = 1 - 2 Phi(-z)."""
    z = math.sqrt(8 / 7) * 2.364624
    assert z == pytest.approx(2.52789, abs=1e-5)
    assert expanded_level(8) == pytest.approx(1 - math.erfc(z / math.sqrt(2)), abs=1e-6)
    assert expanded_level(8) == pytest.approx(0.98852, abs=1e-5)  # percentiles 0.574 and 99.426


def test_the_expanded_interval_is_wider_on_few_regions_and_the_middle_95_percent_on_many():
    levels = [expanded_level(n) for n in (2, 5, 8, 20, 50, 200, 10**6)]
    assert levels == sorted(levels, reverse=True) and levels[-1] == pytest.approx(0.95, abs=1e-5)
    assert expanded_level(8) > 0.985 and expanded_level(50) == pytest.approx(0.9576, abs=1e-4)
    assert expanded_level(1) == 1.0  # one region has no spread: every resample is the same
    values = np.arange(100001) / 100000
    plain = {"low": 0.025, "high": 0.975}
    assert percentile_interval(values, 10**6) == pytest.approx(plain, abs=1e-4)
    few = percentile_interval(values, 8)
    assert few == pytest.approx({"low": 0.00574, "high": 0.99426}, abs=1e-4)  # wider than the plain one
    for bad in (0, -3):
        with pytest.raises(ValueError, match=r"^an expanded level needs regions and a level in \(0, 1\), got "):
            expanded_level(bad)


def test_the_interval_is_none_where_no_resample_has_a_score():
    assert percentile_interval(np.array([np.nan, np.nan]), 8) is None
    assert percentile_interval(np.array([np.nan, 0.5, 0.5]), 8) == {"low": 0.5, "high": 0.5}


def test_identical_predictions_differ_by_exactly_0_and_show_no_difference():
    per_region = random_confusions(9)
    comparison = paired_comparison(per_region, per_region.copy(), TABLE, seed=0, resamples=1000)
    for key in HEADLINE:
        assert comparison[key]["difference"] == 0.0
        assert comparison[key]["interval"] == {"low": 0.0, "high": 0.0}
        assert comparison[key]["verdict"] == "no difference shown"


def better_on_every_image(per_region: np.ndarray) -> np.ndarray:
    """The same images, each with a fifth of its errors moved onto the diagonal: better everywhere."""
    better = per_region.copy()
    for matrix in better:
        errors = matrix - np.diag(np.diag(matrix))
        fixed = errors // 5
        matrix -= fixed
        matrix[np.diag_indices_from(matrix)] += fixed.sum(axis=1)
    return better


def test_a_variant_better_on_every_test_image_is_called_better_and_the_reverse_worse():
    per_region = random_confusions(9)
    better = better_on_every_image(per_region)
    for image in range(9):  # better on each image on its own, every headline score
        single = [headline_arrays(m[image], TABLE) for m in (per_region, better)]
        assert all(single[1][key] > single[0][key] for key in HEADLINE if not np.isnan(single[0][key]))
    forward = paired_comparison(per_region, better, TABLE, seed=0, resamples=1000)
    backward = paired_comparison(better, per_region, TABLE, seed=0, resamples=1000)
    for key in HEADLINE:
        assert forward[key]["difference"] > 0 and forward[key]["verdict"] == "B better", key
        assert backward[key]["verdict"] == "B worse", key


def test_the_verdict_needs_the_interval_to_exclude_0_and_enough_images():
    assert verdict({"low": 0.001, "high": 0.2}, 5) == "B better"
    assert verdict({"low": -0.2, "high": -0.001}, 5) == "B worse"
    assert verdict({"low": 0.0, "high": 0.2}, 5) == "no difference shown"  # touching 0 shows none
    assert verdict({"low": -0.1, "high": 0.1}, 100) == "no difference shown"
    assert verdict(None, 100) == "no difference shown"
    assert verdict({"low": 0.1, "high": 0.2}, MIN_TRUSTED_REGIONS - 1) == TOO_FEW == "too few test images to compare"


def test_class_areas_compare_the_predicted_column_with_the_labelled_row():
    confusion = np.array([[6, 2, 0, 0], [1, 3, 0, 0], [0, 0, 0, 0], [0, 2, 0, 2]])  # rows truth, columns prediction
    areas = area_bias(confusion, TABLE)
    assert areas["urban_land"] == {"true_pixels": 8, "mapped_pixels": 7, "bias_pixels": -1, "bias_percent": -12.5}
    assert areas["water"] == {"true_pixels": 4, "mapped_pixels": 7, "bias_pixels": 3, "bias_percent": 75.0}
    assert areas["forest_land"]["bias_percent"] is None  # no true area: no percent
    assert sum(area["bias_pixels"] for area in areas.values()) == 0  # every labelled pixel is mapped as something


def test_the_per_image_file_round_trips_and_bad_files_are_named(tmp_path):
    per_region = {f"image-{k}": matrix for k, matrix in enumerate(random_confusions(3))}
    path = tmp_path / "confusion_per_image.json"
    write_region_confusions(path, per_region, TABLE)
    table, read = read_region_confusions(path)
    assert (table.names, table.headline) == (TABLE.names, TABLE.headline) and list(read) == list(per_region)
    assert all((read[name] == per_region[name]).all() for name in per_region)
    with pytest.raises(PipelineError, match=r"^.*missing\.json: cannot read the per-image confusion matrices"):
        read_region_confusions(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"classes": ["a"], "headline": [true], "regions": {"x": [[1, 2]]}}')
    with pytest.raises(PipelineError, match=r"bad\.json: x's confusion matrix is \(1, 2\), not 1 x 1$"):
        read_region_confusions(tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(PipelineError, match=r"bad\.json: not a per-image confusion file"):
        read_region_confusions(tmp_path / "bad.json")


# --- the evaluate stage on tiny fixtures ---


def write_tiny_split(root, images: int, wrong: float = 0.1, seed: int = 0):
    """A tile store of `images` 32 px images (DeepGlobe's classes), its test split, and predictions that get a
    `wrong` share of each image's pixels wrong."""

    rng = np.random.default_rng(seed)
    (root / "tiles").mkdir()
    (root / "encoded" / "masks").mkdir(parents=True)
    (root / "predictions").mkdir()
    (root / "splits").mkdir()
    ClassTable.deepglobe().to_csv(root / "tiles" / "class_dict.csv")
    records = []
    for k in range(images):
        image_id = f"{100 + k}"
        truth = rng.integers(0, 6, size=(32, 32)).astype(np.uint8)
        prediction = np.where(rng.random(truth.shape) < wrong, (truth + 1) % 6, truth).astype(np.uint8)
        write_png(root / "encoded" / "masks" / f"{image_id}.png", truth)
        write_png(root / "predictions" / f"{image_id}.png", prediction)
        records.append(TileRecord(f"{image_id}_0_0", image_id, 0, 0, 32, 32, 32))
    write_index(root / "splits" / "test.csv", records)
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluate": {"seed": 0, "bootstrap": 1000}}))
    return params


def run_evaluate(root, params):
    names = ("test", "low", "high", "details", "intervals", "per_image")
    outputs = {name: root / "metrics" / f"{name}.json" for name in names}
    (root / "metrics").mkdir(exist_ok=True)
    evaluate_stage.main(
        [
            *(str(root / name) for name in ("predictions", "tiles", "encoded")),
            str(root / "splits" / "test.csv"),
            *("--metrics", str(outputs["test"]), "--details", str(outputs["details"])),
            *("--confusion", str(root / "metrics" / "confusion.csv"), "--intervals", str(outputs["intervals"])),
            *("--low", str(outputs["low"]), "--high", str(outputs["high"])),
            *("--per-image", str(outputs["per_image"]), "--params", str(params)),
        ]
    )
    return outputs


@pytest.fixture
def tiny_split(tmp_path):
    return tmp_path, write_tiny_split(tmp_path, images=8)


def test_the_evaluate_stage_writes_intervals_areas_and_per_image_matrices(tiny_split):
    root, params = tiny_split
    outputs = run_evaluate(root, params)
    test = json.loads(outputs["test"].read_text())
    assert list(test) == list(HEADLINE)  # the point estimates alone, as `dvc metrics diff` reads them
    low, high = (json.loads(outputs[name].read_text()) for name in ("low", "high"))
    assert list(low) == list(high) == list(test)  # the same keys: `dvc metrics show` rows under test.json's columns
    for key in HEADLINE:
        assert low[key] <= test[key] <= high[key]
    intervals = json.loads(outputs["intervals"].read_text())
    assert intervals["images"] == 8 and intervals["resamples"] == 1000 and intervals["seed"] == 0
    assert intervals["level"] == 0.95 and intervals["percentile_level"] == round(expanded_level(8), 6)
    assert not set(intervals) & set(HEADLINE)  # the bounds are in their own files alone
    details = json.loads(outputs["details"].read_text())
    assert set(details["iou_intervals"]) == set(details["iou"])
    assert details["areas"]["water"]["true_pixels"] > 0 and "bias_percent" in details["areas"]["water"]
    table, per_image = read_region_confusions(outputs["per_image"])
    assert sorted(per_image) == [f"{100 + k}" for k in range(8)] and table.names[-1] == "unknown"
    assert sum(per_image.values()).sum() == 8 * 32 * 32
    first = [outputs[name].read_bytes() for name in ("low", "high", "intervals")]
    run_evaluate(root, params)
    assert [outputs[name].read_bytes() for name in ("low", "high", "intervals")] == first  # seeded: a stable lock


@pytest.mark.parametrize(
    "evaluate, message",
    [
        ({"seed": 0, "bootstrap": 0}, r"^params: evaluate\.bootstrap must be at least 1, got 0$"),
        ({"seed": 0, "bootstrap": "many"}, r"^params: evaluate\.bootstrap must be int, got 'many'$"),
        ({"seed": 0}, r"^params: missing key evaluate\.bootstrap$"),
    ],
)
def test_the_evaluate_stage_refuses_bad_params_naming_the_key(tiny_split, evaluate, message):
    root, params = tiny_split
    params.write_text(yaml.safe_dump({"evaluate": evaluate}))
    with pytest.raises(PipelineError, match=message):
        run_evaluate(root, params)
    assert not (root / "metrics" / "test.json").exists()


# --- landcover-compare ---


def evaluated(tmp_path, name: str, wrong: float, images: int = 8) -> str:
    """A project folder whose metrics/ the evaluate stage wrote, predictions with a `wrong` share wrong."""
    root = tmp_path / name
    root.mkdir()
    params = write_tiny_split(root, images, wrong=wrong, seed=0)  # the same truth for every wrong share
    run_evaluate(root, params)
    (root / "metrics" / "confusion_per_image.json").write_bytes((root / "metrics" / "per_image.json").read_bytes())
    return str(root)


def test_compare_calls_a_better_variant_better_and_writes_json(tmp_path, capsys):
    worse, better = evaluated(tmp_path, "a", wrong=0.3), evaluated(tmp_path, "b", wrong=0.1)
    compare.main([worse, better, "--json", str(tmp_path / "comparison.json"), "--bootstrap", "1000"])
    printed = capsys.readouterr().out
    assert "| metric | A | B | B - A | 95% interval | verdict |" in printed
    assert printed.count("| B better |") == len(HEADLINE)
    written = json.loads((tmp_path / "comparison.json").read_text())
    assert written["images"] == 8 and written["resamples"] == 1000
    assert all(written[key]["verdict"] == "B better" and written[key]["difference"] > 0 for key in HEADLINE)
    compare.main([worse, worse])
    assert capsys.readouterr().out.count("| +0.0000 | +0.0000 to +0.0000 | no difference shown |") == len(HEADLINE)


def test_compare_says_too_few_test_images_to_compare(tmp_path, capsys):
    few = [evaluated(tmp_path, name, wrong, images=3) for name, wrong in (("a", 0.3), ("b", 0.1))]
    compare.main(few)
    printed = capsys.readouterr().out
    assert "Too few test images to compare (3, under 5)" in printed and printed.count(TOO_FEW) == len(HEADLINE)


def test_compare_refuses_files_of_other_images_or_classes_in_one_line(tmp_path):
    a, b = evaluated(tmp_path, "a", wrong=0.3), evaluated(tmp_path, "b", wrong=0.1)
    other = tmp_path / "other.json"
    table, regions = read_region_confusions(f"{b}/metrics/confusion_per_image.json")
    regions["999"] = regions.pop("100")
    write_region_confusions(other, regions, table)
    with pytest.raises(PipelineError, match=r"cover different test images: 1 only in .*a \(e\.g\. 100\), 1 only in"):
        compare.main([a, str(other)])
    relabelled = ClassTable(tuple(f"class{k}" for k in range(len(table))), np.zeros((len(table), 3)))
    write_region_confusions(other, read_region_confusions(f"{a}/metrics/confusion_per_image.json")[1], relabelled)
    with pytest.raises(PipelineError, match=r"have different class tables: urban_land, .* against class0, "):
        compare.main([a, str(other)])
    with pytest.raises(PipelineError, match=r"^nowhere: no such file, folder, git revision or experiment$"):
        compare.main([a, "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match=r"empty/metrics/confusion_per_image\.json: cannot read"):
        compare.main([a, str(tmp_path / "empty")])


def test_compare_reads_git_revisions_and_experiment_refs(tmp_path, monkeypatch, capsys):
    a, b = evaluated(tmp_path, "a", wrong=0.3), evaluated(tmp_path, "b", wrong=0.1)
    repo = tmp_path / "repo"
    (repo / "metrics").mkdir(parents=True)
    run = lambda *args: subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    identity = ("-c", "user.name=t", "-c", "user.email=t@t")
    for source in (a, b):
        (repo / "metrics" / "confusion_per_image.json").write_bytes(
            (tmp_path / source / "metrics" / "confusion_per_image.json").read_bytes()
        )
        run("add", "-A")
        run(*identity, "commit", "-q", "-m", source)
    run("update-ref", "refs/exps/ab/cdef0123/ci-better", "HEAD")  # where `dvc exp run --name` keeps one
    monkeypatch.chdir(repo)
    compare.main(["HEAD~1", "ci-better", "--bootstrap", "1000"])
    assert capsys.readouterr().out.count("| B better |") == len(HEADLINE)
    with pytest.raises(PipelineError, match=r"^HEAD~2: no such file, folder, git revision or experiment$"):
        compare.main(["HEAD~2", "ci-better"])


def test_compare_is_a_console_script():
    scripts = (REPO / "pyproject.toml").read_text()
    assert 'landcover-compare = "landcover.cli.compare:console_main"' in scripts
