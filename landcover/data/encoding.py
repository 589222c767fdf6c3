"""The encode stage's work: labels (colour masks, label rasters, polygons) -> class-index masks, and per-image class
pixel counts."""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from landcover.data.palette import IGNORE_INDEX, ClassTable, colour_to_index
from landcover.data.tilestore import TileRecord, TileStore, group_by_image, whole_images
from landcover.io.imageio import write_png

IGNORED_COLUMN = "ignored"


@dataclass(frozen=True)
class ImagePixels:
    """Pixels of one whole image per class, plus those whose colour is in no class."""

    image_id: str
    per_class: tuple[int, ...]
    ignored: int


def encode_images(
    records: list[TileRecord], store: TileStore, table: ClassTable, progress: bool = True
) -> list[ImagePixels]:
    """Write each image's class-index mask (uint8, IGNORE_INDEX for unknown colours) into `store`'s encoded folder.

    Whole images, like the tile stage's colour masks: the tiles are windows of them, and every
    pixel is counted once however the tiles overlap.
    """
    out_dir = store.class_masks_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = []
    for image_id, colour_mask in tqdm(
        whole_images(records, store.whole_colour_mask),
        total=len(group_by_image(records)),
        desc="encode",
        unit="image",
        disable=not progress,
    ):
        index, _ = colour_to_index(colour_mask, table)
        write_png(store.class_mask_path(image_id), index)
        histogram = np.bincount(index.ravel(), minlength=256)
        counts.append(
            ImagePixels(image_id, tuple(int(n) for n in histogram[: len(table)]), int(histogram[IGNORE_INDEX]))
        )
    return counts


def write_pixel_counts(path: Path, counts: list[ImagePixels], table: ClassTable) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image_id", *table.names, IGNORED_COLUMN])
        for image in counts:
            writer.writerow([image.image_id, *image.per_class, image.ignored])


def read_pixel_counts(path: Path, table: ClassTable) -> list[ImagePixels]:
    with open(path, newline="") as handle:
        return [
            ImagePixels(row["image_id"], tuple(int(row[name]) for name in table.names), int(row[IGNORED_COLUMN]))
            for row in csv.DictReader(handle)
        ]


def encode_report(counts: list[ImagePixels], unlabelled: int | None = None) -> dict[str, int | float]:
    """What metrics/encode.json holds: how many mask pixels had a colour (or label value) in no class, and for
    scenes how many of those had no label at all (outside the labels, no polygon, nodata)."""
    total = sum(sum(image.per_class) + image.ignored for image in counts)
    ignored = sum(image.ignored for image in counts)
    report: dict[str, int | float] = {
        "images": len(counts),
        "pixels": total,
        "ignored_pixels": ignored,
        "ignored_fraction": round(ignored / total, 8) if total else 0.0,
        "images_with_ignored_pixels": sum(1 for image in counts if image.ignored),
    }
    if unlabelled is not None:
        report["unlabelled_pixels"] = unlabelled
    return report


# Class masks of scenes: tiled GeoTIFFs on the image's grid, read a tile's window at a time by training.
CLASS_MASK_BLOCK = 256
CLASS_MASK_PROFILE = {
    "driver": "GTiff",
    "count": 1,
    "dtype": "uint8",
    "nodata": IGNORE_INDEX,
    "tiled": True,
    "blockxsize": CLASS_MASK_BLOCK,
    "blockysize": CLASS_MASK_BLOCK,
    "compress": "deflate",
}


def encode_scene(store: TileStore, scene: dict, label_attribute: str, table: ClassTable) -> tuple[ImagePixels, int]:
    """Write one scene's class-index GeoTIFF from its labels, a strip of rows at a time.

    Returns its class pixel counts (ignored: off-table and unlabelled pixels together) and its unlabelled pixels.
    """
    # GDAL is imported here, not with the module: DeepGlobe's colour masks (and a machine without GDAL) need none
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.windows import Window

    from landcover.data.labels import open_labels, read_image_header

    header = read_image_header(store.images_dir / scene["image"])
    histogram = np.zeros(256, dtype=np.int64)
    off_table = unlabelled = 0
    profile = {**CLASS_MASK_PROFILE, "width": header.width, "height": header.height}
    if header.georeferenced:
        profile.update(crs=header.crs, transform=header.transform)
    out_path = store.class_masks_dir / f"{scene['scene_id']}.tif"
    with open_labels(store.labels_dir / scene["labels"], header, table, label_attribute) as labels:
        with warnings.catch_warnings(), rasterio.open(out_path, "w", **profile) as out:
            # a JPEG or PNG scene has no georeference, and so has its class mask: nothing to warn about
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            for top in range(0, header.height, CLASS_MASK_BLOCK):
                window = Window(0, top, header.width, min(CLASS_MASK_BLOCK, header.height - top))
                index, strip_off_table, strip_unlabelled = labels.read(window)
                out.write(index, 1, window=window)
                histogram += np.bincount(index.ravel(), minlength=256)
                off_table += strip_off_table
                unlabelled += strip_unlabelled
    counts = ImagePixels(
        scene["scene_id"], tuple(int(n) for n in histogram[: len(table)]), int(histogram[IGNORE_INDEX])
    )
    return counts, unlabelled


def encode_scenes(store: TileStore, table: ClassTable, progress: bool = True) -> tuple[list[ImagePixels], int]:
    """Every scene's class-index GeoTIFF into `store`'s encoded folder; returns the counts and all unlabelled pixels."""
    from landcover.io.rasters import gdal_env

    record = store.scenes
    assert record is not None, "encode_scenes needs a tile store of scenes"
    store.class_masks_dir.mkdir(parents=True, exist_ok=True)
    counts, unlabelled = [], 0
    with gdal_env():
        for scene in tqdm(record["scenes"], desc="encode", unit="scene", disable=not progress):
            pixels, scene_unlabelled = encode_scene(store, scene, record["label_attribute"], table)
            counts.append(pixels)
            unlabelled += scene_unlabelled
    return counts, unlabelled
