"""Which checkpoints training keeps, where, and resuming from them.

After every epoch training writes into `models/resume/`:
- `best.pt`: the weights of the epoch with the best val mIoU (land classes) so far;
- `last.pt`: the latest epoch's weights with the optimizer and scheduler state, to resume from.
When the last epoch is done, they are published as the stage's outputs `models/best.pt` and
`models/last.pt`. The resume folder is not a DVC output: DVC deletes outputs before it reruns a
stage, and a persisted output would turn off DVC's run-cache for it. So a killed or extended run
continues from `models/resume/`, while going back to earlier params restores earlier outputs
from the run-cache without training.

Every checkpoint carries the config predict needs, the params it was trained with, the history up
to its epoch and the number of processes that trained it (`world_size`). Only rank 0 writes them.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from landcover.io.errors import PipelineError
from landcover.io.outputs import atomic_file
from landcover.io.params import AugmentParams, ModelParams, TrainParams
from landcover.model.checkpoint import (
    TEMPERATURE,
    decode_history,
    encode_history,
    load_checkpoint,
    save_checkpoint,
)

# Params that say how long and whether to continue, not what is trained: a resumed run may raise
# train.epochs (the cosine cycle length is train.restart_epochs, not train.epochs). Left out of the
# stored params, so a resumed run ends with the same bytes as an uninterrupted one. How the
# processes are laid out over machines (train.processes per node, train.nodes) is left out too:
# what shapes training is their product, stored as the checkpoint's `world_size`, so 2 processes on
# one node and 1 on each of 2 nodes give the same bytes.
NOT_STORED = ("train.epochs", "train.resume", "train.processes", "train.nodes")


def training_params(model_params: ModelParams, train_params: TrainParams, augment_params: AugmentParams | None) -> dict:
    """The params that shape a training run, flat ("train.lr": 0.003, ...), in params.yaml's order, but NOT_STORED
    (and no augment.* where training was not augmented)."""
    flat = {}
    for section, values in (("model", model_params), ("train", train_params), ("augment", augment_params)):
        if values is None:
            continue
        flat.update({f"{section}.{key}": value for key, value in dataclasses.asdict(values).items()})
    return {key: value for key, value in flat.items() if key not in NOT_STORED}


def first_changed_param(stored: dict, current: dict) -> str | None:
    """The first key, in `current`'s order, whose value differs from `stored`'s."""
    for key in [*current, *(key for key in stored if key not in current)]:
        if stored.get(key) != current.get(key):
            return key
    return None


def publish(source: Path, destination: Path) -> None:
    """Put `source`'s bytes at `destination` atomically: a hard link where the filesystem has them, else a copy.

    Checkpoints are only ever replaced by renames, never written in place, so a link is safe and
    saves the disk a second copy of the weights.
    """
    if destination.exists() and os.path.samefile(source, destination):
        return  # already published (and renaming a link over itself would leave the link behind)
    with atomic_file(destination) as staging:
        staging.unlink()
        try:
            os.link(source, staging)
        except OSError:
            shutil.copyfile(source, staging)


@dataclass
class ResumeState:
    epochs_done: int
    history: list[dict]


class CheckpointPolicy:
    def __init__(self, models_dir: Path, config: dict, params: dict, world_size: int = 1) -> None:
        self.models_dir = models_dir
        self.config = config  # what predict needs: classes, colours, encoder, normalisation, tile size
        self.params = params  # training_params() of this run
        self.world_size = world_size  # processes training together (train.processes x train.nodes)
        self.resume_dir = models_dir / "resume"
        self.best_path = models_dir / "best.pt"
        self.last_path = models_dir / "last.pt"
        self.best_miou = -1.0

    @property
    def resume_path(self) -> Path:
        return self.resume_dir / "last.pt"

    def start_afresh(self) -> None:
        """Forget an earlier run's resume state, so a run killed before its first epoch cannot be mistaken for it."""
        shutil.rmtree(self.resume_dir, ignore_errors=True)

    def resume(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> ResumeState:
        """Load the resume state's weights, optimizer, scheduler (and fp16 loss scaler); refuse one of another
        model, other params or another number of processes."""
        checkpoint = load_checkpoint(self.resume_path)
        for key, value in self.config.items():
            if checkpoint["config"].get(key) != value:
                raise PipelineError(
                    f"{self.resume_path}: was trained with {key}={checkpoint['config'].get(key)!r}, "
                    f"now {value!r}; set train.resume to false to start afresh"
                )
        stored = checkpoint.get("params", {})
        changed = first_changed_param(stored, self.params)
        if changed is not None:
            raise PipelineError(
                f"{self.resume_path}: was trained with {changed}={stored.get(changed)!r}, params now "
                f"say {self.params.get(changed)!r}; only train.epochs may change on resume: "
                "restore it, or set train.resume to false to start afresh"
            )
        stored_world = checkpoint.get("world_size", 1)
        if stored_world != self.world_size:
            raise PipelineError(
                f"{self.resume_path}: was trained by {stored_world} process(es), now "
                f"{self.world_size} (train.processes x train.nodes); resume with the same number, "
                "or set train.resume to false to start afresh"
            )
        if not (self.resume_dir / "best.pt").exists():
            raise PipelineError(
                f"{self.resume_dir / 'best.pt'}: missing, so training cannot resume from "
                f"{self.resume_path}; set train.resume to false to start afresh"
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(checkpoint["scheduler"])
        if scaler is not None and checkpoint.get("scaler") is not None:
            scaler.load_state_dict(checkpoint["scaler"])
        self.best_miou = checkpoint["best_miou"]
        return ResumeState(checkpoint["epoch"], decode_history(checkpoint["history"]))

    def after_epoch(
        self,
        epochs_done: int,
        history: list[dict],
        val_miou: float,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        """Save the resume folder's best.pt if `val_miou` beats the best so far, and its last.pt always."""
        self.resume_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "config": self.config,
            "params": self.params,
            "world_size": self.world_size,
            "epoch": epochs_done,
            "history": encode_history(history),
            "model": model.state_dict(),
        }
        if val_miou > self.best_miou:
            self.best_miou = val_miou
            save_checkpoint(self.resume_dir / "best.pt", **state, best_miou=self.best_miou)
        save_checkpoint(
            self.resume_path,
            **state,
            best_miou=self.best_miou,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict() if scheduler else None,
            **({"scaler": scaler.state_dict()} if scaler is not None else {}),
        )

    def best_weights(self) -> dict:
        """The resume folder's best.pt weights (the epoch the stage's best.pt will be)."""
        return load_checkpoint(self.resume_dir / "best.pt")["model"]

    def record_calibration(self, temperature: float, figures: dict) -> None:
        """Write the temperature fitted on the best weights into the resume folder's best.pt (its config's
        `temperature`, the fit's `figures` as `calibration`), before it is published. last.pt keeps none: its
        weights are another epoch's, and it reads as 1.0."""
        path = self.resume_dir / "best.pt"
        checkpoint = load_checkpoint(path)
        checkpoint["config"] = {**checkpoint["config"], TEMPERATURE: temperature}
        checkpoint["calibration"] = figures
        checkpoint.pop("format")
        save_checkpoint(path, **checkpoint)

    def publish(self) -> None:
        """The finished run's best.pt and last.pt become the stage's outputs."""
        publish(self.resume_dir / "best.pt", self.best_path)
        publish(self.resume_path, self.last_path)
