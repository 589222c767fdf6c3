"""benchmarks.speed's training and loading measurements: the train stage's step and DataLoader against the
seed notebooks' (benchmarks.seed_style), on the same 256 px tiles. Each runs in a fresh process."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from benchmarks.common import (
    NUM_CLASSES,
    count_flops,
    device_and_sync,
    params,
    time_alternating,
    training_batch_settings,
)
from benchmarks.inputs import SAMPLE_SIZE, read_tile_batch, tile_store

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

BATCH_SIZE = 8  # both training steps, both loaders
SAMPLE_MP = SAMPLE_SIZE**2 / 1e6


def measure_training(config: dict) -> dict:
    """Per-step seconds of the project's and the seed's step on the same batches, alternating rounds."""
    import torch

    from benchmarks.seed_style import seed_model, seed_train_step
    from landcover.data.palette import one_hot
    from landcover.data.scaling import IMAGENET_MEAN, IMAGENET_STD
    from landcover.io.params import TrainParams, read_section
    from landcover.model.model import build_model, compile_for_training
    from landcover.training.components import configure_loss, configure_optimizer
    from landcover.training.loop import run_epoch

    device, sync = device_and_sync()
    encoder = params()["model"]["encoder"]
    train = read_section(params(), "train", TrainParams)
    images, masks = read_tile_batch(Path(config["tiles"]), BATCH_SIZE)
    torch.manual_seed(0)
    project_batches = [(torch.from_numpy(images), torch.from_numpy(masks))] * config["steps"]  # as the loader gives
    seed_images = (
        torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    seed_masks = torch.from_numpy(one_hot(masks, NUM_CLASSES)).permute(0, 3, 1, 2).float()
    seed_images, seed_masks = seed_images.to(device), seed_masks.to(device)

    def project_steps(compiled: bool) -> Callable[[list], None]:
        """The train stage's step over batches as its loader gives them, compiled as train.compile does if asked."""
        torch.manual_seed(0)  # each variant from the same initial weights
        model = build_model(encoder, NUM_CLASSES).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = configure_optimizer(model, train, device)
        network = compile_for_training(model) if compiled else model
        settings = training_batch_settings(train, device)
        loss_fn = configure_loss(train.loss)

        def run(batches: list) -> None:
            loader = cast("DataLoader", batches)  # run_epoch only iterates over its loader
            run_epoch(network, loader, settings, loss_fn, NUM_CLASSES, "benchmark", optimizer, progress=False)

        return run

    steps: dict[str, Callable[[list], None]] = {}
    if "project" in config["variants"]:
        steps["project"] = project_steps(compiled=False)
    compile_seconds = None
    if "compiled" in config["variants"]:
        steps["compiled"] = project_steps(compiled=True)
        start = time.perf_counter()
        steps["compiled"](project_batches[:1])  # the compile: the first step's time
        sync()
        compile_seconds = time.perf_counter() - start
    if "seed" in config["variants"]:
        reference = seed_model(encoder, NUM_CLASSES).to(device)
        reference_optimizer = torch.optim.Adam(reference.parameters(), lr=8e-5)

        def seed_steps(batches: list) -> None:
            for _ in batches:
                seed_train_step(reference, reference_optimizer, seed_images, seed_masks)

        steps["seed"] = seed_steps

    # The warm-up matters: oneDNN builds its kernels on first use, so the first steps are slow.
    seconds = time_alternating(steps, [project_batches] * config["rounds"], project_batches[:2], sync)
    result: dict = {f"{name}_step_seconds": [t / config["steps"] for t in times] for name, times in seconds.items()}
    result["precision"] = training_batch_settings(train, device).precision  # the step's, resolved on this device
    if compile_seconds is not None:
        result["compile_seconds"] = compile_seconds
    # Work per step (the same network for both): the forward's count, times 3 for forward + backward
    # (gradients of inputs and of weights each cost a forward). Counted, not timed; torch's counter
    # over-counts the backward of dilated convolutions, so it is asked for the forward only.
    network = build_model(encoder, NUM_CLASSES).to(device)
    with torch.no_grad():
        result["step_flops"] = 3 * count_flops(lambda: network(seed_images))
    return result


def measure_loading(config: dict) -> dict:
    """Milliseconds per 256x256 sample delivered in batches: after the first batch, and the first batch."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from benchmarks.seed_style import SeedDataset
    from landcover.data.augment import training_augmentation
    from landcover.data.datasets import TileDataset
    from landcover.data.palette import ClassTable

    dataset: Dataset
    if config["variant"] == "project":
        augment = params()["augment"]
        store = tile_store(Path(config["tiles"]))
        dataset = TileDataset(
            store.index(), store, training_augmentation(SAMPLE_SIZE, augment["scale_min"], augment["colour_jitter"])
        )
    else:
        pairs = [(Path(image), Path(mask)) for image, mask in config["pairs"]]
        pairs = (pairs * (config["samples"] + BATCH_SIZE))[: config["samples"] + BATCH_SIZE]  # + the first batch
        dataset = SeedDataset(pairs, ClassTable.deepglobe().colours, SAMPLE_SIZE)
    workers = config["workers"]
    loader = DataLoader(
        dataset,
        batch_size=BATCH_SIZE,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first_batch = time.perf_counter() - start
    delivered, start = 0, time.perf_counter()
    for images, _ in batches:
        delivered += len(images)
        if delivered >= config["samples"]:
            break
    ms_per_sample = (time.perf_counter() - start) / delivered * 1000
    return {
        "ms_per_sample": ms_per_sample,
        "ms_per_mp": ms_per_sample / SAMPLE_MP,
        "samples": delivered,
        "first_batch_seconds": first_batch,
    }
