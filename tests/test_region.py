"""Mapping a region on Dask.distributed: a 12-scene mini region (two CRSs, overlapping scenes, one corrupt
scene, listed in a STAC ItemCollection with local asset hrefs) on a local cluster of two workers.

Most tests share one run on an in-process cluster (worker threads), where a stand-in model and injected
read errors can be patched in; the kill test runs the command as its own process, on a local cluster of
worker processes, with a tiny ONNX model, and kills it with SIGKILL mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.warp import reproject, transform_bounds

from tests.optional import need_group

need_group("region", module_level=True)

from benchmarks.region_overhead import tiny_onnx_model  # noqa: E402
from landcover.cli import region as region_command  # noqa: E402
from landcover.data.palette import ClassTable  # noqa: E402
from landcover.geo.areas import MAP_AREAS, pixel_areas  # noqa: E402
from landcover.io.digests import file_sha256  # noqa: E402
from landcover.io.errors import PipelineError, run_stage  # noqa: E402
from landcover.io.outputs import STAGING_NAME  # noqa: E402
from landcover.region import engine  # noqa: E402
from landcover.region.inputs import region_scenes  # noqa: E402
from tests.conftest import REPO, write_params  # noqa: E402
from tests.range_server import RangeServer, Served  # noqa: E402
from tests.test_geotiff import labels_from_red, random_rgb, write_raster  # noqa: E402

TABLE = ClassTable.deepglobe()
UTM33, MERCATOR = CRS.from_epsg(32633), CRS.from_epsg(3857)
SIDE, STEP, PIXEL = 64, 48, 10.0  # UTM scenes: 64 px, every 48 px (16 px overlaps), 10 m pixels
WEST, NORTH = 500_000.0, 5_000_000.0
UTM_IDS = [f"u{k}" for k in range(8)]
MERCATOR_IDS = ["m0", "m1", "m2"]
ORDER = [*UTM_IDS, "broken", *MERCATOR_IDS]  # the STAC order: the UTM scenes win where they overlap the others


def utm_transform(k: int) -> Affine:
    row, column = divmod(k, 4)
    return Affine(PIXEL, 0, WEST + column * STEP * PIXEL, 0, -PIXEL, NORTH - row * STEP * PIXEL)


def mercator_transform(k: int) -> Affine:
    """Web Mercator scenes of 14 m pixels: inside the UTM scenes' area and, the last one, reaching east of it."""
    left, _, _, top = transform_bounds(UTM33, MERCATOR, WEST, NORTH - 1000, WEST + 1000, NORTH)
    east = (0.0, 900.0, 2500.0)[k]  # Mercator metres: about 0.7 m on the ground here
    return Affine(14.0, 0, left + east, 0, -14.0, top - 200.0 * (k + 1))


