"""STAC records of the mapping, region and change commands: they validate offline against the vendored STAC
core and extension schemas, their checksums and sizes are the files', the class table is the palette's, the
model's MLM Item carries its file's sha256; tampered records fail naming the field, and a schema that is not
vendored is an error, never a download.

Tiny runs: 64-pixel scenes mapped by a one-convolution ONNX model (benchmarks.region_overhead) and, for the
PyTorch model Item, a randomly initialised resnet18 checkpoint.
"""

from __future__ import annotations

import json
import shutil
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pystac
import pytest
import torch
from PIL import Image

from benchmarks.region_overhead import tiny_onnx_model
from landcover.cli import change as change_command
from landcover.cli import map as map_command
from landcover.cli import stac as stac_command
from landcover.data.palette import ClassTable
from landcover.geo.stac import (
    RUN_TIME,
    multihash,
    schema_of,
    schema_problems,
    schema_registry,
    validate_stac,
)
from landcover.io.digests import file_sha256
from landcover.io.errors import PipelineError
from landcover.model.checkpoint import checkpoint_config, save_checkpoint
from landcover.model.model import build_model
from tests.conftest import write_params
from tests.optional import need_group
from tests.test_geotiff import UTM33, random_rgb, write_raster
from tests.test_region import utm_transform

TABLE = ClassTable.deepglobe()
PREDICT = {"window": 32, "overlap": 0.5, "batch_size": 2}
ACQUIRED = ["2024-06-01T10:00:00Z", "2024-06-02T10:00:00Z", "2024-06-03T10:00:00Z"]


