"""What training is built from, each made from params in one place: model, loss, optimizer, scheduler,
and the way a batch is prepared for the model (device, precision, memory layout, normalisation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from landcover.data.palette import IGNORE_INDEX
from landcover.data.scaling import SCALINGS, BandScaling
from landcover.io.params import DataParams, ModelParams, TrainParams, choose
from landcover.model.devices import DEVICES, PRECISIONS, autocast
from landcover.model.model import build_model, normalise

# (logits, target) -> the objective to minimise
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def configure_model(
    model_params: ModelParams,
    num_classes: int,
    device: torch.device,
    channels_last: bool,
    seed: int,
    in_channels: int = 3,
) -> nn.Module:
    """DeepLabV3+ taking `in_channels` bands, with its random initialisation drawn from `seed`, on `device`."""
    torch.manual_seed(seed)
    model = build_model(model_params.encoder, num_classes, model_params.encoder_weights, in_channels).to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _dice() -> LossFn:
    """smp's soft Dice, averaged per batch: it is what is optimised, not what is reported. Reports use one Dice,
    pooled hard Dice from the confusion matrix (metrics.scores), for train, val and test alike."""
    from segmentation_models_pytorch.losses import DiceLoss

    return DiceLoss(mode="multiclass", ignore_index=IGNORE_INDEX)


def _cross_entropy() -> LossFn:
    return nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)


def _dice_ce() -> LossFn:
    dice, cross_entropy = _dice(), _cross_entropy()
    return lambda logits, target: dice(logits, target) + cross_entropy(logits, target)


# train.loss: each name's objective, built when training starts; ignored pixels never count. dice is the seed
# notebooks', dice_ce the sum of dice and ce.
LOSSES: dict[str, Callable[[], LossFn]] = {"dice": _dice, "ce": _cross_entropy, "dice_ce": _dice_ce}


def configure_loss(name: str) -> LossFn:
    """A batch's objective: the train.loss `name` of LOSSES."""
    return choose("train.loss", name, LOSSES)()


def configure_optimizer(model: nn.Module, train_params: TrainParams, device: torch.device) -> torch.optim.Optimizer:
    """Adam; its fused kernel where there is one (one pass over all weights: 4% of a CPU step, measured)."""
    return torch.optim.Adam(
        model.parameters(),
        lr=train_params.lr,
        weight_decay=train_params.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )


Scheduler = torch.optim.lr_scheduler.LRScheduler


def _cosine(optimizer: torch.optim.Optimizer, train_params: TrainParams) -> Scheduler | None:
    """Cosine annealing with warm restarts every `restart_epochs` (stepped every batch)."""
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=train_params.restart_epochs)


# train.scheduler: each name's learning-rate schedule for an optimizer (none: a constant rate)
SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer, TrainParams], Scheduler | None]] = {
    "cosine": _cosine,
    "none": lambda optimizer, train_params: None,
}


def configure_scheduler(optimizer: torch.optim.Optimizer, train_params: TrainParams) -> Scheduler | None:
    """The train.scheduler of SCHEDULERS for `optimizer`."""
    return choose("train.scheduler", train_params.scheduler, SCHEDULERS)(optimizer, train_params)


def check_train_options(train_params: TrainParams, data_params: DataParams) -> None:
    """Refuse, as the params are read and before anything is built, a train.loss, train.scheduler, train.device,
    train.precision or data.scaling that names nothing in its registry."""
    choose("train.loss", train_params.loss, LOSSES)
    choose("train.scheduler", train_params.scheduler, SCHEDULERS)
    choose("train.device", train_params.device, DEVICES)
    choose("train.precision", train_params.precision, PRECISIONS)
    choose("data.scaling", data_params.scaling, SCALINGS)


@dataclass(frozen=True)
class BatchSettings:
    """How a loader's batch reaches the model: on which device, in which precision, memory layout and scaling."""

    device: torch.device
    precision: str  # bf16, fp16 or fp32, resolved for the device (devices.resolve_precision)
    channels_last: bool
    scaling: BandScaling  # the bands' scaling, recorded in the checkpoint

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """NHWC images (the scaling's type) -> scaled float NCHW on the device (channels_last if asked)."""
        inputs = normalise(images.to(self.device, non_blocking=True), self.scaling)
        return inputs.contiguous(memory_format=torch.channels_last) if self.channels_last else inputs

    def targets(self, masks: torch.Tensor) -> torch.Tensor:
        return masks.to(self.device, non_blocking=True).long()

    def logits(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """The model's fp32 logits, run under bf16/fp16 autocast if asked (losses in fp32: half-precision sums
        lose precision)."""
        with autocast(self.device, self.precision):
            logits = model(inputs)
        return logits.float()
