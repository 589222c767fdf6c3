"""The viewer (landcover-view): which outputs it opens and refuses, its tiles and pixel values over HTTP, the
labelling routes, and in headless Chromium (tests/viewer_browser.py) the page of a small region output: its
layers drawn in the class colours, the legend, scene outlines, a click's class.

The region is two UTM scenes and one that fails, mapped once by landcover-region on an in-process cluster with a
stand-in model whose class is each pixel's red value modulo 7 (tests/test_region.py's); the scenes are made of
8-pixel blocks of one colour, so a block's class and colour are known wherever it is clicked or drawn.
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image

from tests.optional import need_group

need_group("viewer", module_level=True)
need_group("region", module_level=True)

import morecantile  # noqa: E402  (the viewer group's: after the skip)

from landcover.cli import region as region_command  # noqa: E402
from landcover.cli import sample as sample_command  # noqa: E402
from landcover.cli import view as view_command  # noqa: E402
from landcover.data.palette import ClassTable  # noqa: E402
from landcover.io.errors import PipelineError, run_stage  # noqa: E402
from landcover.region import engine  # noqa: E402
from landcover.region.change import change_table, detect_change  # noqa: E402
from landcover.viewer.outputs import open_output  # noqa: E402
from landcover.viewer.server import Viewer, ViewerServer, route  # noqa: E402
from landcover.viewer.tiles import confidence_colormap  # noqa: E402
from tests.browser import find_browser  # noqa: E402
from tests.conftest import write_params  # noqa: E402
from tests.test_change import write_class_map  # noqa: E402
from tests.test_geotiff import UTM33, write_raster  # noqa: E402
from tests.test_region import stand_in_loader  # noqa: E402
from tests.viewer_browser import browser_page, map_pixels, open_viewer, project, running_viewer, wait_drawn  # noqa: E402

TABLE = ClassTable.deepglobe()
SIDE, BLOCK, PIXEL = 64, 8, 10.0
WEST, NORTH = 500_000.0, 5_000_000.0
SCENES = {"a": (0, 0), "b": (0, 48)}  # scene -> (row, column) offset in pixels: b overlaps a by 16 columns


def scene_transform(scene: str) -> Affine:
    row, column = SCENES.get(scene, (48, 0))
    return Affine(PIXEL, 0, WEST + column * PIXEL, 0, -PIXEL, NORTH - row * PIXEL)


def block_image(seed: int) -> np.ndarray:
    """3 x SIDE x SIDE uint8 of BLOCK-pixel squares, each of one colour; red modulo 7 is the block's class."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (3, SIDE // BLOCK, SIDE // BLOCK), dtype=np.uint8)
    return blocks.repeat(BLOCK, axis=1).repeat(BLOCK, axis=2)


class FailingScene:
    """map_file, failing for one scene (whose header reads well: its outline is drawn, coloured as failed)."""

    def __init__(self, failing: str) -> None:
        self.failing, self.map_file = failing, engine.map_file

    def __call__(self, path, *args, **kwargs):
        if Path(path.name).stem == self.failing:
            raise PipelineError(f"{path}: read error (injected)")
        return self.map_file(path, *args, **kwargs)


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> Path:
    import distributed

    root = tmp_path_factory.mktemp("viewer-region")
    imagery = root / "imagery"
    imagery.mkdir()
    for seed, scene in enumerate([*SCENES, "c"]):
        write_raster(imagery / f"{scene}.tif", block_image(seed), UTM33, scene_transform(scene))
    (root / "model.pt").write_bytes(b"stand-in weights")
    params = write_params(root / "params.yaml", predict={"window": 64, "overlap": 0.25, "batch_size": 4})
    out = root / "out"
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None, silence_logs=50
        ) as cluster,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(engine, "load_model", stand_in_loader)
        patch.setattr(engine, "map_file", FailingScene("c"))
        argv = [
            *("--checkpoint", str(root / "model.pt"), "--input", str(imagery), "--output", str(out)),
            *("--params", str(params), "--scheduler", cluster.scheduler_address, "--no-progress", "--confidence"),
            *("--retries", "0"),
        ]
        with pytest.raises(PipelineError, match="1 of 3 scenes failed"):
            region_command.main(argv)
    return out