def read(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def model_item_of(item_path: Path) -> Path:
    (link,) = [link for link in read(item_path)["links"] if link["rel"] == "derived_from"]
    return item_path.parent / link["href"]


@pytest.fixture(scope="module")
def mapped(tmp_path_factory) -> dict:
    """A GeoTIFF scene and a JPEG mapped with the tiny ONNX model, confidence and probabilities too."""
    root = tmp_path_factory.mktemp("map")
    write_raster(root / "scene.tif", random_rgb(64, 64, seed=1), UTM33, utm_transform(0))
    Image.fromarray(random_rgb(48, 40, seed=2).transpose(1, 2, 0)).save(root / "photo.jpg")
    model = tiny_onnx_model(root / "tiny.onnx", TABLE)
    params = write_params(root / "params.yaml", predict=PREDICT)
    out = root / "out"
    map_command.main(
        [
            *("--model", str(model), "--input", str(root / "scene.tif"), str(root / "photo.jpg")),
            *("--output", str(out), "--params", str(params), "--confidence", "--probabilities"),
        ]
    )
    return {"root": root, "out": out, "model": model}


def test_a_mapping_run_writes_an_item_per_scene_and_the_model_item_that_validate_offline(mapped):
    out = mapped["out"]
    files, problems = validate_stac([out])
    model_items = sorted(out.glob("model-*.item.json"))
    assert sorted(files) == sorted([out / "photo.item.json", out / "scene.item.json", *model_items])
    assert problems == []
    assert len(model_items) == 1
    item = pystac.Item.from_file(str(out / "scene.item.json"))
    assert set(item.assets) == {"classes", "style", "confidence", "probabilities", "areas_json", "areas_csv"}
    assert item.assets["classes"].media_type == pystac.MediaType.COG
    assert "data" in item.assets["classes"].roles
    written = {path.name for path in out.iterdir() if path.name.startswith("scene") and "item" not in path.name}
    assert {asset.href for asset in item.assets.values()} == written


def test_each_assets_size_and_checksum_are_its_files(mapped):
    out = mapped["out"]
    for name in ("scene.item.json", "photo.item.json"):
        for key, asset in read(out / name)["assets"].items():
            path = out / asset["href"]
            assert asset["file:checksum"] == "1220" + file_sha256(path), key
            assert asset["file:size"] == path.stat().st_size, key


def test_the_class_maps_class_table_is_the_palettes(mapped):
    band = read(mapped["out"] / "scene.item.json")["assets"]["classes"]["raster:bands"][0]
    assert (band["data_type"], band["nodata"]) == ("uint8", 255)
    classes = band["classification:classes"]
    assert [c["value"] for c in classes] == [*range(len(TABLE)), 255]
    assert [c["name"] for c in classes[:-1]] == list(TABLE.names)
    assert [c["color_hint"] for c in classes[:-1]] == ["{:02X}{:02X}{:02X}".format(*c) for c in TABLE.colours]
    assert classes[-1]["nodata"] is True
    probabilities = read(mapped["out"] / "scene.item.json")["assets"]["probabilities"]["raster:bands"]
    assert len(probabilities) == len(TABLE)


def test_a_georeferenced_scenes_item_has_its_footprint_in_lonlat_and_its_grid(mapped):
    from rasterio.warp import transform_bounds

    item = read(mapped["out"] / "scene.item.json")
    transform = utm_transform(0)
    bounds = (transform.c, transform.f - 64 * 10.0, transform.c + 64 * 10.0, transform.f)
    np.testing.assert_allclose(item["bbox"], transform_bounds(UTM33, "EPSG:4326", *bounds), atol=1e-9)
    properties = item["properties"]
    assert properties["proj:code"] == "EPSG:32633"
    assert properties["proj:shape"] == [64, 64]
    assert properties["proj:transform"] == list(transform)[:6]
    assert properties["proj:bbox"] == list(bounds)
    # a file's acquisition time is not known: the run's time, said so
    assert properties["datetime"] is None and properties["landcover:datetime_is"] == RUN_TIME
    assert properties["start_datetime"] <= properties["end_datetime"]


def test_a_jpegs_item_has_no_footprint(mapped):
    item = read(mapped["out"] / "photo.item.json")
    assert item["geometry"] is None and "bbox" not in item
    assert item["properties"]["proj:shape"] == [48, 40] and "proj:transform" not in item["properties"]
    assert item["assets"]["classes"]["type"] == pystac.MediaType.PNG


def test_the_model_item_carries_the_onnx_files_sha256_and_what_the_model_takes_and_gives(mapped):
    model_item = read(model_item_of(mapped["out"] / "scene.item.json"))
    assert model_item["assets"]["model"]["file:checksum"] == multihash(file_sha256(mapped["model"]))
    assert Path(mapped["out"] / model_item["assets"]["model"]["href"]).resolve() == mapped["model"].resolve()
    assert model_item["assets"]["model"]["mlm:artifact_type"] == "onnx"
    properties = model_item["properties"]
    assert properties["mlm:framework"] == "ONNX" and properties["landcover:runtime"] == "onnxruntime"
    assert properties["mlm:tasks"] == ["semantic-segmentation"]
    (model_input,) = properties["mlm:input"]
    assert model_input["bands"] == ["band1", "band2", "band3"]
    assert model_input["input"]["shape"] == [-1, PREDICT["window"], PREDICT["window"], 3]
    (model_output,) = properties["mlm:output"]
    assert [c["name"] for c in model_output["classification:classes"]] == list(TABLE.names)
    assert properties["landcover:window"] == {"size": 32, "overlap": 0.5, "tta": False}


def test_a_checkpoints_model_item_is_pytorchs_with_its_sha256_and_scaling(tmp_path):
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pt"
    weights = build_model("resnet18", len(TABLE)).state_dict()
    save_checkpoint(checkpoint, config=checkpoint_config("resnet18", TABLE, 64), model=weights, params={}, epoch=1)
    write_raster(tmp_path / "scene.tif", random_rgb(32, 32, seed=3), UTM33, utm_transform(0))
    params = write_params(tmp_path / "params.yaml", predict={**PREDICT, "runtime": "torch"})
    out = tmp_path / "out"
    map_command.main(
        [
            *("--checkpoint", str(checkpoint), "--input", str(tmp_path / "scene.tif")),
            *("--output", str(out), "--params", str(params)),
        ]
    )
    assert validate_stac([out])[1] == []
    model_item = read(model_item_of(out / "scene.item.json"))
    assert model_item["id"] == "model-" + file_sha256(checkpoint)[:12]
    assert model_item["assets"]["model"]["file:checksum"] == multihash(file_sha256(checkpoint))
    assert model_item["properties"]["mlm:framework"] == "PyTorch"
    (model_input,) = model_item["properties"]["mlm:input"]
    assert model_input["input"] == {"shape": [-1, 3, 32, 32], "dim_order": ["batch", "channel", "height", "width"],
                                    "data_type": "float32"}  # fmt: skip
    # ImageNet's mean and std of x / 255, as a z-score of the raw values
    assert model_input["value_scaling"][0] == {"type": "z-score", "mean": pytest.approx(0.485 * 255),
                                               "stddev": pytest.approx(0.229 * 255)}  # fmt: skip


# --- a region and a change ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> dict:
    """Three UTM scenes listed in a STAC ItemCollection with their acquisition times, mapped as a region on an
    in-process cluster; then the change between the mosaic and its COG, and between two plain class maps."""
    need_group("region")
    root = tmp_path_factory.mktemp("region")
    (root / "imagery").mkdir()
    features = []
    for k, when in enumerate(ACQUIRED):
        write_raster(root / "imagery" / f"s{k}.tif", random_rgb(64, 64, seed=k), UTM33, utm_transform(k))
        features.append(
            {"type": "Feature", "stac_version": "1.0.0", "id": f"s{k}", "geometry": None,
             "properties": {"datetime": when}, "links": [], "assets": {"visual": {"href": f"imagery/s{k}.tif"}}}
        )  # fmt: skip
    (root / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    model = tiny_onnx_model(root / "tiny.onnx", TABLE)
    params = write_params(root / "params.yaml", predict=PREDICT)
    out = root / "out"
    argv = [
        *("--model", str(model), "--input", str(root / "items.json"), "--output", str(out)),
        *("--params", str(params), "--no-progress", "--mosaic-cog"),
    ]
    run_region(argv)
    change_command.main(
        ["--before", str(out / "region.vrt"), "--after", str(out / "region.tif"), "--output", str(root / "change")]
    )
    return {"root": root, "out": out, "change": root / "change", "argv": argv}


def run_region(argv: list[str]) -> dict:
    """The region command on an in-process cluster of one worker; its summary."""
    import distributed

    from landcover.cli import region as region_command

    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=50
    ) as cluster:
        region_command.main([*argv, "--scheduler", cluster.scheduler_address])
    return read(Path(argv[argv.index("--output") + 1]) / "region.json")


def test_a_region_writes_a_collection_of_its_scene_items_that_validates_offline(region):
    out = region["out"]
    files, problems = validate_stac([out])
    assert problems == []
    assert out / "collection.json" in files and len(files) == 5  # collection, 3 scenes, the model
    collection = pystac.Collection.from_file(str(out / "collection.json"))
    assert sorted(item.id for item in collection.get_items()) == ["s0", "s1", "s2"]
    assert set(collection.assets) == {"mosaic", "mosaic_cog", "areas_json", "areas_csv", "summary"}
    for key, asset in collection.assets.items():
        assert asset.extra_fields["file:checksum"] == multihash(file_sha256(Path(asset.get_absolute_href()))), key
    classes = collection.assets["mosaic"].extra_fields["raster:bands"][0]["classification:classes"]
    assert [c["name"] for c in classes[:-1]] == list(TABLE.names)
    assert collection.assets["mosaic"].extra_fields["proj:code"] == "EPSG:32633"
    # the collection's extent: the scenes' acquisition times (kept from the input items) and footprints
    interval = collection.extent.temporal.intervals[0]
    assert [pystac.utils.datetime_to_str(moment) for moment in interval] == [ACQUIRED[0], ACQUIRED[-1]]
    boxes = [read(out / "scenes" / f"s{k}.item.json")["bbox"] for k in range(3)]
    assert collection.extent.spatial.bboxes[0] == [min(b[0] for b in boxes), min(b[1] for b in boxes),
                                                   max(b[2] for b in boxes), max(b[3] for b in boxes)]  # fmt: skip


def test_a_regions_scene_items_keep_their_acquisition_time_and_link_back_to_the_collection(region):
    item = read(region["out"] / "scenes" / "s1.item.json")
    assert item["properties"]["datetime"] == ACQUIRED[1]
    assert "landcover:datetime_is" not in item["properties"]
    assert item["collection"] == read(region["out"] / "collection.json")["id"]
    assert {link["rel"]: link["href"] for link in item["links"]}["collection"] == "../collection.json"
    assert model_item_of(region["out"] / "scenes" / "s1.item.json").is_file()
    # the record lists the item: a rerun without it maps the scene again
    assert "s1.item.json" in read(region["out"] / "scenes" / "s1.record.json")["outputs"]


def test_a_resumed_scene_of_a_version_that_wrote_no_stac_gets_its_item_without_being_mapped_again(region):
    scenes = region["out"] / "scenes"
    (scenes / "s2.item.json").unlink()
    record = read(scenes / "s2.record.json")
    record["outputs"].remove("s2.item.json")
    (scenes / "s2.record.json").write_text(json.dumps(record))
    summary = run_region(region["argv"])
    assert (summary["mapped"], summary["resumed"]) == (0, 3)
    assert read(scenes / "s2.item.json")["properties"]["datetime"] == ACQUIRED[2]
    assert "s2.item.json" in read(scenes / "s2.record.json")["outputs"]
    assert len(read(region["out"] / "collection.json")["links"]) == 1 + 3  # root, and an item link per scene
    assert validate_stac([region["out"]])[1] == []


def test_a_change_writes_an_item_linked_to_its_two_maps_dated_by_theirs(region):
    change = region["change"]
    files, problems = validate_stac([change])
    assert (files, problems) == ([change / "change.item.json"], [])
    item = read(change / "change.item.json")
    assert set(item["assets"]) == {"change", "style", "from_to_json", "from_to_csv"}
    maps = [(change / link["href"]).resolve() for link in item["links"] if link["rel"] == "derived_from"]
    assert maps == [(region["out"] / "region.vrt").resolve(), (region["out"] / "region.tif").resolve()]
    assert (item["properties"]["start_datetime"], item["properties"]["end_datetime"]) == (ACQUIRED[0], ACQUIRED[-1])
    classes = item["assets"]["change"]["raster:bands"][0]["classification:classes"]
    names = [c["name"] for c in classes]
    # unchanged, every from -> to pair but the same-class ones, no class
    assert len(names) == 1 + len(TABLE) * (len(TABLE) - 1) + 1 and names[0] == "unchanged"
    assert classes[1]["title"] == f"{TABLE.names[0]} -> {TABLE.names[1]}"


def test_a_change_of_maps_without_stac_is_dated_by_the_run(tmp_path):
    from tests.test_change import random_classes, write_class_map

    write_class_map(tmp_path / "a.tif", random_classes(1))
    write_class_map(tmp_path / "b.tif", random_classes(2))
    change_command.main(["--before", str(tmp_path / "a.tif"), "--after", str(tmp_path / "b.tif"), "--output",
                         str(tmp_path / "c")])  # fmt: skip
    properties = read(tmp_path / "c" / "change.item.json")["properties"]
    assert properties["landcover:datetime_is"] == RUN_TIME
    assert validate_stac([tmp_path / "c"])[1] == []


# --- validation that fails ---------------------------------------------------------------------------------


def tampered_copy(mapped: dict, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(mapped["out"], out)
    shutil.copy(mapped["model"], tmp_path / mapped["model"].name)  # the model asset's href: ../tiny.onnx
    return out


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("data_type", "uint9", "assets/classes/raster:bands/0/data_type: 'uint9' is not one of"),
        ("color_hint", "yellow", "assets/classes/raster:bands/0/classification:classes/1/color_hint: 'yellow'"),
        ("proj:shape", [64], "properties/proj:shape: [64] is too short"),
    ],
)
def test_a_tampered_item_fails_validation_naming_the_field(mapped, tmp_path, capsys, field, value, message):
    out = tampered_copy(mapped, tmp_path)
    item = read(out / "scene.item.json")
    band = item["assets"]["classes"]["raster:bands"][0]
    {"data_type": band, "color_hint": band["classification:classes"][1], "proj:shape": item["properties"]}[field][
        field
    ] = value
    (out / "scene.item.json").write_text(json.dumps(item))
    with pytest.raises(PipelineError, match="1 problems in 3 STAC files"):
        stac_command.main(["validate", str(out)])
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith(f"{out / 'scene.item.json'}: [https://stac-extensions.github.io/") and message in line


