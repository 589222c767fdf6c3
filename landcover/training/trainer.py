"""train(): the components, the loop and the checkpoint policy put together epoch by epoch, logged with DVCLive.

DVCLive and albumentations are imported where they are used: train() can log elsewhere (`open_log`) and
train without augmentation (no `augment_params`), which is how the GPU check (tools/gpu_check.py) runs the
trainer on a machine that has neither package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from landcover.data.datasets import ImageBlockSampler, ShardedSampler, TileDataset, contiguous_share
from landcover.data.palette import ClassTable
from landcover.data.scaling import UINT8_RGB, BandScaling
from landcover.data.tilestore import TileRecord, TileStore
from landcover.io.errors import PipelineError
from landcover.io.params import AugmentParams, ModelParams, TrainParams
from landcover.model.checkpoint import checkpoint_config
from landcover.model.devices import choose_device, make_deterministic, resolve_precision
from landcover.model.model import compile_for_training
from landcover.model.ranks import Ranks
from landcover.training.calibration import describe_fit, fit_on_tiles
from landcover.training.checkpoints import CheckpointPolicy, training_params
from landcover.training.components import (
    BatchSettings,
    configure_loss,
    configure_model,
    configure_optimizer,
    configure_scheduler,
)
from landcover.training.distributed import (
    data_parallel,
    share_buffers_of_rank_0,
    start_processes,
    stop_processes,
    unwrapped,
)
from landcover.training.loop import epoch_metrics, run_epoch, seed_epoch


@dataclass(frozen=True)
class TrainingData:
    train: list[TileRecord]
    val: list[TileRecord]
    store: TileStore  # where the tiles' images and class masks lie
    table: ClassTable
    tile_size: int
    # the bands the tiles' arrays hold, in order, and how their values are scaled (the train stage's, from params)
    scaling: BandScaling = UINT8_RGB


class EpochLog(Protocol):
    """What training logs through: DVCLive's `Live` (the train stage's), or any object with these members."""

    step: int

    def log_metric(self, name: str, val: float) -> None: ...

    def make_summary(self) -> None: ...


# A log's folder -> the log, as a context manager that closes it however training ends
LogOpener = Callable[[Path], contextlib.AbstractContextManager[EpochLog]]


def dvclive_log(live_dir: Path) -> contextlib.AbstractContextManager[EpochLog]:
    """DVCLive's log in `live_dir` (metrics/train for the train stage): train()'s default."""
    from dvclive import Live

    return Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)


def log_epoch(live: EpochLog, epoch: int, record: dict[str, dict]) -> None:
    """One epoch's metrics per split to DVCLive, as `<split>/<name>` at step `epoch`."""
    live.step = epoch
    for split, metrics in record.items():
        for name, value in metrics.items():
            if value is not None:  # a class absent from the split has no score this epoch
                live.log_metric(f"{split}/{name}", round(value, 6))
    live.make_summary()


def training_set(
    records: list[TileRecord],
    store: TileStore,
    tile_size: int,
    augment_params: AugmentParams | None,
    train_params: TrainParams,
) -> TileDataset:
    """The training tiles, augmented (not without `augment_params`), keeping a shuffle block's images decoded."""
    augmentation = None
    if augment_params is not None:
        from landcover.data.augment import training_augmentation  # albumentations: only where augmenting

        rgb = store.dtype == "uint8" and len(store.bands) == 3  # colour jitter is for 8-bit RGB only
        augmentation = training_augmentation(tile_size, augment_params.scale_min, augment_params.colour_jitter, rgb=rgb)
    return TileDataset(records, store, augmentation, seed=train_params.seed, cached_images=train_params.shuffle_block)


def train_loader_for_epoch(
    train_set: TileDataset,
    train_params: TrainParams,
    epoch: int,
    loader_options: dict,
    ranks: Ranks = Ranks(),
) -> DataLoader:
    """This rank's training batches of the epoch: tiles shuffled within blocks of images in an order seeded by the
    epoch, the same on every rank, and each rank taking its share of it (padded so all ranks have as many)."""
    order = ImageBlockSampler(
        train_set.records, train_params.shuffle_block, seed_epoch(train_params.seed, epoch, ranks.rank)
    )
    sampler = ShardedSampler(order, ranks.rank, ranks.world, pad=True)
    return DataLoader(train_set, sampler=sampler, drop_last=len(sampler) > train_params.batch_size, **loader_options)


