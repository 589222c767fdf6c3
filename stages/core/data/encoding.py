"""The encode stage's work: colour masks -> class-index masks, and per-image class pixel counts."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stages.core.data.palette import IGNORE_INDEX, ClassTable, colour_to_index
from stages.core.data.tilestore import TileRecord, TileStore, group_by_image, whole_images
from stages.core.io.imageio import write_png

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


def encode_report(counts: list[ImagePixels]) -> dict[str, int | float]:
    """What metrics/encode.json holds: how many mask pixels had a colour in no class."""
    total = sum(sum(image.per_class) + image.ignored for image in counts)
    ignored = sum(image.ignored for image in counts)
    return {
        "images": len(counts),
        "pixels": total,
        "ignored_pixels": ignored,
        "ignored_fraction": round(ignored / total, 8) if total else 0.0,
        "images_with_ignored_pixels": sum(1 for image in counts if image.ignored),
    }
