"""Your own imagery end to end: tile, encode, split, train, export, predict, evaluate and map a tiny 4-band
uint16 dataset with polygon labels in a projected CRS, and each preset's look-alike; the same pixels as JPEG +
colour PNG and as GeoTIFF + class-index raster train to the same checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from landcover.cli import map as map_command
from landcover.data.palette import ClassTable
from landcover.data.tilestore import TileStore
from landcover.io.imageio import read_index_png, read_rgb
from landcover.model.checkpoint import load_checkpoint, read_model_interface
from landcover.synthetic.scenes import write_lookalike, write_scene_dataset
from stages import encode, evaluate, export, predict, split, tile, train
from tests.conftest import write_pair, write_params
from tests.optional import need_group

TABLE = ClassTable(("field", "forest", "water"), np.array([[250, 220, 90], [30, 120, 40], [40, 80, 220]]))

FAST = {
    "tile": {"size": 32, "stride": 32},
    "split": {"method": "ratios", "seed": 1, "ratios": {"train": 0.5, "val": 0.25, "test": 0.25}},
    "model": {"encoder": "resnet18"},
    "train": {"epochs": 1, "batch_size": 4, "restart_epochs": 1},
    "predict": {"window": 32, "batch_size": 4, "runtime": "torch"},
    "export": {"min_int8_agreement": 0, "max_int8_miou_drop": 1, "check_tiles": 8, "calibration_tiles": 4},
}


def run_stages(work: Path, raw: Path, data: dict, through_export: bool = False) -> dict:
    """The pipeline's stages on `raw`, in `work`; returns the test metrics."""
    params = write_params(work / "params.yaml", data={"raw": str(raw), **data}, **FAST)
    tiles, encoded, splits, models = work / "tiles", work / "encoded", work / "splits", work / "models"
    tile.main([str(raw), str(tiles), "--params", str(params)])
    encode.main([str(tiles), str(encoded), "--report", str(work / "encode.json")])
    split.main([str(tiles), str(encoded), str(splits), "--params", str(params), "--distribution", str(work / "d.json")])
    train.main(
        [str(tiles), str(encoded), str(splits), str(models), "--live", str(work / "live"), "--params", str(params)]
    )
    if through_export:
        export.main(
            [
                "--checkpoint",
                str(models / "best.pt"),
                "--tiles",
                str(tiles),
                "--encoded",
                str(encoded),
                "--splits",
                str(splits),
                "--output",
                str(models / "export"),
                "--report",
                str(work / "export.json"),
                "--params",
                str(params),
            ]
        )
    predict.main(
        [
            "--checkpoint",
            str(models / "best.pt"),
            "--tiles",
            str(tiles),
            "--split",
            str(splits / "test.csv"),
            "--output",
            str(work / "predictions"),
            "--params",
            str(params),
            "--export",
            str(models / "export"),
        ]
    )
    evaluate.main(
        [
            str(work / "predictions"),
            str(tiles),
            str(encoded),
            str(splits / "test.csv"),
            "--metrics",
            str(work / "test.json"),
            "--details",
            str(work / "details.json"),
            "--confusion",
            str(work / "confusion.csv"),
            *("--low", str(work / "test_low.json"), "--high", str(work / "test_high.json")),
            *("--intervals", str(work / "intervals.json"), "--per-image", str(work / "per_image.json")),
        ]
    )
    return json.loads((work / "test.json").read_text())


@pytest.fixture(scope="module")
def four_band_run(tmp_path_factory) -> Path:
    need_group("vector")
    work = tmp_path_factory.mktemp("four-band")
    write_scene_dataset(work / "raw", TABLE, scenes=4, size=(96, 128), labels="gpkg", bands=4, dtype="uint16")
    run_stages(work, work / "raw", {"layout": "scenes", "bands": [1, 2, 3, 4]}, through_export=True)
    return work


def test_a_four_band_uint16_model_records_its_bands_scaling_and_classes(four_band_run):
    interface = read_model_interface(four_band_run / "models" / "best.pt")
    assert interface.scaling.bands == (1, 2, 3, 4) and interface.scaling.dtype == "uint16"
    assert interface.table == TABLE
    statistics = json.loads((four_band_run / "splits" / "band_statistics.json").read_text())
    np.testing.assert_allclose(interface.scaling.mean, statistics["mean"])
    config = load_checkpoint(four_band_run / "models" / "best.pt")["config"]
    assert config["in_channels"] == 4
    metrics = json.loads((four_band_run / "test.json").read_text())
    assert 0 <= metrics["miou_land"] <= 1
    assert (four_band_run / "models" / "export" / "model.int8.onnx").is_file()