def validation_loader(val_set: TileDataset, options: dict, ranks: Ranks) -> DataLoader:
    """This rank's validation batches: its contiguous run of the val tiles, not padded, so the ranks' runs
    together are the val set with each tile once (their confusion matrices are summed)."""
    if not ranks.several:
        return DataLoader(val_set, shuffle=False, **options)
    share = contiguous_share(len(val_set), ranks.rank, ranks.world)
    return DataLoader(val_set, sampler=share, **options)


def loader_options(train_params: TrainParams, device: torch.device) -> dict:
    """DataLoader settings shared by the training and validation loaders."""
    return {
        "batch_size": train_params.batch_size,
        "num_workers": train_params.workers,
        "pin_memory": device.type == "cuda",
    }


def configure_cuda(device: torch.device, deterministic: bool) -> None:
    """train.deterministic on CUDA: deterministic algorithms (see devices); off, cuDNN picks the fastest
    convolution for the fixed tile size. The CPU's kernels here are deterministic as they are."""
    if device.type != "cuda":
        return
    if deterministic:
        make_deterministic()
    else:
        torch.backends.cudnn.benchmark = True


def train(
    model_params: ModelParams,
    train_params: TrainParams,
    augment_params: AugmentParams | None,
    data: TrainingData,
    models_dir: Path,
    live_dir: Path,
    progress: bool = True,
    open_log: LogOpener = dvclive_log,
) -> dict:
    """Train, log every epoch to `live_dir` with DVCLive, end with models_dir/best.pt and last.pt.

    Checkpoints go to models_dir/resume after every epoch (see checkpoints). The log is closed
    however training ends, a non-finite loss included. Returns the last epoch's record
    ({"train": {...}, "val": {...}}). Started by torchrun with several ranks, every rank
    trains on its share of each batch and rank 0 alone writes checkpoints, the log and progress.
    Without `augment_params` the tiles are not augmented; `open_log` opens another log than DVCLive's.
    """
    device = choose_device(train_params.device)
    configure_cuda(device, train_params.deterministic)
    ranks = start_processes(train_params, device)
    try:
        return train_processes(
            model_params,
            train_params,
            augment_params,
            data,
            models_dir,
            live_dir,
            progress and ranks.main,
            ranks,
            open_log,
        )
    finally:
        stop_processes(ranks)


@dataclass
class Run:
    """What one process trains with, built from params: the model (and its data-parallel wrapper), the optimizer,
    scheduler, loss scaler and loss, how batches reach the model, and the checkpoint policy."""

    model: nn.Module  # the model itself: what validation runs and checkpoints hold
    trained_model: nn.Module  # the model or its DistributedDataParallel wrapper: what the training pass runs
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler | None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batch_settings: BatchSettings
    checkpoints: CheckpointPolicy


def build_run(
    model_params: ModelParams,
    train_params: TrainParams,
    augment_params: AugmentParams | None,
    data: TrainingData,
    models_dir: Path,
    ranks: Ranks,
) -> Run:
    """Everything one process trains with, built in a fixed order (the model's seeded initialisation first)."""
    device = ranks.device
    precision = resolve_precision(train_params.precision, device, "train.precision")
    model = configure_model(
        model_params, len(data.table), device, train_params.channels_last, train_params.seed, data.scaling.channels
    )
    optimizer = configure_optimizer(model, train_params, device)
    checkpoints = CheckpointPolicy(
        models_dir,
        checkpoint_config(model_params.encoder, data.table, data.tile_size, data.scaling),
        training_params(model_params, train_params, augment_params),
        ranks.world,
    )
    return Run(
        model=model,
        trained_model=model,
        optimizer=optimizer,
        scheduler=configure_scheduler(optimizer, train_params),
        scaler=torch.amp.GradScaler(device.type) if precision == "fp16" else None,
        loss_fn=configure_loss(train_params.loss),
        batch_settings=BatchSettings(device, precision, train_params.channels_last, data.scaling),
        checkpoints=checkpoints,
    )


