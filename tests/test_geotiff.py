"""Mapping new imagery: rasters in, georeferenced class maps, confidence, probabilities, areas and polygons out.

Synthetic GeoTIFFs in projected CRSs (EPSG:32633, Web Mercator, LAEA), in EPSG:4326, without a CRS,
with nodata, an alpha band, 4 bands, uint16 and float32, mapped by tiny stand-in models; streaming
must equal the in-memory path bit for bit, also where the scene does not fit the window grid. Areas
are checked here as the report and the polygons give them; tests/test_areas.py checks the pixel
areas themselves.
"""

from __future__ import annotations

import json
import sys
import warnings
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning

from landcover.cli import map as map_command
from landcover.data.palette import ClassTable
from landcover.data.scaling import BandScaling, statistics_scaling, uint8_scaling
from landcover.geo.georaster import ReadOptions, gdal_env, open_scene, to_uint8
from landcover.geo.mapping import MapOptions, map_file
from landcover.inference.blending import SlidingWindows
from landcover.inference.probabilities import model_probabilities
from landcover.io.errors import PipelineError
from landcover.io.params import PredictParams
from tests.conftest import map_files, stand_in_runtime, write_params
from tests.optional import need_group
from tests.test_areas import cell_area_reference, lonlat_rectangle_m2, mercator_latitude, mercator_y


def from_origin(west: float, north: float, width: float, height: float) -> Affine:
    """A north-up transform (rasterio's own from_origin warns about Affine's * operator)."""
    return Affine(width, 0, west, 0, -height, north)


TABLE = ClassTable.deepglobe()
UTM33 = CRS.from_epsg(32633)
WGS84 = CRS.from_epsg(4326)
UTM_TRANSFORM = from_origin(500_000, 5_000_000, 10, 10)  # 10 m pixels: 0.01 ha each


PARAMS = PredictParams(window=64, overlap=0.25, batch_size=3, tta=False, precision="fp32", compile=False)


def write_raster(
    path: Path, bands: np.ndarray, crs=UTM33, transform: Affine = UTM_TRANSFORM, nodata=None, colorinterp=None
) -> Path:
    """A GeoTIFF of `bands` (count x H x W) as they are typed."""
    count, height, width = bands.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the rasters without a CRS
        dataset = rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=width,
            height=height,
            count=count,
            dtype=bands.dtype,
            crs=crs,
            transform=transform,
            nodata=nodata,
        )
    with dataset:
        dataset.write(bands)
        if colorinterp:
            dataset.colorinterp = colorinterp
    return path


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, (3, height, width), dtype=np.uint8)


class ConvModel:
    """A tiny fixed random convolution with softmax: real-valued probabilities that vary with position."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, len(TABLE), 5, padding=2)
        self.batches: list[int] = []

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.batches.append(batch.shape[0])
        return self.conv(batch.permute(0, 3, 1, 2).float() / 255).softmax(dim=1)


def labels_from_red(batch: torch.Tensor) -> torch.Tensor:
    """Each pixel's class is its red value modulo the number of classes: one-hot probabilities."""
    labels = batch[..., 0].long() % len(TABLE)
    return torch.nn.functional.one_hot(labels, len(TABLE)).permute(0, 3, 1, 2).float()


DEFAULT_READ = ReadOptions()


def outputs_in(out: Path) -> list[str]:
    """The names of the files in `out` but the model's STAC Item (named by the stand-in model's digest)."""
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("model-"))


def in_memory(path: Path, probability_fn, read: ReadOptions = DEFAULT_READ, params: PredictParams = PARAMS):
    """What the in-memory path predicts for the scene: whole-image probabilities, classes, confidence."""
    with gdal_env(), open_scene(path, read) as scene:
        image, has_data = scene.read_rows(0, scene.height)
    probs = SlidingWindows.of(probability_fn, len(TABLE), params).probabilities(image)
    classes = probs.argmax(axis=0).astype(np.uint8)
    classes[~has_data] = 255
    confidence = np.rint(probs.max(axis=0) * 255).astype(np.uint8)
    confidence[~has_data] = 0
    return probs, classes, confidence


def read_band(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1)


@pytest.fixture
def run_predict(tmp_path, monkeypatch):
    """The mapping command on --input files with a stand-in model (64 px windows, overlap 0.25, batches of 3)."""
    params = write_params(
        tmp_path / "params.yaml",
        predict={"window": 64, "overlap": 0.25, "batch_size": 3, "precision": "fp32", "compile": False},
    )

    def run(inputs: list[Path], out: Path, *flags: str, model=labels_from_red) -> Path:
        monkeypatch.setattr(map_command, "choose_runtime", lambda *args, **kwargs: stand_in_runtime(TABLE))
        monkeypatch.setattr(map_command, "runtime_probabilities", lambda *args, **kwargs: model)
        return map_files(params, inputs, out, *flags)

    return run


# --- streaming equals the in-memory path ---------------------------------------------------------------


