"""The prepared data on disk: the tile index, each image's files, tiles cut from them, whole images read back.

A tile is a window of a whole image, not a file of its own. The tile stage writes
`tiles/images/<id>.jpg` (the source JPEG's own bytes; `.png` for sources it had to convert),
`tiles/masks/<id>.png` (the colour mask as stored), `tiles/index.csv` (every tile's window) and
`tiles/class_dict.csv`; the encode stage writes `encoded/masks/<id>.png` (class indices) and
`encoded/pixels.csv` (class pixels per image).

Why whole images: at DeepGlobe's real size, one file per tile is 300,000 files per layer at
128 px tiles, which DVC hashes, caches and transfers one by one, and a PNG of JPEG imagery is
4-5x the JPEG's bytes. Keeping the source's bytes makes the derived data about the raw data's
size, and a tile's pixels are exactly those of decoding the source image (docs/data.md,
"The real DeepGlobe data"). Everything downstream reads them through `TileStore`.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.core.data.palette import ClassTable
from stages.core.io.errors import PipelineError
from stages.core.io.imageio import read_index_png, read_rgb

# Image files keep their source's format: .jpg (bytes as downloaded) or .png (converted, lossless).
IMAGE_SUFFIXES = (".jpg", ".png")

INDEX_COLUMNS = ("tile", "image_id", "y", "x", "size", "image_height", "image_width")


@dataclass(frozen=True)
class TileRecord:
    """One row of the tile index: a tile's name and its place in its image."""

    tile: str
    image_id: str
    y: int
    x: int
    size: int
    image_height: int
    image_width: int


def tile_name(image_id: str, y: int, x: int) -> str:
    """A tile's file stem: its image and its place there, e.g. `119_y00256_x02192`."""
    return f"{image_id}_y{y:05d}_x{x:05d}"


def read_index(path: str | Path) -> list[TileRecord]:
    """A tile index (the tile stage's, or a split's), in its order: by image, then row, then column."""
    with open(path, newline="") as handle:
        return [
            TileRecord(
                row["tile"],
                row["image_id"],
                int(row["y"]),
                int(row["x"]),
                int(row["size"]),
                int(row["image_height"]),
                int(row["image_width"]),
            )
            for row in csv.DictReader(handle)
        ]


def write_index(path: str | Path, records: Iterable[TileRecord]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(INDEX_COLUMNS)
        for record in records:
            writer.writerow([getattr(record, column) for column in INDEX_COLUMNS])


def group_by_image(records: Iterable[TileRecord]) -> dict[str, list[TileRecord]]:
    """Tiles per image id, images in their first appearance's order."""
    groups: dict[str, list[TileRecord]] = {}
    for record in records:
        groups.setdefault(record.image_id, []).append(record)
    return groups


def whole_images(
    records: Iterable[TileRecord], read_whole: Callable[[TileRecord], np.ndarray]
) -> Iterator[tuple[str, np.ndarray]]:
    """(image id, whole array) for every image of `records`, one image at a time.

    `read_whole` says which layer: `store.whole_image`, `store.whole_colour_mask` or `store.whole_class_mask`.
    """
    for image_id, tiles in group_by_image(records).items():
        yield image_id, read_whole(tiles[0])


def crop(whole: np.ndarray, record: TileRecord) -> np.ndarray:
    """The tile `record` of its image's whole array (a copy: the whole may be cached and reused)."""
    return whole[record.y : record.y + record.size, record.x : record.x + record.size].copy()


@dataclass(frozen=True)
class TileStore:
    """The tile stage's output folder and, once encoded, the encode stage's."""

    tiles: Path
    encoded: Path | None = None

    @property
    def index_path(self) -> Path:
        return self.tiles / "index.csv"

    @property
    def class_table_path(self) -> Path:
        return self.tiles / "class_dict.csv"

    @property
    def images_dir(self) -> Path:
        return self.tiles / "images"

    @property
    def colour_masks_dir(self) -> Path:
        return self.tiles / "masks"

    @property
    def class_masks_dir(self) -> Path:
        return self._encoded() / "masks"

    @property
    def pixel_counts_path(self) -> Path:
        return self._encoded() / "pixels.csv"

    def _encoded(self) -> Path:
        if self.encoded is None:
            raise ValueError("this TileStore was given no encoded folder")
        return self.encoded

    def index(self) -> list[TileRecord]:
        return read_index(self.index_path)

    def class_table(self) -> ClassTable:
        return ClassTable.from_csv(self.class_table_path)

    def image_path(self, image_id: str) -> Path:
        """The image's file: `<id>.jpg` where the source's bytes were kept, else `<id>.png`."""
        for suffix in IMAGE_SUFFIXES:
            path = self.images_dir / f"{image_id}{suffix}"
            if path.is_file():
                return path
        return self.images_dir / f"{image_id}{IMAGE_SUFFIXES[0]}"  # read_rgb names it in its "file not found"

    def colour_mask_path(self, image_id: str) -> Path:
        return self.colour_masks_dir / f"{image_id}.png"

    def class_mask_path(self, image_id: str) -> Path:
        return self.class_masks_dir / f"{image_id}.png"

    # Whole images, given any tile of theirs: HxWx3 uint8 RGB (image, colour mask) or HxW uint8 class
    # indices. Sizes are checked against the index, so a file replaced by hand fails with its name.
    def whole_image(self, record: TileRecord) -> np.ndarray:
        path = self.image_path(record.image_id)
        return checked(read_rgb(path), record, path)

    def whole_colour_mask(self, record: TileRecord) -> np.ndarray:
        path = self.colour_mask_path(record.image_id)
        return checked(read_rgb(path, "mask"), record, path)

    def whole_class_mask(self, record: TileRecord) -> np.ndarray:
        path = self.class_mask_path(record.image_id)
        return checked(read_index_png(path), record, path)

    # Single tiles. Each decodes its whole image: to read many tiles, decode once and crop
    # (TileDataset keeps the images it is reading).
    def read_image(self, record: TileRecord) -> np.ndarray:
        return crop(self.whole_image(record), record)

    def read_colour_mask(self, record: TileRecord) -> np.ndarray:
        return crop(self.whole_colour_mask(record), record)

    def read_class_mask(self, record: TileRecord) -> np.ndarray:
        return crop(self.whole_class_mask(record), record)


def checked(whole: np.ndarray, record: TileRecord, path: Path) -> np.ndarray:
    """`whole` if it has the size the index gives its image, else a PipelineError naming `path`."""
    height, width = whole.shape[:2]
    if (height, width) != (record.image_height, record.image_width):
        raise PipelineError(
            f"{path}: is {width}x{height} but the tile index says image {record.image_id} is "
            f"{record.image_width}x{record.image_height}; rerun the tile stage"
        )
    return whole
