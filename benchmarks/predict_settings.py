"""Accuracy against speed of predict's window, overlap and batch settings on full-size images.

Uses the trained model of the pipeline (models/best.pt, made by `make run`) on synthetic 2448x2448
images from the same generator as the training sample (its scales are in pixels, so a large image
is more of the same scene statistics), whose masks are known. For each setting it prints seconds per
image and mIoU over the land classes, so the defaults in params.yaml can be chosen on evidence.

    .venv/bin/python -m benchmarks.predict_settings [--images 3] [--settings 256:0.5:8 256:0.25:8 ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_CACHE, REPO, benchmark_parser
from benchmarks.inputs import prepare_inputs
from landcover.data.palette import colour_to_index
from landcover.evaluation.metrics import confusion_matrix, scores
from landcover.inference.blending import SlidingWindows
from landcover.inference.probabilities import trained_model_probabilities
from landcover.io.imageio import read_rgb
from landcover.model.checkpoint import load_trained_model
from landcover.model.devices import choose_device

DEFAULT_SETTINGS = ["256:0.5:8", "256:0.25:8", "256:0.125:8", "256:0:8", "512:0.25:2", "512:0.125:2", "512:0:2"]


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("benchmarks.predict_settings", __doc__)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "models" / "best.pt")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=DEFAULT_SETTINGS, help="window:overlap:batch_size ...")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="the speed benchmark's cached images")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        sys.exit(f"error: {args.checkpoint}: not found; run `make run` first to train the model")

    raw, _ = prepare_inputs(args.cache, args.images)
    trained = load_trained_model(args.checkpoint)
    table = trained.table
    probability_fn = trained_model_probabilities(trained, choose_device("auto"), precision="auto", tta=False)
    pairs = [
        (
            read_rgb(path),
            colour_to_index(read_rgb(path.with_name(path.name.replace("_sat.jpg", "_mask.png"))), table)[0],
        )
        for path in sorted(raw.glob("*_sat.jpg"))
    ]
    SlidingWindows(probability_fn, len(table), 256, 0.5, 8).probabilities(pairs[0][0][:512, :512])  # warm-up

    print(f"{len(pairs)} synthetic {pairs[0][0].shape[1]}x{pairs[0][0].shape[0]} images, {args.checkpoint}")
    print(f"{'window':>6} {'overlap':>7} {'batch':>5} {'s/image':>8} {'mIoU land':>9}")
    for setting in args.settings:
        window, overlap, batch_size = setting.split(":")
        confusion, seconds = np.zeros((len(table),) * 2, dtype=np.int64), 0.0
        for image, truth in pairs:
            start = time.perf_counter()
            windows = SlidingWindows(probability_fn, len(table), int(window), float(overlap), int(batch_size))
            probs = windows.probabilities(image)
            predicted = probs.argmax(axis=0)
            seconds += time.perf_counter() - start
            confusion += confusion_matrix(truth, predicted, len(table))
        miou_land = scores(confusion, table)["miou_land"]
        print(f"{window:>6} {overlap:>7} {batch_size:>5} {seconds / len(pairs):>8.2f} {miou_land:>9.4f}", flush=True)


if __name__ == "__main__":
    main()