@pytest.mark.parametrize(
    "height, width, window, overlap, batch_size",
    [
        (150, 97, 64, 0.25, 3),  # fits no grid: last row and column of windows flush with the far edges
        (128, 128, 64, 0.5, 8),  # fits the grid exactly
        (300, 40, 32, 0.25, 7),  # narrow: one batch spans several rows of windows
        (70, 260, 96, 0.0, 2),  # window shrunk to 64 for the 70-pixel side; no overlap
        (16, 16, 256, 0.25, 1),  # the smallest scene: a single 16 px window
    ],
)
def test_streamed_strips_are_bit_identical_to_the_in_memory_probabilities(
    tmp_path, height, width, window, overlap, batch_size
):
    path = write_raster(tmp_path / "scene.tif", random_rgb(height, width))
    model = ConvModel()
    params = PredictParams(window, overlap, batch_size, tta=False, precision="fp32", compile=False)
    expected, _, _ = in_memory(path, model, params=params)
    in_memory_batches = list(model.batches)
    model.batches.clear()
    with gdal_env(), open_scene(path, ReadOptions()) as scene:
        strips = list(SlidingWindows(model, len(TABLE), window, overlap, batch_size).strips(scene))
    tops = [top for top, _, _ in strips]
    assert tops[0] == 0 and tops == sorted(tops)
    streamed = np.concatenate([probs.cpu().numpy() for _, probs, _ in strips], axis=1)
    assert streamed.dtype == np.float32
    np.testing.assert_array_equal(streamed, expected)  # bit for bit, not approximately
    assert model.batches == in_memory_batches  # the same windows in the same batches
    assert all(has_data.all() for _, _, has_data in strips)


def test_written_class_map_and_confidence_equal_the_in_memory_path(tmp_path):
    rgb = random_rgb(150, 97)
    rgb[:, :12, :20] = 0  # nodata in every band: no prediction
    rgb[0, 40:50, 40:50] = 0  # nodata in one band only: still predicted
    path = write_raster(tmp_path / "scene.tif", rgb, nodata=0)
    model = ConvModel()
    _, classes, confidence = in_memory(path, model)
    # blocks of 128 rows: strips of 48 rows end inside blocks, so rows wait for their block to fill
    map_file(path, tmp_path / "out", model, TABLE, PARAMS, MapOptions(confidence=True, blocksize=128))
    np.testing.assert_array_equal(read_band(tmp_path / "out" / "scene.tif"), classes)
    np.testing.assert_array_equal(read_band(tmp_path / "out" / "scene_confidence.tif"), confidence)
    assert (classes[:12, :20] == 255).all() and (classes[12:] != 255).all() and (classes[:, 20:] != 255).all()
    assert (confidence[:12, :20] == 0).all() and confidence[12:].min() >= 255 // len(TABLE)


# --- georeference, colour table, COG ------------------------------------------------------------------


def test_class_map_keeps_the_georeference_and_carries_the_colour_table(tmp_path, run_predict):
    path = write_raster(tmp_path / "scene.tif", random_rgb(300, 260))
    out = run_predict([path], tmp_path / "out", "--confidence")
    assert outputs_in(out) == [
        "scene.item.json",
        "scene.qml",
        "scene.tif",
        "scene_areas.csv",
        "scene_areas.json",
        "scene_confidence.tif",
    ]
    for name in ("scene.tif", "scene_confidence.tif"):
        with rasterio.open(out / name) as dataset:
            assert dataset.crs == UTM33 and dataset.crs.to_epsg() == 32633
            assert dataset.transform == UTM_TRANSFORM  # exactly
            assert (dataset.width, dataset.height, dataset.count, dataset.dtypes) == (260, 300, 1, ("uint8",))
            assert dataset.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert dataset.profile["tiled"] and dataset.profile["compress"] == "deflate"
            assert dataset.nodata == (255 if name == "scene.tif" else 0)
    with rasterio.open(out / "scene.tif") as dataset:
        assert dataset.colorinterp == (ColorInterp.palette,)
        colormap = dataset.colormap(1)
        for index, colour in enumerate(TABLE.colours):
            assert colormap[index] == (*colour.tolist(), 255)
        assert colormap[255][3] == 0  # no prediction: transparent
        assert dataset.tags()["CLASS_NAMES"] == ",".join(TABLE.names)
    # the classes are those the red band says (labels_from_red)
    expected = random_rgb(300, 260)[0] % len(TABLE)
    np.testing.assert_array_equal(read_band(out / "scene.tif"), expected)
    # QGIS's style: a paletted renderer naming every class in its colour
    style = ElementTree.parse(out / "scene.qml").getroot()
    entries = style.findall(".//rasterrenderer[@type='paletted']/colorPalette/paletteEntry")
    assert [(int(e.get("value")), e.get("label"), e.get("color")) for e in entries] == [
        (index, name, "#{:02x}{:02x}{:02x}".format(*colour))
        for index, (name, colour) in enumerate(zip(TABLE.names, TABLE.colours.tolist()))
    ]


def test_large_enough_class_maps_get_overviews(tmp_path):
    path = write_raster(tmp_path / "scene.tif", random_rgb(600, 300))
    map_file(path, tmp_path / "out", labels_from_red, TABLE, PARAMS, MapOptions(blocksize=128))
    with rasterio.open(tmp_path / "out" / "scene.tif") as dataset:
        assert dataset.overviews(1) == [2, 4, 8]  # down to the first level that fits one block
        assert dataset.block_shapes == [(128, 128)]


# --- class probabilities (--probabilities) ------------------------------------------------------------------