def build_region(root: Path) -> Path:
    """The scenes in root/imagery and root/items.json, a STAC ItemCollection of them (relative hrefs, two
    assets per item: the image and a thumbnail)."""
    imagery = root / "imagery"
    imagery.mkdir(parents=True)
    for k, scene_id in enumerate(UTM_IDS):
        write_raster(imagery / f"{scene_id}.tif", random_rgb(SIDE, SIDE, seed=k), UTM33, utm_transform(k))
    for k, scene_id in enumerate(MERCATOR_IDS):
        write_raster(imagery / f"{scene_id}.tif", random_rgb(SIDE, SIDE, seed=20 + k), MERCATOR, mercator_transform(k))
    (imagery / "broken.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 8)  # a TIFF header, then garbage

    def href(scene_id: str) -> str:
        # relative to the JSON's folder; one as a file:// URL
        return (imagery / "u7.tif").as_uri() if scene_id == "u7" else f"imagery/{scene_id}.tif"

    features = [
        {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": f"item-{scene_id}",
            "geometry": None,
            "properties": {"datetime": "2026-06-01T00:00:00Z"},
            "links": [],
            "assets": {
                "visual": {"href": href(scene_id), "type": "image/tiff; application=geotiff"},
                "thumbnail": {"href": f"imagery/{scene_id}.png", "type": "image/png"},
            },
        }
        for scene_id in ORDER
    ]
    items = root / "items.json"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return items


def stand_in_loader(spec, params):
    """The model a worker loads: the red band's value modulo 7 as each pixel's class; its identity the file's."""
    identity = {"runtime": "stand-in", "file": spec.checkpoint.name, "sha256": file_sha256(spec.checkpoint)}
    return engine.LoadedModel(labels_from_red, TABLE, identity, "stand-in")


class FlakyMapping:
    """map_file, counting calls per scene, with a read error halfway through the first try of some scenes."""

    def __init__(self, flaky: set[str]) -> None:
        self.calls: dict[str, int] = {}
        self.flaky = flaky
        self.map_file = engine.map_file

    def __call__(self, path, *args, **kwargs):
        scene = Path(path.name).stem  # a path or a Source
        self.calls[scene] = self.calls.get(scene, 0) + 1
        if scene in self.flaky and self.calls[scene] == 1:
            raise RasterioIOError(f"{path}: read error halfway (injected)")
        return self.map_file(path, *args, **kwargs)


@pytest.fixture(scope="module")
def scheduler():
    """An in-process local cluster of two single-threaded workers: its scheduler's address."""
    import distributed

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=50
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def region(tmp_path_factory, scheduler):
    """The mini region mapped once: one scene fails its first read halfway (retried), the corrupt one fails."""
    root = tmp_path_factory.mktemp("region")
    items = build_region(root)
    (root / "model.pt").write_bytes(b"stand-in weights, version 1")
    params = write_params(root / "params.yaml", predict={"window": 64, "overlap": 0.25, "batch_size": 4})
    argv = [
        *("--checkpoint", str(root / "model.pt"), "--input", str(items), "--asset", "visual"),
        *("--output", str(root / "out"), "--params", str(params), "--scheduler", scheduler, "--no-progress"),
        "--mosaic-cog",
    ]
    mapping = FlakyMapping({"u2"})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "load_model", stand_in_loader)
        patch.setattr(engine, "map_file", mapping)
        with pytest.raises(PipelineError) as failed:
            region_command.main(argv)
    summary = summary_of(root / "out")  # the first run's: the tests below rerun the command
    return {
        "root": root,
        "out": root / "out",
        "argv": argv,
        "calls": mapping.calls,
        "error": str(failed.value),
        "summary": summary,
    }


def summary_of(out: Path) -> dict:
    return json.loads((out / "region.json").read_text())


def read_map(path: Path) -> np.ndarray:
    with rasterio.open(path) as dataset:
        return dataset.read(1)


def rerun(region: dict, argv: list[str] | None = None) -> tuple[dict, FlakyMapping]:
    mapping = FlakyMapping(set())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "load_model", stand_in_loader)
        patch.setattr(engine, "map_file", mapping)
        with pytest.raises(PipelineError):
            region_command.main(argv or region["argv"])
    return summary_of(region["out"]), mapping


def test_every_good_scene_is_mapped_into_its_own_outputs_with_a_record(region):
    scenes = region["out"] / "scenes"
    for k, scene_id in enumerate(UTM_IDS):
        classes = read_map(scenes / f"{scene_id}.tif")
        np.testing.assert_array_equal(classes, random_rgb(SIDE, SIDE, seed=k)[0] % len(TABLE))
    for scene_id in UTM_IDS + MERCATOR_IDS:
        for suffix in (".tif", ".qml", "_areas.json", "_areas.csv", ".record.json"):
            assert (scenes / f"{scene_id}{suffix}").is_file(), scene_id + suffix
    record = json.loads((scenes / "u0.record.json").read_text())
    assert record["key"]["source"] == {"sha256": file_sha256(region["root"] / "imagery" / "u0.tif")}
    assert record["source_seen"]["size"] == (region["root"] / "imagery" / "u0.tif").stat().st_size
    assert record["key"]["model"]["sha256"] == file_sha256(region["root"] / "model.pt")
    assert record["key"]["settings"]["predict"]["window"] == 64
    assert not list(scenes.glob("broken*"))
    assert [p.name for p in scenes.iterdir() if STAGING_NAME.match(p.name)] == []


