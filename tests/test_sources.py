"""Where a scene lives (landcover.io.sources): the paths and URLs read and what GDAL opens for each, remote
rasters read in place by byte ranges from an HTTP server on 127.0.0.1 (tests.range_server), by the region
engine and the mapping command (landcover-map), and the identity a region's resume records compare: a local
file's hash, reused while the file is unchanged; a remote object's ETag and size."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from PIL import Image
from rasterio.enums import Resampling

from landcover.cli import map as map_command
from landcover.data.palette import ClassTable
from landcover.geo.mapping import MapOptions
from landcover.geo.stac import ITEM_SUFFIX
from landcover.io import sources
from landcover.io.errors import PipelineError
from landcover.io.params import PredictParams
from landcover.io.sources import Source, located, parse_source
from landcover.region import engine
from landcover.region.inputs import region_scenes, scene_of
from landcover.region.records import record_path
from tests.conftest import map_files, stand_in_runtime, write_params
from tests.optional import need_group
from tests.range_server import RangeServer, Served
from tests.test_geotiff import labels_from_red, random_rgb, write_raster

TABLE = ClassTable.deepglobe()
SIDE = 1024  # the served COG: 3 bands of uint8, 256 px tiles, overviews of 512 and 256 px: about 4 MB
PARAMS = PredictParams(window=256, overlap=0.25, batch_size=4, tta=False, precision="fp32", compile=False)


@pytest.mark.parametrize(
    ("given", "local", "gdal_path", "name"),
    [
        ("/data/scenes/a.tif", True, "/data/scenes/a.tif", "a.tif"),
        ("scenes/a.tif", True, "scenes/a.tif", "a.tif"),
        ("scene:1.tif", True, "scene:1.tif", "scene:1.tif"),  # a colon, but no "://": a file's name
        ("file:///data/my%20scene.tif", True, "/data/my scene.tif", "my scene.tif"),
        ("http://example.org/d/a.tif", False, "/vsicurl/http://example.org/d/a.tif", "a.tif"),
        ("https://example.org/a.tif?sig=x%2Fy", False, "/vsicurl/https://example.org/a.tif?sig=x%2Fy", "a.tif"),
        ("HTTPS://example.org/b.tif", False, "/vsicurl/HTTPS://example.org/b.tif", "b.tif"),
        ("s3://bucket/tiles/a.tif", False, "/vsis3/bucket/tiles/a.tif", "a.tif"),
        ("gs://bucket/a.tif", False, "/vsigs/bucket/a.tif", "a.tif"),
        ("/vsicurl/https://example.org/d/a.tif", False, "/vsicurl/https://example.org/d/a.tif", "a.tif"),
        ("/vsis3/bucket/a.tif", False, "/vsis3/bucket/a.tif", "a.tif"),
        ("/vsigs/bucket/d/a.tif", False, "/vsigs/bucket/d/a.tif", "a.tif"),
        ("/vsiaz/container/a.tif", False, "/vsiaz/container/a.tif", "a.tif"),
    ],
)
def test_each_kind_of_source_is_told_apart_and_named_for_gdal(given, local, gdal_path, name):
    source = parse_source(given)
    assert (source.is_local, source.gdal_path, source.name, str(source)) == (local, gdal_path, name, given)


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("ftp://example.org/a.tif", "scheme ftp:// is not read here"),
        ("az://container/a.tif", "scheme az:// is not read here"),
        ("/vsizip/scenes.zip/a.tif", "GDAL file system /vsizip/ is not read here"),
    ],
)
def test_a_source_of_another_kind_is_refused_in_one_line_naming_it(given, message):
    with pytest.raises(PipelineError, match=f"^{given}: {message}; sources are local paths, file://, http"):
        parse_source(given)
    with pytest.raises(PipelineError, match=f"^{given}: {message}"):
        region_scenes([given])


def test_relative_paths_are_made_absolute_and_urls_kept(tmp_path):
    assert located("a/../b.tif", tmp_path) == Source(str(tmp_path / "b.tif"), str(tmp_path / "b.tif"))
    assert located("/x/b.tif", tmp_path).gdal_path == "/x/b.tif"
    assert located("https://example.org/b.tif", tmp_path).gdal_path == "/vsicurl/https://example.org/b.tif"
    assert located(tmp_path.as_uri() + "/b.tif", Path("/elsewhere")).local_path == tmp_path / "b.tif"


# --- the identity resuming compares --------------------------------------------------------------------------


@pytest.fixture
def hashes(monkeypatch) -> list[Path]:
    """Every file io.sources hashes, in order."""
    hashed: list[Path] = []
    real = sources.file_sha256

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(sources, "file_sha256", counting)
    return hashed


def test_a_local_file_is_hashed_once_while_it_is_unchanged(tmp_path, hashes):
    path = tmp_path / "a.tif"
    path.write_bytes(b"first")
    source = located(str(path))
    first = source.identity()
    assert first.content == {"sha256": sources.file_sha256(path)} and first.seen["size"] == 5
    hashes.clear()
    assert source.identity(first) == first and hashes == []
    path.write_bytes(b"other")  # the same size, a new modification time
    os.utime(path, ns=(first.seen["mtime_ns"] + 1_000_000, first.seen["mtime_ns"] + 1_000_000))
    second = source.identity(first)
    assert hashes == [path] and second.content != first.content


# --- remote sources on a local HTTP server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The server with `/scenes/big.tif` (a COG of SIDE px; its local copy is `cog`), `/bucket/big.tif` (the same
    bytes, as an S3 bucket's object) and `/photos/small.jpg`."""
    root = tmp_path_factory.mktemp("served")
    tiff = write_raster(root / "plain.tif", random_rgb(SIDE, SIDE, seed=5))
    cog = root / "big.tif"
    rasterio.shutil.copy(tiff, cog, driver="COG", blocksize=256, compress="NONE", overview_resampling="nearest")
    Image.fromarray(random_rgb(64, 64, seed=6).transpose(1, 2, 0)).save(root / "small.jpg", quality=90)
    server = RangeServer()
    server.objects["/scenes/big.tif"] = Served(cog.read_bytes())
    server.objects["/bucket/big.tif"] = Served(cog.read_bytes())
    server.objects["/photos/small.jpg"] = Served((root / "small.jpg").read_bytes())
    try:
        yield {"server": server, "cog": cog, "jpeg": root / "small.jpg"}
    finally:
        server.close()


