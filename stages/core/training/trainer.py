"""train(): the components, the loop and the checkpoint policy put together epoch by epoch, logged with DVCLive."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from stages.core.augment import training_augmentation
from stages.core.checkpoint import checkpoint_config
from stages.core.datasets import ImageBlockSampler, TileDataset
from stages.core.devices import bf16_supported, choose_device
from stages.core.errors import PipelineError
from stages.core.model import IMAGENET_MEAN, IMAGENET_STD
from stages.core.palette import ClassTable
from stages.core.params import AugmentParams, ModelParams, TrainParams
from stages.core.tilestore import TileRecord, TileStore
from stages.core.training.checkpoints import CheckpointPolicy, training_params
from stages.core.training.components import (BatchSettings, configure_loss, configure_model, configure_optimizer,
                                             configure_scheduler)
from stages.core.training.loop import epoch_metrics, run_epoch, seed_epoch


@dataclass(frozen=True)
class TrainingData:
    train: list[TileRecord]
    val: list[TileRecord]
    store: TileStore  # where the tiles' images and class masks lie
    table: ClassTable
    tile_size: int


def log_epoch(live, epoch: int, record: dict[str, dict]) -> None:
    """One epoch's metrics per split to DVCLive, as `<split>/<name>` at step `epoch`."""
    live.step = epoch
    for split, metrics in record.items():
        for name, value in metrics.items():
            if value is not None:  # a class absent from the split has no score this epoch
                live.log_metric(f"{split}/{name}", round(value, 6))
    live.make_summary()


def training_set(records: list[TileRecord], store: TileStore, tile_size: int, augment_params: AugmentParams,
                 train_params: TrainParams) -> TileDataset:
    """The training tiles, augmented, keeping a shuffle block's images decoded."""
    augmentation = training_augmentation(tile_size, augment_params.scale_min, augment_params.colour_jitter)
    return TileDataset(records, store, augmentation, seed=train_params.seed, cached_images=train_params.shuffle_block)


def train_loader_for_epoch(train_set: TileDataset, train_params: TrainParams, epoch: int,
                           loader_options: dict) -> DataLoader:
    """The epoch's training batches: tiles shuffled within blocks of images, in an order seeded by the epoch."""
    sampler = ImageBlockSampler(train_set.records, train_params.shuffle_block, seed_epoch(train_params.seed, epoch))
    return DataLoader(train_set, sampler=sampler, drop_last=len(train_set) > train_params.batch_size,
                      **loader_options)


def loader_options(train_params: TrainParams, device: torch.device) -> dict:
    """DataLoader settings shared by the training and validation loaders."""
    return {"batch_size": train_params.batch_size, "num_workers": train_params.workers,
            "pin_memory": device.type == "cuda"}


def train(model_params: ModelParams, train_params: TrainParams, augment_params: AugmentParams, data: TrainingData,
          models_dir: Path, live_dir: Path, progress: bool = True) -> dict:
    """Train, log every epoch to `live_dir` with DVCLive, end with models_dir/best.pt and last.pt.

    Checkpoints go to models_dir/resume after every epoch (see checkpoints). The log is closed
    however training ends, a non-finite loss included. Returns the last epoch's record
    ({"train": {...}, "val": {...}}).
    """
    from dvclive import Live

    device = choose_device(train_params.device)
    num_classes = len(data.table)
    model = configure_model(model_params, num_classes, device, train_params.channels_last, train_params.seed)
    optimizer = configure_optimizer(model, train_params, device)
    scheduler = configure_scheduler(optimizer, train_params)
    loss_fn = configure_loss(train_params.loss)
    batch_settings = BatchSettings(device, train_params.bf16 and bf16_supported(device), train_params.channels_last,
                                   IMAGENET_MEAN, IMAGENET_STD)
    checkpoints = CheckpointPolicy(models_dir, checkpoint_config(model_params.encoder, data.table, data.tile_size),
                                   training_params(model_params, train_params, augment_params))

    start_epoch, history = 0, []
    if train_params.resume and checkpoints.resume_path.exists():
        resumed = checkpoints.resume(model, optimizer, scheduler)
        start_epoch, history = resumed.epochs_done, resumed.history
        if start_epoch > train_params.epochs:
            raise PipelineError(f"{checkpoints.resume_path}: already has {start_epoch} epochs, more than train.epochs "
                                f"({train_params.epochs}); raise train.epochs or set train.resume to false")
        print(f"train: resuming from {checkpoints.resume_path} after epoch {start_epoch}")
    else:
        if train_params.resume:
            print(f"train: train.resume is set but there is no {checkpoints.resume_path}; starting afresh")
        checkpoints.start_afresh()

    train_set = training_set(data.train, data.store, data.tile_size, augment_params, train_params)
    options = loader_options(train_params, device)
    val_loader = DataLoader(TileDataset(data.val, data.store, count_once=True), shuffle=False, **options)

    with Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        for epoch, record in enumerate(history, start=1):  # a resumed run's log matches an uninterrupted one
            log_epoch(live, epoch, record)
        epochs = tqdm(range(start_epoch, train_params.epochs), desc="train", unit="epoch", disable=not progress,
                      initial=start_epoch, total=train_params.epochs)
        for epoch in epochs:
            train_set.epoch = epoch
            train_loader = train_loader_for_epoch(train_set, train_params, epoch, options)
            trained = run_epoch(model, train_loader, batch_settings, loss_fn, num_classes,
                                f"epoch {epoch + 1} train", optimizer, scheduler, epoch, progress)
            validated = run_epoch(model, val_loader, batch_settings, loss_fn, num_classes, f"epoch {epoch + 1} val",
                                  progress=progress)
            record = {"train": epoch_metrics(trained, data.table), "val": epoch_metrics(validated, data.table)}
            history.append(record)
            log_epoch(live, epoch + 1, record)
            val_miou = record["val"]["miou_land"] or 0.0
            checkpoints.after_epoch(epoch + 1, history, val_miou, model, optimizer, scheduler)
            epochs.set_postfix(val_miou=f"{val_miou:.3f}", best=f"{checkpoints.best_miou:.3f}")
    checkpoints.publish()
    return history[-1]