def check_probabilities(path: Path, probs: np.ndarray, has_data: np.ndarray, classes: np.ndarray) -> None:
    """`path` is the C-band uint8 COG of round(probs x 255), band descriptions the class names, 0 and masked where
    there is no data, and its bands' argmax is the class map wherever their largest value is unique."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG's has no georeference
        with rasterio.open(path) as dataset:
            assert (dataset.count, set(dataset.dtypes)) == (len(TABLE), {"uint8"})
            assert dataset.descriptions == tuple(TABLE.names)
            assert dataset.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and dataset.profile["tiled"]
            assert dataset.nodata is None and dataset.mask_flag_enums[0] == [MaskFlags.per_dataset]
            values, mask = dataset.read(), dataset.read_masks(1)
    expected = np.rint(probs * 255).astype(np.uint8)
    np.testing.assert_array_equal(values[:, has_data], expected[:, has_data])
    assert (values[:, ~has_data] == 0).all()
    np.testing.assert_array_equal(mask, np.where(has_data, 255, 0))
    ordered = np.sort(values, axis=0)
    unique = has_data & (ordered[-1] > ordered[-2])
    assert unique.mean() > 0.5  # the check below covers most pixels
    np.testing.assert_array_equal(values.argmax(axis=0)[unique], classes[unique])


def test_probabilities_of_a_geotiff_are_a_band_per_class_on_its_grid(tmp_path):
    rgb = random_rgb(300, 260)
    rgb[:, :12, :20] = 0  # no data: 0 in every band, masked
    path = write_raster(tmp_path / "scene.tif", rgb, nodata=0)
    model = ConvModel()
    probs, classes, _ = in_memory(path, model)
    options = MapOptions(probabilities=True, blocksize=128)
    map_file(path, tmp_path / "out", model, TABLE, PARAMS, options)
    check_probabilities(tmp_path / "out" / "scene_probabilities.tif", probs, classes != 255, classes)
    with rasterio.open(tmp_path / "out" / "scene_probabilities.tif") as dataset:
        assert (dataset.crs, dataset.transform) == (UTM33, UTM_TRANSFORM)
        assert dataset.block_shapes[0] == (128, 128) and dataset.overviews(1) == [2, 4]  # as the class map's
    np.testing.assert_array_equal(read_band(tmp_path / "out" / "scene.tif"), classes)  # the class map as ever
    map_file(path, tmp_path / "plain", model, TABLE, PARAMS, MapOptions(blocksize=128))
    assert not list((tmp_path / "plain").glob("*probabilities*"))  # only where asked


def test_probabilities_of_a_png_are_a_geotiff_beside_its_pngs(tmp_path, run_predict):
    path = tmp_path / "7.png"
    Image.fromarray(random_rgb(70, 90).transpose(1, 2, 0)).save(path)
    out = run_predict([path], tmp_path / "out", "--probabilities", "--pixel-size", "0.5", model=ConvModel())
    assert outputs_in(out) == [
        "7.item.json",
        "7.png",
        "7_areas.csv",
        "7_areas.json",
        "7_colour.png",
        "7_probabilities.tif",
    ]
    probs, classes, _ = in_memory(path, ConvModel())
    check_probabilities(out / "7_probabilities.tif", probs, np.ones(classes.shape, dtype=bool), classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(out / "7_probabilities.tif") as dataset:
            assert dataset.crs is None and dataset.transform == Affine.identity()
    np.testing.assert_array_equal(np.array(Image.open(out / "7.png")), classes)


def test_the_region_command_takes_probabilities_into_its_resume_records():
    from landcover.cli import region as region_command
    from landcover.region.records import mapping_settings

    arguments = region_command.parser()
    base = ["--checkpoint", "m.pt", "--input", "a.tif", "--output", "out"]
    plain, asked = (
        map_command.map_options(arguments.parse_args(base + flags), arguments) for flags in ([], ["--probabilities"])
    )
    assert (plain.probabilities, asked.probabilities) == (False, True)
    assert mapping_settings(PARAMS, plain) != mapping_settings(PARAMS, asked)


# --- areas ----------------------------------------------------------------------------------------------


def area_report(out: Path, image_id: str = "scene") -> dict:
    report = json.loads((out / f"{image_id}_areas.json").read_text())
    csv_rows = (out / f"{image_id}_areas.csv").read_text().splitlines()
    assert csv_rows[0] == "class_id,class,pixels,map_hectares" and len(csv_rows) == len(TABLE) + 1
    assert report["areas"].startswith("map areas: ") and "landcover-sample" in report["areas"]
    for line, row in zip(csv_rows[1:], report["classes"]):
        class_id, name, pixels, hectares = line.split(",")
        assert (int(class_id), name, int(pixels)) == (row["class_id"], row["class"], row["pixels"])
        assert hectares == "" if row["hectares"] is None else float(hectares) == row["hectares"]
    return report


def test_projected_area_is_ground_area(tmp_path, run_predict):
    rgb = random_rgb(150, 97)
    rgb[:, :10, :] = 0
    path = write_raster(tmp_path / "scene.tif", rgb, nodata=0)
    report = area_report(run_predict([path], tmp_path / "out"))
    labels = rgb[0] % len(TABLE)
    assert report["crs"] == "EPSG:32633" and report["pixel_area_m2"] is None
    assert report["area_method"].startswith("projected CRS: ground area on the ellipsoid")
    assert report["no_prediction_pixels"] == 10 * 97 and report["predicted_pixels"] == 140 * 97
    # on UTM's central meridian the map's scale is 0.9996: a 10 m pixel covers 100 / 0.9996^2 m^2
    ground_m2 = 100 / 0.9996**2
    for row in report["classes"]:
        pixels = int((labels[10:] == row["class_id"]).sum())
        assert row["pixels"] == pixels
        assert row["hectares"] == pytest.approx(pixels * ground_m2 / 10_000, rel=1e-6)
    assert report["predicted_hectares"] == pytest.approx(140 * 97 * ground_m2 / 10_000, rel=1e-6)


def test_projected_area_in_feet_converts_to_square_metres(tmp_path):
    path = write_raster(
        tmp_path / "scene.tif",
        random_rgb(40, 40),
        crs=CRS.from_epsg(2263),  # NY, US survey feet; between its standard parallels: scale within 1e-4 of 1
        transform=from_origin(1_000_000, 200_000, 10, 10),
    )
    report = map_file(path, tmp_path / "out", labels_from_red, TABLE, PARAMS, MapOptions())
    assert report["predicted_hectares"] == pytest.approx(1600 * (10 * 1200 / 3937) ** 2 / 10_000, rel=1e-4)


def test_web_mercator_scene_reports_ground_hectares(tmp_path, run_predict):
    # 300 x 300 pixels of 10 m at 60 N in EPSG:3857: 900 ha on the map, about 226 on the ground
    top = mercator_y(60)
    rgb = random_rgb(300, 300, seed=3)
    path = write_raster(tmp_path / "scene.tif", rgb, crs=CRS.from_epsg(3857), transform=from_origin(0, top, 10, 10))
    report = area_report(run_predict([path], tmp_path / "out"))
    edges = mercator_latitude(top - 10 * np.arange(301))
    row_m2 = lonlat_rectangle_m2(10 / 6_378_137, edges[:-1], edges[1:])
    labels = rgb[0] % len(TABLE)
    assert report["predicted_hectares"] == pytest.approx(row_m2.sum() * 300 / 10_000, rel=1e-6)
    assert report["predicted_hectares"] == pytest.approx(225, rel=0.01)
    for entry in report["classes"]:
        expected = float(((labels == entry["class_id"]).sum(axis=1) * row_m2).sum()) / 10_000
        assert entry["hectares"] == pytest.approx(expected, rel=1e-4)


def test_equal_area_scene_reports_its_map_area(tmp_path, run_predict):
    # ETRS89-extended / LAEA Europe (EPSG:3035), in Portugal, far from the projection's centre
    rgb = random_rgb(60, 80, seed=4)
    transform = from_origin(2_700_000, 2_000_000, 20, 20)
    path = write_raster(tmp_path / "scene.tif", rgb, crs=CRS.from_epsg(3035), transform=transform)
    report = area_report(run_predict([path], tmp_path / "out"))
    assert report["pixel_area_m2"] is None and report["area_method"].startswith("projected CRS: ground area")
    for entry in report["classes"]:
        assert entry["hectares"] == pytest.approx(entry["pixels"] * 400 / 10_000, rel=1e-7)


def test_geographic_scene_areas_sum_row_areas(tmp_path, run_predict):
    transform = from_origin(15.0, 46.0, 0.0005, 0.0005)  # about 39 m x 56 m at 46 N
    rgb = random_rgb(120, 90)
    path = write_raster(tmp_path / "scene.tif", rgb, crs=WGS84, transform=transform)
    report = area_report(run_predict([path], tmp_path / "out"))
    assert report["crs"] == "EPSG:4326" and report["pixel_area_m2"] is None
    assert report["area_method"].startswith("geographic")
    labels = rgb[0] % len(TABLE)
    row_areas = np.array([cell_area_reference(46.0 - 0.0005 * (row + 0.5), 0.0005, 0.0005) for row in range(120)])
    for entry in report["classes"]:
        expected = float(((labels == entry["class_id"]).sum(axis=1) * row_areas).sum()) / 10_000
        assert entry["hectares"] == pytest.approx(expected, rel=1e-7)
    with rasterio.open(tmp_path / "out" / "scene.tif") as dataset:
        assert dataset.crs == WGS84 and dataset.transform == transform


def test_rotated_geographic_grid_gets_no_hectares_and_says_why(tmp_path, capsys):
    rotated = Affine.rotation(10) @ Affine.scale(0.001, -0.001)
    path = write_raster(
        tmp_path / "scene.tif", random_rgb(40, 40), crs=WGS84, transform=Affine.translation(10, 50) @ rotated
    )
    report = map_file(path, tmp_path / "out", labels_from_red, TABLE, PARAMS, MapOptions())
    assert report["area_method"] is None and all(row["hectares"] is None for row in report["classes"])
    assert "rotated" in report["no_areas_because"]
    assert f"warning: {path}: no hectares in the area report: its geographic grid is rotated" in capsys.readouterr().err


def test_raster_without_crs_works_warns_and_has_no_hectares_unless_given_a_pixel_size(tmp_path, run_predict, capsys):
    rgb = random_rgb(50, 60)
    path = write_raster(tmp_path / "plain.tif", rgb, crs=None, transform=Affine.identity())
    report = area_report(run_predict([path], tmp_path / "out"), "plain")
    err = capsys.readouterr().err
    assert (
        f"warning: {path}: raster has no CRS: its maps are written without one, and the area report has no "
        "hectares (give --pixel-size METRES for them)" in err
    )
    assert report["crs"] is None and all(row["hectares"] is None for row in report["classes"])
    assert sum(row["pixels"] for row in report["classes"]) == 50 * 60
    with rasterio.open(tmp_path / "out" / "plain.tif") as dataset:
        assert dataset.crs is None
    np.testing.assert_array_equal(read_band(tmp_path / "out" / "plain.tif"), rgb[0] % len(TABLE))

    report = area_report(run_predict([path], tmp_path / "sized", "--pixel-size", "2"), "plain")
    assert "areas come from --pixel-size 2 m" in capsys.readouterr().err
    for row in report["classes"]:
        assert row["hectares"] == pytest.approx(row["pixels"] * 4 / 10_000)


def test_a_raster_georeferenced_only_by_gcps_is_refused_in_one_line_before_the_model_loads(tmp_path, run_predict):
    from rasterio.control import GroundControlPoint

    path = write_raster(tmp_path / "gcps.tif", random_rgb(64, 64), crs=None, transform=Affine.identity())
    corners = [(0, 0), (0, 64), (64, 0), (64, 64)]
    with rasterio.open(path, "r+") as dataset:
        dataset.gcps = ([GroundControlPoint(r, c, 500_000.0 + 10 * c, 5_000_000.0 - 10 * r) for r, c in corners], UTM33)
    with pytest.raises(
        PipelineError,
        match=r"gcps.tif: georeferenced only by 4 ground control points \(GCPs, EPSG:32633\); warp it onto a grid "
        r"first \(gdalwarp -t_srs EPSG:32633 in.tif warped.tif\) and map that; its maps cannot carry GCPs$",
    ):
        run_predict([path], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(PipelineError, match="gcps.tif: georeferenced only by 4 ground control points"):
        with open_scene(path, ReadOptions()):
            pass


def test_a_vrt_whose_source_file_is_missing_is_refused_before_the_model_loads(tmp_path, run_predict):
    import rasterio.shutil

    source = write_raster(tmp_path / "source.tif", random_rgb(64, 64))
    rasterio.shutil.copy(source, tmp_path / "scene.vrt", driver="VRT")
    source.unlink()
    with pytest.raises(PipelineError, match=r"scene.vrt: its source file .*source.tif is missing"):
        run_predict([tmp_path / "scene.vrt"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- bands, types, masks ------------------------------------------------------------------------------------


def test_bands_flag_picks_rgb_from_a_bgr_raster(tmp_path, run_predict):
    rgb = random_rgb(64, 80)
    path = write_raster(tmp_path / "bgr.tif", rgb[::-1].copy())  # stored as blue, green, red
    out = run_predict([path], tmp_path / "out", "--bands", "3,2,1")
    np.testing.assert_array_equal(read_band(out / "bgr.tif"), rgb[0] % len(TABLE))


def test_four_band_raster_reads_rgb_and_warns_about_the_rest(tmp_path, run_predict, capsys):
    rgbn = np.concatenate([random_rgb(64, 80), random_rgb(64, 80, seed=1)[:1]])
    # no colour interpretation: GDAL would take a fourth uint8 band for alpha, the mask of pixels without data
    interpretation = [ColorInterp.gray, ColorInterp.undefined, ColorInterp.undefined, ColorInterp.undefined]
    path = write_raster(tmp_path / "rgbn.tif", rgbn, colorinterp=interpretation)
    out = run_predict([path], tmp_path / "out")
    assert (
        f"warning: {path}: raster has 4 bands; bands 1,2,3 are read as RGB and the rest left out (--bands picks others)"
    ) in capsys.readouterr().err
    np.testing.assert_array_equal(read_band(out / "rgbn.tif"), rgbn[0] % len(TABLE))
    # with --bands there is nothing to warn about
    out = run_predict([path], tmp_path / "nir", "--bands", "4,2,3")
    assert "warning" not in capsys.readouterr().err
    np.testing.assert_array_equal(read_band(out / "rgbn.tif"), rgbn[3] % len(TABLE))


def test_colour_interpretation_chooses_the_bands_without_the_flag(tmp_path):
    rgb = random_rgb(32, 32)
    path = write_raster(
        tmp_path / "bgr.tif", rgb[::-1].copy(), colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red]
    )
    with gdal_env(), open_scene(path, ReadOptions()) as scene:
        assert scene.bands == (3, 2, 1)
        np.testing.assert_array_equal(scene.read_rows(0, 32)[0], rgb.transpose(1, 2, 0))


def test_alpha_band_masks_pixels_and_is_not_said_to_be_left_out(tmp_path, capsys):
    rgba = np.concatenate([random_rgb(64, 64), np.full((1, 64, 64), 255, dtype=np.uint8)])
    rgba[3, 30:, :] = 0
    path = write_raster(
        tmp_path / "rgba.tif",
        rgba,
        colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha],
    )
    map_file(path, tmp_path / "out", labels_from_red, TABLE, PARAMS, MapOptions())
    classes = read_band(tmp_path / "out" / "rgba.tif")
    assert (classes[30:] == 255).all()
    np.testing.assert_array_equal(classes[:30], rgba[0, :30] % len(TABLE))
    assert "left out" not in capsys.readouterr().err


def test_uint16_is_stretched_between_its_percentiles(tmp_path):
    values = np.random.default_rng(2).integers(200, 4000, (3, 60, 70)).astype(np.uint16)
    values[:, :5, :5] = 0  # nodata: left out of the percentiles
    path = write_raster(tmp_path / "scene.tif", values, nodata=0)
    with gdal_env(), open_scene(path, ReadOptions()) as scene:
        rgb, has_data = scene.read_rows(0, 60)
    assert not has_data[:5, :5].any() and has_data.sum() == 60 * 70 - 25
    for band in range(3):
        valid = values[band][values[band] != 0].astype(np.float64)
        low, high = np.percentile(valid, [2, 98])  # every pixel is in the sample of so small a scene
        expected = np.rint(np.clip((values[band].astype(np.float64) - low) / (high - low), 0, 1) * 255)
        np.testing.assert_array_equal(rgb[..., band], expected.astype(np.uint8))
    assert rgb[..., 0].min() == 0 and rgb[..., 0].max() == 255


def test_uint16_with_a_given_value_range_and_other_percentiles(tmp_path, run_predict):
    labels = np.random.default_rng(3).integers(0, len(TABLE), (3, 40, 50))
    values = (1000 + labels * 10).astype(np.uint16)  # 1000 + 10 * label: 0..255 as 1000..3550
    path = write_raster(tmp_path / "scene.tif", values)
    out = run_predict([path], tmp_path / "out", "--value-range", "1000,3550")
    np.testing.assert_array_equal(read_band(out / "scene.tif"), labels[0] % len(TABLE))
    with gdal_env(), open_scene(path, ReadOptions(percentiles=(0, 100))) as scene:
        low, high = scene.value_ranges[0]
        assert (low, high) == (values[0].min(), values[0].max())


def test_float_nan_gets_no_prediction_and_does_not_spread(tmp_path):
    values = np.random.default_rng(4).uniform(0, 1, (3, 64, 64)).astype(np.float32)
    values[1, 20:25, 20:25] = np.nan
    path = write_raster(tmp_path / "scene.tif", values)
    model = ConvModel()
    map_file(path, tmp_path / "out", model, TABLE, PARAMS, MapOptions(confidence=True))
    classes = read_band(tmp_path / "out" / "scene.tif")
    assert (classes[20:25, 20:25] == 255).sum() == 25 and (classes != 255).sum() == 64 * 64 - 25
    assert (read_band(tmp_path / "out" / "scene_confidence.tif")[classes != 255] > 0).all()


def test_to_uint8_clips_and_rounds():
    values = np.array([-5.0, 0.0, 0.5, 1.0, 2.0, np.nan])
    np.testing.assert_array_equal(to_uint8(values, (0.0, 1.0)), [0, 0, 128, 255, 255, 0])
    np.testing.assert_array_equal(to_uint8(np.array([3, 7], dtype=np.uint8), None), [3, 7])


# --- models of other bands: their own bands, raw values, no flags ---------------------------------------------

# A model of 4 uint16 bands (blue, green, red, near-infrared), standardised by its training split's statistics
UINT16_BANDS = statistics_scaling((1, 2, 3, 4), "uint16", (900.0, 1100.0, 1000.0, 2500.0), (300.0, 350.0, 400.0, 900.0))


def four_band_model(scaling: BandScaling = UINT16_BANDS):
    """A tiny 4-band network as a probability function, its inputs scaled by `scaling` as a trained model's are."""
    torch.manual_seed(0)
    network = torch.nn.Conv2d(4, len(TABLE), 5, padding=2).eval().to(memory_format=torch.channels_last)
    return model_probabilities(network, torch.device("cpu"), scaling, precision="fp32", tta=False)


