"""landcover-sample and landcover-assess end to end on a georeferenced map whose truth is known, the sample's
design (strata, sizes, seeds, pixel centres, nodata), change strata from two maps, and every refusal: one
line, nothing written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from affine import Affine

from landcover.cli import assess as assess_command
from landcover.cli import sample as sample_command
from landcover.io.errors import PipelineError
from tests.conftest import REPO
from tests.optional import need_group
from tests.test_change import NORTH, PIXEL, TABLE, UTM33, WEST, write_class_map

SIDE = 240


def known_truth(seed: int = 0) -> np.ndarray:
    """Blocks of classes, class 3 (forest) over a large share."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(len(TABLE), size=(SIDE // 12, SIDE // 12), p=[0.1, 0.15, 0.1, 0.4, 0.1, 0.1, 0.05])
    return blocks.repeat(12, 0).repeat(12, 1).astype(np.uint8)


def perturbed(truth: np.ndarray, seed: int = 1) -> np.ndarray:
    """A biased map of the truth: a quarter of forest mapped as rangeland, 5% of every pixel another class."""
    rng = np.random.default_rng(seed)
    mapped = truth.copy()
    mapped[(truth == 3) & (rng.random(truth.shape) < 0.25)] = 2
    noise = rng.random(truth.shape) < 0.05
    mapped[noise] = rng.integers(0, len(TABLE), noise.sum())
    mapped[:6, :] = 255  # no prediction: never sampled
    return mapped


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    root = tmp_path_factory.mktemp("sampling")
    truth = known_truth()
    classes = perturbed(truth)
    return root, truth, classes, write_class_map(root / "map.tif", classes)


def run_sample(path, output, *flags: str) -> dict:
    sample_command.main(["--map", str(path), "--output", str(output), "--no-progress", *flags])
    return json.loads((output / "sample_design.json").read_text())