def test_a_failing_read_is_retried_and_a_corrupt_scene_reported_while_the_others_go_on(region):
    assert region["calls"]["u2"] == 2  # the injected read error, then the retry that mapped it
    assert region["calls"]["broken"] == 3  # the first try and the 2 retries of --retries' default
    assert all(region["calls"][scene_id] == 1 for scene_id in UTM_IDS + MERCATOR_IDS if scene_id != "u2")
    summary = region["summary"]
    assert (summary["scenes"], summary["mapped"], summary["resumed"], summary["failed"]) == (12, 11, 0, 1)
    (failure,) = summary["failures"]
    assert failure["scene"] == "broken" and failure["source"].endswith("imagery/broken.tif")
    assert "broken.tif" in failure["error"] and "\n" not in failure["error"]
    assert region["error"].startswith(f"{region['out']}: 1 of 12 scenes failed: broken (")


def test_the_command_exits_1_naming_the_failed_scenes(region, capsys):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "load_model", stand_in_loader)
        with pytest.raises(SystemExit) as exited:
            run_stage(lambda: region_command.main(region["argv"]))
    assert exited.value.code == 1
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert "1 of 12 scenes failed: broken (" in line


def test_each_worker_loads_the_model_once(region):
    workers = region["summary"]["workers"]
    assert len(workers) == 2  # both workers mapped scenes
    assert [worker["model_loads"] for worker in workers.values()] == [1, 1]
    assert sum(worker["scenes_mapped"] for worker in workers.values()) == 11


def utm_painting() -> np.ndarray:
    """What the UTM scenes give the mosaic: painted last to first, so the first listed is on top."""
    expected = np.full((2 * STEP + SIDE - STEP, 4 * STEP + SIDE - STEP), 255, dtype=np.uint8)
    for k in reversed(range(len(UTM_IDS))):
        row, column = divmod(k, 4)
        expected[row * STEP : row * STEP + SIDE, column * STEP : column * STEP + SIDE] = random_rgb(SIDE, SIDE, seed=k)[
            0
        ] % len(TABLE)
    return expected


def test_the_mosaic_is_on_the_first_scenes_grid_with_the_first_listed_scene_on_top(region):
    out = region["out"]
    with rasterio.open(out / "region.vrt") as mosaic:
        assert mosaic.crs == UTM33
        assert mosaic.transform.a == PIXEL and mosaic.transform.e == -PIXEL
        assert (mosaic.transform.c, mosaic.transform.f) == (WEST, NORTH)  # the Mercator scenes lie east, not north
        assert mosaic.colormap(1)[1] == (*TABLE.colours[1], 255)
        assert mosaic.tags()["CLASS_NAMES"] == ",".join(TABLE.names)
        assert mosaic.nodata == 255
        classes = mosaic.read(1)
    utm = utm_painting()
    np.testing.assert_array_equal(classes[: utm.shape[0], : utm.shape[1]], utm)
    assert classes.shape[1] > utm.shape[1]  # widened by the Mercator scene reaching east
    assert (out / "warped" / "m2.vrt").is_file() and not (out / "warped" / "u0.vrt").exists()
    with rasterio.open(out / "region.tif") as cog:  # --mosaic-cog: the same pixels as one file
        np.testing.assert_array_equal(cog.read(1), classes)
        assert cog.colormap(1)[1] == (*TABLE.colours[1], 255) and cog.overviews(1) == []


def test_scenes_in_another_crs_are_warped_by_nearest_neighbour(region):
    out = region["out"]
    with rasterio.open(out / "region.vrt") as mosaic:
        classes, transform, shape = mosaic.read(1), mosaic.transform, (mosaic.height, mosaic.width)
    east = np.zeros(shape, dtype=bool)
    east[:, utm_painting().shape[1] :] = True  # only the Mercator scenes reach here
    expected = np.full(shape, 255, dtype=np.uint8)
    for scene_id in reversed(MERCATOR_IDS):
        warped = np.full(shape, 255, dtype=np.uint8)
        with rasterio.open(out / "scenes" / f"{scene_id}.tif") as scene:
            reproject(
                rasterio.band(scene, 1), warped, dst_transform=transform, dst_crs=UTM33,
                resampling=Resampling.nearest, src_nodata=255, dst_nodata=255,
            )  # fmt: skip
        expected = np.where(warped != 255, warped, expected)
    covered = east & (expected != 255)
    assert covered.sum() > 1000
    assert np.isin(classes[covered], np.arange(len(TABLE))).all()
    assert (classes[covered] == expected[covered]).mean() > 0.99  # warpers may differ on a pixel edge