def uint16_bands(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4000, (4, height, width), dtype=np.uint16)


def test_a_4_band_uint16_scene_maps_as_its_raw_array_does(tmp_path):
    """map_file reads the model's bands as raw uint16 values, streamed: the classes of the whole array in memory."""
    bands = uint16_bands(150, 97)
    path = write_raster(tmp_path / "scene.tif", bands)
    model = four_band_model()
    read = ReadOptions(scaling=UINT16_BANDS)
    map_file(path, tmp_path / "out", model, TABLE, PARAMS, MapOptions(read=read, blocksize=128))
    raw = np.ascontiguousarray(np.moveaxis(bands, 0, -1))  # H x W x 4 uint16, as the model was trained on
    windows = SlidingWindows.of(model, len(TABLE), PARAMS)
    expected = windows.classes(raw)
    np.testing.assert_array_equal(read_band(tmp_path / "out" / "scene.tif"), expected)
    assert len(np.unique(expected)) > 1
    # stretched to uint8 (what a uint8 RGB model's read would do) the classes differ: the values are raw
    stretched = np.rint(raw / 4000 * 255).astype(np.uint16)
    other = windows.classes(stretched)
    assert (other != expected).any()


def test_a_float32_models_nan_gets_no_prediction_and_does_not_spread(tmp_path):
    values = np.random.default_rng(4).uniform(0, 1, (4, 64, 64)).astype(np.float32)
    values[1, 20:25, 20:25] = np.nan
    path = write_raster(tmp_path / "scene.tif", values)
    scaling = statistics_scaling((1, 2, 3, 4), "float32", (0.5,) * 4, (0.3,) * 4)
    options = MapOptions(read=ReadOptions(scaling=scaling), confidence=True)
    map_file(path, tmp_path / "out", four_band_model(scaling), TABLE, PARAMS, options)
    classes = read_band(tmp_path / "out" / "scene.tif")
    assert (classes[20:25, 20:25] == 255).sum() == 25 and (classes != 255).sum() == 64 * 64 - 25
    assert (read_band(tmp_path / "out" / "scene_confidence.tif")[classes != 255] > 0).all()  # NaN fed as 0


