"""split: assign whole images (never single tiles), or blocks of scenes, to train, val and test."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from landcover.data.encoding import read_pixel_counts
from landcover.data.scaling import BAND_STATISTICS, band_statistics, write_band_statistics
from landcover.data.splitting import (
    block_class_distribution,
    class_distribution,
    split_blocks,
    split_by_lists,
    split_by_ratios,
    write_block_splits,
    write_splits,
)
from landcover.data.tilestore import TileRecord, TileStore, group_by_image
from landcover.io.errors import run_stage
from landcover.io.outputs import atomic_dir, write_json
from landcover.io.params import DEFAULT_PARAMS, SPLIT_NAMES, SplitParams, load_params, read_section

STATISTICS_TILES = 512  # training tiles (evenly spaced) whose pixels give a scene dataset's band statistics


def write_training_statistics(store: TileStore, train_tiles: list[TileRecord], out_dir: Path) -> None:
    """Each band's mean and std over (up to STATISTICS_TILES evenly spaced) training tiles of a scene dataset, for
    data.scaling statistics (and auto on types other than uint8): measured once, here, on the training split only,
    a tile at a time."""
    if store.scenes is None or not train_tiles:
        return  # DeepGlobe's uint8 RGB takes ImageNet's numbers
    picked = train_tiles[:: max(1, len(train_tiles) // STATISTICS_TILES)]
    statistics = band_statistics(tile_images(store, picked))
    write_band_statistics(out_dir / BAND_STATISTICS, store.bands, store.dtype, statistics)


def tile_images(store: TileStore, tiles: list[TileRecord]) -> Iterator[np.ndarray]:
    """The images of `tiles`, one at a time, each scene opened once."""
    for image_tiles in group_by_image(tiles).values():
        windows = store.windows(image_tiles[0], masks=False)
        try:
            yield from (windows.image(tile) for tile in image_tiles)
        finally:
            windows.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tiles", type=Path, help="output of the tile stage")
    parser.add_argument("encoded", type=Path, help="output of the encode stage")
    parser.add_argument("out", type=Path, help="splits directory to write (replaced if present)")
    parser.add_argument("--distribution", type=Path, default=Path("metrics/class_distribution.json"))
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    split_params = read_section(load_params(args.params), "split", SplitParams)

    store = TileStore(args.tiles, args.encoded)
    table = store.class_table()
    records = store.index()
    if split_params.method == "blocks":
        tiles, blocks = split_blocks(
            records, split_params.ratios, split_params.seed, split_params.block_size, split_params.buffer
        )
        with atomic_dir(args.out) as staging:
            write_block_splits(staging, tiles, blocks)
            write_training_statistics(store, tiles["train"], staging)
        write_json(args.distribution, block_class_distribution(tiles, blocks, store.region_class_mask, table))
        left_out = len(records) - sum(len(split) for split in tiles.values())
        print(
            "split: "
            + ", ".join(f"{name} {sum(split == name for _, split in blocks)} blocks" for name in SPLIT_NAMES)
            + f"; {left_out} tiles reach blocks of two splits and are left out"
        )
        return
    counts = read_pixel_counts(store.pixel_counts_path, table)
    image_ids = [image.image_id for image in counts]
    if split_params.method == "lists":
        splits = split_by_lists(image_ids, Path(split_params.lists))
        unlisted = len(image_ids) - sum(len(ids) for ids in splits.values())
        if unlisted:
            print(f"split: {unlisted} images of the dataset are in none of the lists in {split_params.lists}, left out")
    else:
        splits = split_by_ratios(image_ids, split_params.ratios, split_params.seed)

    with atomic_dir(args.out) as staging:
        write_splits(staging, splits, records)
        train_ids = set(splits["train"])
        write_training_statistics(store, [record for record in records if record.image_id in train_ids], staging)
    write_json(args.distribution, class_distribution(splits, counts, records, table))
    print("split: " + ", ".join(f"{name} {len(splits[name])} images" for name in SPLIT_NAMES))


if __name__ == "__main__":
    run_stage(main)