def test_the_area_table_counts_the_mosaic_each_pixel_once(region):
    out = region["out"]
    report = json.loads((out / "region_areas.json").read_text())
    with rasterio.open(out / "region.vrt") as mosaic:
        classes = mosaic.read(1)
        areas, _ = pixel_areas(mosaic.crs, mosaic.transform, mosaic.width, mosaic.height, None)
    counts = np.bincount(classes.ravel(), minlength=256)
    hectares = np.bincount(classes.ravel(), weights=areas.strip_m2(0, classes.shape[0]).ravel(), minlength=256) / 1e4
    assert [row["pixels"] for row in report["classes"]] == counts[: len(TABLE)].tolist()
    np.testing.assert_allclose([row["hectares"] for row in report["classes"]], hectares[: len(TABLE)], rtol=1e-9)
    assert report["no_prediction_pixels"] == counts[255]
    scene_pixels = sum(read_map(out / "scenes" / f"{s}.tif").size for s in UTM_IDS + MERCATOR_IDS)
    assert report["predicted_pixels"] < scene_pixels  # overlaps counted once
    # 10 m UTM pixels near the central meridian: about 0.01 ha each on the ground
    assert report["predicted_hectares"] == pytest.approx(report["predicted_pixels"] * 0.01, rel=2e-3)
    csv_rows = (out / "region_areas.csv").read_text().splitlines()
    assert csv_rows[0] == "class_id,class,pixels,map_hectares" and len(csv_rows) == 1 + len(TABLE)
    # the table says what its areas are, and how to estimate them
    assert report["areas"] == MAP_AREAS and "landcover-sample" in MAP_AREAS
    assert json.loads((out / "region.json").read_text())["areas_are"] == MAP_AREAS


def test_a_rerun_resumes_everything_and_a_changed_model_remaps(region):
    out = region["out"]
    before = {p.name: p.read_bytes() for p in (out / "scenes").glob("*.tif")}
    summary, mapping = rerun(region)
    assert (summary["mapped"], summary["resumed"], summary["failed"]) == (0, 11, 1)
    assert set(mapping.calls) == {"broken"}  # nothing else was mapped again
    assert {p.name: p.read_bytes() for p in (out / "scenes").glob("*.tif")} == before
    (region["root"] / "model.pt").write_bytes(b"stand-in weights, version 2")
    try:
        summary, mapping = rerun(region)
    finally:
        (region["root"] / "model.pt").write_bytes(b"stand-in weights, version 1")
    assert (summary["mapped"], summary["resumed"]) == (11, 0)


def test_a_run_killed_midway_is_resumed_where_it_stopped(region):
    """What a kill leaves: some scenes with records, one scene's outputs without its record (killed after them),
    and a dead process's staging file: the rerun maps exactly the scenes without a matching record."""
    out = region["out"]
    scenes = out / "scenes"
    rerun(region)  # a complete, consistent state first (the previous test may have remapped)
    (scenes / "u5.record.json").unlink()
    (scenes / "m1.record.json").unlink()
    (scenes / "m1.tif").unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = scenes / f".u5.tif.{dead.pid}.0123456789abcdef.tmp"
    leftover.write_bytes(b"half a COG")
    overviews = scenes / f".m1.tif.{dead.pid}.0123456789abcdef.tmp.ovr.tmp"  # GDAL's, beside a staging COG
    overviews.write_bytes(b"half the overviews")
    summary, mapping = rerun(region)
    assert (summary["mapped"], summary["resumed"]) == (2, 9)
    assert set(mapping.calls) == {"u5", "m1", "broken"}
    assert not leftover.exists() and not overviews.exists()
    assert (scenes / "m1.tif").is_file() and (scenes / "u5.record.json").is_file()