def test_a_datetime_that_is_no_date_fails_naming_it(mapped, tmp_path):
    out = tampered_copy(mapped, tmp_path)
    item = read(out / "scene.item.json")
    item["properties"]["start_datetime"] = "2024-13-45T00:00:00Z"
    (out / "scene.item.json").write_text(json.dumps(item))
    _, problems = validate_stac([out / "scene.item.json"])
    assert problems == [f"{out / 'scene.item.json'}: [STAC Feature 1.1.0] properties/start_datetime: "
                        "'2024-13-45T00:00:00Z' is not a 'date-time'"]  # fmt: skip


def test_a_model_item_without_its_architecture_fails_naming_it(mapped, tmp_path):
    out = tampered_copy(mapped, tmp_path)
    (path,) = out.glob("model-*.item.json")
    item = read(path)
    del item["properties"]["mlm:architecture"]
    path.write_text(json.dumps(item))
    _, problems = validate_stac([path])
    assert problems == [f"{path}: [https://stac-extensions.github.io/mlm/v1.4.0/schema.json] properties: "
                        "'mlm:architecture' is a required property"]  # fmt: skip


def test_a_file_changed_after_its_item_fails_its_checksum_and_size(mapped, tmp_path):
    out = tampered_copy(mapped, tmp_path)
    with open(out / "scene_areas.csv", "a") as file:
        file.write("tampered\n")
    (out / "scene.qml").unlink()
    _, problems = validate_stac([out])
    assert sorted(problem.split(": ", 1)[1] for problem in problems) == [
        "assets/areas_csv/file:checksum: does not match scene_areas.csv's sha256",
        f"assets/areas_csv/file:size: {(mapped['out'] / 'scene_areas.csv').stat().st_size}, but scene_areas.csv "
        f"has {(out / 'scene_areas.csv').stat().st_size} bytes",
        "assets/style/href: scene.qml is not a file",
    ]


