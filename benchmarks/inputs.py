"""The speed benchmarks' inputs: full-size synthetic images and masks with their training tiles, made once
into a cache folder and shared by benchmarks.speed, benchmarks.blending and benchmarks.predict_settings.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.common import IMAGE_SIZE

if TYPE_CHECKING:
    from landcover.data.tilestore import TileStore

SAMPLE_SIZE = 256  # the training tile of every training and loading measurement


def prepare_inputs(cache: Path, count: int) -> tuple[Path, Path]:
    """`count` synthetic 2448 px pairs (a plain folder) and their 256 px tiles with encoded masks; made once."""
    from landcover.data.encoding import encode_images
    from landcover.data.palette import ClassTable
    from landcover.data.rawdata import find_pairs
    from landcover.data.tiling import tile_dataset
    from landcover.synthetic.dataset import write_sample

    root = cache / f"{IMAGE_SIZE}px-{count}"
    raw, tiles = root / "raw", root / f"tiles-{SAMPLE_SIZE}"
    done = tiles / "done-whole-images"  # the tiles' layout: whole images, encoded masks in tiles/encoded
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        generated = root / "generated"
        generated.mkdir(parents=True)
        print(f"making {count} synthetic {IMAGE_SIZE}x{IMAGE_SIZE} images and their tiles in {root} (once)")
        write_sample(
            generated,
            seed=2448,
            train_images=count,
            valid_images=0,
            test_images=0,
            image_size=IMAGE_SIZE,
            jpeg_quality=90,
        )
        (generated / "train").rename(raw)
        shutil.copy(generated / "class_dict.csv", raw / "class_dict.csv")
        shutil.rmtree(generated)
        tile_dataset(find_pairs(raw), tiles, SAMPLE_SIZE, SAMPLE_SIZE)
        encode_images(tile_store(tiles).index(), tile_store(tiles), ClassTable.deepglobe())
        done.touch()
    return raw, tiles


def image_mask_pairs(raw: Path) -> list[tuple[str, str]]:
    """The (image, mask) paths of the prepared images, in name order."""
    return [
        (str(path), str(path.with_name(path.name.replace("_sat.jpg", "_mask.png"))))
        for path in sorted(raw.glob("*_sat.jpg"))
    ]


def tile_store(tiles: Path) -> TileStore:
    """The prepared tiles and, in their folder, their encoded masks."""
    from landcover.data.tilestore import TileStore

    return TileStore(tiles, tiles / "encoded")


def read_tile_batch(tiles: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` 256 px tiles (uint8 NHWC) and their class-index masks."""
    from landcover.data.datasets import TileDataset

    store = tile_store(tiles)
    dataset = TileDataset(store.index()[:count], store)  # decodes each image once
    samples = [dataset[index] for index in range(len(dataset))]
    return np.stack([image.numpy() for image, _ in samples]), np.stack([mask.numpy() for _, mask in samples])