class RecordingModel:
    """A stand-in that records what it is fed and calls every pixel class 0."""

    def __init__(self) -> None:
        self.batches: list[torch.Tensor] = []

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        self.batches.append(batch)
        probabilities = torch.zeros(batch.shape[0], len(TABLE), *batch.shape[1:3])
        probabilities[:, 0] = 1
        return probabilities


@pytest.fixture
def map_with_model(tmp_path, monkeypatch):
    """The mapping command with a stand-in model of `scaling`'s bands: (run(inputs, *flags) -> output, model)."""
    params = write_params(tmp_path / "params.yaml", predict={"window": 64, "batch_size": 4, "precision": "fp32"})
    model = RecordingModel()

    def run(inputs: list[Path], *flags: str, scaling: BandScaling = UINT16_BANDS) -> Path:
        runtime = stand_in_runtime(TABLE, scaling)
        monkeypatch.setattr(map_command, "choose_runtime", lambda *args, **kwargs: runtime)
        monkeypatch.setattr(map_command, "runtime_probabilities", lambda *args, **kwargs: model)
        return map_files(params, inputs, tmp_path / "out", *flags)

    return run, model


def test_mapping_with_a_4_band_model_needs_no_flags_and_feeds_raw_values(tmp_path, map_with_model):
    run, model = map_with_model
    bands = uint16_bands(80, 70)
    out = run([write_raster(tmp_path / "scene.tif", bands)])
    assert (out / "scene.tif").is_file()
    fed = torch.cat([batch.reshape(-1, 4) for batch in model.batches])
    assert model.batches[0].dtype == torch.float32 and model.batches[0].shape[-1] == 4  # raw uint16 as float32
    assert fed.max() > 255 and set(fed[:, 3].tolist()) <= set(bands[3].ravel().tolist())  # band 4 raw, unstretched