def resume_or_start(run: Run, train_params: TrainParams, ranks: Ranks) -> tuple[int, list[dict]]:
    """(epochs done, their records): from the resume checkpoint with train.resume, else (0, []) and a fresh start."""
    checkpoints = run.checkpoints
    if train_params.resume and checkpoints.resume_path.exists():
        resumed = checkpoints.resume(run.model, run.optimizer, run.scheduler, run.scaler)
        if resumed.epochs_done > train_params.epochs:
            raise PipelineError(
                f"{checkpoints.resume_path}: already has {resumed.epochs_done} epochs, more than train.epochs "
                f"({train_params.epochs}); raise train.epochs or set train.resume to false"
            )
        if ranks.main:
            print(f"train: resuming from {checkpoints.resume_path} after epoch {resumed.epochs_done}")
        return resumed.epochs_done, resumed.history
    if ranks.main:
        if train_params.resume:
            print(f"train: train.resume is set but there is no {checkpoints.resume_path}; starting afresh")
        checkpoints.start_afresh()
    return 0, []


def train_processes(
    model_params: ModelParams,
    train_params: TrainParams,
    augment_params: AugmentParams | None,
    data: TrainingData,
    models_dir: Path,
    live_dir: Path,
    progress: bool,
    ranks: Ranks,
    open_log: LogOpener = dvclive_log,
) -> dict:
    """train() in this process, one of `ranks`."""
    run = build_run(model_params, train_params, augment_params, data, models_dir, ranks)
    start_epoch, history = resume_or_start(run, train_params, ranks)
    run.trained_model = data_parallel(run.model, ranks, train_params.sync_batchnorm)
    run.model = unwrapped(run.trained_model)  # batch norms converted, if asked
    if train_params.compile:
        run.trained_model = compile_for_training(run.trained_model)

    train_set = training_set(data.train, data.store, data.tile_size, augment_params, train_params)
    options = loader_options(train_params, ranks.device)
    val_loader = validation_loader(TileDataset(data.val, data.store, count_once=True), options, ranks)

    with open_log(live_dir) if ranks.main else contextlib.nullcontext() as log:
        for epoch, record in enumerate(history, start=1):  # a resumed run's log matches an uninterrupted one
            if log is not None:
                log_epoch(log, epoch, record)
        epochs = tqdm(
            range(start_epoch, train_params.epochs),
            desc="train",
            unit="epoch",
            disable=not progress,
            initial=start_epoch,
            total=train_params.epochs,
        )
        for epoch in epochs:
            train_set.epoch = epoch
            train_loader = train_loader_for_epoch(train_set, train_params, epoch, options, ranks)
            record = train_epoch(run, train_loader, val_loader, data.table, epoch, progress, ranks)
            history.append(record)
            val_miou = record["val"]["miou_land"] or 0.0
            if log is not None:
                log_epoch(log, epoch + 1, record)
                run.checkpoints.after_epoch(
                    epoch + 1, history, val_miou, run.model, run.optimizer, run.scheduler, run.scaler
                )
            epochs.set_postfix(val_miou=f"{val_miou:.3f}", best=f"{run.checkpoints.best_miou:.3f}")
    if ranks.main:
        calibrate(run, data, train_params.batch_size, ranks.device)
        run.checkpoints.publish()
    return history[-1]


def calibrate(run: Run, data: TrainingData, batch_size: int, device: torch.device) -> None:
    """Fit the temperature on the validation tiles with the best epoch's weights (in fp32, training done) and
    record it in the best checkpoint before it is published (training.calibration)."""
    run.model.load_state_dict(run.checkpoints.best_weights())
    fit = fit_on_tiles(run.model, data.val, data.store, data.scaling, device, batch_size)
    run.checkpoints.record_calibration(fit.temperature, fit.as_dict())
    print(describe_fit(fit))


def train_epoch(
    run: Run,
    train_loader: DataLoader,
    val_loader: DataLoader,
    table: ClassTable,
    epoch: int,
    progress: bool,
    ranks: Ranks,
) -> dict[str, dict]:
    """One epoch: a training pass, then validation; its record {"train": {...}, "val": {...}}."""
    num_classes = len(table)
    trained = run_epoch(
        run.trained_model,
        train_loader,
        run.batch_settings,
        run.loss_fn,
        num_classes,
        f"epoch {epoch + 1} train",
        run.optimizer,
        run.scheduler,
        epoch,
        progress,
        run.scaler,
        ranks,
    )
    share_buffers_of_rank_0(run.model, ranks)  # one model validated: rank 0's, the one checkpointed
    validated = run_epoch(
        run.model,
        val_loader,
        run.batch_settings,
        run.loss_fn,
        num_classes,
        f"epoch {epoch + 1} val",
        progress=progress,
        ranks=ranks,
    )
    return {"train": epoch_metrics(trained, table), "val": epoch_metrics(validated, table)}
