"""Blending where the probabilities are (the device) against copying every window's probabilities to the host.

    .venv/bin/python -m benchmarks.blending                # 2 synthetic 2448 px images, params.yaml's predict
    .venv/bin/python -m benchmarks.blending --images 1 --rounds 1

predict sums each batch's weighted window probabilities on the probability function's device and copies
only the uint8 class map back. `host_blended_probabilities` here is the other way: each batch copied to
the host and summed there with numpy. This benchmark times both per 2448 px image, alternating (their
class maps compared on every image), with predict's model settings (params.yaml: encoder, window,
overlap, batch, bf16), and the blending alone with a stand-in model that returns fixed probabilities.
On the CPU the device is the host: both sum in numpy (the same float32 arithmetic; this measures that
the device path costs nothing there), and a third variant sums and argmaxes in torch on the CPU instead
(numpy_on_cpu=False), which shows why numpy stays the CPU's. On a GPU the device path saves a host copy
of (classes x window^2) floats per window and the host-side adds (benchmarks.gpu measures it there).
Last, it times a model on the windows of 384 px images (the default run's test images: 4 windows) in
batches of one image's windows against two images' (batching windows across images).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    DEFAULT_CACHE,
    IMAGE_SIZE,
    NUM_CLASSES,
    Sync,
    benchmark_parser,
    device_and_sync,
    markdown_table,
    params,
    predict_probabilities,
    random_model,
    time_alternating,
)
from benchmarks.inputs import prepare_inputs
from landcover.data.geometry import window_grid
from landcover.inference.blending import ProbabilityFn, SlidingWindows, fit_window, window_weights


def host_blended_probabilities(
    probability_fn: ProbabilityFn, image: np.ndarray, num_classes: int, window: int, overlap: float, batch_size: int
) -> np.ndarray:
    """Sliding-window probabilities with each batch copied to the host and summed there in numpy."""
    height, width = image.shape[:2]
    window = fit_window(window, height, width)
    origins = window_grid(height, width, window, overlap)
    weights = window_weights(window)
    total = np.zeros((num_classes, height, width), dtype=np.float32)
    weight_sum = np.zeros((height, width), dtype=np.float32)
    for start in range(0, len(origins), batch_size):
        batch_origins = origins[start : start + batch_size]
        crops = torch.from_numpy(np.stack([image[y : y + window, x : x + window] for y, x in batch_origins]))
        probs = probability_fn(crops).cpu().numpy()
        for (y, x), prob in zip(batch_origins, probs):
            total[:, y : y + window, x : x + window] += prob * weights
            weight_sum[y : y + window, x : x + window] += weights
    return total / weight_sum


def host_classes(
    probability_fn: ProbabilityFn, image: np.ndarray, num_classes: int, window: int, overlap: float, batch_size: int
) -> np.ndarray:
    """Host blending, then numpy's argmax: the class map without device blending."""
    return (
        host_blended_probabilities(probability_fn, image, num_classes, window, overlap, batch_size)
        .argmax(axis=0)
        .astype(np.uint8)
    )


def fixed_probabilities(window: int, device: torch.device) -> ProbabilityFn:
    """A stand-in model: the same softmaxed random probabilities for every window, made on `device`."""
    probs = torch.randn(64, NUM_CLASSES, window, window, generator=torch.Generator().manual_seed(0)).softmax(dim=1)
    probs = probs.to(device)
    return lambda batch: probs[: batch.shape[0]]


def median_seconds(runs: dict, images: list[np.ndarray], rounds: int, sync: Sync) -> dict[str, float]:
    """Median seconds per image of each run, alternating image by image; their class maps must agree."""
    seconds = time_alternating(runs, images * rounds, images[0][:512, :512], sync, same_output=np.array_equal)
    return {name: statistics.median(times) for name, times in seconds.items()}


