"""benchmarks.scale's training side: the train stage's loader and a training step, each run in a fresh process
working in the temporary clone (benchmarks.common.run_in_checkout), against the clone's params, tiles and
`landcover` package.

The process runs this file by path, and it imports nothing from `benchmarks`: with the clone as its working
folder, `landcover`, `stages` and `benchmarks` are the clone's, the commit being measured, while the benchmark's
own code is this checkout's.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from landcover.data.tilestore import TileRecord, TileStore
    from landcover.io.params import AugmentParams, ModelParams, TrainParams

# A training step on the CPU (DeepLabV3+ ResNet50, bf16, channels_last): peak RSS measured as about 1.7 GB
# plus 0.37 GB per 512 px sample (7.5 GB at batch 16). The step is skipped, saying so, when that estimate
# exceeds the memory available (the machine may be shared).
STEP_BASE_MB = 1700
STEP_MB_PER_512_SAMPLE = 370


def train_loader(
    records: list[TileRecord],
    store: TileStore,
    tile_size: int,
    augment: AugmentParams,
    train: TrainParams,
    workers: int,
    epoch: int,
) -> DataLoader:
    """The train stage's loader for `epoch`, built by the trainer's own functions, with `workers` workers."""
    from landcover.model.devices import choose_device
    from landcover.training.trainer import loader_options, train_loader_for_epoch, training_set

    dataset = training_set(records, store, tile_size, augment, train)
    dataset.epoch = epoch
    options = {**loader_options(train, choose_device(train.device)), "num_workers": workers}
    return train_loader_for_epoch(dataset, train, epoch, options)


def training_setup() -> tuple[TrainParams, AugmentParams, ModelParams, list[TileRecord], TileStore]:
    """The clone's params and training tiles: (train params, augment params, model params, records, store)."""
    from landcover.data.tilestore import TileStore, read_index
    from landcover.io.params import AugmentParams, ModelParams, TrainParams, load_params, read_section

    params = load_params("params.yaml")
    return (
        read_section(params, "train", TrainParams),
        read_section(params, "augment", AugmentParams),
        read_section(params, "model", ModelParams),
        read_index("data/splits/train.csv"),
        TileStore(Path("data/tiles"), Path("data/encoded")),
    )


def loader_rate(workers: int, batches: int) -> dict:
    """Samples per second the train loader delivers over `batches` batches, after its first batch."""
    train, augment, _, records, store = training_setup()

    def forever() -> Generator:  # epoch after epoch, as training goes on
        for epoch in itertools.count():
            yield from train_loader(records, store, records[0].size, augment, train, workers, epoch)

    stream = forever()
    start = time.perf_counter()
    next(stream)
    first_batch = time.perf_counter() - start
    start, samples = time.perf_counter(), 0
    for _ in range(batches):
        samples += len(next(stream)[0])
    seconds = time.perf_counter() - start
    stream.close()  # shuts the workers down
    return {
        "workers": workers,
        "batches": batches,
        "samples": samples,
        "seconds": seconds,
        "samples_per_second": samples / seconds,
        "first_batch_seconds": first_batch,
        "train_tiles": len(records),
        "tile_size": records[0].size,
    }


def available_memory_mb() -> float:
    """Memory the machine can give without swapping (MemAvailable), MB."""
    match = re.search(r"MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text())
    return int(match.group(1)) / 1024 if match else float("inf")


def training_consumption(steps: int) -> dict:
    """Samples per second a training step consumes: the trainer's components and loop, random uint8 batches."""
    import torch

    from landcover.data.scaling import UINT8_RGB
    from landcover.model.devices import choose_device, resolve_precision
    from landcover.training.components import (
        BatchSettings,
        configure_loss,
        configure_model,
        configure_optimizer,
        configure_scheduler,
    )
    from landcover.training.loop import run_epoch

    train, _, model_params, records, store = training_setup()
    size, batch = records[0].size, train.batch_size
    device = choose_device(train.device)
    precision = resolve_precision(train.precision, device, "train.precision")
    bf16 = precision == "bf16"
    settings = {
        "device": device.type,
        "bf16": bf16,
        "channels_last": train.channels_last,
        "batch_size": batch,
        "tile_size": size,
        "encoder": model_params.encoder,
    }
    if device.type == "cpu":
        needed = STEP_BASE_MB + STEP_MB_PER_512_SAMPLE * batch * (size / 512) ** 2
        if needed > available_memory_mb():
            return {
                **settings,
                "skipped": f"a step needs about {needed / 1024:.1f} GB, "
                f"{available_memory_mb() / 1024:.1f} GB available",
            }
    num_classes = len(store.class_table())
    model = configure_model(model_params, num_classes, device, train.channels_last, train.seed)
    optimizer = configure_optimizer(model, train, device)
    scheduler = configure_scheduler(optimizer, train)
    loss_fn = configure_loss(train.loss)
    batch_settings = BatchSettings(device, precision, train.channels_last, UINT8_RGB)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)
    masks = torch.randint(0, num_classes, (batch, size, size), dtype=torch.uint8, generator=generator)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def timed(count: int) -> float:
        sync()
        start = time.perf_counter()
        run_epoch(
            model,
            cast("DataLoader", [(images, masks)] * count),  # run_epoch only iterates over its loader
            batch_settings,
            loss_fn,
            num_classes,
            "scale",
            optimizer,
            scheduler,
            progress=False,
        )
        sync()
        return time.perf_counter() - start

    warm_up = timed(1)
    seconds = timed(steps)
    return {
        **settings,
        "steps": steps,
        "warm_up_seconds": warm_up,
        "seconds_per_step": seconds / steps,
        "samples_per_second": batch * steps / seconds,
    }
