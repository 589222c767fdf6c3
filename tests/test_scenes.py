"""Scenes of your own: GeoTIFF images of any bands and type, labels as index or colour rasters or polygons,
tiled, encoded and split; every refusal one line naming the file, and nothing written."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import Resampling, reproject

from landcover.data.datasets import TileDataset
from landcover.data.labels import _wkb_polygons
from landcover.data.palette import IGNORE_INDEX, ClassTable
from landcover.data.splitting import split_blocks
from landcover.data.tilestore import TileStore, split_regions
from landcover.evaluation.data_plots import display_rgb
from landcover.geo.polygons import polygon_wkb
from landcover.io.errors import PipelineError
from landcover.synthetic.scenes import write_lookalike, write_scene, write_scene_dataset
from stages import encode, preview, split, tile
from tests.conftest import write_params
from tests.optional import need_group

TABLE = ClassTable(("field", "forest", "water"), np.array([[250, 220, 90], [30, 120, 40], [40, 80, 220]]))
SIZE = (96, 128)


def params(tmp_path: Path, raw: Path, images: str = "source", **data) -> Path:
    return write_params(
        tmp_path / "params.yaml",
        data={"raw": str(raw), "layout": "scenes", **data},
        tile={"size": 32, "stride": 32, "images": images},
        split={"method": "ratios", "ratios": {"train": 0.5, "val": 0.25, "test": 0.25}},
    )


def tile_and_encode(tmp_path: Path, raw: Path, images: str = "source", **data) -> TileStore:
    path = params(tmp_path, raw, images, **data)
    tile.main([str(raw), str(tmp_path / "tiles"), "--params", str(path)])
    encode.main([str(tmp_path / "tiles"), str(tmp_path / "encoded"), "--report", str(tmp_path / "encode.json")])
    return TileStore(tmp_path / "tiles", tmp_path / "encoded")


def encoded_masks(store: TileStore) -> list[np.ndarray]:
    records = store.index()
    firsts = {record.image_id: record for record in reversed(records)}
    return [store.whole_class_mask(firsts[image_id]) for image_id in sorted(firsts)]


@pytest.mark.parametrize("labels", ["index", "colour", "geojson", "gpkg"])
def test_every_label_kind_encodes_to_the_scene_classes(tmp_path, labels):
    if labels in ("geojson", "gpkg"):
        need_group("vector")
    grids = write_scene_dataset(tmp_path / "raw", TABLE, scenes=2, size=SIZE, labels=labels)
    store = tile_and_encode(tmp_path, tmp_path / "raw")
    for mask, grid in zip(encoded_masks(store), grids):
        np.testing.assert_array_equal(mask, grid)
    report = json.loads((tmp_path / "encode.json").read_text())
    assert report["ignored_pixels"] == 0 and report["unlabelled_pixels"] == 0
    # the image is kept as its own bytes, and read back with data.bands in order, of its own type
    kept = store.image_path("scene-1")
    assert kept.read_bytes() == (tmp_path / "raw" / "images" / "scene-1.tif").read_bytes()
    record = store.index()[5]
    with rasterio.open(kept) as source:
        expected = source.read([1, 2, 3], window=((record.y, record.y + 32), (record.x, record.x + 32)))
    windows = store.windows(record)
    np.testing.assert_array_equal(windows.image(record), np.moveaxis(expected, 0, -1))
    assert windows.image(record).dtype == np.uint16


def test_bands_are_read_in_the_order_data_bands_gives(tmp_path):
    write_scene_dataset(tmp_path / "raw", TABLE, scenes=2, size=SIZE)
    store = tile_and_encode(tmp_path, tmp_path / "raw", bands=[4, 1])
    record = store.index()[0]
    with rasterio.open(store.image_path(record.image_id)) as source:
        whole = source.read()
    np.testing.assert_array_equal(store.whole_image(record), np.moveaxis(whole[[3, 0]], 0, -1))
    assert json.loads(store.scenes_path.read_text())["bands"] == [4, 1]


def test_uncompressed_tiles_keep_the_pixels_of_the_source_and_read_them_in_band_order(tmp_path):
    write_scene_dataset(tmp_path / "raw", TABLE, scenes=2, size=SIZE, blocksize=32)  # tiled and deflated
    (tmp_path / "source").mkdir()
    (tmp_path / "uncompressed").mkdir()
    source = tile_and_encode(tmp_path / "source", tmp_path / "raw", bands=[4, 1, 2])
    copied = tile_and_encode(tmp_path / "uncompressed", tmp_path / "raw", images="uncompressed", bands=[4, 1, 2])
    for record in source.index():
        with (
            rasterio.open(copied.image_path(record.image_id)) as kept,
            rasterio.open(source.image_path(record.image_id)) as raw,
        ):
            assert raw.compression is not None  # the source's own bytes: compressed
            assert kept.compression is None and kept.profile["tiled"]
            np.testing.assert_array_equal(kept.read(), raw.read())
            assert kept.crs == raw.crs and kept.transform == raw.transform
        np.testing.assert_array_equal(copied.windows(record).image(record), source.windows(record).image(record))
    np.testing.assert_array_equal(copied.whole_image(record), source.whole_image(record))
    assert copied.whole_image(record).shape[-1] == 3 and copied.whole_image(record).dtype == np.uint16


def with_alpha(image: Path, zero: bool = True) -> np.ndarray:
    """Make band 4 of a uint8 scene image its alpha band, 0 over a block of pixels (or none); returns where it
    is 0."""
    from rasterio.enums import ColorInterp

    with rasterio.open(image, "r+") as dataset:
        alpha = np.full((dataset.height, dataset.width), 255, dtype=np.uint8)
        if zero:
            alpha[10:40, 20:70] = 0
        dataset.write(alpha, 4)
        dataset.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return alpha == 0


@pytest.mark.parametrize(("labels", "images"), [("index", "source"), ("index", "uncompressed"), ("geojson", "source")])
def test_labels_where_the_image_alpha_is_0_are_left_out_as_unlabelled(tmp_path, labels, images):
    if labels == "geojson":
        need_group("vector")
    raw = tmp_path / "raw"
    grids = write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels=labels, dtype="uint8")
    hidden = with_alpha(raw / "images" / "scene-1.tif")
    with_alpha(raw / "images" / "scene-2.tif", zero=False)
    store = tile_and_encode(tmp_path, raw, images, bands=[1, 2, 3])
    first, second = encoded_masks(store)
    np.testing.assert_array_equal(first, np.where(hidden, IGNORE_INDEX, grids[0]))
    np.testing.assert_array_equal(second, grids[1])
    report = json.loads((tmp_path / "encode.json").read_text())
    assert report["unlabelled_pixels"] == report["ignored_pixels"] == hidden.sum() == 30 * 50


def test_labels_on_another_grid_are_resampled_and_unlabelled_pixels_ignored(tmp_path):
    raw = tmp_path / "raw"
    grids = write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels="index")
    # scene-1's labels at twice the pixel size, covering only its left half
    path = raw / "labels" / "scene-1.tif"
    with rasterio.open(path) as source:
        profile, values, transform = source.profile, source.read(1), source.transform
    coarse = values[::2, : SIZE[1] // 2 : 2]
    profile.update(width=coarse.shape[1], height=coarse.shape[0], transform=transform @ Affine.scale(2))
    with rasterio.open(path, "w", **profile) as out:
        out.write(coarse, 1)
    store = tile_and_encode(tmp_path, raw)
    mask = encoded_masks(store)[0]
    left = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)
    np.testing.assert_array_equal(mask[:, : SIZE[1] // 2], left)
    assert (mask[:, SIZE[1] // 2 :] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(encoded_masks(store)[1], grids[1])
    report = json.loads((tmp_path / "encode.json").read_text())
    assert report["unlabelled_pixels"] == SIZE[0] * SIZE[1] // 2 == report["ignored_pixels"]


def test_labels_in_another_crs_are_reprojected_onto_the_image_grid(tmp_path):
    raw = tmp_path / "raw"
    grids = write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels="index", cell=32)
    path = raw / "labels" / "scene-1.tif"
    with rasterio.open(path) as source:
        values, crs, transform = source.read(1), source.crs, source.transform
    mercator = CRS.from_epsg(3857)
    from rasterio.warp import calculate_default_transform

    dst_transform, width, height = calculate_default_transform(crs, mercator, SIZE[1], SIZE[0], *source.bounds)
    warped = np.full((height, width), 9, dtype=np.uint16)
    reproject(
        values,
        warped,
        src_transform=transform,
        src_crs=crs,
        dst_transform=dst_transform,
        dst_crs=mercator,
        resampling=Resampling.nearest,
        dst_nodata=9,
    )
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        dtype="uint16",
        crs=mercator,
        transform=dst_transform,
        nodata=9,
    ) as out:
        out.write(warped, 1)
    mask = encoded_masks(tile_and_encode(tmp_path, raw))[0]
    labelled = mask != IGNORE_INDEX
    assert labelled.mean() > 0.95
    assert (mask[labelled] == grids[0][labelled]).mean() > 0.97  # cell borders move by a pixel at most


def test_nodata_and_off_table_label_values_are_ignored_and_counted_apart(tmp_path):
    raw = tmp_path / "raw"
    write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels="index")
    path = raw / "labels" / "scene-2.tif"
    with rasterio.open(path, "r+") as labels:
        values = labels.read(1)
        values[:10] = 7  # a value in no class
        values[10:20] = 99  # the nodata value
        labels.write(values, 1)
        labels.nodata = 99
    mask = encoded_masks(tile_and_encode(tmp_path, raw))[1]
    assert (mask[:20] == IGNORE_INDEX).all() and (mask[20:] != IGNORE_INDEX).all()
    report = json.loads((tmp_path / "encode.json").read_text())
    assert report["ignored_pixels"] == 20 * SIZE[1] and report["unlabelled_pixels"] == 10 * SIZE[1]


def test_a_wkb_multipolygon_reads_as_geojson():
    square = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (0.0, 0.0)]
    multi = b"\x01" + (6).to_bytes(4, "little") + (2).to_bytes(4, "little") + polygon_wkb([square]) * 2
    assert _wkb_polygons(polygon_wkb([square]), Path("x"))["coordinates"] == [square]
    assert _wkb_polygons(multi, Path("x")) == {"type": "MultiPolygon", "coordinates": [[square], [square]]}
    with pytest.raises(PipelineError, match="polygons"):
        _wkb_polygons(b"\x01" + (1).to_bytes(4, "little") + bytes(16), Path("points.gpkg"))


def test_training_reads_windows_of_a_scene_and_never_decodes_it_whole(tmp_path, monkeypatch):
    write_scene_dataset(tmp_path / "raw", TABLE, scenes=2, size=SIZE)
    store = tile_and_encode(tmp_path, tmp_path / "raw")
    monkeypatch.setattr(TileStore, "whole_image", lambda *_: pytest.fail("a scene decoded whole"))
    monkeypatch.setattr(TileStore, "whole_class_mask", lambda *_: pytest.fail("a class mask decoded whole"))
    records = store.index()
    dataset = TileDataset(records, store, cached_images=1)
    image, mask = dataset[7]
    assert image.shape == (32, 32, 3) and image.dtype == torch.uint16 and mask.shape == (32, 32)


def test_the_block_split_keeps_tiles_whole_in_one_split_and_clear_of_the_others_by_the_buffer(tmp_path):
    write_scene_dataset(tmp_path / "raw", TABLE, scenes=2, size=(128, 128))
    store = tile_and_encode(tmp_path, tmp_path / "raw")
    records = store.index()
    ratios = {"train": 0.5, "val": 0.25, "test": 0.25}
    tiles, blocks = split_blocks(records, ratios, seed=3, block_size=64, buffer=8)
    assert (tiles, blocks) == split_blocks(records, ratios, seed=3, block_size=64, buffer=8)
    assert [split for _, split in blocks].count("test") == 2  # 8 blocks, a quarter each for val and test
    for name, split_tiles in tiles.items():
        for record in split_tiles:
            for block, block_split in blocks:
                if block_split != name and block.image_id == record.image_id:
                    apart_y = max(block.y - (record.y + record.size), record.y - (block.y + block.height))
                    apart_x = max(block.x - (record.x + record.size), record.x - (block.x + block.width))
                    assert max(apart_y, apart_x) >= 8  # no tile within the buffer of another split's block
    without_buffer, _ = split_blocks(records, ratios, seed=3, block_size=64, buffer=0)
    assert sum(map(len, without_buffer.values())) == len(records)  # 32 px tiles fit 64 px blocks exactly
    assert sum(map(len, tiles.values())) < len(records)


def test_the_split_stage_writes_blocks_that_predict_and_evaluate_score(tmp_path):
    write_scene_dataset(tmp_path / "raw", TABLE, scenes=2, size=(128, 128))
    store = tile_and_encode(tmp_path, tmp_path / "raw")
    path = write_params(
        tmp_path / "blocks.yaml",
        split={"method": "blocks", "block_size": 64, "buffer": 0, "ratios": {"train": 0.5, "val": 0.25, "test": 0.25}},
    )
    split.main(
        [
            str(store.tiles),
            str(store.encoded),
            str(tmp_path / "splits"),
            "--params",
            str(path),
            "--distribution",
            str(tmp_path / "distribution.json"),
        ]
    )
    regions = split_regions(tmp_path / "splits" / "test.csv")
    assert len(regions) == 2 and all(region.name.startswith("scene-") and "_y" in region.name for region in regions)
    with open(tmp_path / "splits" / "blocks.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    test_rows = [row for row in rows if row["split"] == "test"]
    for region, row in zip(regions, test_rows):
        assert (region.y, region.x) == (int(row["y"]), int(row["x"]))
        grid = store.whole_class_mask(region.record)
        np.testing.assert_array_equal(
            store.region_class_mask(region), grid[region.y : region.y + 64, region.x : region.x + 64]
        )
    distribution = json.loads((tmp_path / "distribution.json").read_text())
    assert distribution["test"]["blocks"] == 2 and distribution["test"]["labelled_pixels"] == 2 * 64 * 64


# --- bad input: one line naming the file or key, nothing written ---------------------------------------


def refused(tmp_path: Path, raw: Path, match: str, **data) -> None:
    with pytest.raises(PipelineError, match=match):
        tile.main([str(raw), str(tmp_path / "tiles"), "--params", str(params(tmp_path, raw, **data))])
    assert not (tmp_path / "tiles").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".tiles.")]


def test_labels_that_do_not_overlap_their_image_are_refused(tmp_path):
    raw = tmp_path / "raw"
    write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels="index")
    write_scene(raw, "scene-2", SIZE, TABLE, labels="index", origin=(600_000.0, 5_600_000.0))
    (raw / "images" / "scene-2.tif").unlink()
    write_scene(raw, "other", SIZE, TABLE, labels="index")
    (raw / "images" / "other.tif").rename(raw / "images" / "scene-2.tif")
    refused(tmp_path, raw, r"labels/scene-2.tif: labels do not overlap their image scene-2.tif")


def test_a_band_beyond_the_image_is_refused(tmp_path):
    write_scene_dataset(tmp_path / "raw", TABLE, scenes=2, size=SIZE, bands=4)
    refused(
        tmp_path, tmp_path / "raw", r"scene-1.tif: data.bands asks for band 5 but the image has 4 bands", bands=[1, 5]
    )


def test_scenes_of_different_band_counts_or_types_are_refused(tmp_path):
    raw = tmp_path / "raw"
    write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, bands=4)
    write_scene(raw, "scene-2", SIZE, TABLE, bands=4, dtype="uint8")
    refused(tmp_path, raw, r"scene-2.tif: 4 bands of uint8, but scene-1.tif has 4 of uint16")
    write_scene(raw, "scene-2", SIZE, TABLE, bands=5)
    refused(tmp_path, raw, r"scene-2.tif: 5 bands of uint16, but scene-1.tif has 4 of uint16")


def test_vector_labels_without_the_attribute_or_with_an_unknown_class_are_refused(tmp_path):
    need_group("vector")
    raw = tmp_path / "raw"
    write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels="geojson")
    refused(
        tmp_path,
        raw,
        r"scene-1.geojson: no attribute 'landcover' \(data.label_attribute\)",
        label_attribute="landcover",
    )
    path = raw / "labels" / "scene-2.geojson"
    path.write_text(path.read_text().replace('"forest"', '"woodland"'))
    refused(tmp_path, raw, r"scene-2.geojson: class 'woodland' is not in the class table")


def set_classes(path: Path, *values: object) -> None:
    """Set the class attribute of the first features of a GeoJSON file, the rest to label value 0."""
    collection = json.loads(path.read_text())
    for i, feature in enumerate(collection["features"]):
        feature["properties"]["class"] = values[i] if i < len(values) else 0
    path.write_text(json.dumps(collection))


def test_vector_labels_with_a_null_or_fractional_value_an_other_attribute_or_no_features_are_refused(tmp_path):
    need_group("vector")
    raw = tmp_path / "raw"
    write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels="geojson")
    path = raw / "labels" / "scene-1.geojson"
    set_classes(path, 1, None)
    refused(tmp_path, raw, r"scene-1.geojson: feature \(FID 1\) has no value of attribute 'class' \(data.label_attr")
    set_classes(path, 1, 2, 2.7)
    refused(tmp_path, raw, r"scene-1.geojson: feature \(FID 2\) has class 2.7, not a whole label value")
    set_classes(path, "forest", None, "water")
    refused(tmp_path, raw, r"scene-1.geojson: feature \(FID 1\) has no value of attribute 'class'")
    collection = json.loads(path.read_text())
    for feature in collection["features"]:
        feature["properties"] = {"kind": "x", "code": 1}
    path.write_text(json.dumps(collection))
    refused(tmp_path, raw, r"scene-1.geojson: no attribute 'class' \(data.label_attribute\); it has kind, code$")
    path.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    refused(tmp_path, raw, r"scene-1.geojson: no features; vector labels need polygons")


def test_vector_labels_on_an_image_placed_only_by_ground_control_points_are_refused_saying_so(tmp_path):
    """Not "no CRS": the image has a CRS, on its GCPs, and the way out is to warp it onto a grid."""
    need_group("vector")
    from rasterio.control import GroundControlPoint

    raw = tmp_path / "raw"
    write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels="geojson")
    image = raw / "images" / "scene-1.tif"
    with rasterio.open(image) as source:
        profile, pixels, crs = source.profile, source.read(), source.crs
    profile.update(crs=None, transform=Affine.identity())
    with rasterio.open(image, "w", **profile) as target:
        target.write(pixels)
    height, width = pixels.shape[1:]
    corners = [(0, 0), (0, width), (height, 0), (height, width)]
    with rasterio.open(image, "r+") as target:
        target.gcps = ([GroundControlPoint(r, c, 500_000.0 + c, 5_000_000.0 - r) for r, c in corners], crs)
    refused(
        tmp_path,
        raw,
        rf"scene-1.geojson: vector labels need an image on a grid with a CRS; scene-1.tif is georeferenced only by 4 "
        rf"ground control points \(GCPs, {crs.to_string()}\); warp it onto a grid first \(gdalwarp -t_srs",
    )


def test_a_scene_smaller_than_a_tile_and_a_float_label_raster_are_refused(tmp_path):
    raw = tmp_path / "raw"
    write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels="index")
    write_scene(raw, "scene-2", (24, 128), TABLE, labels="index")
    refused(tmp_path, raw, r"tile.size \(32\) is larger than scene .*scene-2.tif \(128x24\)")
    write_scene(raw, "scene-2", SIZE, TABLE, labels="index")
    path = raw / "labels" / "scene-1.tif"
    with rasterio.open(path) as source:
        profile, values = source.profile, source.read(1)
    profile.update(dtype="float32")
    with rasterio.open(path, "w", **profile) as out:
        out.write(values.astype(np.float32), 1)
    refused(tmp_path, raw, r"labels/scene-1.tif: label raster of type float32; labels must be integers")


def test_a_manifest_that_names_a_missing_file_or_an_id_twice_is_refused(tmp_path):
    raw = tmp_path / "raw"
    write_scene_dataset(raw, TABLE, scenes=2, size=SIZE)
    manifest = raw / "scenes.csv"
    text = manifest.read_text()
    manifest.write_text(text.replace("labels/scene-2.tif", "labels/missing.tif"))
    refused(tmp_path, raw, r"labels/missing.tif: file not found \(scene scene-2\)")
    manifest.write_text(text.replace("scene-2,", "scene-1,"))
    refused(tmp_path, raw, r"scene id 'scene-1' is also .*scene-1.tif's")
    (raw / "classes.csv").unlink()
    manifest.write_text(text)
    refused(tmp_path, raw, r"classes.csv not found; a 'scenes' dataset needs its class table there")


@pytest.mark.parametrize("preset", ["landcoverai", "openearthmap", "loveda"])
def test_each_preset_layout_is_found_and_encoded_with_its_class_table(tmp_path, preset):
    write_lookalike(tmp_path / "raw", preset, scenes=4, size=SIZE)
    path = write_params(
        tmp_path / "params.yaml", data={"raw": str(tmp_path / "raw"), "layout": preset}, tile={"size": 32, "stride": 32}
    )
    tile.main([str(tmp_path / "raw"), str(tmp_path / "tiles"), "--params", str(path)])
    encode.main([str(tmp_path / "tiles"), str(tmp_path / "encoded"), "--report", str(tmp_path / "encode.json")])
    store = TileStore(tmp_path / "tiles", tmp_path / "encoded")
    table = ClassTable.preset(preset)
    assert store.class_table() == table
    ids = sorted({record.image_id for record in store.index()})
    expected_ids = {
        "landcoverai": ["M-33-20-D-c-4-1", "M-33-20-D-c-4-2", "M-33-20-D-c-4-3", "M-33-20-D-c-4-4"],
        "openearthmap": ["aachen-1", "aachen-3", "tokyo-2", "tokyo-4"],
        "loveda": ["train-rural-1368", "train-urban-1366", "val-rural-1369", "val-urban-1367"],
    }[preset]
    assert ids == expected_ids
    report = json.loads((tmp_path / "encode.json").read_text())
    no_data_rows = 0 if preset == "landcoverai" else 4
    assert report["ignored_pixels"] == 4 * no_data_rows * SIZE[1]  # 0 (no data) is in no class: ignored
    mask = store.whole_class_mask(store.index()[0])
    assert (mask[:no_data_rows] == IGNORE_INDEX).all() and (mask[no_data_rows:] < len(table)).all()


def test_preview_draws_a_scene_and_the_map_of_its_blocks(tmp_path):
    write_scene_dataset(tmp_path / "raw", TABLE, scenes=2, size=(128, 128))
    store = tile_and_encode(tmp_path, tmp_path / "raw")
    path = write_params(
        tmp_path / "blocks.yaml",
        split={"method": "blocks", "block_size": 64, "buffer": 0, "ratios": {"train": 0.5, "val": 0.25, "test": 0.25}},
    )
    splits = tmp_path / "splits"
    split.main(
        [
            str(store.tiles),
            str(store.encoded),
            str(splits),
            "--params",
            str(path),
            "--distribution",
            str(tmp_path / "d.json"),
        ]
    )
    preview.main([str(store.tiles), str(store.encoded), str(splits), str(tmp_path / "plots"), "--params", str(path)])
    assert sorted(path.name for path in (tmp_path / "plots").iterdir()) == [
        "augmentations.png",
        "blocks.png",
        "sample.png",
    ]


def test_images_of_other_types_are_shown_stretched_and_uint8_rgb_as_it_is():
    rgb = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert display_rgb(rgb) is rgb
    bands = np.stack([np.linspace(0, 10_000, 100).reshape(10, 10)] * 4, axis=-1).astype(np.uint16)
    shown = display_rgb(bands)
    assert shown.shape == (10, 10, 3) and shown.dtype == np.uint8 and shown.min() == 0 and shown.max() == 255


def test_a_nodata_value_that_is_also_a_class_value_is_said(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_scene_dataset(raw, TABLE, scenes=2, size=SIZE, labels="index")
    with rasterio.open(raw / "labels" / "scene-1.tif", "r+") as labels:
        labels.nodata = 1  # forest's value
    mask = encoded_masks(tile_and_encode(tmp_path, raw))[0]
    assert "scene-1.tif: its nodata value 1 is also the label value of class 'forest'" in capsys.readouterr().err
    assert not (mask == 1).any()