def test_bands_override_the_models_for_a_raster_of_another_order(tmp_path, map_with_model):
    run, model = map_with_model
    bands = uint16_bands(64, 64)
    path = write_raster(tmp_path / "scene.tif", bands[::-1].copy())  # NIR, red, green, blue
    run([path], "--bands", "4,3,2,1")
    np.testing.assert_array_equal(model.batches[0][0].numpy(), np.moveaxis(bands, 0, -1)[:64, :64])


@pytest.mark.parametrize(
    "raster, flags, message",
    [
        (
            uint16_bands(64, 64)[:3],
            (),
            r"the model reads bands 1,2,3,4 \(its data.bands; --bands picks others\): "
            r"the raster has 3 bands, so no band 4$",
        ),
        (uint16_bands(64, 64), ("--bands", "1,2,5,3"), r"--bands 1,2,5,3: the raster has 4 bands, so no band 5$"),
        (
            uint16_bands(64, 64),
            ("--bands", "1,2,3"),
            r"--bands 1,2,3: the model takes 4 bands \(bands 1,2,3,4 when "
            r"it was trained\)$",
        ),
        (random_rgb(64, 64).repeat(2, axis=0)[:4], (), r"band 1 is uint8, but the model takes uint16 bands"),
        (uint16_bands(64, 64).astype(np.float32), (), r"band 1 is float32, but the model takes uint16 bands"),
    ],
)
def test_a_raster_the_model_cannot_take_is_one_line_naming_it(tmp_path, map_with_model, raster, flags, message):
    """Before anything is mapped: a good scene given first is not mapped either."""
    run, model = map_with_model
    path = write_raster(tmp_path / "scene.tif", raster)
    good = [] if flags else [write_raster(tmp_path / "good.tif", uint16_bands(64, 64))]
    with pytest.raises(PipelineError, match=rf"^{path}: {message}"):
        run([*good, path], *flags)
    assert not model.batches and not (tmp_path / "out").exists()


