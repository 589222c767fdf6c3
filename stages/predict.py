"""predict: whole-image class maps by sliding window, for the test split or for any images.

In the pipeline:  python -m stages.predict --checkpoint models/best.pt --tiles data/tiles \\
                      --split data/splits/test.csv --output data/predictions
On new imagery:   python -m stages.predict --checkpoint models/best.pt --input a.jpg b.jpg --output out/
Each image gets <id>.png (class indices) and <id>_colour.png (the class colours).
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stages.core.checkpoint import load_trained_model
from stages.core.devices import choose_device
from stages.core.errors import run_stage
from stages.core.imageio import read_rgb, write_png
from stages.core.inference import ProbabilityFn, sliding_window_probabilities, trained_model_probabilities
from stages.core.naming import image_id_of
from stages.core.outputs import atomic_dir, atomic_file
from stages.core.palette import ClassTable, index_to_colour
from stages.core.params import DEFAULT_PARAMS, PredictParams, load_params, read_section
from stages.core.tilestore import TileStore, group_by_image, read_index, whole_images


def file_images(paths: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    for path in paths:
        yield image_id_of(path), read_rgb(path)


def predict_into(out_dir: Path, images: Iterator[tuple[str, np.ndarray]], total: int, probability_fn: ProbabilityFn,
                 table: ClassTable, predict_params: PredictParams) -> None:
    """Write <id>.png and <id>_colour.png for each (id, image), each file atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for image_id, image in tqdm(images, total=total, desc="predict", unit="image"):
        probs = sliding_window_probabilities(probability_fn, image, len(table), predict_params.window,
                                             predict_params.overlap, predict_params.batch_size)
        index = probs.argmax(axis=0).astype(np.uint8)
        for name, array in ((f"{image_id}.png", index), (f"{image_id}_colour.png", index_to_colour(index, table))):
            with atomic_file(out_dir / name) as staging:
                write_png(staging, array)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--input", type=Path, nargs="+", help="image files to predict")
    parser.add_argument("--tiles", type=Path, help="tile stage output (with --split)")
    parser.add_argument("--split", type=Path, help="a split's tile list, e.g. data/splits/test.csv")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS)
    args = parser.parse_args(argv)
    if (args.input is None) == (args.split is None or args.tiles is None):
        parser.error("give either --input FILES or both --tiles and --split")
    predict_params = read_section(load_params(args.params), "predict", PredictParams)

    trained = load_trained_model(args.checkpoint)
    device = choose_device("auto")
    probability_fn = trained_model_probabilities(trained, device, predict_params.bf16, predict_params.tta,
                                                 compile=predict_params.compile)
    if args.input:
        count = len(args.input)
        predict_into(args.output, file_images(args.input), count, probability_fn, trained.table, predict_params)
    else:
        records = read_index(args.split)
        count = len(group_by_image(records))
        with atomic_dir(args.output) as staging:  # the pipeline's output appears whole or not at all
            predict_into(staging, whole_images(records, TileStore(args.tiles).whole_image), count, probability_fn,
                         trained.table, predict_params)
    print(f"predict: {count} images -> {args.output} (window {predict_params.window}, overlap "
          f"{predict_params.overlap}, tta {'on' if predict_params.tta else 'off'}, "
          f"{'compiled, ' if predict_params.compile else ''}{device})")


if __name__ == "__main__":
    run_stage(main)
