"""benchmarks.speed's inference measurement: predict's blended sliding window against the seed notebooks' fp32
per-tile loop, on whole 2448 px images. Runs in a fresh process."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmarks.common import (
    NUM_CLASSES,
    count_flops,
    device_and_sync,
    params,
    predict_probabilities,
    random_model,
    time_per_image,
)


def blended_classes(probability_fn: Callable, image: np.ndarray, window: int, predict: dict) -> np.ndarray:
    """predict's class map of `image`: windows blended with the `predict` params' overlap and batch, argmaxed."""
    from landcover.inference.blending import SlidingWindows

    windows = SlidingWindows(probability_fn, NUM_CLASSES, window, predict["overlap"], predict["batch_size"])
    probs = windows.probabilities(image)
    return probs.argmax(axis=0).astype(np.uint8)


def measure_inference(config: dict) -> dict:
    """Seconds per whole image: predict's blended sliding window, or the seed's fp32 per-tile loop."""
    import torch

    from benchmarks.seed_style import seed_model, seed_predict
    from landcover.data.geometry import window_grid
    from landcover.inference.blending import fit_window
    from landcover.io.imageio import read_rgb
    from landcover.model.model import compile_for_inference

    device, sync = device_and_sync()
    predict = {**params()["predict"], **config.get("predict", {})}
    encoder = params()["model"]["encoder"]
    images = [read_rgb(path) for path in config["images"]]
    height, width = images[0].shape[:2]
    window = fit_window(predict["window"], height, width)
    run: Callable[[np.ndarray], object]
    if config["variant"] == "project":
        model = random_model(encoder, device)
        network = compile_for_inference(model) if predict["compile"] else model
        probability_fn = predict_probabilities(network, device, predict)

        def run(image: np.ndarray) -> object:
            return blended_classes(probability_fn, image, window, predict)

        overlap = predict["overlap"]
        sample = torch.zeros(1, 3, window, window, device=device).contiguous(memory_format=torch.channels_last)
    else:
        torch.manual_seed(0)
        model = seed_model(encoder, NUM_CLASSES).eval().to(device)

        def run(image: np.ndarray) -> object:
            return seed_predict(model, image, window)

        overlap = 0.0
        sample = torch.zeros(1, 3, window, window, device=device)
    windows = len(window_grid(height, width, window, overlap))
    timing = time_per_image(run, images, window, sync)  # the warm-up includes the compilation, with compile
    with torch.inference_mode():
        window_flops = count_flops(lambda: model(sample))
    return {
        **timing,
        "windows": windows,
        "window": window,
        "image_flops": windows * window_flops * (8 if predict["tta"] and config["variant"] == "project" else 1),
        "settings": predict,
    }
