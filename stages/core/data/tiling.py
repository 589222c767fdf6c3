"""The tile stage's work: check each raw image and its labels, keep them whole, and index their tiles.

Tiles are windows (see tilestore): the stage copies each source file as it is and writes the
window of every tile to the index. Bytes are copied, not re-encoded, so a tile's pixels are those
of decoding the source image, and the tiles take no more disk than the raw data. Sources the
readers would have to convert with a warning (a 4th band) are written once as RGB PNGs instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from shutil import copyfile

import rasterio.shutil
from PIL import Image
from rasterio.windows import Window
from tqdm import tqdm

from stages.core.data.geometry import tile_grid
from stages.core.data.labels import ImageHeader, check_bands, open_labels, read_image_header
from stages.core.data.palette import ClassTable
from stages.core.data.rawdata import RawPair
from stages.core.data.scenes import SceneFiles
from stages.core.data.tilestore import TileRecord, TileStore, tile_name, write_index
from stages.core.io.errors import PipelineError
from stages.core.io.imageio import EXTRA_BAND_MODES, decode, open_image, save_png
from stages.core.io.rasters import RASTER_ERRORS, open_raster, raster_error, read_window

# Formats kept byte for byte, and the suffix each is stored under (TileStore reads these names).
IMAGE_FORMATS = {"JPEG": ".jpg", "PNG": ".png"}
MASK_FORMATS = {"PNG": ".png"}


def keep(source: Path, image: Image.Image, folder: Path, image_id: str, formats: dict[str, str]) -> None:
    """Write folder/<id><suffix>: the source's bytes where its format is kept, else a lossless RGB PNG."""
    suffix = formats.get(image.format or "")
    if suffix is not None and image.mode not in EXTRA_BAND_MODES:
        copyfile(source, folder / f"{image_id}{suffix}")
    else:
        save_png(folder / f"{image_id}.png", image.convert("RGB"))


def tile_pair(pair: RawPair, size: int, stride: int, store: TileStore) -> list[TileRecord]:
    """Check one image and its colour mask, keep both whole in `store`, and return their tiles' windows.

    Sizes are checked from the headers before anything is decoded; both files are then decoded
    in full, so a truncated or corrupt file fails here, naming it, and not in the middle of training.
    """
    with open_image(pair.image, "image") as image, open_image(pair.mask, "mask") as mask:
        width, height = image.size
        if mask.size != image.size:
            raise PipelineError(
                f"{pair.mask}: mask is {mask.width}x{mask.height} but its image {pair.image.name} is {width}x{height}"
            )
        if size > min(height, width):
            raise PipelineError(f"params: tile.size ({size}) is larger than image {pair.image} ({width}x{height})")
        keep(pair.image, decode(pair.image, image), store.images_dir, pair.image_id, IMAGE_FORMATS)
        keep(pair.mask, decode(pair.mask, mask), store.colour_masks_dir, pair.image_id, MASK_FORMATS)
    return [
        TileRecord(tile_name(pair.image_id, y, x), pair.image_id, y, x, size, height, width)
        for y, x in tile_grid(height, width, size, stride)
    ]


def tile_dataset(pairs: list[RawPair], out_dir: Path, size: int, stride: int, progress: bool = True) -> int:
    """Keep every pair in out_dir (a TileStore's tiles folder) and write the tile index; returns the tile count.

    Streams: one image and its mask are in memory at a time, so peak memory does not grow with
    the number of images.
    """
    store = TileStore(out_dir)
    store.images_dir.mkdir(parents=True)
    store.colour_masks_dir.mkdir()
    records: list[TileRecord] = []
    for pair in tqdm(pairs, desc="tile", unit="image", disable=not progress):
        records.extend(tile_pair(pair, size, stride, store))
    write_index(store.index_path, records)
    return len(records)


# --- scenes (data.layout other than deepglobe) -----------------------------------------------------

# Raster formats whose files are kept byte for byte; any other raster GDAL reads is copied into a
# tiled GeoTIFF, pixels unchanged.
KEPT_RASTER_DRIVERS = {"GTiff": ".tif", "COG": ".tif"}
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
READ_CHECK_ROWS = 512  # rows decoded at a time by the check that every block of an image decodes


@dataclass(frozen=True)
class SceneSettings:
    """What the tile stage needs to know about a dataset of scenes, from its params."""

    table: ClassTable
    bands: tuple[int, ...]
    label_attribute: str


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
    bands = list(range(1, header.count + 1))
    with open_raster(header.path) as dataset:
        for top in range(0, header.height, READ_CHECK_ROWS):
            read_window(
                dataset, header.path, bands, Window(0, top, header.width, min(READ_CHECK_ROWS, header.height - top))
            )


def keep_scene_image(header: ImageHeader, folder: Path, scene_id: str) -> str:
    """Keep the image in `folder`: its own bytes (GeoTIFF, JPEG, PNG) or a lossless tiled GeoTIFF; returns the name."""
    if not header.through_gdal:
        with open_image(header.path) as image:
            suffix = IMAGE_FORMATS.get(image.format or "")
        if suffix is None:
            raise PipelineError(f"{header.path}: only JPEG and PNG images are read by Pillow")
        copyfile(header.path, folder / f"{scene_id}{suffix}")
        return f"{scene_id}{suffix}"
    with open_raster(header.path) as dataset:
        driver = dataset.driver
    name = f"{scene_id}.tif"
    if driver in KEPT_RASTER_DRIVERS:
        copyfile(header.path, folder / name)
    else:
        try:
            rasterio.shutil.copy(header.path, folder / name, driver="GTiff", tiled=True, compress="deflate")
        except RASTER_ERRORS as error:
            raise raster_error(header.path, error, "cannot copy into a GeoTIFF") from None
    return name


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
        _decodes_whole(header)
        image_name = keep_scene_image(header, store.images_dir, scene.scene_id)
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
