"""Cutting images into tiles that cover every pixel, and stitching them back.

Where the tile size does not divide the image (2448 is not a multiple of 256 or 512), the last
row and column of tiles are aligned to the image's far edge, so they overlap their neighbours
instead of dropping a margin or padding with invented pixels.
"""
from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stages.core.errors import PipelineError
from stages.core.imageio import read_rgb, write_png
from stages.core.rawdata import RawPair

INDEX_COLUMNS = ("tile", "image_id", "y", "x", "size", "image_height", "image_width")


def tile_origins(length: int, size: int, stride: int) -> list[int]:
    """Start offsets along one axis: every `stride`, plus a last tile flush with the far edge."""
    if not 1 <= stride <= size <= length:
        raise ValueError(f"need 1 <= stride ({stride}) <= size ({size}) <= length ({length})")
    origins = list(range(0, length - size + 1, stride))
    if origins[-1] + size < length:
        origins.append(length - size)
    return origins


def tile_grid(height: int, width: int, size: int, stride: int) -> list[tuple[int, int]]:
    """(y, x) of every tile's top-left corner, row by row."""
    return [(y, x) for y in tile_origins(height, size, stride) for x in tile_origins(width, size, stride)]


def tile_name(image_id: str, y: int, x: int) -> str:
    """A tile's file stem: its image and its place there, e.g. `119_y00256_x02192`."""
    return f"{image_id}_y{y:05d}_x{x:05d}"


def cut(array: np.ndarray, size: int, stride: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (y, x, view) for every tile of an HxW[xC] array; views, not copies."""
    for y, x in tile_grid(array.shape[0], array.shape[1], size, stride):
        yield y, x, array[y:y + size, x:x + size]


def stitch(tiles: Iterable[tuple[int, int, np.ndarray]], height: int, width: int) -> np.ndarray:
    """Reassemble tiles at their (y, x) into an HxW[xC] array; overlaps hold the same pixels."""
    canvas: np.ndarray | None = None
    for y, x, tile in tiles:
        if canvas is None:
            canvas = np.zeros((height, width, *tile.shape[2:]), dtype=tile.dtype)
        canvas[y:y + tile.shape[0], x:x + tile.shape[1]] = tile
    if canvas is None:
        raise ValueError("no tiles to stitch")
    return canvas


@dataclass(frozen=True)
class TileRecord:
    tile: str
    image_id: str
    y: int
    x: int
    size: int
    image_height: int
    image_width: int


def read_index(path: str | Path) -> list[TileRecord]:
    """The tile index written by the tile stage, in its order (by image, then row, then column)."""
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
    groups: dict[str, list[TileRecord]] = {}
    for record in records:
        groups.setdefault(record.image_id, []).append(record)
    return groups


def stitch_files(records: list[TileRecord], folder: Path, read: Callable[[Path], np.ndarray]) -> np.ndarray:
    """One whole image, stitched from its tiles `folder/<tile>.png` (read with `read`)."""
    return stitch(((r.y, r.x, read(folder / f"{r.tile}.png")) for r in records),
                  records[0].image_height, records[0].image_width)


def tile_pair(pair: RawPair, size: int, stride: int, images_dir: Path, masks_dir: Path) -> list[TileRecord]:
    """Cut one image and its colour mask into tiles, written as PNGs (lossless: no second JPEG loss)."""
    image = read_rgb(pair.image)
    mask = read_rgb(pair.mask)
    height, width = image.shape[:2]
    if mask.shape[:2] != (height, width):
        raise PipelineError(f"{pair.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                            f"{pair.image.name} is {width}x{height}")
    if size > min(height, width):
        raise PipelineError(f"params: tile.size ({size}) is larger than image {pair.image} ({width}x{height})")
    records = []
    for (y, x, image_tile), (_, _, mask_tile) in zip(cut(image, size, stride), cut(mask, size, stride)):
        name = tile_name(pair.image_id, y, x)
        write_png(images_dir / f"{name}.png", image_tile)
        write_png(masks_dir / f"{name}.png", mask_tile)
        records.append(TileRecord(name, pair.image_id, y, x, size, height, width))
    return records


def tile_dataset(pairs: list[RawPair], out_dir: Path, size: int, stride: int, progress: bool = True) -> int:
    """Tile every pair into out_dir/{images,masks}/ and write out_dir/index.csv; returns the tile count.

    Streams: one image and its mask are in memory at a time, so peak memory does not grow with
    the number of images.
    """
    images_dir, masks_dir = out_dir / "images", out_dir / "masks"
    images_dir.mkdir(parents=True)
    masks_dir.mkdir()
    records: list[TileRecord] = []
    for pair in tqdm(pairs, desc="tile", unit="image", disable=not progress):
        records.extend(tile_pair(pair, size, stride, images_dir, masks_dir))
    write_index(out_dir / "index.csv", records)
    return len(records)