def block_centre(scene: str, block_row: int, block_column: int) -> tuple[float, float, int]:
    """(lon, lat, class) of a block's centre pixel in `scene`."""
    from rasterio.warp import transform as transform_points

    row, column = block_row * BLOCK + BLOCK // 2, block_column * BLOCK + BLOCK // 2
    x, y = scene_transform(scene) @ (column + 0.5, row + 0.5)
    (lon,), (lat,) = transform_points(UTM33, "EPSG:4326", [x], [y])
    seed = list(SCENES).index(scene)
    return lon, lat, int(block_image(seed)[0, row, column]) % len(TABLE)


def get(viewer: Viewer, target: str):
    reply = route(viewer, "GET", target)
    return reply.status, (json.loads(reply.body) if reply.content_type == "application/json" else reply.body)


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


# --- the region summary's footprints ---


def test_region_json_records_each_scenes_lon_lat_footprint_failed_ones_too(region):
    summary = json.loads((region / "region.json").read_text())
    footprints = {entry["scene"]: entry["footprint"] for entry in summary["scene_results"] + summary["failures"]}
    assert set(footprints) == {"a", "b", "c"}
    for scene, polygon in footprints.items():
        ring = np.array(polygon["coordinates"][0])
        assert polygon["type"] == "Polygon" and (ring[0] == ring[-1]).all()
        with rasterio.open(region.parent / "imagery" / f"{scene}.tif") as dataset:
            from rasterio.warp import transform_bounds

            west, south, east, north = transform_bounds(dataset.crs, "EPSG:4326", *dataset.bounds)
        assert ring[:, 0].min() == pytest.approx(west, abs=1e-6) and ring[:, 0].max() == pytest.approx(east, abs=1e-6)
        assert ring[:, 1].min() == pytest.approx(south, abs=1e-6) and ring[:, 1].max() == pytest.approx(north, abs=1e-6)


# --- what the viewer opens, and refuses ---


def test_a_region_shows_imagery_confidence_and_classes_with_scene_outlines_by_status(region):
    output = open_output(region)
    assert output.command == "landcover-region"
    assert [layer.id for layer in output.layers] == ["imagery", "classes", "confidence"]
    assert len(output.layer("imagery").rasters) == 2 and len(output.layer("confidence").rasters) == 2
    statuses = {feature["properties"]["scene"]: feature["properties"]["status"] for feature in output.scenes}
    assert statuses == {"a": "done", "b": "done", "c": "failed"}
    (failed,) = [feature for feature in output.scenes if feature["properties"]["status"] == "failed"]
    assert "read error (injected)" in failed["properties"]["error"]
    assert [row["name"] for row in output.areas[0]["rows"]] == list(TABLE.names)


def test_a_mapping_folder_is_recognised_by_its_area_reports(region, tmp_path):
    for name in ("a.tif", "a_confidence.tif", "a_areas.json", "a.item.json"):
        shutil.copy(region / "scenes" / name, tmp_path / name)
    output = open_output(tmp_path)
    assert output.command == "landcover-map"
    assert [layer.id for layer in output.layers] == ["imagery", "classes", "confidence"]
    (tmp_path / "a_confidence.tif").unlink()  # its Item lists it
    with pytest.raises(PipelineError, match=rf"{tmp_path / 'a_confidence.tif'}: named in .*a.item.json but missing"):
        open_output(tmp_path)