def test_an_input_changed_since_its_record_is_mapped_again(region, tmp_path):
    out = region["out"]
    rerun(region)
    source = region["root"] / "imagery" / "u7.tif"
    original = source.read_bytes()
    try:
        write_raster(source, random_rgb(SIDE, SIDE, seed=99), UTM33, utm_transform(7))
        summary, mapping = rerun(region)
        assert set(mapping.calls) == {"u7", "broken"} and summary["mapped"] == 1
        np.testing.assert_array_equal(read_map(out / "scenes" / "u7.tif"), random_rgb(SIDE, SIDE, seed=99)[0] % 7)
    finally:
        source.write_bytes(original)
        rerun(region)


# --- inputs ------------------------------------------------------------------------------------------------


def test_inputs_from_files_folders_globs_lists_and_stac(tmp_path):
    imagery = tmp_path / "imagery"
    imagery.mkdir()
    for name in ("b.tif", "a.tif", "c.jp2", "notes.md"):
        (imagery / name).write_bytes(b"x")
    listing = tmp_path / "scenes.txt"
    listing.write_text("# the list\nimagery/b.tif\n\n/elsewhere/z.tif  # absolute\nhttps://example.org/d/y.tif\n")
    assert [s.id for s in region_scenes([str(imagery)])] == ["a", "b", "c"]
    assert [s.id for s in region_scenes([str(imagery / "*.tif")])] == ["a", "b"]
    listed = region_scenes([str(listing)])
    assert [str(s.source) for s in listed] == [
        str(imagery / "b.tif"),
        "/elsewhere/z.tif",
        "https://example.org/d/y.tif",
    ]
    assert [s.id for s in listed] == ["b", "z", "y"] and not listed[2].source.is_local
    items = build_region(tmp_path / "stac")
    scenes = region_scenes([str(items)], "visual")
    assert [s.id for s in scenes] == ORDER
    assert str(scenes[0].source) == str(tmp_path / "stac" / "imagery" / "u0.tif")
    assert str(scenes[7].source) == (tmp_path / "stac" / "imagery" / "u7.tif").as_uri()
    assert scenes[7].source.local_path == tmp_path / "stac" / "imagery" / "u7.tif"  # a file:// URL is read in place


def test_a_scene_given_by_url_is_mapped_on_the_workers_and_resumed_by_its_etag(region, tmp_path):
    """A list of one local scene and one http URL (u1's bytes, served from 127.0.0.1): both mapped; the rerun
    resumes both, the URL by its ETag."""
    server = RangeServer()
    server.objects["/imagery/u1.tif"] = Served((region["root"] / "imagery" / "u1.tif").read_bytes())
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"{region['root'] / 'imagery' / 'u0.tif'}\n{server.url('/imagery/u1.tif')}\n")
    argv = [*region["argv"][:2], "--input", str(listing), *region["argv"][6:]]
    argv[argv.index("--output") + 1] = str(tmp_path / "out")
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(engine, "load_model", stand_in_loader)
            region_command.main(argv)
            first = summary_of(tmp_path / "out")
            region_command.main(argv)
    finally:
        server.close()
    assert (first["mapped"], summary_of(tmp_path / "out")["resumed"]) == (2, 2)
    for k in (0, 1):
        classes = read_map(tmp_path / "out" / "scenes" / f"u{k}.tif")
        np.testing.assert_array_equal(classes, random_rgb(SIDE, SIDE, seed=k)[0] % len(TABLE))
    record = json.loads((tmp_path / "out" / "scenes" / "u1.record.json").read_text())
    assert record["key"]["source"]["etag"] == '"v1"' and record["source_seen"] is None