def read_rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def write_rows(path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def label_from(truth: np.ndarray, sample_csv, labelled_csv, names=TABLE.names) -> list[dict]:
    """The sample's reference column filled in from the truth at each point's pixel centre."""
    rows = read_rows(sample_csv)
    inverse = ~Affine(PIXEL, 0, WEST, 0, -PIXEL, NORTH)
    for row in rows:
        column, line = inverse @ (float(row["x"]), float(row["y"]))
        row["reference"] = names[truth[int(line), int(column)]]
    write_rows(labelled_csv, rows)
    return rows


def true_hectares(truth: np.ndarray, valid: np.ndarray, design: dict) -> np.ndarray:
    """Each class's true area over the map's pixels with a class (the sampled population), at the map's pixel areas."""
    hectares_per_pixel = sum(s["hectares"] for s in design["strata"]) / valid.sum()
    return np.bincount(truth[valid], minlength=len(TABLE)) * hectares_per_pixel


def test_error_adjusted_areas_are_nearer_the_truth_than_the_map_and_the_interval_covers_accuracy(mapped, tmp_path):
    root, truth, classes, path = mapped
    design = run_sample(path, tmp_path / "sample", "--seed", "7")
    label_from(truth, tmp_path / "sample" / "sample.csv", tmp_path / "labelled.csv")
    assess_command.main(
        ["--sample", str(tmp_path / "labelled.csv"), "--design", str(tmp_path / "sample" / "sample_design.json"),
         "--output", str(tmp_path / "assessment")]
    )  # fmt: skip
    report = json.loads((tmp_path / "assessment" / "assessment.json").read_text())
    valid = classes != 255
    truth_ha = true_hectares(truth, valid, design)
    by_class = {row["class"]: row for row in report["classes"]}
    mapped_ha = np.array([by_class[name]["mapped_hectares"] for name in TABLE.names])
    adjusted_ha = np.array([by_class[name]["adjusted_hectares"]["estimate"] for name in TABLE.names])
    assert np.abs(adjusted_ha - truth_ha).sum() < 0.5 * np.abs(mapped_ha - truth_ha).sum()
    true_accuracy = (classes[valid] == truth[valid]).mean()
    overall = report["overall_accuracy"]
    assert overall["ci95_low"] <= true_accuracy <= overall["ci95_high"]
    assert report["points_labelled"] == design["sample_size"] and report["points_left_out"] == 0
    assert np.array(report["error_matrix"]["counts"]).sum() == design["sample_size"]
    forest = by_class["forest_land"]
    assert forest["adjusted_hectares"]["ci95_low"] <= truth_ha[3] <= forest["adjusted_hectares"]["ci95_high"]
    rows = read_rows(tmp_path / "assessment" / "assessment.csv")
    assert rows[-1]["class"] == "overall_accuracy" and float(rows[-1]["adjusted_hectares"]) == overall["estimate"]
    assert "| forest_land |" in (tmp_path / "assessment" / "assessment.md").read_text()


def test_the_design_draws_its_sizes_at_pixel_centres_never_on_nodata_and_the_same_seed_gives_the_same_points(
    mapped, tmp_path
):
    root, truth, classes, path = mapped
    design = run_sample(path, tmp_path / "a", "--seed", "3")
    run_sample(path, tmp_path / "b", "--seed", "3")
    other = run_sample(path, tmp_path / "c", "--seed", "4")
    assert (tmp_path / "a" / "sample.csv").read_bytes() == (tmp_path / "b" / "sample.csv").read_bytes()
    assert design["points"] != other["points"]
    pixels = np.bincount(classes[classes != 255], minlength=len(TABLE))
    assert [s["pixels"] for s in design["strata"]] == pixels.tolist()
    weights = np.array([s["weight"] for s in design["strata"]])
    expected_total = int(np.ceil((weights * np.sqrt(0.9 * 0.1)).sum() ** 2 / 0.01**2 - 1e-9))  # eq. 13, every U 0.9
    assert design["sample_size"] == expected_total == len(design["points"])
    sizes = {s["stratum"]: s["points"] for s in design["strata"]}
    assert min(sizes.values()) >= 50
    drawn = {name: 0 for name in TABLE.names}
    for point in design["points"]:
        row, column = point["row"], point["column"]
        assert classes[row, column] != 255 and TABLE.names[classes[row, column]] == point["map_class"]
        assert (point["x"], point["y"]) == (WEST + (column + 0.5) * PIXEL, NORTH - (row + 0.5) * PIXEL)
        drawn[point["stratum"]] += 1
    assert drawn == sizes
    assert len({(p["row"], p["column"]) for p in design["points"]}) == len(design["points"])  # without replacement
    rows = read_rows(tmp_path / "a" / "sample.csv")
    assert list(rows[0]) == ["point_id", "x", "y", "lon", "lat", "stratum", "map_class", "reference"]
    assert all(row["reference"] == "" for row in rows) and 15 < float(rows[0]["lon"]) < 15.1
    assert design["maps"][0]["path"] == "../../map.tif" or design["maps"][0]["path"].endswith("map.tif")


def test_size_equal_allocation_and_per_stratum_sizes(mapped, tmp_path):
    _, _, _, path = mapped
    design = run_sample(path, tmp_path / "a", "--size", "420", "--allocation", "equal", "--minimum", "10")
    assert [s["points"] for s in design["strata"]] == [60] * 7 and design["target_standard_error"] is None
    per = ",".join(f"{name}={5 + index}" for index, name in enumerate(TABLE.names))
    design = run_sample(path, tmp_path / "b", "--per-stratum", per)
    assert [s["points"] for s in design["strata"]] == [5 + index for index in range(7)]


def test_the_qgis_style_draws_points_in_the_maps_colours_and_offers_the_class_names(mapped, tmp_path):
    _, _, _, path = mapped
    run_sample(path, tmp_path / "s", "--size", "400")
    style = (tmp_path / "s" / "sample.qml").read_text()
    r, g, b = TABLE.colours[3].tolist()
    assert 'attr="map_class"' in style and f'value="{r},{g},{b},255"' in style
    assert 'editWidget type="ValueMap"' in style and 'name="forest_land"' in style and 'name="cannot-tell"' in style


def test_the_geopackage_holds_the_points_and_a_labelled_one_is_assessed(mapped, tmp_path):
    need_group("vector")
    from pyogrio.raw import read, write

    root, truth, _, path = mapped
    design = run_sample(path, tmp_path / "s", "--size", "400")
    meta, _, geometry, fields = read(str(tmp_path / "s" / "sample.gpkg"), layer="sample")
    columns = dict(zip(meta["fields"], fields))
    assert list(columns) == ["point_id", "x", "y", "lon", "lat", "stratum", "map_class", "reference"]
    assert columns["point_id"].tolist() == [p["point_id"] for p in design["points"]]
    assert "32633" in meta["crs"] and meta["geometry_type"] == "Point"
    inverse = ~Affine(PIXEL, 0, WEST, 0, -PIXEL, NORTH)
    pixels = [inverse @ (x, y) for x, y in zip(columns["x"], columns["y"])]
    columns["reference"] = np.array([TABLE.names[truth[int(row), int(column)]] for column, row in pixels], dtype=object)
    write(str(tmp_path / "labelled.gpkg"), geometry, list(columns.values()), list(columns), layer="sample",
          driver="GPKG", geometry_type="Point", crs=meta["crs"])  # fmt: skip
    assess_command.main(
        ["--sample", str(tmp_path / "labelled.gpkg"), "--design", str(tmp_path / "s" / "sample_design.json"),
         "--output", str(tmp_path / "out")]
    )  # fmt: skip
    assert json.loads((tmp_path / "out" / "assessment.json").read_text())["points_labelled"] == 400


def test_change_strata_from_two_maps_keep_stable_classes_and_merge_as_told(tmp_path):
    rng = np.random.default_rng(5)
    before = rng.integers(0, 3, (12, 12)).repeat(10, 0).repeat(10, 1).astype(np.uint8)
    after = before.copy()
    after[:40, :60][before[:40, :60] == 1] = 0  # agriculture became urban in the north-west
    write_class_map(tmp_path / "2020.tif", before)
    write_class_map(tmp_path / "2024.tif", after)
    sample_command.main(
        ["--before", str(tmp_path / "2020.tif"), "--after", str(tmp_path / "2024.tif"), "--no-progress",
         "--merge", "stable=urban_land -> urban_land,rangeland->rangeland", "--minimum", "20",
         "--output", str(tmp_path / "s")]
    )  # fmt: skip
    design = json.loads((tmp_path / "s" / "sample_design.json").read_text())
    strata = {s["stratum"]: s for s in design["strata"]}
    assert set(strata) == {"stable", "agriculture_land -> agriculture_land", "agriculture_land -> urban_land"}
    assert strata["stable"]["classes"] == ["urban_land -> urban_land", "rangeland -> rangeland"]
    assert strata["agriculture_land -> urban_land"]["expected_users_accuracy"] == 0.7
    assert strata["stable"]["expected_users_accuracy"] == 0.9
    changed = ((before == 1) & (after == 0)).sum()
    assert strata["agriculture_land -> urban_land"]["pixels"] == changed
    assert [m["role"] for m in design["maps"]] == ["before", "after"]
    transitions = [f"{b} -> {a}" for b in TABLE.names for a in TABLE.names]
    # the truth is the maps themselves: every point's reference its map class
    rows = read_rows(tmp_path / "s" / "sample.csv")
    for row in rows:
        row["reference"] = row["map_class"]
    write_rows(tmp_path / "labelled.csv", rows)
    assess_command.main(
        ["--sample", str(tmp_path / "labelled.csv"), "--design", str(tmp_path / "s" / "sample_design.json"),
         "--output", str(tmp_path / "out")]
    )  # fmt: skip
    report = json.loads((tmp_path / "out" / "assessment.json").read_text())
    assert report["kind"].startswith("change")
    by_class = {row["class"]: row for row in report["classes"]}
    assert set(by_class) <= set(transitions)
    change = by_class["agriculture_land -> urban_land"]
    assert change["adjusted_hectares"]["estimate"] == pytest.approx(change["mapped_hectares"])
    assert report["overall_accuracy"]["estimate"] == pytest.approx(1.0)


# --- refusals: one line, nothing written ------------------------------------------------------------------


def refused_sample(tmp_path, match: str, *arguments: str) -> None:
    output = tmp_path / "out" / "sample"
    with pytest.raises(PipelineError, match=match):
        sample_command.main([*arguments, "--output", str(output), "--no-progress"])
    assert not (tmp_path / "out").exists()


def test_sample_refuses_a_map_without_georeference_or_classes(tmp_path):
    classes = perturbed(known_truth())
    write_class_map(tmp_path / "no_crs.tif", classes, crs=None)
    refused_sample(
        tmp_path, r"no_crs.tif: the map has no georeference \(no CRS\)", "--map", str(tmp_path / "no_crs.tif")
    )
    with rasterio.open(
        tmp_path / "rgb.tif", "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8", crs=UTM33,
        transform=Affine(PIXEL, 0, WEST, 0, -PIXEL, NORTH),
    ) as dataset:  # fmt: skip
        dataset.write(np.zeros((3, 32, 32), dtype=np.uint8))
    refused_sample(tmp_path, "rgb.tif: not a class map of this project", "--map", str(tmp_path / "rgb.tif"))
    empty = np.full((32, 32), 255, dtype=np.uint8)
    write_class_map(tmp_path / "empty.tif", empty)
    refused_sample(tmp_path, "empty.tif: the map has no pixel with a class", "--map", str(tmp_path / "empty.tif"))
    refused_sample(tmp_path, "none.tif: file not found", "--map", str(tmp_path / "none.tif"))
    refused_sample(tmp_path, "give the map", "--size", "100")


def test_sample_refuses_targets_the_map_cannot_reach(mapped, tmp_path):
    _, _, classes, path = mapped
    valid = int((classes != 255).sum())
    refused_sample(tmp_path, f"--size needs {valid + 1} points, more than the map's {valid} pixels", "--map",
                   str(path), "--size", str(valid + 1))  # fmt: skip
    smallest = int(np.bincount(classes[classes != 255]).min())
    refused_sample(tmp_path, f"fewer pixels than the minimum of {smallest + 1} points", "--map", str(path),
                   "--minimum", str(smallest + 1), "--size", str(valid - 1))  # fmt: skip
    refused_sample(tmp_path, "cannot give each of the 7 strata its minimum of 50", "--map", str(path), "--size", "300")
    refused_sample(tmp_path, r"--target-se: must be between 0 and 0.5, got 2", "--map", str(path), "--target-se", "2")
    refused_sample(tmp_path, r"--target-se 0.0001 points|a standard error of 0.0001 for overall accuracy needs",
                   "--map", str(path), "--target-se", "0.0001")  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (("--minimum", "1"), "--minimum: must be at least 2"),
        (("--size", "1"), "--size: must be at least 2"),
        (("--size", "100", "--per-stratum", "forest_land=50"), "--size and --per-stratum: give one of them"),
        (("--per-stratum", "forest_land=50"), "--per-stratum: gives no size for stratum 'urban_land'"),
        (("--merge", "trees=forest"), r"--merge trees: 'forest' is none of the map's classes"),
        (("--merge", "forest_land"), "--merge 'forest_land': expected NAME=CLASS,CLASS"),
        (("--merge", "a=water", "--merge", "b=water"), r"'water' is in two strata \(a and b\)"),
        (("--merge", "water=water,urban_land"), None),
        (("--merge", "rangeland=water,urban_land"), "'rangeland' is a class of the map"),
        (("--expected-accuracy", "water=1.5"), r"--expected-accuracy water=1.5: must be between 0 and 1"),
        (("--expected-accuracy", "sea=0.8"), r"--expected-accuracy 'sea=0.8': expected STRATUM=VALUE"),
    ],
)
def test_sample_refuses_wrong_option_values_in_one_line(mapped, tmp_path, flags, match):
    _, _, _, path = mapped
    if match is None:  # a merged stratum may keep the name of one of its classes
        design = run_sample(path, tmp_path / "ok", "--size", "400", *flags)
        assert design["strata"][0]["classes"] == ["urban_land", "water"]
        return
    refused_sample(tmp_path, match, "--map", str(path), *flags)


