"""preview: pictures of the prepared data in plots/data (an image with its mask, the augmentations, and for a block
split the map of which block went where)."""

from __future__ import annotations

import argparse
from pathlib import Path

from landcover.data.augment import training_augmentation
from landcover.data.palette import index_to_colour
from landcover.data.tilestore import BLOCKS_FILE, TileStore, group_by_image, read_blocks, read_index
from landcover.evaluation.data_plots import plot_augmentations, plot_blocks, plot_sample
from landcover.io.errors import run_stage
from landcover.io.outputs import atomic_dir
from landcover.io.params import DEFAULT_PARAMS, AugmentParams, load_params, read_section

AUGMENTED_TILES = 3  # rows in the augmentation grid
AUGMENTED_VARIANTS = 4  # augmented draws shown beside each original
PREVIEW_SEED = 0  # the grid is an output tracked by DVC, so its random draws are fixed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tiles", type=Path, help="output of the tile stage")
    parser.add_argument("encoded", type=Path, help="output of the encode stage")
    parser.add_argument("splits", type=Path, help="output of the split stage")
    parser.add_argument("out", type=Path, help="directory for the pictures (replaced if present)")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    augment_params = read_section(load_params(args.params), "augment", AugmentParams)

    store = TileStore(args.tiles, args.encoded)
    table = store.class_table()
    train_tiles = read_index(args.splits / "train.csv")
    image_id, tiles = next(iter(group_by_image(train_tiles).items()))
    image, class_mask = store.whole_image(tiles[0]), store.whole_class_mask(tiles[0])
    # scenes keep their labels as they came (rasters, polygons): the class colours stand for them
    colour_mask = store.whole_colour_mask(tiles[0]) if store.scenes is None else index_to_colour(class_mask, table)
    picks = [
        train_tiles[i * len(train_tiles) // AUGMENTED_TILES] for i in range(min(AUGMENTED_TILES, len(train_tiles)))
    ]
    examples = [(tile.tile, store.read_image(tile), store.read_class_mask(tile)) for tile in picks]
    transform = training_augmentation(
        tiles[0].size,
        augment_params.scale_min,
        augment_params.colour_jitter,
        seed=PREVIEW_SEED,
        rgb=store.dtype == "uint8" and len(store.bands) == 3,
    )
    with atomic_dir(args.out) as staging:
        plot_sample(
            image,
            colour_mask,
            class_mask,
            table,
            f"training image {image_id} ({image.shape[1]}x{image.shape[0]})",
            staging / "sample.png",
        )
        plot_augmentations(examples, transform, table, AUGMENTED_VARIANTS, staging / "augmentations.png")
        if (args.splits / BLOCKS_FILE).is_file():
            plot_blocks(read_blocks(args.splits / BLOCKS_FILE), staging / "blocks.png")
    print(f"preview: pictures of image {image_id} and {len(examples)} augmented tiles in {args.out}")


if __name__ == "__main__":
    run_stage(main)
