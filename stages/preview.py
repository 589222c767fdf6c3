"""preview: pictures of the prepared data in plots/data (an image with its mask, the augmentations)."""
from __future__ import annotations

import argparse
from pathlib import Path

from stages.core.augment import training_augmentation
from stages.core.errors import run_stage
from stages.core.imageio import read_index_png
from stages.core.imageio import read_rgb
from stages.core.outputs import atomic_dir
from stages.core.palette import ClassTable
from stages.core.params import DEFAULT_PARAMS, AugmentParams, load_params, read_section
from stages.core.plotting import plot_augmentations, plot_sample
from stages.core.tiling import group_by_image, read_index, stitch_files

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
    augment = read_section(load_params(args.params), "augment", AugmentParams)

    table = ClassTable.from_csv(args.tiles / "class_dict.csv")
    train_tiles = read_index(args.splits / "train.csv")
    image_id, tiles = next(iter(group_by_image(train_tiles).items()))
    height, width = tiles[0].image_height, tiles[0].image_width
    picks = [train_tiles[i * len(train_tiles) // AUGMENTED_TILES]
             for i in range(min(AUGMENTED_TILES, len(train_tiles)))]
    examples = [(t.tile, read_rgb(args.tiles / "images" / f"{t.tile}.png"),
                 read_index_png(args.encoded / "masks" / f"{t.tile}.png")) for t in picks]
    transform = training_augmentation(tiles[0].size, augment.scale_min, augment.colour_jitter, seed=PREVIEW_SEED)
    with atomic_dir(args.out) as staging:
        plot_sample(stitch_files(tiles, args.tiles / "images", read_rgb),
                    stitch_files(tiles, args.tiles / "masks", read_rgb),
                    stitch_files(tiles, args.encoded / "masks", read_index_png), table,
                    f"training image {image_id} ({width}x{height})", staging / "sample.png")
        plot_augmentations(examples, transform, table, AUGMENTED_VARIANTS, staging / "augmentations.png")
    print(f"preview: pictures of image {image_id} and {len(examples)} augmented tiles in {args.out}")


if __name__ == "__main__":
    run_stage(main)