def test_mapping_a_test_scene_needs_no_flags_and_gives_the_evaluated_classes(four_band_run):
    work = four_band_run
    scene_id = sorted(path.stem for path in (work / "predictions").glob("*.png") if "_colour" not in path.name)[0]
    image = TileStore(work / "tiles").image_path(scene_id)
    map_command.main(
        [
            "--checkpoint",
            str(work / "models" / "best.pt"),
            "--input",
            str(image),
            "--output",
            str(work / "maps"),
            "--params",
            str(work / "params.yaml"),
        ]
    )
    with rasterio.open(work / "maps" / f"{scene_id}.tif") as mapped:
        classes = mapped.read(1)
        assert mapped.crs == rasterio.open(image).crs
    np.testing.assert_array_equal(classes, read_index_png(work / "predictions" / f"{scene_id}.png"))


@pytest.mark.parametrize("preset", ["landcoverai", "openearthmap", "loveda"])
def test_each_preset_lookalike_runs_end_to_end(tmp_path, preset):
    write_lookalike(tmp_path / "raw", preset, scenes=4, size=(96, 128))
    metrics = run_stages(tmp_path, tmp_path / "raw", {"layout": preset})
    assert set(metrics) >= {"miou_land", "miou", "mean_dice", "pixel_accuracy"}
    assert json.loads((tmp_path / "details.json").read_text())["images"] == 1


def test_the_same_pixels_as_jpeg_and_colour_png_or_geotiff_and_index_raster_train_identically(tmp_path):
    deepglobe = ClassTable.deepglobe()
    jpeg_raw = tmp_path / "jpeg" / "raw"
    jpeg_raw.mkdir(parents=True)
    for number in range(4):
        write_pair(jpeg_raw, str(number + 1), 64, 96, seed=number)
    # the same pixels: the decoded JPEGs and the class indices of the colour masks, as GeoTIFFs
    tiff_raw = tmp_path / "tiff" / "raw"
    for folder in ("images", "labels"):
        (tiff_raw / folder).mkdir(parents=True)
    rows = ["scene_id,image,labels"]
    for number in range(4):
        image = read_rgb(jpeg_raw / f"{number + 1}_sat.jpg")
        colours = read_rgb(jpeg_raw / f"{number + 1}_mask.png", "mask")
        from landcover.data.palette import colour_to_index

        index, _ = colour_to_index(colours, deepglobe)
        profile = {"driver": "GTiff", "height": 64, "width": 96}
        with rasterio.open(tiff_raw / "images" / f"{number + 1}.tif", "w", count=3, dtype="uint8", **profile) as out:
            out.write(np.moveaxis(image, -1, 0))
        with rasterio.open(tiff_raw / "labels" / f"{number + 1}.tif", "w", count=1, dtype="uint8", **profile) as out:
            out.write(index, 1)
        rows.append(f"{number + 1},images/{number + 1}.tif,labels/{number + 1}.tif")
    (tiff_raw / "scenes.csv").write_text("\n".join(rows) + "\n")
    deepglobe.to_csv(tiff_raw / "classes.csv")
    run_stages(tmp_path / "jpeg", jpeg_raw, {"layout": "deepglobe"})
    run_stages(tmp_path / "tiff", tiff_raw, {"layout": "scenes"})
    jpeg_store = TileStore(tmp_path / "jpeg" / "tiles", tmp_path / "jpeg" / "encoded")
    tiff_store = TileStore(tmp_path / "tiff" / "tiles", tmp_path / "tiff" / "encoded")
    assert [record.tile for record in jpeg_store.index()] == [record.tile for record in tiff_store.index()]
    for record in jpeg_store.index():
        np.testing.assert_array_equal(jpeg_store.read_image(record), tiff_store.read_image(record))
        np.testing.assert_array_equal(jpeg_store.read_class_mask(record), tiff_store.read_class_mask(record))
    jpeg_weights = load_checkpoint(tmp_path / "jpeg" / "models" / "best.pt")["model"]
    tiff_weights = load_checkpoint(tmp_path / "tiff" / "models" / "best.pt")["model"]
    for name, tensor in jpeg_weights.items():
        assert torch.equal(tensor, tiff_weights[name]), name
