"""Training DeepLabV3+ on tiles: epochs, validation, DVCLive logging, checkpoints and exact resume.

Reproducibility: every random draw of an epoch (shuffle order, augmentations, dropout) is seeded
from (train.seed, epoch), so an epoch's result depends only on the weights and optimizer state it
starts from. That is what makes a run resumed from `last.pt` end bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from stages.core.augment import training_augmentation
from stages.core.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from stages.core.datasets import TileDataset
from stages.core.errors import PipelineError
from stages.core.metrics import confusion_matrix, scores
from stages.core.model import (IMAGENET_MEAN, IMAGENET_STD, autocast, bf16_supported, build_model, choose_device,
                               normalise)
from stages.core.palette import IGNORE_INDEX, ClassTable
from stages.core.params import AugmentParams, ModelParams, TrainParams
from stages.core.tiling import TileRecord


@dataclass(frozen=True)
class TrainingData:
    train: list[TileRecord]
    val: list[TileRecord]
    images_dir: Path
    masks_dir: Path
    table: ClassTable
    tile_size: int


def make_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A batch's (objective, Dice loss); ignored pixels never count.

    The objective is `dice` (the seed notebooks'), `ce` or `dice_ce` (their sum). The Dice loss is
    logged whatever the objective, for the Dice-loss curves; when the objective contains it, it is
    computed once (a second pass cost 2% of a CPU training step, measured).
    """
    from segmentation_models_pytorch.losses import DiceLoss

    dice = DiceLoss(mode="multiclass", ignore_index=IGNORE_INDEX)
    cross_entropy = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)

    def loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "ce":
            with torch.no_grad():
                dice_value = dice(logits, target)
            return cross_entropy(logits, target), dice_value
        dice_value = dice(logits, target)
        objective = dice_value if name == "dice" else dice_value + cross_entropy(logits, target)
        return objective, dice_value.detach()

    return loss


def make_optimizer(model: nn.Module, params: TrainParams, device: torch.device) -> torch.optim.Optimizer:
    """Adam; its fused kernel where there is one (one pass over all weights: 4% of a CPU step, measured)."""
    return torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay,
                            fused=device.type in ("cpu", "cuda"))


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Seed the global torch RNG (dropout) for this epoch and return the loader's shuffle generator."""
    torch.manual_seed(seed * 100_003 + epoch)
    return torch.Generator().manual_seed(seed * 100_019 + epoch)


@dataclass(frozen=True)
class RunSettings:
    """How batches are run: where, in which precision and layout, and with which losses."""

    device: torch.device
    bf16: bool
    channels_last: bool
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    loss: Callable  # (logits, target) -> (objective, Dice loss), from make_loss(train.loss)
    progress: bool


@dataclass
class EpochResult:
    loss: float
    dice_loss: float
    confusion: np.ndarray


def run_epoch(model: nn.Module, loader: DataLoader, settings: RunSettings, description: str,
              optimizer: torch.optim.Optimizer | None = None,
              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, epoch: int = 0) -> EpochResult:
    """One pass over `loader`: trains when an optimizer is given, else evaluates without gradients."""
    training = optimizer is not None
    model.train(training)
    totals = {"loss": 0.0, "dice_loss": 0.0}
    confusion = np.zeros((settings.num_classes,) * 2, dtype=np.int64)
    batches = len(loader)
    progress = tqdm(loader, desc=description, unit="batch", leave=False, disable=not settings.progress)
    for step, (images, masks) in enumerate(progress):
        images = normalise(images.to(settings.device, non_blocking=True), settings.mean, settings.std)
        if settings.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        masks = masks.to(settings.device, non_blocking=True).long()
        with torch.set_grad_enabled(training), autocast(settings.device, settings.bf16):
            logits = model(images)
        logits = logits.float()  # losses in fp32: bf16 sums lose precision
        loss, dice_loss = settings.loss(logits, masks)
        loss_value = loss.item()  # one device sync per batch, used for the check and the running mean
        if not math.isfinite(loss_value):
            raise PipelineError(f"train: loss became {loss_value} in {description}, batch {step + 1}; "
                                "lower train.lr or turn off train.bf16")
        if training:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step(epoch + (step + 1) / batches)  # warm restarts move smoothly within an epoch
        with torch.no_grad():
            totals["loss"] += loss_value
            totals["dice_loss"] += dice_loss.item()
            confusion += confusion_matrix(masks.cpu().numpy(), logits.argmax(1).cpu().numpy(), settings.num_classes)
        progress.set_postfix(loss=f"{totals['loss'] / (step + 1):.4f}")
    return EpochResult(totals["loss"] / batches, totals["dice_loss"] / batches, confusion)


def epoch_metrics(result: EpochResult, table: ClassTable) -> dict[str, float | None]:
    summary = scores(result.confusion, table.names)
    metrics = {"loss": result.loss, "dice_loss": result.dice_loss, "miou_land": summary["miou_land"],
               "miou": summary["miou"], "mean_dice": summary["mean_dice"],
               "pixel_accuracy": summary["pixel_accuracy"]}
    metrics.update({f"iou/{name}": value for name, value in summary["iou"].items()})
    return metrics


