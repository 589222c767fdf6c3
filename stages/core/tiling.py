"""The tile stage's work: cut each raw image and its colour mask into PNG tiles, and index them."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from stages.core.errors import PipelineError
from stages.core.geometry import cut
from stages.core.imageio import read_rgb, write_png
from stages.core.rawdata import RawPair
from stages.core.tilestore import TileRecord, TileStore, tile_name, write_index


def tile_pair(pair: RawPair, size: int, stride: int, store: TileStore) -> list[TileRecord]:
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
        write_png(store.images_dir / f"{name}.png", image_tile)
        write_png(store.colour_masks_dir / f"{name}.png", mask_tile)
        records.append(TileRecord(name, pair.image_id, y, x, size, height, width))
    return records


def tile_dataset(pairs: list[RawPair], out_dir: Path, size: int, stride: int, progress: bool = True) -> int:
    """Tile every pair into out_dir (a TileStore's tiles folder) and write its index; returns the tile count.

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