def test_bad_inputs_are_refused_in_one_line_naming_them(tmp_path):
    items = build_region(tmp_path)
    cases = {
        "has assets thumbnail, visual: say which to map with --asset": ([str(items)], None),
        "has no asset 'nir'": ([str(items)], "nir"),
        "given twice in --input": ([str(tmp_path / "imagery" / "u0.tif")] * 2, None),
        "no file matches this pattern": ([str(tmp_path / "none*.tif")], None),
        "file not found": ([str(tmp_path / "absent.tif")], None),
    }
    for message, (inputs, asset) in cases.items():
        with pytest.raises(PipelineError, match=message):
            region_scenes(inputs, asset)
    other = tmp_path / "other"
    other.mkdir()
    (other / "u0.tif").write_bytes(b"x")
    with pytest.raises(PipelineError, match="its outputs would replace those of .*u0.tif"):
        region_scenes([str(tmp_path / "imagery" / "u0.tif"), str(other / "u0.tif")])
    argv = ["--checkpoint", str(items), "--input", str(tmp_path / "imagery"), "--output", str(tmp_path)]
    with pytest.raises(PipelineError, match=r"broken.tif: is inside --output"):
        region_command.main(argv)
    with pytest.raises(PipelineError, match=r"none.pt: --checkpoint file not found"):
        region_command.main([*argv[:1], str(tmp_path / "none.pt"), *argv[2:4], "--output", str(tmp_path / "o")])


# --- a real kill ------------------------------------------------------------------------------------------


def test_a_sigkilled_region_run_leaves_nothing_partial_and_resumes(tmp_path):
    """The command in its own process group with a local cluster of one worker process and a tiny ONNX model,
    killed with SIGKILL once two scenes are done; the rerun maps exactly the rest."""
    imagery = tmp_path / "imagery"
    imagery.mkdir()
    side = 256
    for k in range(8):
        transform = Affine(PIXEL, 0, WEST + k * side * PIXEL, 0, -PIXEL, NORTH)
        write_raster(imagery / f"s{k}.tif", random_rgb(side, side, seed=k), UTM33, transform)
    model = tiny_onnx_model(tmp_path / "tiny.onnx", TABLE)
    params = write_params(tmp_path / "params.yaml", predict={"window": 32, "overlap": 0.5, "batch_size": 2})
    out = tmp_path / "out"
    command = [
        *(sys.executable, "-m", "landcover.cli.region", "--model", str(model), "--input", str(imagery)),
        *("--output", str(out), "--params", str(params), "--workers", "1", "--no-progress"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / "scenes").glob("*.record.json"))) < 2 and run.poll() is None:
        assert time.monotonic() < deadline, "no scene was mapped in time"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    time.sleep(0.5)  # the worker process, killed too, is gone
    done = sorted(p.name.removesuffix(".record.json") for p in (out / "scenes").glob("*.record.json"))
    assert 2 <= len(done) < 8, "the kill came too late to be mid-run"
    for path in (out / "scenes").glob("s*.tif"):  # whatever carries an output's name is whole
        assert read_map(path).shape == (side, side)
    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    summary = summary_of(out)
    assert (summary["resumed"], summary["mapped"], summary["failed"]) == (len(done), 8 - len(done), 0)
    assert [worker["model_loads"] for worker in summary["workers"].values()] == [1]  # one worker process
    statuses = {result["scene"]: result["status"] for result in summary["scene_results"]}
    assert sorted(scene for scene, status in statuses.items() if status == "skipped") == done
    assert [p for p in out.rglob("*") if STAGING_NAME.match(p.name)] == []
    assert len(list((out / "scenes").glob("*.record.json"))) == 8


def test_a_mosaic_in_another_crs_warps_every_scene_and_keeps_the_areas(region, tmp_path):
    """--crs EPSG:3857: every scene is warped onto the first scene's pixel as warped there; the region's ground
    areas stay those of the UTM mosaic to within the warping's edges."""
    from landcover.region.mosaic import build_mosaic, write_region_areas

    maps = [region["out"] / "scenes" / f"{scene_id}.tif" for scene_id in UTM_IDS + MERCATOR_IDS]
    vrt = build_mosaic(maps, tmp_path, TABLE, MERCATOR)
    report = write_region_areas(vrt, TABLE, tmp_path)
    with rasterio.open(vrt) as mosaic:
        assert mosaic.crs == MERCATOR and mosaic.transform.a == pytest.approx(14.1, abs=0.1)  # 10 m at 45 N
    assert sorted(p.stem for p in (tmp_path / "warped").iterdir()) == sorted(UTM_IDS + MERCATOR_IDS)
    utm = json.loads((region["out"] / "region_areas.json").read_text())
    assert report["predicted_hectares"] == pytest.approx(utm["predicted_hectares"], rel=0.03)