def test_a_stretch_for_a_raw_value_model_and_a_jpeg_for_a_uint16_model_are_refused(tmp_path, map_with_model):
    run, _ = map_with_model
    path = write_raster(tmp_path / "scene.tif", uint16_bands(64, 64))
    with pytest.raises(PipelineError, match=r"^--percentiles and --value-range stretch bands for models of uint8 RGB"):
        run([path], "--value-range", "0,3000")
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(np.moveaxis(random_rgb(64, 64), 0, -1)).save(jpeg)
    with pytest.raises(PipelineError, match=rf"^{jpeg}: a JPEG or PNG holds uint8 bands, but the model takes uint16"):
        run([jpeg])


def test_a_uint8_model_of_other_bands_reads_them_from_a_jpeg(tmp_path, map_with_model):
    run, model = map_with_model
    rgb = np.moveaxis(random_rgb(64, 64), 0, -1)
    png = tmp_path / "photo.png"
    Image.fromarray(rgb).save(png)
    run([png], scaling=uint8_scaling((3, 2)))
    np.testing.assert_array_equal(model.batches[0][0].numpy(), rgb[..., [2, 1]])


# --- JPEG and PNG keep working --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_jpeg_and_png_give_pngs_equal_to_the_in_memory_path(tmp_path, run_predict, suffix):
    image = random_rgb(70, 90).transpose(1, 2, 0)
    path = tmp_path / f"7{suffix}"
    Image.fromarray(image).save(path)
    model = ConvModel()
    out = run_predict([path], tmp_path / "out", "--pixel-size", "0.5", "--confidence", model=model)
    assert outputs_in(out) == [
        "7.item.json",
        "7.png",
        "7_areas.csv",
        "7_areas.json",
        "7_colour.png",
        "7_confidence.png",
    ]
    _, classes, confidence = in_memory(path, ConvModel())
    np.testing.assert_array_equal(np.array(Image.open(out / "7.png")), classes)
    np.testing.assert_array_equal(np.array(Image.open(out / "7_confidence.png")), confidence)
    np.testing.assert_array_equal(np.array(Image.open(out / "7_colour.png")), TABLE.colours[classes])
    report = area_report(out, "7")
    for row in report["classes"]:
        assert row["hectares"] == pytest.approx(row["pixels"] * 0.25 / 10_000)  # DeepGlobe's 0.5 m pixels


