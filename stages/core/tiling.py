"""The tile stage's work: cut each raw image and its colour mask into PNG tiles, and index them."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from stages.core.errors import PipelineError
from stages.core.geometry import tile_grid
from stages.core.imageio import decode, open_image, save_png
from stages.core.rawdata import RawPair
from stages.core.tilestore import TileRecord, TileStore, tile_name, write_index


def tile_pair(pair: RawPair, size: int, stride: int, store: TileStore) -> list[TileRecord]:
    """Cut one image and its colour mask into tiles, written as PNGs (lossless: no second JPEG loss).

    Sizes are checked from the headers before anything is decoded, and tiles are cut from the
    decoded images as they are: one decoded copy of each, however large, and no full-size array.
    """
    with open_image(pair.image, "image") as image, open_image(pair.mask, "mask") as mask:
        width, height = image.size
        if mask.size != image.size:
            raise PipelineError(f"{pair.mask}: mask is {mask.width}x{mask.height} but its image "
                                f"{pair.image.name} is {width}x{height}")
        if size > min(height, width):
            raise PipelineError(f"params: tile.size ({size}) is larger than image {pair.image} ({width}x{height})")
        decode(pair.image, image)
        decode(pair.mask, mask)
        records = []
        for y, x in tile_grid(height, width, size, stride):
            name = tile_name(pair.image_id, y, x)
            box = (x, y, x + size, y + size)
            for source, folder in ((image, store.images_dir), (mask, store.colour_masks_dir)):
                tile = source.crop(box)
                save_png(folder / f"{name}.png", tile if tile.mode == "RGB" else tile.convert("RGB"))
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
