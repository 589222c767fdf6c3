"""The tile stage's work on DeepGlobe's layout: check each raw image and its colour mask, keep them whole, and index
their tiles (scenes: data/scenes.py).

Tiles are windows (see tilestore): the stage copies each source file as it is and writes the
window of every tile to the index. Bytes are copied, not re-encoded, so a tile's pixels are those
of decoding the source image, and the tiles take no more disk than the raw data. Sources the
readers would have to convert with a warning (a 4th band) are written once as RGB PNGs instead.
"""

from __future__ import annotations

from pathlib import Path
from shutil import copyfile

from PIL import Image
from tqdm import tqdm

from landcover.data.geometry import tile_grid
from landcover.data.rawdata import RawPair
from landcover.data.tilestore import TileRecord, TileStore, tile_name, write_index
from landcover.io.errors import PipelineError
from landcover.io.imageio import EXTRA_BAND_MODES, decode, open_image, save_png

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
