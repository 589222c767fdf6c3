"""The scenes of a dataset (an image raster and its labels each) found in the layouts the pipeline reads, checked,
kept and indexed into tiles (the tile stage's work on scenes).

A scene is one image (a GeoTIFF or any raster GDAL reads, or a JPEG/PNG) and its labels: a class-index
raster, a colour-coded raster, or a vector file of polygons with a class attribute (docs/data.md,
"Your own data"). `data.layout` says how they are found under `data.raw` (LAYOUTS, at the end):
- `scenes`: a manifest `scenes.csv` with columns scene_id,image,labels (paths relative to data.raw);
- `landcoverai`: LandCover.ai's `images/<name>.tif` and `masks/<name>.tif`;
- `openearthmap`: OpenEarthMap's `<region>/images/<name>.tif` and `<region>/labels/<name>.tif`;
- `loveda`: LoveDA's `{Train,Val}/{Urban,Rural}/images_png/<k>.png` and `masks_png/<k>.png`.
(`deepglobe`, the default, is rawdata's: JPEG images and colour PNG masks.)
The class table is `classes.csv` under data.raw where there is one, else the preset's
(`presets/<layout>/classes.csv`); a `scenes` dataset must bring its own.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from shutil import copyfile

import numpy as np
import rasterio
from rasterio.windows import Window
from tqdm import tqdm

from landcover.data.geometry import tile_grid
from landcover.data.labels import ImageHeader, check_bands, open_labels, read_image_header
from landcover.data.naming import ID_PATTERN, natural_key
from landcover.data.palette import ClassTable
from landcover.data.rawdata import find_pairs, read_class_table
from landcover.data.tilestore import RGB_BANDS, TileRecord, TileStore, tile_name, write_index
from landcover.data.tiling import IMAGE_FORMATS, tile_dataset
from landcover.io.errors import PipelineError
from landcover.io.imageio import decode, open_image
from landcover.io.params import DataParams, TileParams, choose
from landcover.io.rasters import RASTER_ERRORS, open_raster, raster_error, read_window
from landcover.io.textfiles import read_utf8

MANIFEST = "scenes.csv"
MANIFEST_COLUMNS = ("scene_id", "image", "labels")
CLASS_TABLE = "classes.csv"


@dataclass(frozen=True)
class SceneFiles:
    """One scene as found under data.raw: its id, its image file and its labels file."""

    scene_id: str
    image: Path
    labels: Path


def scene_class_table(root: Path, layout: str) -> ClassTable:
    """`classes.csv` under `root` if there is one, else the preset's table for `layout`."""
    own = Path(root) / CLASS_TABLE
    if own.is_file():
        return ClassTable.from_csv(own)
    if layout == "scenes":
        raise PipelineError(f"data.raw: {own} not found; a '{layout}' dataset needs its class table there")
    return ClassTable.preset(layout)  # the presets' tables ship with the pipeline (a dvc.yaml dep of tile)


SceneFinder = Callable[[Path], list[SceneFiles]]  # a layout's scenes under data.raw, unchecked


def find_scenes(root: str | Path, layout: str, finder: SceneFinder) -> list[SceneFiles]:
    """Every labelled scene `finder` finds under `root` (in data.layout `layout`), sorted by id; each file must
    exist inside `root`."""
    root = Path(root)
    if not root.is_dir():
        raise PipelineError(f"data.raw: {root} does not exist or is not a directory")
    scenes = finder(root)
    if not scenes:
        raise PipelineError(f"data.raw: no labelled scenes found in {root} (data.layout {layout})")
    seen: dict[str, SceneFiles] = {}
    for scene in scenes:
        if not ID_PATTERN.match(scene.scene_id):
            raise PipelineError(f"{scene.image}: scene id {scene.scene_id!r} must be letters, digits, '.' or '-'")
        if scene.scene_id in seen:
            raise PipelineError(f"{scene.image}: scene id {scene.scene_id!r} is also {seen[scene.scene_id].image}'s")
        seen[scene.scene_id] = scene
        for path in (scene.image, scene.labels):
            if not path.resolve().is_relative_to(root.resolve()):
                raise PipelineError(f"{path}: leads to {path.resolve()}, outside data.raw ({root})")
            if not path.is_file():
                raise PipelineError(f"{path}: file not found (scene {scene.scene_id})")
    return sorted(scenes, key=lambda scene: natural_key(scene.scene_id))