def test_png_without_pixel_size_says_why_there_are_no_hectares(tmp_path, run_predict, capsys):
    Image.fromarray(random_rgb(32, 32).transpose(1, 2, 0)).save(tmp_path / "a.png")
    report = area_report(run_predict([tmp_path / "a.png"], tmp_path / "out"), "a")
    assert all(row["hectares"] is None for row in report["classes"])
    assert (
        "a JPEG or PNG carries no pixel size (give --pixel-size METRES; DeepGlobe's is 0.5)" in capsys.readouterr().err
    )


# --- polygons ----------------------------------------------------------------------------------------------


def blocky_labels(height: int, width: int) -> np.ndarray:
    """Classes in 10 px squares, a few single pixels scattered in them: regions of many sizes."""
    rng = np.random.default_rng(5)
    labels = np.kron(rng.integers(0, len(TABLE), (height // 10 + 1, width // 10 + 1)), np.ones((10, 10), int))
    labels = labels[:height, :width]
    labels[rng.integers(0, height, 30), rng.integers(0, width, 30)] = 6
    return labels


@pytest.mark.parametrize("crs, transform", [(UTM33, UTM_TRANSFORM), (WGS84, from_origin(15.0, 46.0, 0.0005, 0.0005))])
def test_polygons_carry_class_names_and_areas_that_add_up(tmp_path, run_predict, crs, transform):
    need_group("vector")
    from pyogrio.raw import read

    labels = blocky_labels(60, 50)
    rgb = np.stack([labels.astype(np.uint8)] * 3)
    rgb[:, :10, :10] = 255
    path = write_raster(tmp_path / "scene.tif", rgb, crs=crs, transform=transform, nodata=255)
    out = run_predict([path], tmp_path / "out", "--polygons")
    report = area_report(out)
    meta, _, geometry, fields = read(out / "scene_polygons.gpkg")[:4]
    assert meta["crs"] == f"EPSG:{crs.to_epsg()}" and meta["geometry_type"] == "Polygon"
    assert list(meta["fields"]) == ["class_id", "class", "pixels", "area_ha"]
    class_id, name, pixels, area = fields
    assert set(name) <= set(TABLE.names) and all(TABLE.names[i] == n for i, n in zip(class_id, name))
    for row in report["classes"]:  # every predicted pixel in exactly one polygon of its class
        chosen = class_id == row["class_id"]
        assert pixels[chosen].sum() == row["pixels"]
        assert area[chosen].sum() == pytest.approx(row["hectares"], rel=1e-9)
    smallest = area.min()
    out = run_predict([path], tmp_path / "filtered", "--polygons", "--min-area", str(smallest * 1.5))
    kept = read(out / "scene_polygons.gpkg")[3]
    assert len(kept[0]) == (area >= smallest * 1.5).sum() < len(area)
    assert kept[3].min() >= smallest * 1.5


def test_web_mercator_polygons_have_ground_areas(tmp_path, run_predict):
    need_group("vector")
    from pyogrio.raw import read

    top = mercator_y(60)
    labels = blocky_labels(60, 50)
    rgb = np.stack([labels.astype(np.uint8)] * 3)
    path = write_raster(tmp_path / "scene.tif", rgb, crs=CRS.from_epsg(3857), transform=from_origin(0, top, 10, 10))
    out = run_predict([path], tmp_path / "out", "--polygons")
    report = area_report(out)
    class_id, _, _, area = read(out / "scene_polygons.gpkg")[3]
    for row in report["classes"]:
        assert area[class_id == row["class_id"]].sum() == pytest.approx(row["hectares"], rel=1e-9)
    edges = mercator_latitude(top - 10 * np.arange(61))
    ground_ha = lonlat_rectangle_m2(10 / 6_378_137, edges[:-1], edges[1:]).sum() * 50 / 10_000
    assert area.sum() == pytest.approx(ground_ha, rel=1e-4)  # 30 ha on the map


def test_polygons_without_pyogrio_fail_in_one_line_before_predicting(tmp_path, run_predict, monkeypatch):
    from landcover.io.errors import PipelineError

    monkeypatch.setitem(sys.modules, "pyogrio", None)  # import pyogrio then raises ImportError
    path = write_raster(tmp_path / "scene.tif", random_rgb(32, 32))
    with pytest.raises(
        PipelineError,
        match=r"^--polygons: writing GeoPackages needs the optional package pyogrio, "
        r"which is not installed; install it with `make install-vector`$",
    ):
        run_predict([path], tmp_path / "out", "--polygons", model=None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("block_rows", [1, 16, 48, 5000])
def test_rows_are_read_in_chunks_aligned_to_the_files_blocks_and_each_read_once(tmp_path, block_rows):
    """However the file stores its rows, each is read once, and the prediction is the in-memory path's."""
    path = write_raster(tmp_path / "scene.tif", random_rgb(150, 97))
    model = ConvModel()
    expected, _, _ = in_memory(path, model)
    reads = []
    with gdal_env(), open_scene(path, ReadOptions()) as scene:
        scene.block_rows = block_rows
        real = scene.read_rows
        scene.read_rows = lambda top, bottom: reads.append((top, bottom)) or real(top, bottom)
        strips = list(SlidingWindows(model, len(TABLE), 64, 0.25, 3).strips(scene))
    np.testing.assert_array_equal(np.concatenate([probs.cpu().numpy() for _, probs, _ in strips], axis=1), expected)
    assert [top for top, _ in reads] == sorted({top for top, _ in reads})  # forward, no row twice
    assert reads[0][0] == 0 and reads[-1][1] == 150 and all(a[1] == b[0] for a, b in zip(reads, reads[1:]))
    if 1 < block_rows <= 1024:
        assert all(top % block_rows == 0 for top, _ in reads)