def log_epoch(live, epoch: int, record: dict[str, dict]) -> None:
    live.step = epoch
    for split, metrics in record.items():
        for name, value in metrics.items():
            if value is not None:  # a class absent from the split has no score this epoch
                live.log_metric(f"{split}/{name}", round(value, 6))
    live.make_summary()


def train(model_params: ModelParams, params: TrainParams, augment: AugmentParams, data: TrainingData,
          models_dir: Path, live_dir: Path, progress: bool = True) -> dict:
    """Train, log every epoch to `live_dir` with DVCLive, keep models_dir/best.pt and last.pt.

    Returns the last epoch's record ({"train": {...}, "val": {...}}).
    """
    from dvclive import Live

    device = choose_device(params.device)
    use_bf16 = params.bf16 and bf16_supported(device)
    torch.manual_seed(params.seed)
    model = build_model(model_params.encoder, len(data.table), model_params.encoder_weights).to(device)
    if params.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, params, device)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=params.restart_epochs)
                 if params.scheduler == "cosine" else None)
    config = checkpoint_config(model_params.encoder, data.table, data.tile_size)
    last_path, best_path = models_dir / "last.pt", models_dir / "best.pt"

    start_epoch, best_miou, history = 0, -1.0, []
    if params.resume and last_path.exists():
        start_epoch, best_miou, history = resume_from(last_path, best_path, config, model, optimizer, scheduler)
        if start_epoch > params.epochs:
            raise PipelineError(f"{last_path}: already has {start_epoch} epochs, more than train.epochs "
                                f"({params.epochs}); raise train.epochs or set train.resume to false")
        print(f"train: resuming from {last_path} after epoch {start_epoch}")
    elif params.resume:
        print(f"train: train.resume is set but there is no {last_path}; starting afresh")

    settings = RunSettings(device, use_bf16, params.channels_last, len(data.table), IMAGENET_MEAN, IMAGENET_STD,
                           make_loss(params.loss), progress)
    augmentation = training_augmentation(data.tile_size, augment.scale_min, augment.colour_jitter)
    train_set = TileDataset(data.train, data.images_dir, data.masks_dir, augmentation, seed=params.seed)
    val_set = TileDataset(data.val, data.images_dir, data.masks_dir)
    loader_options = {"batch_size": params.batch_size, "num_workers": params.workers,
                      "pin_memory": device.type == "cuda"}
    val_loader = DataLoader(val_set, shuffle=False, **loader_options)

    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
    for epoch, record in enumerate(history, start=1):  # a resumed run's log matches an uninterrupted one
        log_epoch(live, epoch, record)
    models_dir.mkdir(parents=True, exist_ok=True)
    epochs = tqdm(range(start_epoch, params.epochs), desc="train", unit="epoch", disable=not progress,
                  initial=start_epoch, total=params.epochs)
    for epoch in epochs:
        train_set.epoch = epoch
        shuffle = seed_epoch(params.seed, epoch)
        train_loader = DataLoader(train_set, shuffle=True, drop_last=len(train_set) > params.batch_size,
                                  generator=shuffle, **loader_options)
        trained = run_epoch(model, train_loader, settings, f"epoch {epoch + 1} train", optimizer, scheduler, epoch)
        validated = run_epoch(model, val_loader, settings, f"epoch {epoch + 1} val")
        record = {"train": epoch_metrics(trained, data.table), "val": epoch_metrics(validated, data.table)}
        history.append(record)
        log_epoch(live, epoch + 1, record)
        val_miou = record["val"]["miou_land"] or 0.0
        # History goes in as JSON text: pickling the dicts themselves would make the bytes depend on
        # which strings happen to be shared objects, which differs after a resume.
        state = {"config": config, "epoch": epoch + 1, "history": json.dumps(history), "model": model.state_dict()}
        if val_miou > best_miou:
            best_miou = val_miou
            save_checkpoint(best_path, **state, best_miou=best_miou)
        save_checkpoint(last_path, **state, best_miou=best_miou, optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict() if scheduler else None)
        epochs.set_postfix(val_miou=f"{val_miou:.3f}", best=f"{best_miou:.3f}")
    live.end()
    return history[-1]


def resume_from(last_path: Path, best_path: Path, config: dict, model: nn.Module, optimizer, scheduler
                ) -> tuple[int, float, list]:
    checkpoint = load_checkpoint(last_path)
    for key, value in config.items():
        if checkpoint["config"].get(key) != value:
            raise PipelineError(f"{last_path}: was trained with {key}={checkpoint['config'].get(key)!r}, now "
                                f"{value!r}; set train.resume to false to start afresh")
    if not best_path.exists():
        raise PipelineError(f"{best_path}: missing, so training cannot resume from {last_path}; "
                            "set train.resume to false to start afresh")
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        if checkpoint["scheduler"] is None:
            raise PipelineError(f"{last_path}: was trained without a scheduler; set train.resume to false")
        scheduler.load_state_dict(checkpoint["scheduler"])
    return checkpoint["epoch"], checkpoint["best_miou"], json.loads(checkpoint["history"])
