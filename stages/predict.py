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
import torch
from tqdm import tqdm

from stages.core.checkpoint import load_checkpoint, model_from_checkpoint
from stages.core.errors import run_stage
from stages.core.imageio import read_rgb, write_png
from stages.core.inference import model_probabilities, sliding_window_probabilities
from stages.core.model import bf16_supported, choose_device, compile_for_inference
from stages.core.outputs import atomic_dir, atomic_file
from stages.core.palette import colour_code
from stages.core.params import DEFAULT_PARAMS, PredictParams, load_params, read_section
from stages.core.rawdata import IMAGE_SUFFIX
from stages.core.tiling import group_by_image, read_index, stitch_files


def split_images(tiles: Path, split: Path) -> Iterator[tuple[str, np.ndarray]]:
    """The split's whole images, stitched back from their (lossless) tiles one at a time."""
    for image_id, records in group_by_image(read_index(split)).items():
        yield image_id, stitch_files(records, tiles / "images", read_rgb)


def file_images(paths: list[Path]) -> Iterator[tuple[str, np.ndarray]]:
    for path in paths:
        yield path.name.removesuffix(IMAGE_SUFFIX).removesuffix(path.suffix), read_rgb(path)


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
    predict = read_section(load_params(args.params), "predict", PredictParams)

    checkpoint = load_checkpoint(args.checkpoint)
    model, table = model_from_checkpoint(checkpoint)
    device = choose_device("auto")
    model = model.to(device, memory_format=torch.channels_last)
    if predict.compile:
        model = compile_for_inference(model)
    probabilities = model_probabilities(model, device, tuple(checkpoint["config"]["mean"]),
                                        tuple(checkpoint["config"]["std"]), predict.bf16 and bf16_supported(device),
                                        predict.tta)


    def predict_into(out_dir: Path, images: Iterator[tuple[str, np.ndarray]], total: int) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for image_id, image in tqdm(images, total=total, desc="predict", unit="image"):
            probs = sliding_window_probabilities(probabilities, image, len(table), predict.window, predict.overlap,
                                                 predict.batch_size)
            index = probs.argmax(axis=0).astype(np.uint8)
            for name, array in ((f"{image_id}.png", index), (f"{image_id}_colour.png", colour_code(index, table))):
                with atomic_file(out_dir / name) as staging:
                    write_png(staging, array)

    if args.input:
        count = len(args.input)
        predict_into(args.output, file_images(args.input), count)
    else:
        count = len(group_by_image(read_index(args.split)))
        with atomic_dir(args.output) as staging:  # the pipeline's output appears whole or not at all
            predict_into(staging, split_images(args.tiles, args.split), count)
    print(f"predict: {count} images -> {args.output} (window {predict.window}, overlap {predict.overlap}, "
          f"tta {'on' if predict.tta else 'off'}, {'compiled, ' if predict.compile else ''}{device})")


if __name__ == "__main__":
    run_stage(main)