def assert_ranges_only(requests, path: str, size: int) -> int:
    """Every request was for the object at `path` (no sidecar files asked for), every GET asked for a range and
    none was sent the whole object; the body bytes sent in all."""
    assert {request.path for request in requests} == {path}
    gets = [request for request in requests if request.method == "GET"]
    assert gets and all(request.range is not None for request in gets), gets
    assert max(request.sent for request in gets) < size
    return sum(request.sent for request in gets)


def test_a_remote_cog_is_read_a_range_at_a_time(served):
    server, size = served["server"], served["cog"].stat().st_size
    server.taken()
    with parse_source(server.url("/scenes/big.tif")).open_raster() as dataset:
        assert dataset.overviews(1) == [2, 4]
        overview = dataset.read(1, out_shape=(SIDE // 4, SIDE // 4), resampling=Resampling.nearest)
    with rasterio.open(served["cog"]) as local:
        np.testing.assert_array_equal(overview, local.read(1, out_shape=(SIDE // 4, SIDE // 4)))
    sent = assert_ranges_only(server.taken(), "/scenes/big.tif", size)
    assert sent < size / 10  # the header and the smallest overview only


def map_scene(scene, out: Path, checkpoint: Path) -> dict:
    spec = engine.ModelSpec(checkpoint, None, checkpoint.parent / "export")
    return engine.map_scene(scene, out, spec, PARAMS, MapOptions())


@pytest.fixture
def stand_in(monkeypatch, tmp_path) -> Path:
    """The model the engine loads: the red band's value modulo 7 as each pixel's class; its checkpoint's path."""
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"stand-in weights")
    identity = {"runtime": "stand-in", "file": "model.pt", "sha256": "0" * 64}
    monkeypatch.setattr(
        engine, "load_model", lambda spec, params: engine.LoadedModel(labels_from_red, TABLE, identity, "x")
    )
    return checkpoint


def test_a_remote_cog_maps_without_a_download_and_resumes_by_its_etag(served, stand_in, tmp_path, monkeypatch):
    """The whole scene is mapped: every full-resolution tile is read once, by ranges; the overviews are never
    read, so the bytes sent are fewer than the file's, as no download (which is every byte) could be."""
    server, size = served["server"], served["cog"].stat().st_size
    monkeypatch.setattr(sources.tempfile, "mkdtemp", lambda **_: pytest.fail("a remote COG was copied"))
    scene = scene_of(server.url("/scenes/big.tif"))
    server.taken()
    assert map_scene(scene, tmp_path / "out", stand_in)["status"] == "mapped"
    sent = assert_ranges_only(server.taken(), "/scenes/big.tif", size)
    assert sent < size * 0.9, (sent, size)
    with rasterio.open(tmp_path / "out" / "big.tif") as classes, rasterio.open(served["cog"]) as image:
        np.testing.assert_array_equal(classes.read(1), image.read(1) % len(TABLE))
        assert classes.crs == image.crs and classes.transform == image.transform
    record = json.loads(record_path(tmp_path / "out", "big").read_text())
    assert record["key"]["source"] == {"source": scene.source.text, "size": size, "etag": '"v1"'}
    assert map_scene(scene, tmp_path / "out", stand_in)["status"] == "skipped"
    assert [request.method for request in server.taken()] == ["HEAD"]  # the identity, no pixels
    server.objects["/scenes/big.tif"].etag = '"v2"'
    try:
        assert scene.source.identity().content["etag"] == '"v2"'
        assert map_scene(scene, tmp_path / "out", stand_in)["status"] == "mapped"
    finally:
        server.objects["/scenes/big.tif"].etag = '"v1"'


def test_an_s3_object_is_read_through_gdals_s3_file_system(served, monkeypatch):
    server = served["server"]
    for name, value in {
        "AWS_S3_ENDPOINT": server.endpoint,
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_NO_SIGN_REQUEST": "YES",
    }.items():
        monkeypatch.setenv(name, value)
    source = parse_source("s3://bucket/big.tif")
    server.taken()
    identity = source.identity()
    assert identity.content == {"source": "s3://bucket/big.tif", "size": served["cog"].stat().st_size, "etag": '"v1"'}
    with source.open_raster() as dataset:
        assert dataset.read(1, window=((0, 8), (0, 8))).shape == (8, 8)
    assert {request.path for request in server.taken()} == {"/bucket/big.tif"}


def test_a_remote_jpeg_is_copied_for_pillow_and_the_copy_removed(served):
    source = parse_source(served["server"].url("/photos/small.jpg"))
    with source.readable() as where:
        assert isinstance(where, Path) and where.name == "small.jpg"
        assert where.read_bytes() == served["jpeg"].read_bytes()
    assert not where.parent.exists()


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def test_an_unreachable_or_missing_remote_source_is_one_line_naming_it(served, stand_in, tmp_path):
    missing = served["server"].url("/scenes/none.tif")
    unreachable = f"http://127.0.0.1:{closed_port()}/scenes/a.tif"
    for url, reason in ((missing, "HTTP response code: 404"), (unreachable, "CURL error: Failed to connect")):
        with pytest.raises(PipelineError, match=f"^{url}: cannot read it \\({reason}") as refused:
            parse_source(url).identity()
        assert "\n" not in str(refused.value)
    with pytest.raises(engine.SceneFailed, match=f"^{missing}: cannot read it \\(HTTP response code: 404\\)$"):
        map_scene(scene_of(missing), tmp_path / "out", stand_in)


# --- the mapping command on remote sources ---------------------------------------------------------------------


@pytest.fixture
def map_inputs(monkeypatch, tmp_path):
    """The mapping command (landcover-map) on --input texts into a folder, with the stand-in model."""
    params = write_params(
        tmp_path / "params.yaml", predict={"window": 256, "batch_size": 4, "precision": "fp32", "compile": False}
    )
    monkeypatch.setattr(map_command, "choose_runtime", lambda *args, **kwargs: stand_in_runtime(TABLE))
    monkeypatch.setattr(map_command, "runtime_probabilities", lambda *args, **kwargs: labels_from_red)
    return lambda inputs, out: map_files(params, inputs, out)


def assert_same_outputs(remote: Path, local: Path, url: str, path: Path) -> None:
    """The same files of the same bytes, but for the input each area report names (and the STAC Items, which
    hold the times of the run and the areas report's checksum)."""
    names = sorted(file.name for file in local.iterdir())
    assert names == sorted(file.name for file in remote.iterdir())
    for name in [name for name in names if not name.endswith(ITEM_SUFFIX)]:
        expected = (local / name).read_bytes()
        if name.endswith("_areas.json"):
            expected = expected.replace(json.dumps(str(path)).encode(), json.dumps(url).encode())
        assert (remote / name).read_bytes() == expected, name


def test_the_map_command_reads_a_remote_cog_in_place_as_it_maps_the_file(served, map_inputs, tmp_path, monkeypatch):
    server, cog, size = served["server"], served["cog"], served["cog"].stat().st_size
    url = server.url("/scenes/big.tif")
    local = map_inputs([cog], tmp_path / "local")
    monkeypatch.setattr(sources.tempfile, "mkdtemp", lambda **_: pytest.fail("a remote COG was copied"))
    sources.gdal_files(parse_source(url)).forget(parse_source(url).gdal_path)  # GDAL's cache holds earlier reads
    server.taken()
    remote = map_inputs([url], tmp_path / "remote")
    sent = assert_ranges_only(server.taken(), "/scenes/big.tif", size)
    assert sent < size, (sent, size)
    assert {"big.tif", "big.qml", "big_areas.json", "big_areas.csv"} <= {file.name for file in remote.iterdir()}
    assert json.loads((remote / "big_areas.json").read_text())["image"] == url
    assert_same_outputs(remote, local, url, cog)


def test_the_map_command_maps_a_remote_jpeg_from_a_copy_and_names_the_url(served, map_inputs, tmp_path, capsys):
    local = map_inputs([served["jpeg"]], tmp_path / "local")
    url = served["server"].url("/photos/small.jpg")
    capsys.readouterr()
    remote = map_inputs([url], tmp_path / "remote")
    assert_same_outputs(remote, local, url, served["jpeg"])  # the area report names the URL, not the copy
    assert "small.png" in {file.name for file in remote.iterdir()}
    warned = capsys.readouterr().err
    assert f"warning: {url}: no hectares in the area report" in warned and "landcover-source-" not in warned


def test_the_map_command_refuses_bad_sources_in_one_line_before_the_model_loads(
    served, map_inputs, tmp_path, monkeypatch
):
    monkeypatch.setattr(map_command, "choose_runtime", lambda *args, **kwargs: pytest.fail("the model was loaded"))
    url = served["server"].url("/scenes/big.tif")
    missing = served["server"].url("/scenes/none.tif")
    for inputs, named, message in (
        ([missing], missing, "cannot read raster (HTTP response code: 404)"),
        (["ftp://example.org/a.tif"], "ftp://example.org/a.tif", "scheme ftp:// is not read here; sources are "),
        ([url, f"/vsicurl/{url}"], f"/vsicurl/{url}", "given twice in --input"),
        ([url, str(served["cog"])], str(served["cog"]), f"its outputs would replace those of {url}"),
    ):
        with pytest.raises(PipelineError, match=f"^{re.escape(named)}: {re.escape(message)}") as refused:
            map_inputs(inputs, tmp_path / "out")
        assert "\n" not in str(refused.value)
        assert not (tmp_path / "out").exists()


# --- resuming local scenes in the region engine ----------------------------------------------------------------


def test_a_rerun_does_not_rehash_an_unchanged_scene_and_an_old_record_is_redone(stand_in, tmp_path, hashes):
    image = write_raster(tmp_path / "a.tif", random_rgb(64, 64, seed=1))
    scene, out = scene_of(str(image)), tmp_path / "out"
    assert map_scene(scene, out, stand_in)["status"] == "mapped" and hashes == [image]
    assert map_scene(scene, out, stand_in)["status"] == "skipped" and hashes == [image]
    os.utime(image, ns=(1, 1))  # touched, the same bytes: hashed again, not mapped, not hashed the next time
    assert map_scene(scene, out, stand_in)["status"] == "skipped" and hashes == [image, image]
    assert map_scene(scene, out, stand_in)["status"] == "skipped" and hashes == [image, image]
    write_raster(image, random_rgb(64, 64, seed=2))
    assert map_scene(scene, out, stand_in)["status"] == "mapped" and hashes == [image, image, image]
    record = json.loads(record_path(out, "a").read_text())
    old = {**record, "key": {"input_sha256": record["key"]["source"]["sha256"]}}  # the format before sources
    del old["source_seen"]
    record_path(out, "a").write_text(json.dumps(old))
    assert map_scene(scene, out, stand_in)["status"] == "mapped" and len(hashes) == 4
    assert map_scene(scene, out, stand_in)["status"] == "skipped" and len(hashes) == 4


def test_the_gdal_calls_go_to_rasterios_gdal_even_with_pyogrios_loaded():
    """pyogrio's wheel carries a GDAL of its own: calls made there would miss rasterio's options and caches (a
    remote open listing the object's folder, a cache cleared in the wrong library)."""
    need_group("vector")
    import pyogrio  # noqa: F401  (its GDAL now mapped into this process)

    sources.gdal_library_path.cache_clear()
    library = Path(sources.gdal_library_path())
    rasterio_folder = Path(rasterio.__file__).parent
    assert library.parent in (rasterio_folder.parent / "rasterio.libs", rasterio_folder / ".dylibs"), library
    assert "pyogrio" not in str(library)