def _from_manifest(root: Path) -> list[SceneFiles]:
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise PipelineError(f"data.raw: {manifest} not found (columns {','.join(MANIFEST_COLUMNS)})")
    reader = csv.DictReader(io.StringIO(read_utf8(manifest, "scene manifest"), newline=""))
    try:
        missing = [column for column in MANIFEST_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise PipelineError(f"{manifest}: missing column {missing[0]!r} (expected {','.join(MANIFEST_COLUMNS)})")
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as error:
        raise PipelineError(f"{manifest}, line {reader.line_num}: not a CSV table ({error})") from None
    scenes = []
    for line, row in rows:
        if not all((row[column] or "").strip() for column in MANIFEST_COLUMNS):
            raise PipelineError(f"{manifest}, line {line}: scene_id, image and labels must all be given")
        scenes.append(SceneFiles(row["scene_id"].strip(), root / row["image"].strip(), root / row["labels"].strip()))
    return scenes


def _pairs(images: list[Path], labels_of, id_of) -> list[SceneFiles]:
    """A scene per image whose labels file exists; an image without one is refused, naming it."""
    scenes = []
    for image in images:
        labels = labels_of(image)
        if not labels.is_file():
            raise PipelineError(f"{image}: no labels {labels} beside it")
        scenes.append(SceneFiles(id_of(image), image, labels))
    return scenes


def _landcoverai(root: Path) -> list[SceneFiles]:
    images = sorted((root / "images").glob("*.tif"))
    return _pairs(images, lambda image: root / "masks" / image.name, lambda image: image.stem)


def _openearthmap(root: Path) -> list[SceneFiles]:
    # Its names are <region>_<k>: ids become tile-name prefixes (<id>_y..._x...), so '_' becomes '-'.
    images = sorted(root.glob("*/images/*.tif"))
    return _pairs(
        images, lambda image: image.parent.parent / "labels" / image.name, lambda image: image.stem.replace("_", "-")
    )


def _loveda(root: Path) -> list[SceneFiles]:
    # Test/ has no masks; Train/ and Val/ do. Ids say where a scene comes from: train-urban-1366.
    images = sorted(
        path
        for split in ("Train", "Val")
        for domain in ("Urban", "Rural")
        for path in (root / split / domain / "images_png").glob("*.png")
    )
    return _pairs(
        images,
        lambda image: image.parent.parent / "masks_png" / image.name,
        lambda image: f"{image.parents[2].name.lower()}-{image.parents[1].name.lower()}-{image.stem}",
    )


# --- the tile stage's work on scenes: check, keep, index ------------------------------------------------

# Raster formats whose files are kept byte for byte (tile.images: source); any other raster GDAL reads is
# copied into a tiled GeoTIFF, pixels unchanged.
KEPT_RASTER_DRIVERS = {"GTiff": ".tif", "COG": ".tif"}
# The tiled GeoTIFF a copy is: deflated (tile.images: source, for formats not kept), or uncompressed (tile.images:
# uncompressed), whose windows read about 5x faster than deflate's (a 512 px 4-band uint16 window: 1.5 against
# 8.5 ms here, decoding being most of a training sample's cost); BigTIFF where it may pass 4 GB.
COPY_OPTIONS = {"driver": "GTiff", "tiled": True, "blockxsize": 512, "blockysize": 512, "bigtiff": "IF_SAFER"}


@dataclass(frozen=True)
class KeptImage:
    """How the tile stage keeps a scene's image that GDAL reads (JPEG and PNG are always kept as they are)."""

    keeps_source: bool  # a GeoTIFF (KEPT_RASTER_DRIVERS) keeps its own bytes
    compression: dict  # GDAL creation options of a copy, beside COPY_OPTIONS


# tile.images: source keeps a GeoTIFF's own bytes (other formats become a deflated copy); uncompressed copies the
# pixels into an uncompressed tiled GeoTIFF.
KEPT_IMAGES = {"source": KeptImage(True, {"compress": "deflate"}), "uncompressed": KeptImage(False, {})}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
READ_CHECK_ROWS = 512  # rows decoded at a time, to check that every block of an image decodes or to copy it


@dataclass(frozen=True)
class SceneSettings:
    """What the tile stage needs to know about a dataset of scenes, from its params."""

    table: ClassTable
    bands: tuple[int, ...]
    label_attribute: str
    images: KeptImage  # tile.images' entry of KEPT_IMAGES


def check_scene(scene: SceneFiles, size: int, settings: SceneSettings) -> ImageHeader:
    """Refuse, before anything is copied, a scene that cannot be trained on: its image, bands, size and labels."""
    header = read_image_header(scene.image)
    check_bands(header, settings.bands)
    if size > min(header.height, header.width):
        raise PipelineError(
            f"params: tile.size ({size}) is larger than scene {scene.image} ({header.width}x{header.height})"
        )
    with open_labels(scene.labels, header, settings.table, settings.label_attribute):
        pass  # opening checks kind, type, overlap, CRS, attribute and class names
    return header


def _decodes_whole(header: ImageHeader) -> None:
    """Decode every block, a strip at a time, so a truncated or corrupt file fails here, naming it."""
    if not header.through_gdal:
        with open_image(header.path) as image:
            decode(header.path, image)
        return
    with open_raster(header.path) as dataset:
        for _window, _pixels in _strips(header, dataset):
            pass


def _strips(header: ImageHeader, dataset) -> Iterator[tuple[Window, np.ndarray]]:
    """Every band of the image, a strip of READ_CHECK_ROWS rows at a time: each block decoded once."""
    bands = list(range(1, header.count + 1))
    for top in range(0, header.height, READ_CHECK_ROWS):
        window = Window(0, top, header.width, min(READ_CHECK_ROWS, header.height - top))
        yield window, read_window(dataset, header.path, bands, window)


def keep_scene_image(header: ImageHeader, folder: Path, scene_id: str, images: KeptImage) -> str:
    """Keep the image in `folder`, every block of it decoded on the way (a corrupt file fails, naming it); returns
    the name. JPEG and PNG keep their own bytes, and so does a GeoTIFF when `images` (tile.images) keeps sources;
    anything else becomes its pixels in a tiled GeoTIFF, compressed as `images` says."""
    if not header.through_gdal:
        with open_image(header.path) as image:
            suffix = IMAGE_FORMATS.get(image.format or "")
        if suffix is None:
            raise PipelineError(f"{header.path}: only JPEG and PNG images are read by Pillow")
        _decodes_whole(header)
        copyfile(header.path, folder / f"{scene_id}{suffix}")
        return f"{scene_id}{suffix}"
    with open_raster(header.path) as dataset:
        driver = dataset.driver
    name = f"{scene_id}.tif"
    if driver in KEPT_RASTER_DRIVERS and images.keeps_source:
        _decodes_whole(header)
        copyfile(header.path, folder / name)
    else:
        copy_pixels(header, folder / name, images.compression)
    return name


def copy_pixels(header: ImageHeader, target: Path, compression: dict) -> None:
    """The image's pixels and georeference into a tiled GeoTIFF (COPY_OPTIONS, `compression`), a strip at a time:
    bounded memory, and 16x faster than GDAL's CreateCopy here (1.2 against 19.7 s for a 5,000 px 4-band scene)."""
    with open_raster(header.path) as source:
        profile = {
            "height": header.height,
            "width": header.width,
            "count": header.count,
            "dtype": header.dtype,
            "crs": source.crs,
            "transform": source.transform,
            "nodata": source.nodata,
            **COPY_OPTIONS,
            **compression,
        }
        try:
            with rasterio.open(target, "w", **profile) as copy:
                if header.alpha is not None:  # encode reads the copy's alpha as the image's no-data mask
                    copy.colorinterp = source.colorinterp
                for window, pixels in _strips(header, source):
                    copy.write(pixels, window=window)
        except RASTER_ERRORS as error:
            raise raster_error(header.path, error, "cannot copy into a GeoTIFF") from None


def keep_scene_labels(labels: Path, folder: Path, scene_id: str) -> str:
    """Copy the labels file (a shapefile with its sidecar files) into `folder` as <id><suffix>; returns the name."""
    suffix = labels.suffix.lower()
    parts = [labels] if suffix != ".shp" else [labels.with_suffix(part) for part in SHAPEFILE_PARTS]
    for part in parts:
        if part.is_file():
            copyfile(part, folder / f"{scene_id}{part.suffix.lower()}")
    return f"{scene_id}{suffix}"


def tile_scenes(
    scenes: list[SceneFiles], out_dir: Path, size: int, stride: int, settings: SceneSettings, progress: bool = True
) -> int:
    """Check every scene, keep its image and labels in out_dir, and write the tile index and scenes.json.

    All scenes are checked first (headers and labels: seconds), then each image is decoded a strip
    at a time and copied, so peak memory is that of a strip whatever the scenes' sizes.
    """
    headers = [check_scene(scene, size, settings) for scene in scenes]
    first = headers[0]
    for header in headers[1:]:
        if (header.count, header.dtype) != (first.count, first.dtype):
            raise PipelineError(
                f"{header.path}: {header.count} bands of {header.dtype}, but {first.path.name} has "
                f"{first.count} of {first.dtype}; a dataset's scenes need the same bands and type"
            )
    store = TileStore(out_dir)
    store.images_dir.mkdir(parents=True)
    store.labels_dir.mkdir()
    records: list[TileRecord] = []
    kept = []
    for scene, header in tqdm(list(zip(scenes, headers)), desc="tile", unit="scene", disable=not progress):
        image_name = keep_scene_image(header, store.images_dir, scene.scene_id, settings.images)
        labels_name = keep_scene_labels(scene.labels, store.labels_dir, scene.scene_id)
        kept.append({"scene_id": scene.scene_id, "image": image_name, "labels": labels_name})
        records.extend(
            TileRecord(tile_name(scene.scene_id, y, x), scene.scene_id, y, x, size, header.height, header.width)
            for y, x in tile_grid(header.height, header.width, size, stride)
        )
    write_index(store.index_path, records)
    record = {
        "bands": list(settings.bands),
        "dtype": first.dtype,
        "label_attribute": settings.label_attribute,
        "scenes": kept,
    }
    store.scenes_path.write_text(json.dumps(record, indent=1) + "\n")
    return len(records)


# --- data.layout: how a dataset is found under data.raw, and tiled -----------------------------------------


@dataclass(frozen=True)
class FoundDataset:
    """A dataset found under data.raw: its class table read and its files listed and checked as far as seconds
    allow (a bad table or a missing label fails before anything is written), ready to be tiled."""

    table: ClassTable
    count: int
    unit: str  # what `count` counts: images (DeepGlobe's pairs) or scenes
    tile: Callable[[Path], int]  # writes the tiles into a new folder; returns how many


Layout = Callable[[Path, DataParams, TileParams], FoundDataset]


def _deepglobe(root: Path, data_params: DataParams, tile_params: TileParams) -> FoundDataset:
    """DeepGlobe's layout (rawdata): JPEG images and colour PNG masks, RGB only."""
    if data_params.bands != RGB_BANDS:
        raise PipelineError(f"params: data.bands {list(data_params.bands)}: DeepGlobe's layout is RGB, [1, 2, 3]")
    table = read_class_table(root)
    pairs = find_pairs(root)
    size, stride = tile_params.size, tile_params.stride
    return FoundDataset(table, len(pairs), "images", lambda out: tile_dataset(pairs, out, size, stride))


def _scene_layout(layout: str, finder: SceneFinder) -> Layout:
    """A layout of scenes: `finder` lists them, the class table is data.raw's or the layout's preset."""

    def found(root: Path, data_params: DataParams, tile_params: TileParams) -> FoundDataset:
        table = scene_class_table(root, layout)
        scenes = find_scenes(root, layout, finder)
        images = choose("tile.images", tile_params.images, KEPT_IMAGES)
        settings = SceneSettings(table, data_params.bands, data_params.label_attribute, images)
        size, stride = tile_params.size, tile_params.stride
        return FoundDataset(table, len(scenes), "scenes", lambda out: tile_scenes(scenes, out, size, stride, settings))

    return found


SCENE_FINDERS: dict[str, SceneFinder] = {
    "scenes": _from_manifest,
    "landcoverai": _landcoverai,
    "openearthmap": _openearthmap,
    "loveda": _loveda,
}
# data.layout: each name's way of finding a dataset under data.raw
LAYOUTS: dict[str, Layout] = {
    "deepglobe": _deepglobe,
    **{layout: _scene_layout(layout, finder) for layout, finder in SCENE_FINDERS.items()},
}


def find_dataset(root: str | Path, data_params: DataParams, tile_params: TileParams) -> FoundDataset:
    """The dataset under `root` in data.layout, found and checked; data.layout and tile.images are checked against
    their registries first, before any file is read."""
    layout = choose("data.layout", data_params.layout, LAYOUTS)
    choose("tile.images", tile_params.images, KEPT_IMAGES)
    return layout(Path(root), data_params, tile_params)
