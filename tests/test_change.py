"""Change between two dates: the from-to table against a direct cross-count, the change map's codes and
colours, a second map in another CRS warped onto the first's grid, and maps that cannot be compared."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

from landcover.cli import change as change_command
from landcover.data.palette import ClassTable
from landcover.geo.areas import pixel_areas
from landcover.geo.georaster import class_colormap
from landcover.io.errors import PipelineError
from landcover.region.change import change_codes, change_map_table, change_table

TABLE = ClassTable.deepglobe()
UTM33 = CRS.from_epsg(32633)
WEST, NORTH, PIXEL = 500_000.0, 5_000_000.0, 10.0


def write_class_map(path, classes: np.ndarray, crs=UTM33, transform=None, table: ClassTable = TABLE):
    """A class map as the mapping command writes it: uint8, nodata 255, colour table, CLASS_NAMES."""
    transform = transform or Affine(PIXEL, 0, WEST, 0, -PIXEL, NORTH)
    height, width = classes.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8", crs=crs,
        transform=transform, nodata=255,
    ) as dataset:  # fmt: skip
        dataset.write(classes, 1)
        dataset.write_colormap(1, class_colormap(table))
        dataset.update_tags(CLASS_NAMES=",".join(table.names))
    return path


def random_classes(seed: int, side: int = 64) -> np.ndarray:
    classes = np.random.default_rng(seed).integers(0, len(TABLE), (side, side)).astype(np.uint8)
    classes[seed : seed + 6, 10:20] = 255  # no prediction
    return classes


def test_from_to_table_equals_a_direct_cross_count_on_the_first_maps_grid(tmp_path):
    before, after = random_classes(1), random_classes(2)
    write_class_map(tmp_path / "2020.tif", before)
    # the second map 8 px east and 4 px south of the first: the first's grid, part of it outside
    shifted = Affine(PIXEL, 0, WEST + 8 * PIXEL, 0, -PIXEL, NORTH - 4 * PIXEL)
    write_class_map(tmp_path / "2024.tif", after, transform=shifted)
    change_command.main(
        ["--before", str(tmp_path / "2020.tif"), "--after", str(tmp_path / "2024.tif"), "--output", str(tmp_path / "c")]
    )
    on_grid = np.full_like(after, 255)
    on_grid[4:, 8:] = after[:-4, :-8]
    classes = len(TABLE)
    valid = (before < classes) & (on_grid < classes)
    expected = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(expected, (before[valid], on_grid[valid]), 1)
    report = json.loads((tmp_path / "c" / "from_to.json").read_text())
    assert report["pixels"] == expected.tolist()
    areas, _ = pixel_areas(UTM33, Affine(PIXEL, 0, WEST, 0, -PIXEL, NORTH), 64, 64, None)
    pixel_m2 = areas.strip_m2(0, 64)
    expected_hectares = np.zeros((classes, classes))
    np.add.at(expected_hectares, (before[valid], on_grid[valid]), pixel_m2[valid] / 1e4)
    np.testing.assert_allclose(report["hectares"], expected_hectares, rtol=1e-9)
    assert report["changed_hectares"] == pytest.approx(expected_hectares.sum() - np.trace(expected_hectares))
    rows = (tmp_path / "c" / "from_to.csv").read_text().splitlines()
    assert rows[0] == "from \\ to (hectares)," + ",".join(TABLE.names)
    assert rows[2].split(",")[0] == TABLE.names[1]
    assert float(rows[2].split(",")[3]) == pytest.approx(expected_hectares[1, 2])


def test_change_map_codes_unchanged_as_one_value_and_colours_by_the_class_become(tmp_path):
    before, after = random_classes(3), random_classes(4)
    write_class_map(tmp_path / "a.tif", before)
    write_class_map(tmp_path / "b.tif", after)
    change_command.main(
        ["--before", str(tmp_path / "a.tif"), "--after", str(tmp_path / "b.tif"), "--output", str(tmp_path)]
    )
    with rasterio.open(tmp_path / "change.tif") as change:
        codes, colormap, tags = change.read(1), change.colormap(1), change.tags()
    classes = len(TABLE)
    assert (codes[(before == after) & (before < classes)] == 0).all()
    changed = (before != after) & (before < classes) & (after < classes)
    np.testing.assert_array_equal(codes[changed], 1 + before[changed].astype(int) * classes + after[changed])
    assert (codes[(before == 255) | (after == 255)] == 255).all()
    np.testing.assert_array_equal(codes, change_codes(before, after, classes))
    assert colormap[1 + 1 * classes + 2] == (*TABLE.colours[2], 255)  # became class 2: drawn in its colour
    assert colormap[0] == (220, 220, 220, 255) and colormap[255][3] == 0
    assert tags["CLASS_NAMES"] == ",".join(TABLE.names)
    legend = (tmp_path / "change.qml").read_text()
    assert f'label="{TABLE.names[1]} -&gt; {TABLE.names[2]}"' in legend and "not used" not in legend
    # read back as the sample command reads it: each code named and coloured as written
    codes_table = change_map_table(tmp_path / "change.tif")
    assert codes_table is not None and codes_table.names == change_table(TABLE).names
    np.testing.assert_array_equal(codes_table.colours, change_table(TABLE).colours)


def test_a_second_map_in_another_crs_is_warped_onto_the_first_by_nearest_neighbour(tmp_path):
    """The same map in Web Mercator: warped back, nearly every compared pixel is unchanged."""
    before = np.random.default_rng(5).integers(0, len(TABLE), (8, 8)).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    write_class_map(tmp_path / "utm.tif", before)
    mercator = CRS.from_epsg(3857)
    bounds = (WEST, NORTH - 640, WEST + 640, NORTH)
    transform, width, height = calculate_default_transform(UTM33, mercator, 64, 64, *bounds)
    warped = np.full((height, width), 255, dtype=np.uint8)
    reproject(
        before, warped, src_transform=Affine(PIXEL, 0, WEST, 0, -PIXEL, NORTH), src_crs=UTM33,
        dst_transform=transform, dst_crs=mercator, resampling=Resampling.nearest, dst_nodata=255,
    )  # fmt: skip
    write_class_map(tmp_path / "mercator.tif", warped, crs=mercator, transform=transform)
    change_command.main(
        [
            "--before",
            str(tmp_path / "utm.tif"),
            "--after",
            str(tmp_path / "mercator.tif"),
            "--output",
            str(tmp_path / "out"),
        ]
    )
    report = json.loads((tmp_path / "out" / "from_to.json").read_text())
    assert report["grid"] == {"crs": "EPSG:32633", "width": 64, "height": 64}
    assert report["compared_pixels"] > 0.9 * 64 * 64
    assert report["changed_pixels"] < 0.05 * report["compared_pixels"]  # only where blocks meet, if anywhere


def test_maps_of_other_classes_are_refused_in_one_line(tmp_path):
    other = ClassTable(("water", "land"), np.array([[0, 0, 255], [0, 255, 0]], dtype=np.uint8))
    write_class_map(tmp_path / "a.tif", random_classes(1))
    write_class_map(tmp_path / "b.tif", random_classes(1) % 2, table=other)
    with pytest.raises(PipelineError, match=r"b.tif: its classes \(water, land\) are not those of .*a.tif"):
        change_command.main(
            ["--before", str(tmp_path / "a.tif"), "--after", str(tmp_path / "b.tif"), "--output", str(tmp_path / "o")]
        )
    assert not (tmp_path / "o").exists()
    with pytest.raises(PipelineError, match="none.tif: file not found"):
        change_command.main(
            [
                "--before",
                str(tmp_path / "none.tif"),
                "--after",
                str(tmp_path / "b.tif"),
                "--output",
                str(tmp_path / "o"),
            ]
        )


def refused_change(tmp_path, before, after, match: str) -> None:
    output = tmp_path / "out" / "change"
    with pytest.raises(PipelineError, match=match):
        change_command.main(["--before", str(before), "--after", str(after), "--output", str(output)])
    assert not (tmp_path / "out").exists()


def test_maps_that_do_not_overlap_an_rgb_raster_and_a_vrt_without_its_source_are_refused_leaving_no_folder(
    tmp_path,
):
    before = write_class_map(tmp_path / "a.tif", random_classes(1))
    far = Affine(PIXEL, 0, WEST + 10_000, 0, -PIXEL, NORTH)
    after = write_class_map(tmp_path / "far.tif", random_classes(2), transform=far)
    refused_change(tmp_path, before, after, r"far.tif: does not overlap .*a.tif; there is no change to compare")
    with rasterio.open(
        tmp_path / "rgb.tif", "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs=UTM33,
        transform=Affine(PIXEL, 0, WEST, 0, -PIXEL, NORTH),
    ) as dataset:  # fmt: skip
        dataset.write(np.zeros((3, 64, 64), dtype=np.uint8))
    refused_change(tmp_path, before, tmp_path / "rgb.tif", r"rgb.tif: not a class map of this project")
    source = write_class_map(tmp_path / "source.tif", random_classes(3))
    rasterio.shutil.copy(source, tmp_path / "mosaic.vrt", driver="VRT")
    source.unlink()
    refused_change(tmp_path, before, tmp_path / "mosaic.vrt", r"mosaic.vrt: its source file .*source.tif is missing")
    refused_change(tmp_path, tmp_path / "mosaic.vrt", before, r"mosaic.vrt: its source file .*source.tif is missing")
    (tmp_path / "out").mkdir()
    with pytest.raises(PipelineError):
        change_command.main(["--before", str(before), "--after", str(after), "--output", str(tmp_path / "out")])
    assert (tmp_path / "out").is_dir()  # a folder that was there stays
