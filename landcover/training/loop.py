"""One pass over a loader, training or evaluating, and the numbers it yields."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from landcover.data.palette import ClassTable
from landcover.evaluation.metrics import confusion_matrix, scores
from landcover.io.errors import PipelineError
from landcover.model.ranks import Ranks
from landcover.training.components import BatchSettings, LossFn

# Apart from another rank's dropout seeds (rank 0 keeps those of a single process).
RANK_SEED_STRIDE = 1_000_000_007


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """Seed the global torch RNG (dropout) for this epoch and rank and return the loader's shuffle generator.

    The shuffle generator is the same on every rank: all ranks draw the same global order and each
    takes its share (datasets.ShardedSampler). Dropout masks differ between ranks, as they differ
    between the samples of one batch.
    """
    torch.manual_seed(seed * 100_003 + epoch + rank * RANK_SEED_STRIDE)
    return torch.Generator().manual_seed(seed * 100_019 + epoch)


@dataclass
class EpochResult:
    """Mean objective over an epoch's batches, and its confusion matrix over every pixel scored."""

    loss: float
    confusion: np.ndarray


@dataclass
class EpochMeter:
    """Running totals of an epoch."""

    num_classes: int
    batches: int = 0
    loss_sum: float = 0.0
    confusion: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.num_classes,) * 2, dtype=np.int64)

    def add(self, loss: float, targets: torch.Tensor, logits: torch.Tensor) -> None:
        self.batches += 1
        self.loss_sum += loss
        with torch.no_grad():
            self.confusion += confusion_matrix(targets.cpu().numpy(), logits.argmax(1).cpu().numpy(), self.num_classes)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.batches

    def result(self, ranks: Ranks | None = None) -> EpochResult:
        """The epoch's mean loss and confusion matrix, summed over all ranks (each scored its own share)."""
        if ranks is None or not ranks.several:
            return EpochResult(self.mean_loss, self.confusion)
        loss_sum, batches = ranks.sum(np.array([self.loss_sum, self.batches], dtype=np.float64))
        return EpochResult(float(loss_sum / batches) if batches else math.nan, ranks.sum(self.confusion))


def finite_loss(loss: torch.Tensor, description: str, step: int, ranks: Ranks | None = None) -> float:
    """The loss as a number (one device sync per batch); a NaN or infinite loss stops training.

    With several processes the check is on the sum of every rank's loss, so all ranks stop together
    at the same batch with the same message (one rank stopping alone would leave the others waiting).
    """
    value = loss.item()
    checked = ranks.sum(np.array([value]))[0] if ranks is not None and ranks.several else value
    if not math.isfinite(checked):
        raise PipelineError(
            f"train: loss became {checked} in {description}, batch {step + 1}; "
            "lower train.lr or set train.precision to fp32"
        )
    return value


def optimise(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    epoch_position: float,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """One optimizer step; the scheduler moves to `epoch_position` (warm restarts move smoothly within an epoch).

    With a GradScaler (fp16) the loss is scaled before backward and the step skipped where the
    gradients overflowed, as torch.amp prescribes.
    """
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if scheduler is not None:
        scheduler.step(epoch_position)  # type: ignore[arg-type]  # a fraction of an epoch: warm restarts take it


def run_epoch(
    model: nn.Module,
    loader: DataLoader,
    batch_settings: BatchSettings,
    loss_fn: LossFn,
    num_classes: int,
    description: str,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    epoch: int = 0,
    progress: bool = True,
    scaler: torch.amp.GradScaler | None = None,
    ranks: Ranks | None = None,
) -> EpochResult:
    """One pass over `loader`: trains when an optimizer is given, else evaluates without gradients.

    With several `processes`, `loader` holds this rank's share and the result is summed over all ranks.
    """
    training = optimizer is not None
    model.train(training)
    meter = EpochMeter(num_classes)
    batches = len(loader)
    bar = tqdm(loader, desc=description, unit="batch", leave=False, disable=not progress)
    for step, (images, masks) in enumerate(bar):
        inputs, targets = batch_settings.inputs(images), batch_settings.targets(masks)
        with torch.set_grad_enabled(training):
            logits = batch_settings.logits(model, inputs)
            objective = loss_fn(logits, targets)
        loss_value = finite_loss(objective, description, step, ranks if training else None)
        if training:
            assert optimizer is not None  # training: run_epoch was given one
            optimise(objective, optimizer, scheduler, epoch + (step + 1) / batches, scaler)
        meter.add(loss_value, targets, logits)
        bar.set_postfix(loss=f"{meter.mean_loss:.4f}")
    return meter.result(ranks)


def epoch_metrics(result: EpochResult, table: ClassTable) -> dict[str, float | None]:
    """What is logged per split and epoch: the objective, mIoU (land and all), mean Dice, accuracy, IoU per class.

    All but the objective come from the epoch's confusion matrix, defined as the test scores are.
    """
    summary = scores(result.confusion, table)
    metrics = {
        "loss": result.loss,
        "miou_land": summary["miou_land"],
        "miou": summary["miou"],
        "mean_dice": summary["mean_dice"],
        "pixel_accuracy": summary["pixel_accuracy"],
    }
    metrics.update({f"iou/{name}": value for name, value in summary["iou"].items()})
    return metrics