def blending_paths(probability_fn: ProbabilityFn, settings: tuple[int, int, float, int], with_torch: bool) -> dict:
    """The class map of an image by host blending, by predict's device blending and, if asked, by device
    blending with torch's sums and argmax even on the CPU."""
    paths = {
        "host": lambda image: host_classes(probability_fn, image, *settings),
        "device": SlidingWindows(probability_fn, *settings).classes,
    }
    if with_torch:
        paths["torch"] = SlidingWindows(probability_fn, *settings, numpy_on_cpu=False).classes
    return paths


def seconds_per_window(
    probability_fn: ProbabilityFn, image: np.ndarray, window: int, overlap: float, repeats: int, sync: Sync
) -> dict[int, float]:
    """Seconds per window of a 384 px image's windows (the default run's test images) batched alone and with a
    second image's: {windows per batch: seconds per window}.

    Those images have 4 windows each, so a batch of 8 is half used; two images per batch would fill it.
    """
    one = torch.from_numpy(
        np.stack([image[y : y + window, x : x + window] for y, x in window_grid(384, 384, window, overlap)])
    )
    per_window = {}
    for crops in [one, torch.cat([one, one])] * 2:  # warm-up, then timed
        start = time.perf_counter()
        for _ in range(repeats):
            probability_fn(crops)
        sync()
        per_window[len(crops)] = (time.perf_counter() - start) / (repeats * len(crops))
    return per_window


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser("benchmarks.blending", __doc__)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)

    from landcover.io.imageio import read_rgb

    raw, _ = prepare_inputs(args.cache, max(args.images, 2))
    images = [read_rgb(path) for path in sorted(raw.glob("*_sat.jpg"))[: args.images]]
    config = params()
    predict = config["predict"]
    device, sync = device_and_sync()
    window = fit_window(predict["window"], IMAGE_SIZE, IMAGE_SIZE)
    settings = (NUM_CLASSES, window, predict["overlap"], predict["batch_size"])
    windows = len(window_grid(IMAGE_SIZE, IMAGE_SIZE, window, predict["overlap"]))
    print(
        f"device {device}, {torch.get_num_threads()} threads; window {window}, overlap {predict['overlap']}, "
        f"batch {predict['batch_size']}: {windows} windows per {IMAGE_SIZE} px image; {args.images} images x "
        f"{args.rounds} rounds, alternating",
        flush=True,
    )

    stand_in = fixed_probabilities(window, device)
    blending = median_seconds(blending_paths(stand_in, settings, with_torch=True), images, args.rounds, sync)
    print(
        f"blending only: {blending['host']:.3f} s per image on the host, {blending['device']:.3f} s "
        f"where the probabilities are (predict's way), {blending['torch']:.3f} s with torch's sums and argmax "
        f"on {device}",
        flush=True,
    )
    probability_fn = predict_probabilities(random_model(config["model"]["encoder"], device), device, predict)
    whole = median_seconds(blending_paths(probability_fn, settings, with_torch=False), images, args.rounds, sync)
    per_window = seconds_per_window(probability_fn, images[0], window, predict["overlap"], args.rounds * 3, sync)
    alone, paired = sorted(per_window)
    print(
        f"windows of 384 px images ({alone} each), s per window: {per_window[alone]:.4f} in batches of one "
        f"image's {alone}, {per_window[paired]:.4f} in batches of two images' {paired} "
        f"({per_window[alone] / per_window[paired]:.2f}x)"
    )
    rows = [
        (label, f"{result['host']:.3f}", f"{result['device']:.3f}", f"{result['host'] / result['device']:.3f}x")
        for label, result in (
            ("blending only (stand-in model)", blending),
            (f"predict ({config['model']['encoder']}, the predict params)", whole),
        )
    ]
    header = [f"s per {IMAGE_SIZE} px image", "host blending", "device blending (predict)", "host / device"]
    print("\n" + "\n".join(markdown_table(header, rows, "lrrr")))
    print("(class maps of the paths compared on every image: equal)")


if __name__ == "__main__":
    main()