def mapping_folder(region: Path, folder: Path, read: dict | None) -> Path:
    """A mapping output of scene a's map whose input is a uint16 raster, with an Item recording `read` (None: no
    Item)."""
    folder.mkdir()
    image = write_raster(folder / "input.tif", np.arange(3 * 64 * 64, dtype=np.uint16).reshape(3, 64, 64))
    shutil.copy(region / "scenes" / "a.tif", folder / "a.tif")
    report = json.loads((region / "scenes" / "a_areas.json").read_text())
    (folder / "a_areas.json").write_text(json.dumps(report | {"image": str(image)}))
    if read is not None:
        item = json.loads((region / "scenes" / "a.item.json").read_text())
        item["properties"]["landcover:read"] |= read
        item["assets"].pop("confidence")
        (folder / "a.item.json").write_text(json.dumps(item))
    return folder


def test_a_mapping_outputs_imagery_is_read_with_the_bands_and_stretch_its_item_records(region, tmp_path):
    recorded = open_output(mapping_folder(region, tmp_path / "recorded", {"bands": [3, 2, 1], "value_range": [0, 900]}))
    (imagery,) = recorded.layer("imagery").rasters
    assert imagery.bands == (3, 2, 1) and imagery.ranges == ((0, 900),) * 3
    defaults = open_output(mapping_folder(region, tmp_path / "defaults", None))
    (imagery,) = defaults.layer("imagery").rasters
    assert imagery.bands == (1, 2, 3) and all(low > 0 and high < 3 * 64 * 64 for low, high in imagery.ranges)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda folder: None, "not an output of landcover-map, landcover-region or landcover-change"),
        (lambda folder: (folder / "notes_areas.json").write_text("{}"), "not an output of landcover-map"),
        (lambda folder: (folder / "region.json").write_text("[1"), "region.json: cannot be read as JSON"),
    ],
)
def test_a_folder_that_is_no_output_of_ours_is_refused_in_one_line(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(PipelineError, match=message):
        open_output(tmp_path)


def test_a_missing_folder_and_a_file_are_refused(tmp_path):
    with pytest.raises(PipelineError, match="folder not found"):
        open_output(tmp_path / "nowhere")
    (tmp_path / "file").write_text("")
    with pytest.raises(PipelineError, match="not a folder"):
        open_output(tmp_path / "file")


@pytest.mark.parametrize("missing", ["region.vrt", "scenes/b.tif", "scenes/a_confidence.tif", "region_areas.json"])
def test_a_map_the_records_name_but_missing_is_refused_naming_it(region, tmp_path, missing):
    copy = tmp_path / "out"
    shutil.copytree(region, copy)
    (copy / missing).unlink()
    with pytest.raises(PipelineError, match=rf"{copy / missing}: named in .* but missing"):
        open_output(copy)


def test_the_command_says_one_line_and_exits_1_for_a_folder_not_ours(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        run_stage(lambda: view_command.main([str(tmp_path), "--no-browser"]))
    assert exited.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"error: {tmp_path}: not an output of")


def test_a_port_in_use_is_refused_in_one_line(region, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PipelineError, match=rf"^--port {port}: the port is in use on 127.0.0.1"):
            ViewerServer(Viewer(open_output(region)), port)
        with pytest.raises(SystemExit) as exited:
            run_stage(lambda: view_command.main([str(region), "--port", str(port), "--no-browser"]))
    assert exited.value.code == 1
    assert capsys.readouterr().err.count("\n") == 1


# --- tiles, points and the labelling routes ---


def test_class_tiles_over_http_carry_the_class_colours_and_nothing_else(region):
    lon, lat, _ = block_centre("a", 3, 3)
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 14)
    with running_viewer(region) as url:
        with urllib.request.urlopen(f"{url}tiles/classes/{tile.z}/{tile.x}/{tile.y}.png") as reply:
            assert reply.headers["Content-Type"] == "image/png"
            pixels = decoded(reply.read())
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{url}tiles/nothing/{tile.z}/{tile.x}/{tile.y}.png")
    assert missing.value.code == 404
    opaque = pixels[pixels[..., 3] == 255][:, :3]
    colours = {tuple(colour) for colour in np.unique(opaque, axis=0)}
    assert colours <= {tuple(int(c) for c in colour) for colour in TABLE.colours}
    assert len(colours) >= 4 and len(opaque) > 100
    assert set(np.unique(pixels[..., 3])) <= {0, 255}  # outside the maps: transparent


