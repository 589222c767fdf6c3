"""Blending where the probabilities are (the device) against copying every window's probabilities to the host.

    .venv/bin/python benchmarks/blending.py                # 2 synthetic 2448 px images, params.yaml's predict
    .venv/bin/python benchmarks/blending.py --images 1 --rounds 1

Before issue 12, sliding-window prediction copied each batch's probabilities to the host and summed
them there with numpy (`host_blended_probabilities`, kept here verbatim as the reference that
tests/test_inference.py checks the device blending against, bit for bit). Now they are summed on
the probability function's device and only the uint8 class map comes back. This script times both
per 2448 px image, alternating, with predict's model settings (params.yaml: encoder, window,
overlap, batch, bf16), and the blending alone with a stand-in model that returns fixed probabilities.
On the CPU the device is the host: both sum in numpy (the same float32 arithmetic; this measures
that nothing got slower), and a third variant sums and argmaxes in torch on the CPU instead, which
is why numpy stays the CPU's. On a GPU the device path saves a host copy of (classes x window^2)
floats per window and the host-side adds (benchmarks/gpu.py measures it there). Last, it times a
model on the windows of 384 px images (the default run's test images: 4 windows) in batches of one
image's windows against two images' (batching windows across images).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]  # run as a script from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from stages.core.data.geometry import window_grid  # noqa: E402
from stages.core.inference.blending import (
    BlendAccumulator,
    ProbabilityFn,
    fit_window,
    sliding_window_classes,  # noqa: E402
    window_weights,
)

IMAGE_SIZE = 2448
NUM_CLASSES = 7


def host_blended_probabilities(
    probability_fn: ProbabilityFn, image: np.ndarray, num_classes: int, window: int, overlap: float, batch_size: int
) -> np.ndarray:
    """inference.sliding_window_probabilities as it was before issue 12: each batch copied to the host, numpy sums."""
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
    """The old predict: host blending, then numpy's argmax."""
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


def in_torch(function, *args):
    """`function` with the blending in torch even on the CPU (where numpy is used: see BlendAccumulator)."""
    BlendAccumulator.numpy_on_cpu = False
    try:
        return function(*args)
    finally:
        BlendAccumulator.numpy_on_cpu = True


def time_alternating(runs: dict, images: list[np.ndarray], rounds: int, sync) -> dict:
    """Median seconds per image of each run, alternating runs image by image so both see the same machine."""
    seconds = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run(images[0][:512, :512])
    for _ in range(rounds):
        for image in images:
            outputs = {}
            for name, run in runs.items():
                start = time.perf_counter()
                outputs[name] = run(image)
                sync()
                seconds[name].append(time.perf_counter() - start)
            first, *others = outputs.values()
            assert all(np.array_equal(first, other) for other in others), "class maps differ"
    return {name: statistics.median(times) for name, times in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "landcover-bench")
    args = parser.parse_args()

    from speed import prepare_inputs

    from stages.core.inference.blending import model_probabilities
    from stages.core.io.imageio import read_rgb
    from stages.core.model.devices import choose_device, resolve_precision
    from stages.core.model.model import IMAGENET_MEAN, IMAGENET_STD, build_model

    raw, _ = prepare_inputs(args.cache, max(args.images, 2))
    images = [read_rgb(path) for path in sorted(raw.glob("*_sat.jpg"))[: args.images]]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    predict = params["predict"]
    device = choose_device("auto")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
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
    blending = time_alternating(
        {
            "host": lambda image: host_classes(stand_in, image, *settings),
            "device": lambda image: sliding_window_classes(stand_in, image, *settings),
            "torch": lambda image: in_torch(sliding_window_classes, stand_in, image, *settings),
        },
        images,
        args.rounds,
        sync,
    )
    print(
        f"blending only: {blending['host']:.3f} s per image on the host (before), {blending['device']:.3f} s "
        f"where the probabilities are (now), {blending['torch']:.3f} s with torch's sums and argmax on {device}",
        flush=True,
    )
    torch.manual_seed(0)
    model = build_model(params["model"]["encoder"], NUM_CLASSES).eval().to(device, memory_format=torch.channels_last)
    probability_fn = model_probabilities(
        model,
        device,
        IMAGENET_MEAN,
        IMAGENET_STD,
        resolve_precision(predict["precision"], device, "predict.precision"),
        predict["tta"],
    )
    whole = time_alternating(
        {
            "host": lambda image: host_classes(probability_fn, image, *settings),
            "device": lambda image: sliding_window_classes(probability_fn, image, *settings),
        },
        images,
        args.rounds,
        sync,
    )
    # Batching windows across images: the default run's 384 px test images have 4 windows each, so a
    # batch of 8 is half used; two images per batch would fill it. What would that gain per window?
    small = [
        torch.from_numpy(
            np.stack(
                [
                    images[0][y : y + window, x : x + window]
                    for y, x in window_grid(384, 384, window, predict["overlap"])
                ]
            )
        )
    ]
    small.append(torch.cat([small[0], small[0]]))  # two images' windows in one batch
    per_window = {}
    for crops in small * 2:  # warm-up, then timed
        start = time.perf_counter()
        for _ in range(args.rounds * 3):
            probability_fn(crops)
        sync()
        per_window[len(crops)] = (time.perf_counter() - start) / (args.rounds * 3 * len(crops))
    print(
        f"windows of 384 px images ({len(small[0])} each), s per window: {per_window[len(small[0])]:.4f} in "
        f"batches of one image's {len(small[0])}, {per_window[len(small[1])]:.4f} in batches of two images' "
        f"{len(small[1])} ({per_window[len(small[0])] / per_window[len(small[1])]:.2f}x)"
    )
    print("\n| s per 2448 px image | host blending (before) | device blending (now) | before / now |")
    print("|---|---:|---:|---:|")
    for label, result in (
        ("blending only (stand-in model)", blending),
        (f"predict ({params['model']['encoder']}, the predict params)", whole),
    ):
        print(f"| {label} | {result['host']:.3f} | {result['device']:.3f} | {result['host'] / result['device']:.3f}x |")
    print("(class maps of the two paths compared on every image: equal)")


if __name__ == "__main__":
    main()