def test_a_refusal_is_one_line_on_stderr_and_exit_1(tmp_path):
    write_class_map(tmp_path / "no_crs.tif", perturbed(known_truth()), crs=None)
    result = subprocess.run(
        [sys.executable, "-m", "landcover.cli.sample", "--map", str(tmp_path / "no_crs.tif"), "--output",
         str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def labelled(mapped, tmp_path_factory):
    root, truth, _, path = mapped
    folder = tmp_path_factory.mktemp("labelled")
    run_sample(path, folder / "sample", "--size", "400")
    rows = label_from(truth, folder / "sample" / "sample.csv", folder / "labelled.csv")
    return folder, rows


def refused_assessment(tmp_path, labelled, rows: list[dict], match: str, *flags: str, design=None) -> None:
    folder, _ = labelled
    write_rows(tmp_path / "edited.csv", rows)
    output = tmp_path / "out" / "assessment"
    design = design or folder / "sample" / "sample_design.json"
    with pytest.raises(PipelineError, match=match):
        assess_command.main(
            ["--sample", str(tmp_path / "edited.csv"), "--design", str(design), "--output", str(output), *flags]
        )
    assert not (tmp_path / "out").exists()


def edited(rows: list[dict], **changes: dict) -> list[dict]:
    """A copy of the rows; changes: {point id as `p<id>`: {column: value}}."""
    copies = [dict(row) for row in rows]
    for key, change in changes.items():
        copies[int(key[1:]) - 1].update(change)
    return copies


def test_assess_refuses_unlabelled_points_naming_them_unless_allowed(labelled, tmp_path, capsys):
    folder, rows = labelled
    blank = edited(rows, p3={"reference": ""}, p8={"reference": "cannot-tell"})
    refused_assessment(
        tmp_path, labelled, blank, r"2 points have no reference class .*: 3, 8; label them, or give --allow"
    )
    write_rows(tmp_path / "blank.csv", blank)
    assess_command.main(
        ["--sample", str(tmp_path / "blank.csv"), "--design", str(folder / "sample" / "sample_design.json"),
         "--output", str(tmp_path / "kept"), "--allow-missing"]
    )  # fmt: skip
    assert "2 unlabelled points left out (--allow-missing)" in capsys.readouterr().out
    assert json.loads((tmp_path / "kept" / "assessment.json").read_text())["points_left_out"] == 2
    refused_assessment(tmp_path, labelled, rows[:-1], rf"1 points have no reference class .*: {len(rows)};")


def test_assess_refuses_a_reference_not_in_the_class_table(labelled, tmp_path):
    _, rows = labelled
    wrong = edited(rows, p5={"reference": "Forest"})
    refused_assessment(tmp_path, labelled, wrong, r"reference 'Forest' is not a class of the map \(urban_land, ")


def test_assess_refuses_points_outside_the_map_or_not_in_the_design(labelled, tmp_path):
    _, rows = labelled
    outside = edited(rows, p2={"x": str(WEST - 5)})
    refused_assessment(tmp_path, labelled, outside, "points 2 lie outside the map of the design")
    moved = edited(rows, p4={"x": str(float(rows[3]["x"]) + PIXEL)})
    refused_assessment(tmp_path, labelled, moved, r"points 4 are not in the design \(other ids, or moved\)")
    renamed = edited(rows, p6={"point_id": "9999"})
    refused_assessment(tmp_path, labelled, renamed, r"points 9999 are not in the design")
    refused_assessment(tmp_path, labelled, [*rows, rows[0]], "points 1 are in the sample more than once")


def test_assess_refuses_a_stratum_with_fewer_than_2_labelled_points(labelled, tmp_path):
    _, rows = labelled
    water = [row for row in rows if row["stratum"] == "water"]
    blank = [dict(row, reference="" if row in water[1:] else row["reference"]) for row in rows]
    refused_assessment(tmp_path, labelled, blank, r"fewer than 2 labelled points have no variance: water \(1\)",
                       "--allow-missing")  # fmt: skip


def test_assess_refuses_a_sample_of_another_map(labelled, mapped, tmp_path):
    folder, rows = labelled
    root, truth, classes, _ = mapped
    design = json.loads((folder / "sample" / "sample_design.json").read_text())
    other = write_class_map(tmp_path / "other.tif", perturbed(truth, seed=2))
    design["maps"][0]["path"] = str(other)
    (tmp_path / "design.json").write_text(json.dumps(design))
    refused_assessment(
        tmp_path, labelled, rows, "other.tif: its sha256 is not the design's", design=tmp_path / "design.json"
    )
    (tmp_path / "not_design.json").write_text("{}")
    refused_assessment(tmp_path, labelled, rows, "not a sample design of landcover-sample",
                       design=tmp_path / "not_design.json")  # fmt: skip
