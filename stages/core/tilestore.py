"""The prepared data on disk: the tile index, where each tile's files lie, and whole images read back.

The tile stage writes `tiles/images/<tile>.png` (RGB), `tiles/masks/<tile>.png` (colour masks as
stored), `tiles/index.csv` and `tiles/class_dict.csv`; the encode stage writes
`encoded/masks/<tile>.png` (class indices) and `encoded/pixels.csv` (class pixels per image).
Everything downstream reads them through `TileStore`.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.core.errors import PipelineError
from stages.core.geometry import stitch
from stages.core.imageio import read_index_png, read_rgb
from stages.core.palette import ClassTable

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
        return [TileRecord(row["tile"], row["image_id"], int(row["y"]), int(row["x"]), int(row["size"]),
                           int(row["image_height"]), int(row["image_width"]))
                for row in csv.DictReader(handle)]


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


def whole_images(records: Iterable[TileRecord], read_tile: Callable[[TileRecord], np.ndarray]
                 ) -> Iterator[tuple[str, np.ndarray]]:
    """(image id, whole array) for every image of `records`, stitched from its tiles, one image at a time.

    `read_tile` says which layer: `store.read_image`, `store.read_colour_mask` or `store.read_class_mask`.
    """
    for image_id, tiles in group_by_image(records).items():
        try:
            whole = stitch(((record.y, record.x, read_tile(record)) for record in tiles),
                           tiles[0].image_height, tiles[0].image_width)
        except ValueError as error:  # a tile index with rows missing, e.g. edited by hand
            raise PipelineError(f"image {image_id}: {error}") from None
        yield image_id, whole


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

    def read_image(self, record: TileRecord) -> np.ndarray:
        return read_rgb(self.images_dir / f"{record.tile}.png")

    def read_colour_mask(self, record: TileRecord) -> np.ndarray:
        return read_rgb(self.colour_masks_dir / f"{record.tile}.png")

    def read_class_mask(self, record: TileRecord) -> np.ndarray:
        return read_index_png(self.class_masks_dir / f"{record.tile}.png")