def test_a_schema_that_is_not_vendored_is_an_error_and_never_fetched(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the validator tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(PipelineError, match="https://example.com/elsewhere.json.*not vendored"):
        schema_problems({"a": 1}, {"$ref": "https://example.com/elsewhere.json"})
    with pytest.raises(PipelineError, match="eo/v1.1.0/schema.json: no vendored schema"):
        schema_of("https://stac-extensions.github.io/eo/v1.1.0/schema.json")


def test_every_schema_pystac_writes_for_us_and_every_reference_in_them_is_vendored():
    from pystac.extensions.classification import ClassificationExtension
    from pystac.extensions.file import FileExtension
    from pystac.extensions.mlm import MLMExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension

    registry = schema_registry()
    for extension in (ClassificationExtension, FileExtension, MLMExtension, ProjectionExtension, RasterExtension):
        registry.contents(extension.get_schema_uri())
    version = pystac.get_stac_version()
    for kind in (
        "item-spec/json-schema/item",
        "collection-spec/json-schema/collection",
        "catalog-spec/json-schema/catalog",
    ):
        registry.contents(f"https://schemas.stacspec.org/v{version}/{kind}.json")


def test_the_validate_command_refuses_a_missing_path_and_a_folder_without_stac(tmp_path):
    with pytest.raises(PipelineError, match=f"{tmp_path / 'nowhere'}: not found"):
        stac_command.main(["validate", str(tmp_path / "nowhere")])
    (tmp_path / "plain.json").write_text("{}")
    with pytest.raises(PipelineError, match="holds no STAC file"):
        stac_command.main(["validate", str(tmp_path)])
    with pytest.raises(PipelineError, match="not a STAC document"):
        stac_command.main(["validate", str(tmp_path / "plain.json")])