def test_a_tile_outside_every_map_is_transparent(region):
    status, png = get(Viewer(open_output(region)), "/tiles/classes/5/0/0.png")
    assert status == 200 and (decoded(png)[..., 3] == 0).all()


def test_a_point_gives_each_layers_class_and_confidence(region):
    viewer = Viewer(open_output(region))
    lon, lat, expected = block_centre("a", 2, 5)
    status, point = get(viewer, f"/api/point?lon={lon}&lat={lat}")
    assert status == 200
    assert [entry["layer"] for entry in point["values"]] == ["classes", "confidence"]  # the class first
    values = {entry["layer"]: entry for entry in point["values"]}
    assert values["classes"]["value"] == expected and values["classes"]["name"] == TABLE.names[expected]
    assert values["confidence"]["confidence"] == 1.0  # the stand-in model is sure of every pixel
    status, point = get(viewer, "/api/point?lon=0&lat=0")
    assert status == 200 and all(entry["value"] is None for entry in point["values"])
    status, reply = get(viewer, "/api/point?lon=east&lat=0")
    assert status == 400 and reply == {"error": "give lon as a number"}


class FakeSession:
    """A labelling session as the server calls it: a state, and answers it accepts or refuses."""

    def __init__(self) -> None:
        self.answers: dict = {}

    def state(self) -> dict:
        return {"answers": self.answers}

    def answer(self, point_id, reference) -> dict:
        if reference not in TABLE.names:
            raise PipelineError(f"{reference}: not a class of the design")
        self.answers[point_id] = reference
        return self.state()


def test_the_labelling_routes_call_the_session_and_refuse_bad_answers_with_400(region):
    session = FakeSession()
    viewer = Viewer(open_output(region), session)
    assert get(viewer, "/api/config")[1]["labelling"] is True
    reply = route(viewer, "POST", "/api/labelling/answer", json.dumps({"point_id": 3, "reference": "water"}).encode())
    assert reply.status == 200 and json.loads(reply.body) == {"answers": {"3": "water"}}
    assert get(viewer, "/api/labelling") == (200, {"answers": {"3": "water"}})
    reply = route(viewer, "POST", "/api/labelling/answer", json.dumps({"point_id": 4, "reference": "moon"}).encode())
    assert reply.status == 400 and json.loads(reply.body) == {"error": "moon: not a class of the design"}
    reply = route(viewer, "POST", "/api/labelling/answer", b"not json")
    assert reply.status == 400 and "point_id" in json.loads(reply.body)["error"]
    assert route(viewer, "GET", "/api/labelling/answer").status == 405
    without = Viewer(open_output(region))
    assert get(without, "/api/config")[1]["labelling"] is False
    assert get(without, "/api/labelling")[0] == 404


def test_an_answer_over_http_must_be_json_so_another_sites_form_cannot_label(region):
    session = FakeSession()
    body = json.dumps({"point_id": 3, "reference": "water"}).encode()
    with running_viewer(region, session) as url:
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            request = urllib.request.Request(f"{url}api/labelling/answer", body, {"Content-Type": content_type})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request)
            assert refused.value.code == 415
        assert session.answers == {}
        request = urllib.request.Request(f"{url}api/labelling/answer", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as reply:
            assert json.loads(reply.read()) == {"answers": {"3": "water"}}


def test_a_request_addressed_to_another_host_name_is_refused(region):
    with running_viewer(region) as url:
        port = url.rstrip("/").rsplit(":", 1)[1]
        request = urllib.request.Request(f"{url}api/config", headers={"Host": f"rebound.example:{port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request)
        assert refused.value.code == 403
        for name in ("127.0.0.1", "localhost"):
            request = urllib.request.Request(f"{url}api/config", headers={"Host": f"{name}:{port}"})
            with urllib.request.urlopen(request) as reply:
                assert json.loads(reply.read())["command"] == "landcover-region"


def stop_at_once(server) -> None:
    raise KeyboardInterrupt  # as Ctrl-C does


def test_labelling_a_sample_of_another_place_warns_that_its_points_lie_outside(region, tmp_path, monkeypatch, capsys):
    from tests.test_labelling import POINTS, block_map, sample_of

    elsewhere = Affine(PIXEL, 0, WEST + 100_000, 0, -PIXEL, NORTH)  # 100 km east of the region
    design, _ = sample_of(write_class_map(tmp_path / "map.tif", block_map(), transform=elsewhere), tmp_path / "sample")
    monkeypatch.setattr(ViewerServer, "serve_forever", stop_at_once)
    view_command.main([str(region), "--no-browser", "--sample", str(design)])
    assert f"{POINTS} of {POINTS} points (ids " in capsys.readouterr().err
    sample_command.main(["--map", str(region / "region.vrt"), "--output", str(tmp_path / "here"), "--no-progress"])
    design = tmp_path / "here" / "sample_design.json"
    view_command.main([str(region), "--no-browser", "--sample", str(design)])
    assert "outside" not in capsys.readouterr().err


def test_a_change_output_shows_both_dates_for_a_swipe_and_only_the_changes_made_in_its_legend(region, tmp_path):
    before = region / "scenes" / "a.tif"
    with rasterio.open(before) as dataset:
        classes = dataset.read(1)
    classes[:16] = np.where(classes[:16] == 1, 4, classes[:16])  # agriculture became water in the top rows
    after = write_class_map(tmp_path / "after.tif", classes, transform=scene_transform("a"))
    detect_change(before, after, tmp_path)
    viewer = Viewer(open_output(tmp_path))
    config = get(viewer, "/api/config")[1]
    assert config["command"] == "landcover-change"
    # date 1's map lies in a folder of area reports (the region's scenes): its imagery under it; date 2's in none
    assert config["swipe"] == {"before": ["imagery-before", "before"], "after": ["after"]}
    assert len(viewer.output.layer("imagery-before").rasters) == 2
    (change,) = [layer for layer in config["layers"] if layer["id"] == "change"]
    assert [entry["name"] for entry in change["legend"]] == ["unchanged", "agriculture_land -> water"]
    assert config["areas"][0]["rows"][1]["name"] == "agriculture_land -> water"
    lon, lat, _ = block_centre("a", 0, 0)
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 14)
    status, png = get(viewer, f"/tiles/change/{tile.z}/{tile.x}/{tile.y}.png")
    pixels = decoded(png)
    colours = {tuple(colour) for colour in np.unique(pixels[pixels[..., 3] == 255][:, :3], axis=0)}
    codes = change_table(TABLE)
    assert colours == {tuple(int(c) for c in codes.colours[0]), tuple(int(c) for c in TABLE.colours[4])}


# --- in the browser ---


@pytest.fixture(scope="module")
def page():
    if find_browser() is None:
        pytest.skip("no Chromium: install Debian's chromium (.ci/run does, as root) for the viewer's browser tests")
    with browser_page() as page:
        yield page


def colour_share(pixels: np.ndarray, colour) -> float:
    return float((pixels == np.asarray(colour, dtype=np.uint8)).all(axis=-1).mean())


def test_the_page_draws_the_class_map_in_the_class_colours_with_the_scene_outlines(region, page):
    with running_viewer(region) as url:
        open_viewer(page, url)
        pixels = map_pixels(page)
        box = page.locator("#map").bounding_box()
        blocks = [block_centre("a", row, column) for row in range(0, 8, 3) for column in range(0, 8, 2)]
        drawn = [pixels[round(y - box["y"]), round(x - box["x"])] for x, y in (project(page, *b[:2]) for b in blocks)]
        legend = page.locator("#legend-classes li").all_inner_texts()
        scene_legend = page.locator("#legend-scenes li").all_inner_texts()
        areas = page.locator("#areas").inner_text()
        page.check("#show-confidence")
        wait_drawn(page)
        confidence = map_pixels(page)
        page.uncheck("#show-confidence")
        page.uncheck("#show-classes")
        wait_drawn(page)
        imagery = map_pixels(page)
    assert legend == list(TABLE.names)
    assert scene_legend == ["done", "resumed", "failed"]
    assert "barren_land" in areas and " ha" in areas
    shares = {name: colour_share(pixels, colour) for name, colour in zip(TABLE.names, TABLE.colours)}
    assert [tuple(colour) for colour in drawn] == [tuple(TABLE.colours[b[2]]) for b in blocks]  # each in its colour
    assert sum(shares.values()) > 0.15  # the two scenes fill a good part of the view
    assert sum(share > 0.002 for share in shares.values()) >= 5  # blocks of most classes, each in its colour
    assert colour_share(pixels, (0xD7, 0x30, 0x27)) > 0  # the failed scene's outline
    # with the class map hidden, the imagery shows: some block's own colour, where the class colours were
    a_colours = block_image(0)[:, ::BLOCK, ::BLOCK].reshape(3, -1).T
    assert max(colour_share(imagery, colour) for colour in a_colours) > 0.001
    assert sum(colour_share(imagery, colour) for colour in TABLE.colours) < sum(shares.values()) / 4
    # switched on, the confidence covers the class map: the stand-in model is sure of every pixel (the ramp's top)
    assert colour_share(confidence, confidence_colormap()[255][:3]) > sum(shares.values()) * 0.8


def test_hovering_over_a_failed_scene_shows_its_status_and_error(region, page):
    from rasterio.warp import transform as transform_points

    x, y = scene_transform("c") @ (SIDE / 2, SIDE / 2)  # the middle of scene c, which no other scene covers
    (lon,), (lat,) = transform_points(UTM33, "EPSG:4326", [x], [y])
    with running_viewer(region) as url:
        open_viewer(page, url)
        page.mouse.move(*project(page, lon, lat))
        popup = page.locator(".scene-popup")
        popup.wait_for()
        text = popup.inner_text()
    assert text.startswith("c: failed (") and "read error (injected)" in text


def test_a_click_on_a_pixel_shows_its_class_confidence_and_coordinates(region, page):
    lon, lat, expected = block_centre("b", 4, 6)
    with running_viewer(region) as url:
        open_viewer(page, url)
        x, y = project(page, lon, lat)
        page.mouse.click(x, y)
        info = page.locator("#pixel-info")
        info.locator("[data-layer=classes]").wait_for()
        classes = info.locator("[data-layer=classes]").inner_text()
        confidence = info.locator("[data-layer=confidence]").inner_text()
        coordinates = info.locator(".coordinates").inner_text()
    assert classes == f"Land-cover classes: {TABLE.names[expected]} ({expected})"
    assert confidence == "Confidence: 1.000"
    shown_lon, shown_lat = (float(part.split()[1]) for part in coordinates.split(", "))
    assert shown_lon == pytest.approx(lon, abs=2e-5) and shown_lat == pytest.approx(lat, abs=2e-5)  # about 2 m


def test_the_swipe_shows_date_2_right_of_it_and_the_change_map_over_date_1_left_of_it(region, tmp_path, page):
    before = region / "scenes" / "a.tif"
    with rasterio.open(before) as dataset:
        classes = dataset.read(1)
    classes[:8] = (classes[:8] + 1) % len(TABLE)  # the top row of blocks changed, each to the next class
    after = write_class_map(tmp_path / "after.tif", classes, transform=scene_transform("a"))
    report = json.loads((region / "scenes" / "a_areas.json").read_text())  # date 2 as a mapping output of a's image
    (tmp_path / "after_areas.json").write_text(json.dumps(report))
    change = tmp_path / "change"
    detect_change(before, after, change)
    unchanged = tuple(int(c) for c in change_table(TABLE).colours[0])
    lon, lat, was = block_centre("a", 4, 3)  # an unchanged block
    with running_viewer(change) as url:
        open_viewer(page, url)
        x, y = project(page, lon, lat)
        box = page.locator("#map").bounding_box()
        seen = {}
        for position in ("0", "100"):  # the cut at the left edge: all date 2; at the right edge: all date 1
            page.evaluate(
                "value => { const s = document.getElementById('swipe'); s.value = value;"
                " s.dispatchEvent(new Event('input')); }",
                position,
            )
            pixels = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
            seen[position] = tuple(int(c) for c in pixels[round(y), round(x)])
        page.uncheck("#show-after")  # the cut at the right edge still: date 1; date 2's imagery under its map
        page.evaluate(
            "() => { const s = document.getElementById('swipe'); s.value = '0'; s.dispatchEvent(new Event('input')); }"
        )
        wait_drawn(page)
        pixels = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
        seen["imagery"] = tuple(int(c) for c in pixels[round(y), round(x)])
    assert box is not None and box["x"] < x < box["x"] + box["width"]
    row, column = 4 * BLOCK + BLOCK // 2, 3 * BLOCK + BLOCK // 2
    assert seen["imagery"] == tuple(int(c) for c in block_image(0)[:, row, column])  # scene a's own colour there
    assert seen["0"] == tuple(int(c) for c in TABLE.colours[was])  # date 2, where nothing changed: its class
    assert seen["100"] == unchanged  # the change map over date 1: unchanged


def test_a_map_unreadable_after_the_start_fails_its_requests_with_500_and_the_server_goes_on(region, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(region, copy)
    viewer = Viewer(open_output(copy))
    lon, lat, _ = block_centre("a", 3, 3)
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 14)
    (copy / "scenes" / "a_confidence.tif").write_bytes(b"II*\x00 not a TIFF any more")
    status, reply = get(viewer, f"/tiles/confidence/{tile.z}/{tile.x}/{tile.y}.png")
    assert status == 500 and "a_confidence.tif" in reply["error"] and "\n" not in reply["error"]
    assert get(viewer, f"/tiles/classes/{tile.z}/{tile.x}/{tile.y}.png")[0] == 200


def test_a_tile_reads_only_the_rasters_that_reach_it(region, monkeypatch):
    from landcover.viewer import tiles

    viewer = Viewer(open_output(region))
    read, read_tile = [], tiles.read_tile
    monkeypatch.setattr(tiles, "read_tile", lambda raster, *args: read.append(raster.path) or read_tile(raster, *args))
    lon, lat, _ = block_centre("a", 0, 0)  # the north-west corner: scene a only
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 18)
    assert get(viewer, f"/tiles/confidence/{tile.z}/{tile.x}/{tile.y}.png")[0] == 200
    assert [Path(path).name for path in read] == ["a_confidence.tif"]


def test_with_a_labelling_session_the_page_exposes_the_map_and_loads_the_labelling_script(region, page):
    with running_viewer(region, FakeSession()) as url:
        with page.expect_request(lambda request: request.url.endswith("/static/labelling.js")):
            open_viewer(page, url)
        exposed = page.evaluate(
            "() => ({ labelling: window.landcoverViewer.config.labelling,"
            " map: typeof window.landcoverViewer.map.getCenter, panel: window.landcoverViewer.panel.id })"
        )
        shown = page.locator("#labelling").get_attribute("hidden") is None
    assert exposed == {"labelling": True, "map": "function", "panel": "labelling"}
    assert shown
